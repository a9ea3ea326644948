r"""Keras 3 against tf_keras: step time, the same BiFP results, the same TFLite files.

  python benchmarks/benchmark_keras3.py            # full run (~10 minutes on 2 cores)
  python benchmarks/benchmark_keras3.py --quick    # smoke run

1. Engine: epoch time of the engine benchmark's MLP and CNN (random data) for plain
   `fit`, TFMOT `prune_low_magnitude` (tf_keras only) and the bi-level step (joint and
   alternating, fairness off) on each flavour. One process, the configurations
   interleaved per run, median over runs, reported as ratios.
2. BiFP on UCI Adult (sex) at 90%, both flavours, seeds 0..N-1: one dense model per
   seed (trained on Keras 3, copied into tf_keras), then the same BiFP run (default
   constraint) on each flavour; test accuracy and gaps.
3. The sparse TFLite file of each of those models: size and max |TFLite − Keras|.

Writes the `keras3` section of BENCHMARKS.md and benchmarks/results/keras3.json.
"""

import json
import os
import sys
import tempfile
import warnings

from absl import app
from absl import flags
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tf_keras  # pylint: disable=g-import-not-at-top

import bench_utils  # pylint: disable=g-import-not-at-top
import benchmark_engine as engine  # pylint: disable=g-import-not-at-top
import pipeline  # pylint: disable=g-import-not-at-top
import tf_fairprune  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_integer("k3_runs", 5, "Timed runs per engine configuration (median reported).")
flags.DEFINE_integer("k3_seeds", 3, "Seeds of the Adult comparison.")
flags.DEFINE_integer("k3_epochs", 5, "BiFP epochs of the Adult comparison.")
flags.DEFINE_string("k3_output", os.path.join(bench_utils.ROOT, "benchmarks", "results",
                                              "keras3.json"), "Raw results.")

# (label, method of benchmark_engine.build, Keras flavour)
CONFIGS = (("dense tf_keras", "dense", "2"), ("dense Keras 3", "dense", "3"),
           ("TFMOT (tf_keras)", "tfmot", "2"),
           ("bi-level joint, tf_keras", "bifp_joint", "2"),
           ("bi-level joint, Keras 3", "bifp_joint", "3"),
           ("bi-level alternating, tf_keras", "bifp_alternating", "2"),
           ("bi-level alternating, Keras 3", "bifp_alternating", "3"))


def engine_times():
  """{model: {label: median seconds per epoch}}."""
  out = {}
  for name in ("mlp", "cnn"):
    x, y, batch = engine.make_data(name, FLAGS.quick)
    times = {label: [] for label, _, _ in CONFIGS}
    for _ in range(FLAGS.k3_runs):  # Interleaved, so drifts hit every configuration alike.
      for label, method, version in CONFIGS:
        k = pipeline.keras_module(version)
        k.utils.set_random_seed(0)
        model, callbacks, _ = engine.build(name, method, FLAGS.sparsity, k)
        timer = engine_timer(k)
        model.fit(x, y, batch_size=batch, epochs=FLAGS.epochs, verbose=0,
                  callbacks=callbacks + [timer])
        times[label] += timer.times[1:]  # Epoch 0 traces the step.
    out[name] = {label: bench_utils.median(t) for label, t in times.items()}
  return out


def engine_timer(k):
  """bench_utils.EpochTimer as a callback of the Keras module `k`."""
  if k is tf_keras:
    return bench_utils.EpochTimer()
  return bench_utils.callback_class(bench_utils.EpochTimerLogic, k, "EpochTimer")()


def adult_runs():
  rows = []
  for seed in range(FLAGS.k3_seeds):
    data = pipeline.load_dataset("adult-sex", seed)
    k3 = pipeline.keras_module("3")
    k3.utils.set_random_seed(seed)
    dense3 = pipeline.train_dense(data, 2 if FLAGS.quick else 100, 256, patience=5, verbose=0,
                                  k=k3)
    dense2 = pipeline.copy_to(dense3, data, tf_keras)
    for version, dense in (("3", dense3), ("2", dense2)):
      pipeline.keras_module(version).utils.set_random_seed(seed)
      outcome = pipeline.prune("bifp", dense, data, FLAGS.sparsity, FLAGS.k3_epochs, 256,
                               verbose=0)
      report = pipeline.audit(outcome["model"], dense, data.test, data)
      with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        export = tf_fairprune.export_tflite(outcome["model"], os.path.join(tmp, "m.tflite"),
                                            sample_inputs=data.test.x[:256])
        dense_export = tf_fairprune.export_tflite(dense, os.path.join(tmp, "d.tflite"),
                                                  sparse=False, sample_inputs=data.test.x[:8])
      rows.append({"seed": seed, "keras": version, "accuracy": report.accuracy,
                   "dense_accuracy": report.dense_accuracy,
                   "group_size": {g["name"]: g["size"] for g in report.groups},
                   **{g: report.gaps[g] for g in ("performance_gap", "degradation_gap",
                                                  "max_excess_gap")},
                   "train_seconds": outcome["train_seconds"],
                   "tflite_bytes": export.size_bytes, "dense_tflite_bytes": dense_export.size_bytes,
                   "tflite_max_abs_diff": export.max_abs_diff, "tflite_sparse": export.sparse})
  return rows


def render(results):
  lines = ["## Keras 3 and tf_keras", "",
           "Produced by `python benchmarks/benchmark_keras3.py` (raw numbers in "
           f"`benchmarks/results/keras3.json`). Machine: {results['machine']}.", "",
           f"**Step time** (median epoch time over {results['runs']} interleaved runs, one "
           f"process, {results['sparsity']:.0%} sparsity, the engine benchmark's models and "
           "random data), as ratios to TFMOT on tf_keras:", ""]
  body = []
  for name, times in results["engine"].items():
    tfmot = times["TFMOT (tf_keras)"]
    for label, seconds in times.items():
      body.append([name, label, f"{seconds * 1000:.0f} ms", f"{seconds / tfmot:.2f}×"])
  lines += [bench_utils.table(["model", "configuration", "epoch", "× TFMOT"], body), ""]
  for name, times in results["engine"].items():
    for mode in ("joint", "alternating"):
      ratio = (times[f"bi-level {mode}, Keras 3"] / times[f"bi-level {mode}, tf_keras"])
      lines.append(f"- {name}, bi-level {mode}: Keras 3 / tf_keras = {ratio:.2f}×.")
  rows = results["adult"]
  sizes = rows[0]["group_size"]
  lines += ["", f"**BiFP on UCI Adult (sex), {results['sparsity']:.0%} sparsity**, default "
            f"constraint, {results['epochs']} epochs, seeds {sorted({r['seed'] for r in rows})}: "
            "per seed one dense model (Keras 3, early stopping) copied into tf_keras, then the "
            "same BiFP run on each flavour. Test split (group sizes: "
            + ", ".join(f"{n} {s:,}" for n, s in sizes.items()) + "), in points, mean ± std:", ""]
  body = []
  for version, label in (("3", "Keras 3"), ("2", "tf_keras")):
    mine = [r for r in rows if r["keras"] == version]
    body.append([label] + [bench_utils.fmt_mean_std([r[f] for r in mine], 100) for f in (
        "accuracy", "performance_gap", "degradation_gap", "max_excess_gap")] + [
            f"{np.mean([r['tflite_bytes'] for r in mine]):,.0f} "
            f"({np.mean([r['tflite_bytes'] / r['dense_tflite_bytes'] for r in mine]):.3f}× dense)",
            f"{max(r['tflite_max_abs_diff'] for r in mine):.2g}"])
  lines += [bench_utils.table(["flavour", "accuracy", "perf. gap", "degr. gap", "max ψ",
                               "sparse TFLite bytes", "max abs(TFLite − Keras)"], body), ""]
  pairs = [(a, b) for a in rows if a["keras"] == "3" for b in rows
           if b["keras"] == "2" and b["seed"] == a["seed"]]
  for field in ("accuracy", "performance_gap", "degradation_gap"):
    diffs = [100 * (a[field] - b[field]) for a, b in pairs]
    lines.append(f"- Keras 3 − tf_keras, {field.replace('_', ' ')}: per seed "
                 f"{', '.join(f'{d:+.2f}' for d in diffs)} pts.")
  return "\n".join(lines)


def main(argv):
  del argv
  if FLAGS.quick:
    FLAGS.k3_runs, FLAGS.epochs, FLAGS.k3_seeds, FLAGS.k3_epochs = 1, 2, 1, 1
  if tf_fairprune.flavours.keras3() is None:
    raise app.UsageError("Keras 3 is not installed (pip install 'keras>=3').")
  results = {"machine": bench_utils.machine(), "runs": FLAGS.k3_runs,
             "sparsity": FLAGS.sparsity, "epochs": FLAGS.k3_epochs,
             "engine": engine_times(), "adult": adult_runs()}
  text = render(results)
  print(text)
  if not FLAGS.quick:
    os.makedirs(os.path.dirname(FLAGS.k3_output), exist_ok=True)
    with open(FLAGS.k3_output, "w") as f:
      json.dump(results, f, indent=1)
    bench_utils.write_section("keras3", text)


if __name__ == "__main__":
  app.run(main)
