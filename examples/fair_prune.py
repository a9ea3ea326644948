r"""The main job: train (or load) a dense model, fair-prune it, strip, export, report.

  python examples/fair_prune.py                       # UCI Adult (sex), BiFP, 90% sparsity
  python examples/fair_prune.py --method=gmp --sparsity=0.95 --output_dir=/tmp/gmp
  python examples/fair_prune.py --dataset=csv:data.csv --label=income --group=sex
  python examples/fair_prune.py --strategy=mirrored   # all local GPUs (or CPUs)

Writes into --output_dir: report.md (per-group table with sizes, gaps, sparsity, TFLite
size, time), results.json and tradeoff.png.

Methods:
  bifp                 bi-level fair pruning: fairness terms on weights and mask (default)
  bip                  the same bi-level step with fairness off
  bifp_no_mask_term    fairness on the weights only   (paper ablation)
  bifp_no_weight_term  fairness on the mask only      (paper ablation)
  gmp                  TFMOT prune_low_magnitude, polynomial decay, then fine-tuning
  two_stage            gmp, then fine-tuning with the fairness penalty (masks fixed) until
                       the validation gap is <= --target_gap or the epochs run out
  dense                no pruning (the reference)
"""

import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tf_keras as keras  # pylint: disable=g-import-not-at-top

import tf_fairprune  # pylint: disable=g-import-not-at-top
from tf_fairprune import datasets  # pylint: disable=g-import-not-at-top
from tf_fairprune import models  # pylint: disable=g-import-not-at-top
from tf_fairprune._compat import tfmot  # pylint: disable=g-import-not-at-top
from tf_fairprune.fairness import DegradationFairness  # pylint: disable=g-import-not-at-top
from tf_fairprune.fairness import PerformanceFairness  # pylint: disable=g-import-not-at-top
from tf_fairprune.fairness import dense_correctness  # pylint: disable=g-import-not-at-top
from tf_fairprune.fairness import evaluate_fairness  # pylint: disable=g-import-not-at-top

METHODS = ("bifp", "bip", "bifp_no_mask_term", "bifp_no_weight_term", "gmp", "two_stage",
           "dense")
LEVELS = {"bifp": ("weights", "mask"), "bip": (), "bifp_no_mask_term": ("weights",),
          "bifp_no_weight_term": ("mask",)}

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "adult-sex",
                    "adult-sex, adult-race, compas-race, compas-sex, or csv:PATH.")
flags.DEFINE_string("label", None, "CSV: the label column (binary).")
flags.DEFINE_string("group", None, "CSV: the sensitive-attribute column.")
flags.DEFINE_enum("method", "bifp", METHODS, "Pruning method.")
flags.DEFINE_float("sparsity", 0.9, "Target sparsity.")
flags.DEFINE_integer("epochs", 5, "Pruning (or fine-tuning) epochs.")
flags.DEFINE_integer("dense_epochs", 5, "Dense training epochs (unless --dense_model).")
flags.DEFINE_string("dense_model", None, "Load the dense model from this .keras/.h5 file.")
flags.DEFINE_integer("batch_size", 256, "Global batch size.")
flags.DEFINE_integer("seed", 0, "Seed of data split, init and order.")
flags.DEFINE_float("fairness_weight", 1.0, "λ of the fairness terms (penalty mode).")
flags.DEFINE_float("target_gap", 0.02, "two_stage: stop fine-tuning at this validation gap.")
flags.DEFINE_enum("strategy", "none", ["none", "mirrored", "multi_worker"],
                  "tf.distribute strategy (multi_worker reads TF_CONFIG).")
flags.DEFINE_bool("jit_compile", False, "Compile the train step with XLA.")
flags.DEFINE_string("output_dir", None, "Where to write results (default runs/DATASET-METHOD).")


def load_data():
  if FLAGS.dataset.startswith("csv:"):
    if not FLAGS.label or not FLAGS.group:
      raise app.UsageError("--dataset=csv:PATH needs --label=COL and --group=COL.")
    try:
      return datasets.load_csv(FLAGS.dataset[4:], FLAGS.label, FLAGS.group, FLAGS.seed)
    except ValueError as err:
      raise app.UsageError(str(err)) from err
  loaders = {"adult": datasets.load_adult, "compas": datasets.load_compas}
  name, _, sensitive = FLAGS.dataset.partition("-")
  if name not in loaders:
    raise app.UsageError(f"Unknown --dataset {FLAGS.dataset!r}: use adult-sex, adult-race, "
                         "compas-race, compas-sex or csv:PATH.")
  return loaders[name](sensitive, seed=FLAGS.seed)


def make_strategy():
  if FLAGS.strategy == "mirrored":
    return tf.distribute.MirroredStrategy()
  if FLAGS.strategy == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  return tf.distribute.get_strategy()


def bce():
  return keras.losses.BinaryCrossentropy(from_logits=True)


def sgd():
  return keras.optimizers.SGD(0.01, momentum=0.9)


class StopAtGap(keras.callbacks.Callback):
  """two_stage: stop once the validation performance gap is at most the target."""

  def __init__(self, target):
    super().__init__()
    self.target = target
    self.reached_at = None

  def on_epoch_end(self, epoch, logs=None):
    gap = (logs or {}).get("val_performance_gap")
    if gap is not None and gap <= self.target and self.reached_at is None:
      self.reached_at = epoch + 1
      self.model.stop_training = True


def gmp(dense, data, steps_per_epoch):
  model = keras.models.clone_model(dense)  # TFMOT reuses layers: never touch `dense`.
  model.set_weights(dense.get_weights())
  end = max(1, int(0.7 * FLAGS.epochs * steps_per_epoch))
  pruned = tfmot.sparsity.keras.prune_low_magnitude(
      model, pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(
          0.0, FLAGS.sparsity, begin_step=0, end_step=end, frequency=max(1, end // 20)))
  pruned.compile(sgd(), bce(), jit_compile=FLAGS.jit_compile)
  pruned.fit(data.train.x, data.train.y, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
             verbose=2, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
  return tfmot.sparsity.keras.strip_pruning(pruned)


def fairness_terms():
  return [PerformanceFairness(weight=FLAGS.fairness_weight),
          DegradationFairness(weight=FLAGS.fairness_weight)]


def run(data, strategy, output_dir):
  is_chief = (FLAGS.strategy != "multi_worker" or
              strategy.cluster_resolver.task_id == 0)
  keras.utils.set_random_seed(FLAGS.seed)
  steps_per_epoch = -(-len(data.train) // FLAGS.batch_size)
  results = {"dataset": data.name, "method": FLAGS.method, "seed": FLAGS.seed,
             "target_sparsity": FLAGS.sparsity, "semi_synthetic": data.semi_synthetic,
             "group_names": data.group_names}
  with strategy.scope():
    if FLAGS.dense_model:
      logging.info("Loading the dense model from %s", FLAGS.dense_model)
      dense = keras.models.load_model(FLAGS.dense_model)
    else:
      logging.info("Phase 1/4: training the dense model (%d epochs)", FLAGS.dense_epochs)
      dense = models.mlp(data.train.x.shape[1])
      dense.compile(keras.optimizers.Adam(1e-3), bce(), jit_compile=FLAGS.jit_compile)
      dense.fit(data.train.x, data.train.y, batch_size=FLAGS.batch_size,
                epochs=FLAGS.dense_epochs, verbose=2)

  logging.info("Phase 2/4: pruning with %s to %.0f%% sparsity", FLAGS.method,
               100 * FLAGS.sparsity)
  dc_train = dense_correctness(dense, data.train.x, data.train.y, from_logits=True)
  dc_val = dense_correctness(dense, data.validation.x, data.validation.y, from_logits=True)
  val = (tf_fairprune.pack_group_data(data.validation.x, data.validation.groups,
                                      dense_correct=dc_val), data.validation.y)
  train_x = tf_fairprune.pack_group_data(data.train.x, data.train.groups, dense_correct=dc_train)
  start = time.perf_counter()
  steps = 0
  reached = None
  with strategy.scope():
    if FLAGS.method == "dense":
      final = dense
    elif FLAGS.method in LEVELS:
      pruned = tf_fairprune.fair_prune_wrapper(
          dense, FLAGS.sparsity, fairness=fairness_terms(), fairness_on=LEVELS[FLAGS.method],
          num_groups=data.num_groups)
      pruned.set_reference_model(None)  # Dense correctness travels with the data.
      pruned.compile(optimizer=sgd(), mask_optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                     loss=bce(), jit_compile=FLAGS.jit_compile)
      pruned.fit(train_x, data.train.y, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
                 validation_data=val, verbose=2)
      steps = int(pruned.optimizer.iterations.numpy())
      final = tf_fairprune.strip_fair_pruning(pruned)
    else:
      final = gmp(dense, data, steps_per_epoch)
      steps = FLAGS.epochs * steps_per_epoch
      if FLAGS.method == "two_stage":
        tuned = tf_fairprune.fair_prune_wrapper(
            final, FLAGS.sparsity, fairness=fairness_terms(), fairness_on=("weights",),
            num_groups=data.num_groups, implicit_gradient_scale=0.0)
        tuned.set_reference_model(None)
        # Scores frozen (lr 0): the GMP mask stays; only the weights are fine-tuned.
        tuned.compile(optimizer=sgd(), mask_optimizer=keras.optimizers.SGD(0.0), loss=bce())
        stop = StopAtGap(FLAGS.target_gap)
        tuned.fit(train_x, data.train.y, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
                  validation_data=val, verbose=2, callbacks=[stop])
        steps += int(tuned.optimizer.iterations.numpy())
        reached = stop.reached_at
        final = tf_fairprune.strip_fair_pruning(tuned)
  train_seconds = time.perf_counter() - start
  if not is_chief:
    return None

  logging.info("Phase 3/4: exporting to TFLite")
  sample = data.test.x[:32]
  os.makedirs(output_dir, exist_ok=True)
  exported = tf_fairprune.export_tflite(final, os.path.join(output_dir, "model.tflite"),
                                        sparse=FLAGS.method != "dense", sample_inputs=sample)
  dense_export = tf_fairprune.export_tflite(dense, os.path.join(output_dir, "dense.tflite"),
                                            sparse=False, sample_inputs=sample)

  logging.info("Phase 4/4: auditing fairness on the test split")
  test = (data.test.x, data.test.y, data.test.groups)
  report = evaluate_fairness(final, test, dense_model=dense, from_logits=True,
                             group_names=data.group_names, num_groups=data.num_groups)
  kernels = [w for w in final.weights if "kernel" in w.name]
  sparsity = float(sum(int(np.sum(w.numpy() == 0)) for w in kernels) /
                   sum(int(np.prod(w.shape)) for w in kernels))
  results.update({
      "sparsity": sparsity, "accuracy": report.accuracy,
      "dense_accuracy": report.dense_accuracy,
      "group_accuracy": {g["name"]: g["accuracy"] for g in report.groups},
      "group_size": {g["name"]: g["size"] for g in report.groups},
      "performance_gap": report.gaps["performance_gap"],
      "degradation_gap": report.gaps["degradation_gap"],
      "max_excess_gap": report.gaps["max_excess_gap"],
      "demographic_parity_difference": report.gaps["demographic_parity_difference"],
      "equalized_odds_difference": report.gaps["equalized_odds_difference"],
      "train_seconds": train_seconds, "train_steps": steps,
      "two_stage_epochs_to_target_gap": reached,
      "tflite_bytes": exported.size_bytes, "dense_tflite_bytes": dense_export.size_bytes,
      "tflite_max_abs_diff": exported.max_abs_diff, "strategy": FLAGS.strategy,
  })
  with open(os.path.join(output_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  write_report(results, report, output_dir)
  plot(results, report, output_dir)
  return results


def write_report(results, report, output_dir):
  label = " (semi-synthetic data)" if results["semi_synthetic"] else ""
  lines = [f"# {results['method']} on {results['dataset']}{label}", "",
           f"Target sparsity {results['target_sparsity']:.0%}, measured "
           f"{results['sparsity']:.3f}; seed {results['seed']}; training "
           f"{results['train_seconds']:.1f} s, {results['train_steps']} steps.", "",
           "| group | size | accuracy | dense accuracy | degradation |", "|---|---|---|---|---|"]
  for g in report.groups:
    lines.append(f"| {g['name']} | {g['size']} | {g['accuracy']:.4f} | "
                 f"{g['dense_accuracy']:.4f} | {g['degradation']:+.4f} |")
  lines += ["", f"Accuracy {results['accuracy']:.4f} (dense {results['dense_accuracy']:.4f}).",
            "", "| gap | value |", "|---|---|"]
  lines += [f"| {k} | {v:.4f} |" for k, v in report.gaps.items() if v is not None]
  lines += ["", f"TFLite: {results['tflite_bytes']:,} bytes (dense float "
                f"{results['dense_tflite_bytes']:,}; "
                f"{results['tflite_bytes'] / results['dense_tflite_bytes']:.3f}×), max |TFLite − "
                f"Keras| {results['tflite_max_abs_diff']:.2e}.", ""]
  with open(os.path.join(output_dir, "report.md"), "w") as f:
    f.write("\n".join(lines))


def plot(results, report, output_dir):
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  except ImportError:
    logging.warning("matplotlib is not installed: no tradeoff.png (pip install matplotlib).")
    return
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  dense_gap = max(g["dense_accuracy"] for g in report.groups) - min(
      g["dense_accuracy"] for g in report.groups if g["size"])
  axes[0].scatter([dense_gap * 100], [results["dense_accuracy"] * 100], label="dense", marker="s")
  axes[0].scatter([results["performance_gap"] * 100], [results["accuracy"] * 100],
                  label=f"{results['method']} {results['sparsity']:.0%}")
  axes[0].set_xlabel("performance gap between groups (pts)")
  axes[0].set_ylabel("accuracy (%)")
  axes[0].legend()
  names = [g["name"] for g in report.groups]
  xs = np.arange(len(names))
  axes[1].bar(xs - 0.2, [g["dense_accuracy"] * 100 for g in report.groups], 0.4, label="dense")
  axes[1].bar(xs + 0.2, [g["accuracy"] * 100 for g in report.groups], 0.4,
              label=results["method"])
  axes[1].set_xticks(xs, [f"{n}\n(n={g['size']})" for n, g in zip(names, report.groups)])
  axes[1].set_ylabel("accuracy (%)")
  axes[1].legend(loc="lower right")
  title = f"{results['dataset']}" + (" (semi-synthetic)" if results["semi_synthetic"] else "")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(os.path.join(output_dir, "tradeoff.png"), dpi=100)
  plt.close(fig)


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  if not 0.0 <= FLAGS.sparsity < 1.0:
    raise app.UsageError(f"--sparsity must be in [0, 1), got {FLAGS.sparsity}.")
  output_dir = FLAGS.output_dir or os.path.join("runs", f"{FLAGS.dataset.replace(':', '_').replace('/', '_')}-{FLAGS.method}")
  logging.info("Loading %s", FLAGS.dataset)
  data = load_data()
  logging.info("%s: %d train / %d validation / %d test rows; groups %s (train sizes %s)",
               data.name, len(data.train), len(data.validation), len(data.test),
               data.group_names, data.train.group_sizes(data.num_groups))
  results = run(data, make_strategy(), output_dir)
  if results:
    logging.info("Wrote %s: accuracy %.4f, performance gap %.4f, degradation gap %.4f, "
                 "sparsity %.3f", output_dir, results["accuracy"], results["performance_gap"],
                 results["degradation_gap"], results["sparsity"])
    print(open(os.path.join(output_dir, "report.md")).read())


if __name__ == "__main__":
  app.run(main)
