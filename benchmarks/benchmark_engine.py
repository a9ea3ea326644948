r"""Cost of the bi-level step and size of the exported files (issue: pruning engine).

Measures, for an MLP and a small CNN on random data (the content of the data does not
change the cost of a step):

* epoch time of plain `fit` on the dense model, TFMOT `prune_low_magnitude`, our
  bi-level step with fairness off (BiP: `joint`, `alternating`, masks re-ranked every 10
  steps) and "BiFP default" (what `examples/fair_prune.py --method=bifp` builds:
  `ExcessDegradation` ε = 0.01, Lagrangian, both levels, the dense model's outputs and
  the group ids packed with the data; `+held-out` adds the `HeldOutFairness` callback on
  a validation set of 10% of the rows, as the job does), on tf_keras and on Keras 3.
  Every configuration is built and traced once, then timed one epoch at a time, all
  configurations interleaved in one process (rotating order), many rounds: fastest,
  median and spread, and the per-round ratio to TFMOT's epoch of the same round;
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
flags.DEFINE_integer("runs", 12, "Rounds: timed epochs per configuration, interleaved.")
flags.DEFINE_integer("epochs", 3, "Epochs per run of benchmark_keras3.py's engine timing "
                     "(the first is warm-up); this script times `runs` single epochs.")
flags.DEFINE_float("sparsity", 0.9, "Target sparsity for the training-cost runs.")
flags.DEFINE_string("child", None, "Internal: run one memory measurement "
                    "'model:method:flavour'.")
flags.DEFINE_string("output", os.path.join(bench_utils.ROOT, "benchmarks", "results",
                                           "engine.json"), "Where to write raw results.")
flags.DEFINE_bool("write_markdown", True, "Update BENCHMARKS.md.")

# (name, Keras flavour "2" = tf_keras / "3" = Keras 3): every timed configuration.
CONFIGS = (("dense", "2"), ("tfmot", "2"), ("bip", "2"), ("bip_alternating", "2"),
           ("bip_f10", "2"), ("bifp", "2"), ("bifp_held_out", "2"),
           ("dense", "3"), ("bip", "3"), ("bip_alternating", "3"), ("bifp", "3"),
           ("bifp_held_out", "3"))
# Configurations whose peak memory is measured (a fresh process each).
MEMORY_CONFIGS = (("dense", "2"), ("tfmot", "2"), ("bip", "2"), ("bifp", "2"),
                  ("bip", "3"), ("bifp", "3"))
flags.DEFINE_list("configs", None, "Only these configurations (labels such as bip/2, "
                  "bifp/3); default all.")
flags.DEFINE_list("models", ["mlp", "cnn"], "Models to time.")
flags.DEFINE_bool("jit_compile", False, "Compile the bi-level steps with XLA.")
flags.DEFINE_list("parts", ["time", "memory", "tflite", "topk"], "What to measure "
                  "(with --jit_compile also 'pooling': the dense small CNN's epoch with and "
                  "without XLA, by pooling layer).")
flags.DEFINE_string("note", "", "What else ran on the machine during this run (written "
                    "beside the machine in the section, e.g. 'shared with the fairness "
                    "benchmark').")
flags.DEFINE_bool("keep_other_rows", True, "With --configs: keep the previous run's rows of "
                  "the configurations not measured now (marked as such) in the results and "
                  "the section.")


def label(config):
  return f"{config[0]}/{config[1]}"


def keras_of(version):
  if str(version) == "2":
    return keras
  return tf_fairprune.flavours.keras3()


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


def _groups(n):
  """Group ids of the benchmark's rows: 30% in group 1 (a minority), the rest group 0."""
  return (np.random.default_rng(1).random(n) < 0.3).astype("int32")


def build(name, method, sparsity, k=keras, x=None, y=None, jit_compile=False, model=None):
  """Returns (compiled model, extra callbacks, fit inputs), built with the Keras module `k`.

  `method`: dense, tfmot, bip (BiP, `joint`), bip_alternating, bip_f10 (masks re-ranked
  every 10 steps), bifp (BiFP default) or bifp_held_out (plus `HeldOutFairness` on the
  last 10% of the rows `x`, `y`). The earlier names bifp_joint / bifp_alternating /
  bifp_joint_f10 (fairness off) are the bip ones. `model`: a dense model to prune
  instead of the benchmark's `name` model (`name` then only picks the loss: "mlp"
  binary, else 10 classes).
  """
  method = {"bifp_joint": "bip", "bifp_alternating": "bip_alternating",
            "bifp_joint_f10": "bip_f10"}.get(method, method)
  model = make_model(name, k) if model is None else model
  opt = k.optimizers.SGD(0.01, momentum=0.9)
  if method == "dense":
    model.compile(opt, _loss(name, k))
    return model, [], x
  if method == "tfmot":
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        model, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(sparsity, 0))
    pruned.compile(opt, _loss(name))
    return pruned, [tfmot.sparsity.keras.UpdatePruningStep()], x
  if method.startswith("bip"):
    pruned = tf_fairprune.fair_prune_wrapper(
        model, sparsity, update_mode="alternating" if method == "bip_alternating" else "joint",
        mask_update_frequency=10 if method == "bip_f10" else 1)
    pruned.compile(optimizer=opt, mask_optimizer=k.optimizers.SGD(0.1, momentum=0.9),
                   loss=_loss(name, k), jit_compile=jit_compile)
    return pruned, [], x
  # BiFP default, as tf_fairprune.baselines.prune("bifp", ...) builds it.
  outputs = model.predict(x, batch_size=1024, verbose=0) if x is not None else None
  pruned = tf_fairprune.fair_prune_wrapper(
      model, sparsity, fairness=[tf_fairprune.fairness.ExcessDegradation(tolerance=0.01)],
      fairness_on=("weights", "mask"), num_groups=2)
  pruned.set_reference_model(None)  # The dense outputs travel with the data.
  pruned.compile(optimizer=opt, mask_optimizer=k.optimizers.SGD(0.1, momentum=0.9),
                 loss=_loss(name, k), jit_compile=jit_compile)
  packed = None
  if x is not None:
    packed = tf_fairprune.pack_group_data(x, _groups(len(x)), dense_outputs=outputs)
  callbacks = []
  if method == "bifp_held_out":
    n_val = len(x) // 10
    val = ({key: v[-n_val:] for key, v in packed.items()}, y[-n_val:])
    callbacks = [tf_fairprune.HeldOutFairness(val, verbose=0)]
  return pruned, callbacks, packed


class EpochTimerLogic(bench_utils.EpochTimerLogic):
  """Wall time and process CPU time (all threads) of every epoch. On a shared machine
  the CPU time moves less with other processes' load than the wall time."""

  def on_train_begin(self, logs=None):
    super().on_train_begin(logs)
    self.cpu_times = []

  def on_epoch_begin(self, epoch, logs=None):
    super().on_epoch_begin(epoch, logs)
    self._cpu_start = time.process_time()

  def on_epoch_end(self, epoch, logs=None):
    super().on_epoch_end(epoch, logs)
    self.cpu_times.append(time.process_time() - self._cpu_start)


def epoch_timer(k):
  """EpochTimerLogic as a callback of the Keras module `k`."""
  return bench_utils.callback_class(EpochTimerLogic, k, "EpochTimer")()


def selected_configs():
  chosen = CONFIGS
  if FLAGS.configs:
    chosen = [c for c in CONFIGS if label(c) in FLAGS.configs]
  return [c for c in chosen if c[1] == "2" or tf_fairprune.flavours.keras3() is not None]


def time_interleaved(name, configs, x, y, batch, rounds, log=print):
  """({label: [wall seconds of each timed epoch]}, {label: [CPU seconds]}), round r's
  epochs all adjacent.

  Each configuration is built and its step traced (one warm-up epoch) first; then each
  round fits one epoch of every configuration, in an order rotated every round so that
  no configuration always follows the same one.
  """
  built = {}
  for config in configs:
    k = keras_of(config[1])
    k.utils.set_random_seed(0)
    model, callbacks, inputs = build(name, config[0], FLAGS.sparsity, k, x, y,
                                     jit_compile=FLAGS.jit_compile and config[0] != "tfmot")
    timer = epoch_timer(k)
    model.fit(inputs, y, batch_size=batch, epochs=1, verbose=0, callbacks=callbacks + [timer])
    built[label(config)] = (model, callbacks, inputs, timer)
  times = {lab: [] for lab in built}
  cpu = {lab: [] for lab in built}
  labels = list(built)
  for r in range(rounds):
    order = labels[r % len(labels):] + labels[:r % len(labels)]
    for lab in order:
      model, callbacks, inputs, timer = built[lab]
      model.fit(inputs, y, batch_size=batch, epochs=1, verbose=0, callbacks=callbacks + [timer])
      times[lab].append(timer.times[-1])
      cpu[lab].append(timer.cpu_times[-1])
    log(f"{name} round {r}: " + ", ".join(f"{lab} {times[lab][-1] * 1000:.0f}" for lab in labels)
        + " ms", flush=True)
  return times, cpu


def summarize(times, reference="tfmot/2"):
  """Per configuration: fastest, median, quartiles (s/epoch) and the ratios to
  `reference`: of the fastest epochs, of the medians, and the median (quartiles) of
  the per-round ratios (each epoch over the reference's epoch of the same round)."""
  out = {}
  ref = np.asarray(times.get(reference, []), dtype=float)
  for lab, t in times.items():
    t = np.asarray(t, dtype=float)
    entry = {"fastest": float(t.min()), "median": float(np.median(t)),
             "q1": float(np.percentile(t, 25)), "q3": float(np.percentile(t, 75))}
    if len(ref) == len(t) and len(t):
      paired = t / ref
      entry.update({"fastest_ratio": float(t.min() / ref.min()),
                    "median_ratio": float(np.median(t) / np.median(ref)),
                    "paired_median": float(np.median(paired)),
                    "paired_q1": float(np.percentile(paired, 25)),
                    "paired_q3": float(np.percentile(paired, 75))})
    out[lab] = entry
  return out


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
  name, method, version = spec.split(":")
  x, y, batch = make_data(name, FLAGS.quick)
  model, callbacks, inputs = build(name, method, FLAGS.sparsity, keras_of(version), x, y)
  before = _rss_mb()
  sampler = _RssSampler()
  sampler.start()
  model.fit(inputs, y, batch_size=batch, epochs=2, verbose=0, callbacks=callbacks)
  peak = sampler.stop()
  print(json.dumps({"peak_rss_mb": peak, "fit_growth_mb": peak - before}))


def measure_memory(name, config):
  args = [sys.executable, os.path.abspath(__file__), f"--child={name}:{config[0]}:{config[1]}",
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
  training under jit_compile), from scratch and warm-started from the previous call's
  threshold (what a training step does: `masking.ranked_masks`)."""
  rng = np.random.default_rng(0)
  scores = [tf.constant(np.abs(rng.standard_normal(s)).astype("float32")) for s in sizes]
  out = {}
  calls = {}
  for method in masking.METHODS:
    calls[method] = tf.function(lambda *s, m=method: masking.topk_masks(list(s), 0.9, method=m),
                                jit_compile=method == "bisect")
  for method in ("histogram", "bisect"):
    hint = tf.Variable(masking.initial_hint(1))

    def warm(*s, m=method, hint=hint):
      masks, next_hint = masking.ranked_masks(list(s), 0.9, hint, method=m)
      hint.assign(next_hint)
      return masks
    calls[f"{method}_warm"] = tf.function(warm, jit_compile=method == "bisect")
  for name, fn in calls.items():
    fn(*scores)
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      [t.numpy() for t in fn(*scores)]
      times.append((time.perf_counter() - start) * 1000)
    out[name] = bench_utils.median(times)
  return out


POOLING = ("max", "average", "strided")


def _pooling_cnn(pool, k=keras):
  """The engine's small CNN with its pooling layers as named ("strided": none, the
  convolutions take stride 2 instead)."""
  layer = {"max": k.layers.MaxPooling2D, "average": k.layers.AveragePooling2D}.get(pool)
  stride = 1 if layer else 2
  stack = [k.Input((28, 28, 1)), k.layers.Conv2D(32, 3, strides=stride, activation="relu")]
  stack += [layer()] if layer else []
  stack += [k.layers.Conv2D(64, 3, strides=stride, activation="relu")]
  stack += [layer()] if layer else []
  stack += [k.layers.Flatten(), k.layers.Dense(128, activation="relu"), k.layers.Dense(10)]
  return k.Sequential(stack)


def time_pooling(rounds):
  """{pool: {"eager_graph": [s], "xla": [s]}}: the dense small CNN's epoch (tf_keras) with
  and without XLA, per pooling layer, interleaved."""
  x, y, batch = make_data("cnn", FLAGS.quick)
  built = {}
  for pool in POOLING:
    for jit in (False, True):
      keras.utils.set_random_seed(0)
      model = _pooling_cnn(pool)
      model.compile(keras.optimizers.SGD(0.01, momentum=0.9), _loss("cnn"), jit_compile=jit)
      model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
      built[(pool, "xla" if jit else "eager_graph")] = model
  times = {pool: {"eager_graph": [], "xla": []} for pool in POOLING}
  keys = list(built)
  for r in range(rounds):
    for key in keys[r % len(keys):] + keys[:r % len(keys)]:
      start = time.perf_counter()
      built[key].fit(x, y, batch_size=batch, epochs=1, verbose=0)
      times[key[0]][key[1]].append(time.perf_counter() - start)
  return times


def _keep_previous_rows(results, previous):
  """Copies the previous run's rows of the configurations not measured now (marked)."""
  measured = {label(c) for c in selected_configs()}
  for name, entry in results["models"].items():
    old = previous.get("models", {}).get(name, {})
    for key in ("summary", "cpu_summary", "memory", "epoch_seconds", "epoch_cpu_seconds"):
      for lab, value in old.get(key, {}).items():
        if lab not in measured and lab not in entry.get(key, {}):
          if isinstance(value, dict):
            value = dict(value, previous_run=True)
          entry.setdefault(key, {})[lab] = value
  results["previous_rows_from"] = previous.get("command")


def main(argv):
  del argv
  if FLAGS.child:
    child(FLAGS.child)
    return
  if FLAGS.quick:
    FLAGS.runs = 2
  if FLAGS.jit_compile and not FLAGS["output"].present:
    FLAGS.output = FLAGS.output.replace("engine.json", "engine_xla.json")
  previous = {}
  if os.path.exists(FLAGS.output):
    with open(FLAGS.output) as f:
      previous = json.load(f)
  results = {"command": " ".join(["python benchmarks/benchmark_engine.py"] + sys.argv[1:]),
             "machine": bench_utils.machine(), "sparsity": FLAGS.sparsity, "runs": FLAGS.runs,
             "jit_compile": FLAGS.jit_compile, "load_average_before": os.getloadavg(),
             "note": FLAGS.note, "models": {}}
  configs = selected_configs()
  for name in FLAGS.models:
    x, y, batch = make_data(name, FLAGS.quick)
    entry = {"rows": len(x), "batch": batch, "steps_per_epoch": -(-len(x) // batch),
             "params": make_model(name).count_params()}
    if "time" in FLAGS.parts:
      times, cpu = time_interleaved(name, configs, x, y, batch, FLAGS.runs)
      entry.update(epoch_seconds=times, epoch_cpu_seconds=cpu, summary=summarize(times),
                   cpu_summary=summarize(cpu))
    if "memory" in FLAGS.parts:
      entry["memory"] = {label(c): measure_memory(name, c) for c in MEMORY_CONFIGS
                         if c in configs}
    results["models"][name] = entry
  if FLAGS.configs and FLAGS.keep_other_rows and previous:
    _keep_previous_rows(results, previous)
  if FLAGS.jit_compile and "pooling" in FLAGS.parts:
    results["pooling"] = time_pooling(FLAGS.runs)
  elif "pooling" in previous:
    results["pooling"] = previous["pooling"]
  results["load_average_after"] = os.getloadavg()
  if "tflite" in FLAGS.parts:
    results["tflite"] = file_sizes()
  elif "tflite" in previous:
    results["tflite"] = previous["tflite"]
  if "topk" in FLAGS.parts:
    mlp = make_model("mlp")
    results["topk_ms"] = time_topk([tuple(w.shape) for w in mlp.weights if "kernel" in w.name])
  elif "topk_ms" in previous:
    results["topk_ms"] = previous["topk_ms"]
  os.makedirs(os.path.dirname(FLAGS.output), exist_ok=True)
  with open(FLAGS.output, "w") as f:
    json.dump(results, f, indent=1)
  text = render(results)
  if FLAGS.write_markdown and not FLAGS.quick:
    bench_utils.write_section("engine_xla" if FLAGS.jit_compile else "engine", text)
  print(text)


NAMES = {"dense": "dense `fit`", "tfmot": "TFMOT `prune_low_magnitude`", "bip": "BiP (`joint`)",
         "bip_alternating": "BiP `alternating`", "bip_f10": "BiP, re-rank every 10 steps",
         "bifp": "**BiFP default**", "bifp_held_out": "BiFP default + `HeldOutFairness`"}
FLAVOURS = {"2": "tf_keras", "3": "Keras 3"}


def _ratio_cell(s):
  if "fastest_ratio" not in s:
    return "n/a"
  return (f"{s['fastest_ratio']:.2f} / {s['median_ratio']:.2f} / {s['paired_median']:.2f} "
          f"[{s['paired_q1']:.2f}–{s['paired_q3']:.2f}]")


TARGETS = (("bip", 1.15), ("bifp", 1.3))  # Issue 28 (BiFP's moonshot: 1.1×).
MEMORY_TARGET = 1.1
HELD_OUT_TARGET = 0.25  # Issue 27: HeldOutFairness adds at most this × TFMOT's epoch.


def held_out_cost(entry, version):
  """Per round, (BiFP + HeldOutFairness epoch − BiFP epoch) / TFMOT's epoch of the same
  round: median and quartiles (None without the three rows of this run)."""
  times = entry.get("epoch_seconds", {})
  held, plain = (times.get(f"{m}/{version}") for m in ("bifp_held_out", "bifp"))
  tfmot = times.get("tfmot/2")
  if not (held and plain and tfmot) or entry["summary"].get(f"bifp/{version}", {}).get(
      "previous_run"):
    return None
  extra = (np.asarray(held) - np.asarray(plain)) / np.asarray(tfmot)
  return tuple(float(v) for v in np.percentile(extra, [50, 25, 75]))


def _ordered(summary):
  """The labels of `summary` in CONFIGS order (then any others)."""
  order = [label(c) for c in CONFIGS]
  return sorted(summary, key=lambda lab: order.index(lab) if lab in order else len(order))


def render(results):
  rows = []
  met = []
  for name, r in results["models"].items():
    summary = r.get("summary", {})
    cpu = r.get("cpu_summary", {})
    mem = r.get("memory", {})
    tfmot_mem = mem.get("tfmot/2", {}).get("peak_rss_mb")
    for lab in _ordered(summary):
      st = summary[lab]
      method, version = lab.split("/")
      m = mem.get(lab)
      mark = " †" if st.get("previous_run") else ""
      rows.append([name, NAMES.get(method, method) + mark, FLAVOURS[version],
                   f"{st['fastest'] * 1000:.0f}",
                   f"{st['median'] * 1000:.0f} [{st['q1'] * 1000:.0f}–{st['q3'] * 1000:.0f}]",
                   _ratio_cell(st),
                   f"{cpu[lab]['paired_median']:.2f}" if "paired_median" in cpu.get(lab, {}) else "n/a",
                   f"{m['peak_rss_mb']:.0f} ({m['peak_rss_mb'] / tfmot_mem:.2f}×)" if m and tfmot_mem
                   else ""])
    for version in ("2", "3"):
      for method, target in TARGETS:
        st = summary.get(f"{method}/{version}")
        if not st or "fastest_ratio" not in st or st.get("previous_run"):
          continue
        c = cpu.get(f"{method}/{version}", {}).get("paired_median")
        verdict = "met" if st["paired_median"] <= target else "missed"
        met.append(f"- {name}, {FLAVOURS[version]}, {NAMES[method].strip('*')}: "
                   f"{st['paired_median']:.2f}× TFMOT's epoch (median of per-round ratios, "
                   f"quartiles {st['paired_q1']:.2f}–{st['paired_q3']:.2f}; fastest epochs "
                   f"{st['fastest_ratio']:.2f}×; CPU time {c:.2f}×) — target ≤ {target}×: "
                   f"{verdict}.")
    for lab in _ordered(mem):
      if lab != "tfmot/2" and tfmot_mem and not mem[lab].get("previous_run"):
        ratio = mem[lab]["peak_rss_mb"] / tfmot_mem
        met.append(f"- {name}, {NAMES.get(lab.split('/')[0]).strip('*')} "
                   f"{FLAVOURS[lab.split('/')[1]]}: peak memory {ratio:.2f}× TFMOT's — target "
                   f"≤ {MEMORY_TARGET}×: {'met' if ratio <= MEMORY_TARGET else 'missed'}.")
    for version in ("2", "3"):
      cost = held_out_cost(r, version)
      if cost is not None:
        met.append(f"- {name}, {FLAVOURS[version]}: `HeldOutFairness` adds {cost[0]:.2f}× "
                   f"TFMOT's epoch to BiFP default's (per-round median, quartiles "
                   f"{cost[1]:.2f}–{cost[2]:.2f}) — target (issue 27) ≤ {HELD_OUT_TARGET}×: "
                   f"{'met' if cost[0] <= HELD_OUT_TARGET else 'missed'}.")
    if "bip_alternating/2" in summary and "fastest_ratio" in summary["bip_alternating/2"]:
      met.append(f"- {name}: `alternating` (two passes) = "
                 f"{summary['bip_alternating/2']['paired_median']:.2f}× TFMOT on tf_keras.")
  timing = _render_timing(results, rows, met)
  if results.get("jit_compile"):
    return timing + _render_pooling(results)  # The XLA run times the steps only.
  if "tflite" not in results:
    return timing
  return timing + _render_sizes(results)


def _render_pooling(results):
  if "pooling" not in results:
    return ""
  rows = []
  for pool, t in results["pooling"].items():
    plain, xla = np.median(t["eager_graph"]), np.median(t["xla"])
    rows.append([pool, f"{plain * 1000:.0f}", f"{xla * 1000:.0f}", f"{xla / plain:.2f}×"])
  return f"""
Where XLA's time goes on the CNN: the dense small CNN (tf_keras `fit`, no pruning), its
two pooling layers as named ("strided": no pooling, the convolutions take stride 2),
median epoch of {results['runs']} interleaved rounds with and without `jit_compile`:

{bench_utils.table(["pooling", "without XLA ms/epoch", "with XLA ms/epoch", "XLA / without"], rows)}
"""


def _render_timing(results, rows, met):
  models = ", ".join(f"{n}: {r['params']:,} parameters, {r['rows']} rows, batch {r['batch']}"
                     for n, r in results["models"].items())
  xla = results.get("jit_compile")
  return f"""## Pruning engine{' under XLA' if xla else ''}: training cost{'' if xla else ', memory, TFLite size'}

Command: `{results.get('command', 'python benchmarks/benchmark_engine.py')}`{'' if xla else _earlier_parts(results.get('command', ''))} — machine: {results['machine']}{'; ' + results['note'] if results.get('note') else ''}{', the bi-level steps compiled with XLA (`jit_compile=True`; TFMOT as it runs by default)' if xla else ''}.
Models ({models}) on random data; sparsity {results['sparsity']:.0%}; SGD(0.01, momentum
0.9) for the weights, SGD(0.1, momentum 0.9) for the scores; TFMOT: `prune_low_magnitude`
with `ConstantSparsity` and `UpdatePruningStep` (tf_keras only). BiP: fairness off.
**BiFP default**: what `examples/fair_prune.py --method=bifp` builds (`ExcessDegradation`,
ε = 0.01, Lagrangian, on both levels; the dense model's outputs and the group ids — 30% in
the minority group — packed with the data, no reference model call in the step);
`+ HeldOutFairness`: the same with the job's held-out steering on 10% of the rows.

Every configuration is built and traced once (one warm-up epoch), then {results['runs']}
rounds each fit one epoch of every configuration, interleaved in one process (order
rotated each round). Columns: the fastest epoch; the median epoch [quartiles]; the
ratios to TFMOT: fastest / fastest, median / median, and the median [quartiles] of the
per-round ratios (each epoch over TFMOT's epoch of the same round — the figure least
moved by other load on the machine); and the per-round ratio of the process's CPU time
per epoch (all threads), which other processes' load moves less than the wall time. Memory: one fresh process per configuration, RSS
sampled every millisecond during `fit` (peak, and its ratio to TFMOT's).
Load average before / after (1-minute; above the core count the machine was shared): {' / '.join(f'{a:.1f}' for a in results.get('load_average_before', [0])[:1] + results.get('load_average_after', [0])[:1])}.

{bench_utils.table(["model", "configuration", "Keras", "fastest ms/epoch", "median ms/epoch", "× TFMOT: fastest / median / per-round", "CPU time × TFMOT (per-round median)", "peak RSS MB (× TFMOT)"], rows)}

{_previous_note(results)}Targets (issue 28: BiP ≤ 1.15×, BiFP default ≤ 1.3× TFMOT's epoch, moonshot 1.1×; peak memory ≤ 1.1× TFMOT's):
{chr(10).join(met)}
"""


def _earlier_parts(command):
  """Names the parts shown from an earlier run (`--parts` without them)."""
  if "--parts" not in command:
    return ""
  earlier = [what for part, what in (("tflite", "TFLite sizes"), ("topk", "top-k times"))
             if part not in command]
  return (f" (the {' and '.join(earlier)} below are from the last run that measured them)"
          if earlier else "")


def _previous_note(results):
  if not results.get("previous_rows_from"):
    return ""
  return (f"† Not measured in this run: the row of the previous run (`{results['previous_rows_from']}`),"
          " with that run's TFMOT epochs as reference.\n\n")


def _warm_topk(topk):
  if "histogram_warm" not in topk:
    return ""
  return (f" Warm-started from the previous call's threshold (what a training step does, "
          f"the same masks): {topk['histogram_warm']:.1f} ms without XLA "
          f"({topk['histogram'] / topk['histogram_warm']:.1f}× faster), "
          f"{topk['bisect_warm']:.1f} ms by bisection under XLA "
          f"({topk['bisect'] / topk['bisect_warm']:.1f}× faster).")


def _render_sizes(results):
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
  return f"""
TFLite file size relative to the dense float32 file (magnitude masks, `export_tflite`'s
converter settings; int8 = full-integer quantization):

{bench_utils.table(["model", "sparsity", "float32 sparse", "int8 sparse", "int8 dense"], size_rows)}

Top-k (global, 90%, over the MLP's {sum(int(np.prod(w.shape)) for w in make_model("mlp").weights if "kernel" in w.name):,} kernel scores), median of 20 calls:
radix-select histogram {results['topk_ms']['histogram']:.1f} ms, bisection under XLA
{results['topk_ms']['bisect']:.1f} ms, stable sort {results['topk_ms']['sort'] :.1f} ms — the histogram is
{results['topk_ms']['sort'] / results['topk_ms']['histogram']:.1f}× faster than the sort.{_warm_topk(results['topk_ms'])}

Target at 90% (MLP, float): ≤ 0.25× the dense float file — measured {mlp90:.3f}×
({'met' if mlp90 <= 0.25 else 'missed'}).
*Quantized unstructured-sparse files fail to prepare under TFLite's default XNNPACK
delegate; `export_tflite` then writes the dense int8 file instead (with a warning).
"""


if __name__ == "__main__":
  app.run(main)
