r"""The paper's setting: CelebA, ResNet-10, Male as the sensitive attribute (GPU machine).

  python examples/celeba_resnet10.py --manual_dir=~/celeba --target=Smiling \
      --method=bifp --sparsity=0.9 --strategy=mirrored --output_dir=runs/celeba

Needs `pip install -e ".[datasets]"` and CelebA's five files in --manual_dir (see
`tf_fairprune.datasets.load_celeba`; tfds prepares them once into --data_dir). Trains a
dense ResNet-10 (or loads --dense_model), fair-prunes it with the bi-level step — the
degradation term compares against a frozen copy of the dense model inside the train
step, so the data pipeline needs no precomputed correctness — strips it, exports
sparse TFLite and writes report.md / results.json into --output_dir. Everything runs
on tf.data, so the 200k images never have to fit in memory. On a CPU it works but is
slow; `--strategy=mirrored` uses every local GPU.
"""

import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tf_keras as keras  # pylint: disable=g-import-not-at-top

import tf_fairprune  # pylint: disable=g-import-not-at-top
from tf_fairprune import baselines  # pylint: disable=g-import-not-at-top
from tf_fairprune import datasets  # pylint: disable=g-import-not-at-top
from tf_fairprune import models  # pylint: disable=g-import-not-at-top
from tf_fairprune.fairness import evaluate_fairness  # pylint: disable=g-import-not-at-top
from tf_fairprune.job import fairness_flags  # pylint: disable=g-import-not-at-top
from tf_fairprune.job import flag_checks  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_string("manual_dir", None, "Directory with CelebA's five files (first run).")
flags.DEFINE_string("data_dir", None, "tfds data directory.")
flags.DEFINE_string("target", "Smiling", "CelebA attribute to predict.")
flags.DEFINE_string("sensitive", "Male", "Sensitive attribute.")
flags.DEFINE_enum("method", "bifp", ["bifp", "bip", "bifp_no_mask_term", "bifp_no_weight_term"],
                  "Bi-level method (fairness levels as in tf_fairprune.baselines).")
flags.DEFINE_float("sparsity", 0.9, "Target sparsity.")
flags.DEFINE_enum("granularity", "weight", ["weight", "channel"], "Mask granularity.")
flags.DEFINE_integer("image_size", 64, "Images are resized to this size.")
flags.DEFINE_integer("width", 64, "ResNet-10 width (filters of the first stage).")
flags.DEFINE_integer("epochs", 10, "Pruning epochs.")
flags.DEFINE_integer("dense_epochs", 10, "Dense training epochs (unless --dense_model).")
flags.DEFINE_string("dense_model", None, "Start from this trained dense model.")
flags.DEFINE_integer("batch_size", 128, "Global batch size.")
flags.DEFINE_integer("steps_per_epoch", None, "Cap the steps per epoch (quick runs).")
flag_checks.define_fairness_flags(flags)
for _name in flag_checks.FAIRNESS_FLAGS:  # Listed by --help, not only --helpfull.
  flags.declare_key_flag(_name)
flags.DEFINE_enum("strategy", "none", ["none", "mirrored"], "tf.distribute strategy.")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_string("output_dir", "runs/celeba-resnet10", "Where results go.")



def run(config, data):
  """Dense training, fair pruning, strip, export and audit; returns the results dict.

  `config` holds the flag values by name (so tests can call this without absl).
  """
  keras.utils.set_random_seed(config["seed"])
  strategy = (tf.distribute.MirroredStrategy() if config["strategy"] == "mirrored"
              else tf.distribute.get_strategy())
  train = data.packed("train", config["batch_size"], shuffle_seed=config["seed"])
  val = data.packed("validation", config["batch_size"])
  loss = keras.losses.BinaryCrossentropy(from_logits=True)
  fit_kwargs = dict(epochs=config["epochs"], steps_per_epoch=config["steps_per_epoch"],
                    verbose=2)
  shape = (config["image_size"], config["image_size"], 3)
  with strategy.scope():
    if config["dense_model"]:
      dense = keras.models.load_model(config["dense_model"])
    else:
      logging.info("Phase 1/4: training the dense ResNet-10")
      dense = models.resnet10(shape, 1, config["width"])
      dense.compile(keras.optimizers.Adam(1e-3), loss)
      dense.fit(data.train.batch(config["batch_size"]).map(lambda x, y, g: (x, y)),
                **dict(fit_kwargs, epochs=config["dense_epochs"]))
    logging.info("Phase 2/4: %s to %.0f%% sparsity", config["method"], 100 * config["sparsity"])
    pruned = tf_fairprune.fair_prune_wrapper(
        dense, config["sparsity"], granularity=config["granularity"],
        fairness=config.get("fairness") or baselines.make_constraints(),
        fairness_on=baselines.LEVELS[config["method"]], num_groups=data.num_groups)
    pruned.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                   mask_optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss=loss)
  callbacks, steer = [], None
  if config.get("held_out", True) and any(c.enforcement.uses_held_out for c in pruned.fairness):
    # The multipliers read the validation split; the iterate is selected there.
    steer = tf_fairprune.HeldOutFairness(val, max_accuracy_loss=config.get("max_accuracy_loss"))
    callbacks.append(steer)
  start = time.perf_counter()
  pruned.fit(train, validation_data=val, callbacks=callbacks, **fit_kwargs)
  seconds = time.perf_counter() - start
  final = tf_fairprune.strip_fair_pruning(pruned, shrink=config["granularity"] == "channel")

  os.makedirs(config["output_dir"], exist_ok=True)
  logging.info("Phase 3/4: exporting to TFLite")
  sample = next(iter(data.test.batch(8)))[0].numpy()
  exported = tf_fairprune.export_tflite(final, os.path.join(config["output_dir"], "model.tflite"),
                                        sparse=config["granularity"] == "weight",
                                        sample_inputs=sample)
  logging.info("Phase 4/4: auditing fairness on the test split")
  report = evaluate_fairness(final, data.packed("test", config["batch_size"]), dense_model=dense,
                             from_logits=True, group_names=data.group_names,
                             num_groups=data.num_groups)
  results = {"dataset": data.name, "method": config["method"], "seed": config["seed"],
             "target_sparsity": config["sparsity"], "granularity": config["granularity"],
             "accuracy": report.accuracy, "dense_accuracy": report.dense_accuracy,
             "group_accuracy": {g["name"]: g["accuracy"] for g in report.groups},
             "group_size": {g["name"]: g["size"] for g in report.groups},
             **{k: v for k, v in report.gaps.items()},
             "train_seconds": seconds, "train_steps": int(pruned.optimizer.iterations.numpy()),
             "tflite_bytes": exported.size_bytes,
             "params": int(final.count_params()), "dense_params": int(dense.count_params()),
             "fairness": [repr(c) for c in pruned.fairness],
             "held_out_selection": steer.selected if steer is not None else None}
  with open(os.path.join(config["output_dir"], "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  with open(os.path.join(config["output_dir"], "report.md"), "w") as f:
    f.write(f"# {config['method']} on {data.name}, ResNet-10\n\n{report}\n")
  return results


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  if not 0.0 <= FLAGS.sparsity < 1.0:
    raise app.UsageError(f"--sparsity must be in [0, 1), got {FLAGS.sparsity}.")
  try:
    data = datasets.load_celeba(FLAGS.target, FLAGS.sensitive, manual_dir=FLAGS.manual_dir,
                                data_dir=FLAGS.data_dir, image_size=FLAGS.image_size)
  except (FileNotFoundError, ImportError, ValueError) as err:
    raise app.UsageError(str(err)) from err
  config = {name: FLAGS[name].value for name in FLAGS if name in (
      "method", "sparsity", "granularity", "image_size", "width", "epochs", "dense_epochs",
      "dense_model", "batch_size", "steps_per_epoch", "strategy", "seed", "output_dir",
      "held_out", "max_accuracy_loss")}
  config["fairness"] = fairness_flags.fairness_from_flags(FLAGS)
  results = run(config, data)
  print(open(os.path.join(config["output_dir"], "report.md")).read())
  logging.info("accuracy %.4f, performance gap %.4f, degradation gap %.4f",
               results["accuracy"], results["performance_gap"],
               results["degradation_gap"] or np.nan)


if __name__ == "__main__":
  sys.exit(app.run(main))
