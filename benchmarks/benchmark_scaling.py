r"""How the bi-level step's cost grows with the model and the batch, against TFMOT's.

For MLPs from about 1e4 to 1e7 parameters, for convolutional networks from the engine
benchmark's small CNN to ResNet-10 and MobileNetV2 (width 1) on 32x32x3 images, and for
the engine benchmark's MLP at batches from 32 to 2048: the time per training step of
TFMOT's `prune_low_magnitude`, of BiP (fairness off) and of BiFP default (what
`examples/fair_prune.py --method=bifp` builds), all on tf_keras (TFMOT's flavour), 90%
sparsity, random data (the content of the data does not change the cost of a step).

Per model: each configuration is built and traced once (one warm-up epoch), the number
of steps per timed epoch is set so that TFMOT's epoch lasts about --target_seconds (one
more untimed epoch each on those rows: a first fit on new arrays runs slow once), then
--rounds rounds each fit one epoch of every configuration, interleaved in one process
(order rotated). Reported: TFMOT's ms per step (median), and per configuration the
median [quartiles] of the per-round ratio to TFMOT's epoch, and the same for the
process's CPU time, which other processes' load moves less.

  python benchmarks/benchmark_scaling.py            # the BENCHMARKS.md run (~25 minutes)
  python benchmarks/benchmark_scaling.py --quick    # smoke run
  python benchmarks/benchmark_scaling.py --render_only

Writes benchmarks/results/scaling.json and the `scaling` section of BENCHMARKS.md.
"""

import json
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tf_keras as keras  # pylint: disable=g-import-not-at-top

import bench_utils  # pylint: disable=g-import-not-at-top
import benchmark_engine as engine  # pylint: disable=g-import-not-at-top
import tf_fairprune  # pylint: disable=g-import-not-at-top
from tf_fairprune import models  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
# --quick (two small cases, two rounds: a smoke run) is benchmark_engine's flag.
flags.DEFINE_integer("rounds", 5, "Timed epochs per configuration, interleaved.")
flags.DEFINE_float("target_seconds", 0.8, "TFMOT's timed epoch lasts about this long.")
flags.DEFINE_list("cases", None, "Only these cases (names in CASES); default all.")
flags.DEFINE_bool("render_only", False, "Render the results file again.")
flags.DEFINE_string("results", os.path.join(bench_utils.ROOT, "benchmarks", "results",
                                            "scaling.json"), "The results file.")

METHODS = ("tfmot", "bip", "bifp")
IMAGE = (32, 32, 3)
# name: (family, what grows, loss kind, builder, input shape, batch). The MLPs have two
# hidden layers of the width named; the loss kind is benchmark_engine's ("mlp": binary,
# "cnn": 10 classes).
CASES = {
    "mlp-64": ("MLP", "model", "mlp", lambda: _mlp(64), (100,), 256),
    "mlp-256": ("MLP", "model", "mlp", lambda: _mlp(256), (100,), 256),
    "mlp-1024": ("MLP", "model", "mlp", lambda: _mlp(1024), (100,), 256),
    "mlp-3072": ("MLP", "model", "mlp", lambda: _mlp(3072), (100,), 256),
    "batch-32": ("MLP-512", "batch", "mlp", lambda: _mlp(512), (100,), 32),
    "batch-128": ("MLP-512", "batch", "mlp", lambda: _mlp(512), (100,), 128),
    "batch-512": ("MLP-512", "batch", "mlp", lambda: _mlp(512), (100,), 512),
    "batch-2048": ("MLP-512", "batch", "mlp", lambda: _mlp(512), (100,), 2048),
    "small-cnn": ("CNN", "model", "cnn", lambda: engine.make_model("cnn"), (28, 28, 1), 128),
    "mobilenet_v2": ("CNN", "model", "cnn",
                     lambda: models.mobilenet_v2(IMAGE, 10, width=1.0), IMAGE, 32),
    "resnet10": ("CNN", "model", "cnn", lambda: models.resnet10(IMAGE, 10), IMAGE, 32),
}
QUICK_CASES = ("mlp-64", "small-cnn")


def _mlp(width):
  return models.mlp(100, hidden=(width, width), outputs=1)


def _data(kind, shape, rows):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((rows,) + tuple(shape)).astype("float32")
  if kind == "mlp":
    return x, (x.reshape(rows, -1)[:, 0] > 0).astype("float32")
  return x, rng.integers(0, 10, rows)


def _fit(entry, inputs, y, batch):
  model, callbacks, timer = entry
  model.fit(inputs, y, batch_size=batch, epochs=1, verbose=0, callbacks=callbacks + [timer])
  return timer.times[-1], timer.cpu_times[-1]


def _inputs(kind, shape, rows, dense):
  """(fit inputs per method, labels): BiFP's carry the group ids and the dense outputs."""
  x, y = _data(kind, shape, rows)
  packed = tf_fairprune.pack_group_data(
      x, engine._groups(rows), dense_outputs=dense.predict(x, batch_size=256, verbose=0))  # pylint: disable=protected-access
  return {"tfmot": x, "bip": x, "bifp": packed}, y


def measure(name, log=print):
  """Times TFMOT, BiP and BiFP default on case `name`; returns its results entry."""
  family, grows, kind, builder, shape, batch = CASES[name]
  keras.utils.set_random_seed(0)
  dense = builder()  # The weights every configuration starts from (same seed).
  steps = 8
  inputs, y = _inputs(kind, shape, steps * batch, dense)
  built = {}
  for method in METHODS:
    keras.utils.set_random_seed(0)
    model, callbacks, _ = engine.build(kind, method, 0.9, keras, model=builder())
    built[method] = (model, callbacks, engine.epoch_timer(keras))
    _fit(built[method], inputs[method], y, batch)  # Traces the step.
  per_step = _fit(built["tfmot"], inputs["tfmot"], y, batch)[0] / steps
  steps = int(np.clip(round(FLAGS.target_seconds / per_step), 4, 64))
  inputs, y = _inputs(kind, shape, steps * batch, dense)
  for method in METHODS:  # The first fit on new arrays runs slow once (not a retrace).
    _fit(built[method], inputs[method], y, batch)
  times = {m: [] for m in METHODS}
  cpu = {m: [] for m in METHODS}
  for r in range(FLAGS.rounds):
    order = METHODS[r % 3:] + METHODS[:r % 3]
    for method in order:
      wall, used = _fit(built[method], inputs[method], y, batch)
      times[method].append(wall)
      cpu[method].append(used)
    log(f"{name} round {r}: " + ", ".join(f"{m} {times[m][-1] / steps * 1000:.1f}"
                                           for m in METHODS) + " ms/step", flush=True)
  return {"family": family, "grows": grows, "dense_params": int(dense.count_params()),
          "batch": batch, "steps": steps, "epoch_seconds": times, "epoch_cpu_seconds": cpu,
          "summary": engine.summarize(times, "tfmot"),
          "cpu_summary": engine.summarize(cpu, "tfmot")}


def _ratio(entry, method, which="summary"):
  s = entry[which][method]
  return f"{s['paired_median']:.2f} [{s['paired_q1']:.2f}–{s['paired_q3']:.2f}]"


def _extra_ms(entry, method):
  """BiP's or BiFP's ms per step above TFMOT's (medians)."""
  s = entry["summary"]
  return (s[method]["median"] - s["tfmot"]["median"]) / entry["steps"] * 1000


def render(results):
  cases = results["cases"]
  rows = []
  for name, e in cases.items():
    tfmot_ms = e["summary"]["tfmot"]["median"] / e["steps"] * 1000
    rows.append([e["family"], name, f"{e['dense_params']:,}", e["batch"], f"{tfmot_ms:.1f}",
                 _ratio(e, "bip"), _ratio(e, "bip", "cpu_summary").split(" ")[0],
                 _ratio(e, "bifp"), _ratio(e, "bifp", "cpu_summary").split(" ")[0],
                 f"{_extra_ms(e, 'bip'):.1f}",
                 f"{_extra_ms(e, 'bip') / e['dense_params'] * 1e6:.1f}"])
  return f"""## How the step's cost grows with the model and the batch

Command: `{results['command']}` — machine: {results['machine']}{'; ' + results['note'] if results.get('note') else ''}; load average before /
after (1-minute; above 2 the 2 cores were shared): {results['load_before']:.1f} /
{results['load_after']:.1f}. tf_keras (TFMOT's flavour), 90% sparsity, random data;
SGD(0.01, momentum 0.9) for the weights, SGD(0.1, momentum 0.9) for the scores.
MLPs: two hidden layers of the width named, 100 inputs, one logit; batch-N: the engine
benchmark's MLP (width 512) at batch N. CNNs: the engine benchmark's small CNN
(28x28x1), MobileNetV2 width 1 and ResNet-10 (`tf_fairprune.models`) on 32x32x3, 10
classes. Per model, TFMOT, BiP and BiFP default are traced once, then {results['rounds']}
rounds each fit one epoch of every configuration, interleaved (TFMOT's epoch about
{results['target_seconds']} s). × TFMOT: median [quartiles] of the per-round ratio of
epoch times (CPU: of the process's CPU time per epoch); "extra": BiP's median ms per step
above TFMOT's, in all and per million parameters.

{bench_utils.table(["family", "model", "parameters", "batch", "TFMOT ms/step", "BiP × TFMOT", "CPU", "BiFP × TFMOT", "CPU", "BiP extra ms/step", "per 1M parameters"], rows)}

{_findings(cases)}
"""


def _findings(cases):
  """What the rows say, in numbers from the rows."""
  def line(family, grows):
    chosen = [(n, e) for n, e in cases.items() if e["family"] == family and e["grows"] == grows]
    if len(chosen) < 2:
      return ""
    (a, ea), (b, eb) = chosen[0], chosen[-1]
    pick = lambda e, m: e["summary"][m]["paired_median"]
    what = "batch" if grows == "batch" else "parameters"
    size = lambda e: e["batch"] if grows == "batch" else f"{e['dense_params']:,}"
    return (f"- {family}, as the {what} grow from {size(ea)} ({a}) to {size(eb)} ({b}): "
            f"BiP {pick(ea, 'bip'):.2f}× → {pick(eb, 'bip'):.2f}× TFMOT's step, BiFP default "
            f"{pick(ea, 'bifp'):.2f}× → {pick(eb, 'bifp'):.2f}×.")
  lines = [line("MLP", "model"), line("MLP-512", "batch"), line("CNN", "model")]
  return "\n".join(l for l in lines if l)


def main(argv):
  del argv
  if FLAGS.render_only:
    with open(FLAGS.results) as f:
      results = json.load(f)
  else:
    names = FLAGS.cases or (QUICK_CASES if FLAGS.quick else list(CASES))
    if FLAGS.quick:
      FLAGS.rounds, FLAGS.target_seconds = 2, 0.2
    results = {"command": " ".join(["python benchmarks/benchmark_scaling.py"] + sys.argv[1:]),
               "machine": bench_utils.machine(), "rounds": FLAGS.rounds,
               "target_seconds": FLAGS.target_seconds, "load_before": os.getloadavg()[0],
               "note": FLAGS.note, "cases": {}}
    start = time.time()
    for name in names:
      results["cases"][name] = measure(name)
      results["cases"][name]["load_after"] = os.getloadavg()[0]
      results["load_after"] = os.getloadavg()[0]
      results["minutes"] = (time.time() - start) / 60
      if not FLAGS.quick:  # After every case: a stopped run keeps the cases it measured.
        os.makedirs(os.path.dirname(FLAGS.results), exist_ok=True)
        with open(FLAGS.results, "w") as f:
          json.dump(results, f, indent=1)
  text = render(results)
  if not FLAGS.quick:
    bench_utils.write_section("scaling", text)
  print(text)


if __name__ == "__main__":
  app.run(main)
