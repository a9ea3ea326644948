r"""Cost of the bi-level step and size of the exported files (issue: pruning engine).

Measures, for an MLP and a small CNN on random data (the content of the data does not
change the cost of a step):

* epoch time of plain `fit` on the dense model, TFMOT `prune_low_magnitude`, and our
  bi-level step (fairness off) in `joint` and `alternating` mode — all in one process,
  interleaved, median over runs, reported as ratios;
* peak resident memory of each, each in a fresh subprocess (peak RSS, and the growth
  of RSS during `fit` over the RSS just before it);
* TFLite file size at 50/80/90/95% unstructured sparsity, float and int8, relative to
  the dense float file.

Writes the `engine` section of BENCHMARKS.md and benchmarks/results/engine.json.

  python benchmarks/benchmark_engine.py            # full run (~10 minutes on 2 cores)
  python benchmarks/benchmark_engine.py --quick    # smoke run
"""

import json
import os
import subprocess
import sys
import threading
import time

from absl import app
from absl import flags
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tf_keras as keras  # pylint: disable=g-import-not-at-top

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_utils  # pylint: disable=g-import-not-at-top
from tf_fairprune import masking  # pylint: disable=g-import-not-at-top
import tf_fairprune  # pylint: disable=g-import-not-at-top
from tf_fairprune import export as export_lib  # pylint: disable=g-import-not-at-top
from tf_fairprune._compat import tfmot  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Small sizes and one timed epoch, for a smoke run.")
flags.DEFINE_integer("runs", 3, "Timed runs per configuration (median reported).")
flags.DEFINE_integer("epochs", 3, "Epochs per run; the first is warm-up and not timed.")
flags.DEFINE_float("sparsity", 0.9, "Target sparsity for the training-cost runs.")
flags.DEFINE_string("child", None, "Internal: run one memory measurement 'model:method'.")
flags.DEFINE_string("output", os.path.join(bench_utils.ROOT, "benchmarks", "results",
                                           "engine.json"), "Where to write raw results.")
flags.DEFINE_bool("write_markdown", True, "Update BENCHMARKS.md.")

METHODS = ("dense", "tfmot", "bifp_joint", "bifp_alternating", "bifp_joint_f10")


def make_model(name, k=keras):
  """The benchmark's MLP or CNN, built with the Keras module `k`."""
  if name == "mlp":
    return k.Sequential([k.Input((100,)),
                         k.layers.Dense(512, activation="relu"),
                         k.layers.Dense(512, activation="relu"),
                         k.layers.Dense(1)], name="mlp")
  return k.Sequential([k.Input((28, 28, 1)),
                       k.layers.Conv2D(32, 3, activation="relu"),
                       k.layers.MaxPooling2D(),
                       k.layers.Conv2D(64, 3, activation="relu"),
                       k.layers.MaxPooling2D(),
                       k.layers.Flatten(),
                       k.layers.Dense(128, activation="relu"),
                       k.layers.Dense(10)], name="cnn")


def make_data(name, quick):
  rng = np.random.default_rng(0)
  if name == "mlp":
    n = 4096 if quick else 16384
    x = rng.standard_normal((n, 100)).astype("float32")
    return x, (x[:, 0] > 0).astype("float32"), 256
  n = 1024 if quick else 4096
  x = rng.standard_normal((n, 28, 28, 1)).astype("float32")
  return x, rng.integers(0, 10, n), 128


def _loss(name, k=keras):
  if name == "mlp":
    return k.losses.BinaryCrossentropy(from_logits=True)
  return k.losses.SparseCategoricalCrossentropy(from_logits=True)


def build(name, method, sparsity, k=keras):
  """Returns (compiled model, extra callbacks), built with the Keras module `k`."""
  model = make_model(name, k)
  opt = k.optimizers.SGD(0.01, momentum=0.9)
  if method == "dense":
    model.compile(opt, _loss(name, k))
    return model, []
  if method == "tfmot":
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        model, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(sparsity, 0))
    pruned.compile(opt, _loss(name))
    return pruned, [tfmot.sparsity.keras.UpdatePruningStep()]
  parts = method.split("_")
  pruned = tf_fairprune.fair_prune_wrapper(
      model, sparsity, update_mode=parts[1],
      mask_update_frequency=int(parts[2][1:]) if len(parts) > 2 else 1)
  pruned.compile(optimizer=opt, loss=_loss(name, k))
  return pruned, []


def time_epochs(name, method, x, y, batch):
  model, callbacks = build(name, method, FLAGS.sparsity)
  timer = bench_utils.EpochTimer()
  model.fit(x, y, batch_size=batch, epochs=FLAGS.epochs, verbose=0,
            callbacks=callbacks + [timer])
  return timer.times[1:]  # Epoch 0 traces the step.


def _rss_mb():
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _RssSampler(threading.Thread):
  """Samples the process RSS every millisecond (ru_maxrss is dominated by the import)."""

  def __init__(self):
    super().__init__(daemon=True)
    self.peak = _rss_mb()
    self._stop_event = threading.Event()

  def run(self):
    while not self._stop_event.is_set():
      self.peak = max(self.peak, _rss_mb())
      time.sleep(0.001)

  def stop(self):
    self._stop_event.set()
    self.join()
    return max(self.peak, _rss_mb())


def child(spec):
  name, method = spec.split(":")
  x, y, batch = make_data(name, FLAGS.quick)
  model, callbacks = build(name, method, FLAGS.sparsity)
  before = _rss_mb()
  sampler = _RssSampler()
  sampler.start()
  model.fit(x, y, batch_size=batch, epochs=2, verbose=0, callbacks=callbacks)
  peak = sampler.stop()
  print(json.dumps({"peak_rss_mb": peak, "fit_growth_mb": peak - before}))


def measure_memory(name, method):
  args = [sys.executable, os.path.abspath(__file__), f"--child={name}:{method}",
          f"--sparsity={FLAGS.sparsity}"] + (["--quick"] if FLAGS.quick else [])
  out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=1200)
  return json.loads(out.stdout.strip().splitlines()[-1])


def file_sizes():
  """TFLite bytes for the MLP and CNN at several sparsities (magnitude masks)."""
  sizes = {}
  for name in ("mlp", "cnn"):
    x, _, _ = make_data(name, True)
    def representative(x=x):
      for row in x[:16]:
        yield [row[None]]
    dense = make_model(name)
    for sparsity in (0.0, 0.5, 0.8, 0.9, 0.95):
      model = tf_fairprune.strip_fair_pruning(
          tf_fairprune.fair_prune_wrapper(dense, max(sparsity, 0.0)))
      for quant in (None, "int8"):
        flat = export_lib.convert(model, sparsity > 0, quant,
                                  representative if quant else None)
        runs = True
        try:
          export_lib.run_tflite(flat, model, [x[:2]])
        except RuntimeError:
          runs = False
        sizes[f"{name}/{sparsity}/{quant or 'float'}"] = {"bytes": len(flat), "runs": runs}
  return sizes


def time_topk(sizes, repeats=20):
  """Median ms of one global top-k over score tensors of `sizes`, per selection method
  (each a tf.function, traced before timing; compiled with XLA for "bisect" as in
  training under jit_compile)."""
  rng = np.random.default_rng(0)
  scores = [tf.constant(np.abs(rng.standard_normal(s)).astype("float32")) for s in sizes]
  out = {}
  for method in masking.METHODS:
    fn = tf.function(lambda *s, m=method: masking.topk_masks(list(s), 0.9, method=m),
                     jit_compile=method == "bisect")
    fn(*scores)
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      [t.numpy() for t in fn(*scores)]
      times.append((time.perf_counter() - start) * 1000)
    out[method] = bench_utils.median(times)
  return out


def main(argv):
  del argv
  if FLAGS.child:
    child(FLAGS.child)
    return
  if FLAGS.quick:
    FLAGS.runs, FLAGS.epochs = 1, 2
  results = {"machine": bench_utils.machine(), "sparsity": FLAGS.sparsity, "runs": FLAGS.runs,
             "timed_epochs_per_run": FLAGS.epochs - 1, "models": {}}
  for name in ("mlp", "cnn"):
    x, y, batch = make_data(name, FLAGS.quick)
    times = {m: [] for m in METHODS}
    for run in range(FLAGS.runs):  # Interleaved, so drifts hit every method alike.
      for method in METHODS:
        keras.backend.clear_session()
        keras.utils.set_random_seed(run)
        times[method] += time_epochs(name, method, x, y, batch)
        print(f"{name} run {run} {method}: {times[method][-1]:.3f}s/epoch", flush=True)
    memory = {m: measure_memory(name, m) for m in METHODS}
    results["models"][name] = {
        "rows": len(x), "batch": batch, "steps_per_epoch": -(-len(x) // batch),
        "params": make_model(name).count_params(),
        "epoch_seconds": times, "median_epoch_seconds": {m: bench_utils.median(t) for m, t in times.items()},
        "memory": memory}
  results["tflite"] = file_sizes()
  mlp = make_model("mlp")
  results["topk_ms"] = time_topk([tuple(w.shape) for w in mlp.weights if "kernel" in w.name])
  os.makedirs(os.path.dirname(FLAGS.output), exist_ok=True)
  with open(FLAGS.output, "w") as f:
    json.dump(results, f, indent=1)
  if FLAGS.write_markdown and not FLAGS.quick:
    bench_utils.write_section("engine", render(results))
  print(render(results))


def render(results):
  rows = []
  met = []
  for name, r in results["models"].items():
    med = r["median_epoch_seconds"]
    mem = r["memory"]
    for method in METHODS:
      rows.append([name, method, f"{med[method] * 1000:.0f}",
                   f"{med[method] / med['dense']:.2f}", f"{med[method] / med['tfmot']:.2f}",
                   f"{mem[method]['peak_rss_mb']:.0f}", f"{mem[method]['fit_growth_mb']:.0f}",
                   f"{mem[method]['peak_rss_mb'] / mem['tfmot']['peak_rss_mb']:.2f}"])
    ratio = med["bifp_joint"] / med["tfmot"]
    mratio = mem["bifp_joint"]["peak_rss_mb"] / mem["tfmot"]["peak_rss_mb"]
    met.append(f"- {name}: time of `joint` = {ratio:.2f}× TFMOT (target ≤ 1.5×: "
               f"{'met' if ratio <= 1.5 else 'missed'}); peak memory {mratio:.2f}× TFMOT "
               f"(target ≤ 1.5×: {'met' if mratio <= 1.5 else 'missed'}); `alternating` = "
               f"{med['bifp_alternating'] / med['tfmot']:.2f}× TFMOT; `joint` with masks "
               f"re-ranked every 10 steps = {med['bifp_joint_f10'] / med['tfmot']:.2f}× TFMOT.")
  size_rows = []
  sizes = results["tflite"]
  for name in ("mlp", "cnn"):
    base = sizes[f"{name}/0.0/float"]["bytes"]
    for sparsity in (0.5, 0.8, 0.9, 0.95):
      f32, i8 = sizes[f"{name}/{sparsity}/float"], sizes[f"{name}/{sparsity}/int8"]
      size_rows.append([name, f"{sparsity:.0%}", f"{f32['bytes'] / base:.3f}",
                        f"{i8['bytes'] / base:.3f}" + ("" if i8["runs"] else " (does not run*)"),
                        f"{sizes[f'{name}/0.0/int8']['bytes'] / base:.3f}"])
  mlp90 = sizes["mlp/0.9/float"]["bytes"] / sizes["mlp/0.0/float"]["bytes"]
  models = ", ".join(f"{n}: {r['params']:,} parameters, {r['rows']} rows, batch {r['batch']}"
                     for n, r in results["models"].items())
  return f"""## Pruning engine: training cost, memory, TFLite size

Command: `python benchmarks/benchmark_engine.py` — machine: {results['machine']}.
Models ({models}) on random data; sparsity {results['sparsity']:.0%}; fairness off (this is
the BiP step); SGD(0.01, momentum 0.9) for the weights, SGD(0.1, momentum 0.9) for the
scores; TFMOT: `prune_low_magnitude` with `ConstantSparsity` and `UpdatePruningStep`.
Epoch time: median over {results['runs']} runs × {results['timed_epochs_per_run']} timed epochs
(first epoch of each run is warm-up), all methods interleaved in one process. Memory: one
fresh process per method, RSS sampled every millisecond during `fit` (peak, and growth
over the RSS just before `fit`).

{bench_utils.table(["model", "method", "ms/epoch", "× dense", "× TFMOT", "peak RSS in fit MB", "RSS growth in fit MB", "peak × TFMOT"], rows)}

`bifp_joint_f10` re-ranks the masks every 10 steps (`mask_update_frequency=10`; the
scores still learn every step). TFMOT's default schedule re-ranks every 100 steps.

Targets:
{chr(10).join(met)}

TFLite file size relative to the dense float32 file (magnitude masks, `export_tflite`'s
converter settings; int8 = full-integer quantization):

{bench_utils.table(["model", "sparsity", "float32 sparse", "int8 sparse", "int8 dense"], size_rows)}

Top-k (global, 90%, over the MLP's {sum(int(np.prod(w.shape)) for w in make_model("mlp").weights if "kernel" in w.name):,} kernel scores), median of 20 calls:
radix-select histogram {results['topk_ms']['histogram']:.1f} ms, bisection under XLA
{results['topk_ms']['bisect']:.1f} ms, stable sort {results['topk_ms']['sort']:.1f} ms — the histogram is
{results['topk_ms']['sort'] / results['topk_ms']['histogram']:.1f}× faster than the sort.

Target at 90% (MLP, float): ≤ 0.25× the dense float file — measured {mlp90:.3f}×
({'met' if mlp90 <= 0.25 else 'missed'}).
*Quantized unstructured-sparse files fail to prepare under TFLite's default XNNPACK
delegate; `export_tflite` then writes the dense int8 file instead (with a warning).
"""


if __name__ == "__main__":
  app.run(main)
