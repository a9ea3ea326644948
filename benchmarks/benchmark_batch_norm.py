r"""Batch-norm statistics after pruning: re-estimate them or not, and when.

  python benchmarks/benchmark_batch_norm.py              # the BENCHMARKS.md run
  python benchmarks/benchmark_batch_norm.py --quick      # seconds-scale smoke run
  python benchmarks/benchmark_batch_norm.py --render_only

A pruned network's BatchNormalization layers keep the moving statistics of the dense
network, though pruning (and the first mask's rescale) changes what reaches them.
`tf_fairprune.recalibrate_batch_norm(model, data)` re-estimates them (the plain average
of the batch statistics over `data`, the model in training mode). This script measures
on TRAINED models whether that should be offered or be the default, and how it interacts
with `rescale`. Per seed it trains a dense ResNet-10 and a MobileNetV2 (small widths,
28×28) on colored Fashion-MNIST (SEMI-SYNTHETIC colour groups; a subsample of the
training rows, as `benchmark_layer_floor.py` does), then per sparsity and rescale setting
prunes with BiP (no fairness, default global ranking with the layer floor) and records
the test accuracy:

  - *wrapped*: right after `fair_prune_wrapper` (no training), as is and recalibrated;
  - *none*: after the pruning epochs, as `strip_fair_pruning` returns it;
  - *before export*: the same model, recalibrated after training.

Training itself never reads the moving statistics (batch norm normalises with the
batch's own in training), so recalibrating at wrap time or after an epoch changes only
what an evaluation in between sees, not the trained weights (a first run confirmed it:
identical accuracies). What does matter is how much of the dense statistics survive
training: with the dense models' momentum 0.9 almost nothing does after a few hundred
steps; with Keras' default 0.99 a good part does. The second fit of each cell sets the
batch-norm momentum to 0.99 while pruning (*momentum 0.99* rows).

Recalibration uses `--calibration_rows` training rows. Rows: benchmarks/results/
batch_norm.jsonl (resumable); section "batch_norm" of BENCHMARKS.md.
"""

import collections
import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # pylint: disable=g-import-not-at-top

import bench_utils  # pylint: disable=g-import-not-at-top
import pipeline  # pylint: disable=g-import-not-at-top
import tf_fairprune  # pylint: disable=g-import-not-at-top
from tf_fairprune import batch_norm  # pylint: disable=g-import-not-at-top
from tf_fairprune import datasets  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["resnet10", "mobilenet_v2"], "Architectures.")
flags.DEFINE_list("sparsities", ["0.9", "0.95"], "Target sparsities.")
flags.DEFINE_list("rescale", ["on", "off"], "fair_prune_wrapper(rescale=...) settings.")
flags.DEFINE_integer("seeds", 2, "Seeds first_seed..N-1.")
flags.DEFINE_integer("first_seed", 0, "The first seed.")
flags.DEFINE_integer("epochs", 2, "Pruning epochs (the mask at the target from step 1).")
flags.DEFINE_integer("dense_epochs", 4, "Dense training epochs (Adam 1e-3).")
flags.DEFINE_integer("batch_size", 64, "Pruning batch size.")
flags.DEFINE_float("bn_momentum", 0.9, "Batch-norm momentum of the dense models.")
flags.DEFINE_integer("image_train_size", 3000, "Training rows used.")
flags.DEFINE_integer("test_size", None, "Test rows (default: all 10,000).")
flags.DEFINE_integer("calibration_rows", 2048, "Training rows recalibration averages over.")
flags.DEFINE_integer("resnet_width", 8, "ResNet-10 first-stage filters.")
flags.DEFINE_float("mobilenet_width", 0.35, "MobileNetV2 width multiplier.")
flags.DEFINE_enum("keras", "2", ["2", "3"], "Keras flavour: 2 (tf_keras) or 3.")
flags.DEFINE_bool("momentum_099", True, "Also prune with batch-norm momentum 0.99.")
flags.DEFINE_bool("quick", False, "A seconds-scale smoke run, not written to BENCHMARKS.md.")
flags.DEFINE_string("note", "", "A paragraph appended to the section.")
flags.DEFINE_bool("render_only", False, "Only re-render BENCHMARKS.md from the rows.")
flags.DEFINE_bool("write_docs", True, "Render into BENCHMARKS.md.")
flags.DEFINE_string("batch_norm_output",
                    os.path.join(bench_utils.ROOT, "benchmarks", "results", "batch_norm.jsonl"),
                    "Rows (JSON lines).")

COLLAPSE_SHARE = 0.99
VARIANTS = ("wrapped", "wrapped, recalibrated", "none", "before export",
            "none, momentum 0.99", "before export, momentum 0.99")


def _accuracy(model, data):
  out = model.predict(data.test.x, batch_size=1024, verbose=0)
  share = pipeline.predicted_share(model, data.test)
  return float(np.mean(out.argmax(-1) == data.test.y)), share


def _width(model):
  return FLAGS.resnet_width if model == "resnet10" else FLAGS.mobilenet_width


def train_dense(data, model_name, k):
  model = pipeline.build_model(data, model_name, _width(model_name), k)
  for layer in model.layers:
    if isinstance(layer, k.layers.BatchNormalization):
      layer.momentum = FLAGS.bn_momentum
  model.compile(k.optimizers.Adam(1e-3), pipeline.loss_for(data, k))
  model.fit(data.train.x, data.train.y, batch_size=64, epochs=FLAGS.dense_epochs, verbose=0)
  return model


def _prune(dense, data, sparsity, rescale, k, momentum=None):
  """A trained BiP model (stripped); its accuracy right after wrapping, and recalibrated.
  `momentum`: the batch-norm momentum while pruning (None: the dense model's)."""
  pruned = tf_fairprune.fair_prune_wrapper(dense, sparsity, rescale=rescale)
  if momentum is not None:
    for layer in batch_norm.batch_norm_layers(pruned):
      layer.momentum = momentum
  wrapped = _accuracy(pruned, data)
  pruned.compile(optimizer=k.optimizers.SGD(0.01, momentum=0.9),
                 mask_optimizer=k.optimizers.SGD(0.1, momentum=0.9),
                 loss=pipeline.loss_for(data, k))
  pruned.fit(data.train.x, data.train.y, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
             verbose=0)
  return tf_fairprune.strip_fair_pruning(pruned), wrapped


def run(path):
  k = pipeline.keras_module(FLAGS.keras)
  done = set()
  if os.path.exists(path):
    done = {(r["model"], r["seed"], r["rescale"], r["target_sparsity"])
            for r in map(json.loads, open(path, encoding="utf-8")) if r["variant"] == "none"}
  for seed in range(FLAGS.first_seed, FLAGS.seeds):
    data = None
    for model_name in FLAGS.models:
      todo = [(float(s), r == "on") for s in FLAGS.sparsities for r in FLAGS.rescale
              if (model_name, seed, r == "on", float(s)) not in done]
      if not todo:
        continue
      if data is None:
        data = datasets.load_colored_fashion_mnist(
            minority_fraction=0.05, correlation=0.0, train_size=FLAGS.image_train_size,
            test_size=FLAGS.test_size, seed=seed)
        calibration = data.train.x[:FLAGS.calibration_rows]
      k.utils.set_random_seed(seed)
      dense = train_dense(data, model_name, k)
      accuracy, share = _accuracy(dense, data)
      common = {"model": model_name, "width": _width(model_name), "seed": seed,
                "dataset": data.name, "semi_synthetic": data.semi_synthetic,
                "train_rows": len(data.train), "keras": FLAGS.keras, "epochs": FLAGS.epochs,
                "dense_epochs": FLAGS.dense_epochs, "calibration_rows": len(calibration)}
      _append(path, dict(common, variant="dense", rescale=None, target_sparsity=0.0,
                         accuracy=accuracy, top_prediction_share=share))
      logging.info("%s seed %d dense: %.4f", model_name, seed, accuracy)
      for sparsity, rescale in todo:
        rows = {}
        start = time.perf_counter()
        k.utils.set_random_seed(seed)
        model, rows["wrapped"] = _prune(dense, data, sparsity, rescale, k)
        rows["none"] = _accuracy(model, data)
        tf_fairprune.recalibrate_batch_norm(model, calibration)
        rows["before export"] = _accuracy(model, data)
        # Recalibrated right after wrapping: what an evaluation before training sees (the
        # training does not read the moving statistics).
        wrapped = tf_fairprune.fair_prune_wrapper(dense, sparsity, rescale=rescale)
        tf_fairprune.recalibrate_batch_norm(wrapped, calibration)
        rows["wrapped, recalibrated"] = _accuracy(wrapped, data)
        if FLAGS.momentum_099:
          k.utils.set_random_seed(seed)
          model, _ = _prune(dense, data, sparsity, rescale, k, momentum=0.99)
          rows["none, momentum 0.99"] = _accuracy(model, data)
          tf_fairprune.recalibrate_batch_norm(model, calibration)
          rows["before export, momentum 0.99"] = _accuracy(model, data)
        for variant, (accuracy, share) in rows.items():
          _append(path, dict(common, variant=variant, rescale=rescale,
                             target_sparsity=sparsity, accuracy=accuracy,
                             top_prediction_share=share, collapsed=share >= COLLAPSE_SHARE))
        logging.info("  %.0f%% rescale=%s: %s (%.0f s)", 100 * sparsity, rescale,
                     {v: round(a, 4) for v, (a, _) in rows.items()}, time.perf_counter() - start)


def _append(path, row):
  with open(path, "a", encoding="utf-8") as f:
    f.write(json.dumps(row) + "\n")


def render(rows, command="python benchmarks/benchmark_batch_norm.py"):
  """The BENCHMARKS.md section from the rows."""
  unique = {}
  for r in rows:
    unique[(r["model"], r["keras"], r["seed"], r["variant"], r["rescale"],
            r["target_sparsity"])] = r
  rows = list(unique.values())
  first = rows[0]
  out = ["## Batch-norm statistics after pruning", "",
         f"Command: `{command}` (rows in `benchmarks/results/batch_norm.jsonl`). Machine: "
         f"{bench_utils.machine()}, shared with other jobs. Data: colored Fashion-MNIST "
         "(**semi-synthetic** colour groups: minority colour 5% of images, independent of "
         f"the label); {first['train_rows']:,} training rows (a random subset), the full "
         f"test split. Per seed one dense model per architecture ({first['dense_epochs']} "
         f"epochs, Adam 1e-3, batch-norm momentum 0.9), then {first['epochs']} epochs of "
         "BiP (no fairness; default global ranking, layer floor 0.1), the mask at the "
         "target from the first step. Recalibration: `tf_fairprune.recalibrate_batch_norm`"
         f" over {first['calibration_rows']:,} training rows. Test accuracy, points, mean "
         "± std over seeds (seed by seed in brackets); *collapsed*: runs whose most frequent "
         f"prediction covers ≥ {COLLAPSE_SHARE:.0%} of the test rows. Variants: *wrapped* "
         "= right after `fair_prune_wrapper`, untrained; *none* = trained, as "
         "`strip_fair_pruning` returns it; *before export* = that model recalibrated; "
         "*momentum 0.99* = the same with Keras' default batch-norm momentum while pruning "
         "(the dense models trained with 0.9). Training never reads the moving statistics "
         "(batch norm uses the batch's own), so recalibrating at wrap time or after each "
         "epoch changes only what an evaluation in between sees: a first run recalibrating "
         "at wrap time and after every epoch gave the trained models exactly the accuracy "
         "of *none* and *before export*."]
  by_model = collections.defaultdict(list)
  for r in rows:
    by_model[(r["model"], r["keras"])].append(r)
  for (model, keras_version), model_rows in sorted(by_model.items()):
    dense = [r["accuracy"] for r in model_rows if r["variant"] == "dense"]
    flavour = "tf_keras" if keras_version == "2" else "Keras 3"
    out += ["", f"### {model} (width {model_rows[0]['width']}), {flavour}", "",
            f"Dense: {bench_utils.fmt_mean_std(dense, 100)} "
            f"(seeds {sorted({r['seed'] for r in model_rows})}).", ""]
    cells = collections.defaultdict(list)
    for r in model_rows:
      if r["variant"] != "dense":
        cells[(r["target_sparsity"], r["rescale"], r["variant"])].append(r)
    body = []
    for (sparsity, rescale, variant) in sorted(cells, key=lambda c: (
        c[0], not c[1], VARIANTS.index(c[2]))):
      group = sorted(cells[(sparsity, rescale, variant)], key=lambda r: r["seed"])
      values = [r["accuracy"] for r in group]
      body.append([f"{sparsity:.0%}", "on" if rescale else "off", variant,
                   bench_utils.fmt_mean_std(values, 100) + " (" +
                   " / ".join(f"{100 * v:.1f}" for v in values) + ")",
                   f"{sum(r['collapsed'] for r in group)}/{len(group)}"])
    out.append(bench_utils.table(["sparsity", "rescale", "recalibration", "accuracy",
                                  "collapsed"], body))
  return "\n".join(out).rstrip()


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  path = FLAGS.batch_norm_output
  if FLAGS.quick:
    FLAGS.models, FLAGS.sparsities, FLAGS.seeds = ["resnet10"], ["0.9"], 1
    FLAGS.epochs = FLAGS.dense_epochs = 1
    FLAGS.image_train_size, FLAGS.test_size, FLAGS.resnet_width = 256, 256, 4
    FLAGS.calibration_rows, FLAGS.write_docs = 128, False
    if FLAGS["batch_norm_output"].using_default_value:
      import tempfile  # pylint: disable=g-import-not-at-top
      path = os.path.join(tempfile.mkdtemp(), "batch_norm.jsonl")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if not FLAGS.render_only:
    run(path)
  rows = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
  text = render(rows)
  if FLAGS.note:
    text += "\n\n" + FLAGS.note.strip()
  if FLAGS.write_docs:
    bench_utils.write_section("batch_norm", text)
  print(text)


if __name__ == "__main__":
  app.run(main)
