r"""XLA and tf.distribute figures for the bi-level step (issue: scale out).

* Epoch time of the BiFP step with `jit_compile=True` vs without, same process,
  interleaved runs, median — MLP and small CNN of benchmark_engine.py, fairness on.
* Max |difference| of weights, scores, masks, multipliers and both optimizers' slots
  after training: MirroredStrategy over 2 logical CPUs vs one device (joint and
  alternating), and MultiWorkerMirroredStrategy with 2 workers on localhost vs one
  process — the runs of tests/distributed_helper.py.

Writes the `distribute` section of BENCHMARKS.md and benchmarks/results/distribute.json.

  python benchmarks/benchmark_distribute.py
"""

import json
import os
import socket
import subprocess
import sys
import tempfile

from absl import app
from absl import flags
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tf_keras as keras  # pylint: disable=g-import-not-at-top

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_utils  # pylint: disable=g-import-not-at-top
import benchmark_engine  # pylint: disable=g-import-not-at-top
import tf_fairprune  # pylint: disable=g-import-not-at-top
from tf_fairprune.fairness import PerformanceFairness  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_integer("xla_runs", 3, "Runs per configuration.")
flags.DEFINE_string("dist_output", os.path.join(bench_utils.ROOT, "benchmarks", "results",
                                                "distribute.json"), "Raw results.")
flags.DEFINE_bool("dist_markdown", True, "Update BENCHMARKS.md.")
flags.DEFINE_bool("render_only", False, "Re-render BENCHMARKS.md from --dist_output.")

HELPER = os.path.join(bench_utils.ROOT, "tests", "distributed_helper.py")


def xla_times(name):
  x, y, batch = benchmark_engine.make_data(name, quick=False)
  groups = (np.arange(len(x)) % 3 == 0).astype("int32")
  packed = tf_fairprune.pack_group_data(x, groups)
  loss = benchmark_engine._loss(name)  # pylint: disable=protected-access
  times = {False: [], True: []}
  for run in range(FLAGS.xla_runs):
    for jit in (False, True):
      keras.backend.clear_session()
      keras.utils.set_random_seed(run)
      model = tf_fairprune.fair_prune_wrapper(
          benchmark_engine.make_model(name), 0.9,
          fairness=[PerformanceFairness(from_logits=True)])
      model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=loss,
                    jit_compile=jit)
      timer = bench_utils.EpochTimer()
      model.fit(packed, y, batch_size=batch, epochs=3, verbose=0, callbacks=[timer])
      times[jit] += timer.times[1:]
      print(f"{name} run {run} jit={jit}: {timer.times[-1]:.3f}s", flush=True)
  return {"no_xla": bench_utils.median(times[False]), "xla": bench_utils.median(times[True])}


def _run_helper(*args, env=None):
  subprocess.run([sys.executable, HELPER, *args], check=True, timeout=900,
                 env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {})),
                 capture_output=True)


def mirrored_diff(mode):
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "d.json")
    _run_helper("mirrored", out, mode)
    return max(json.load(open(out))["diffs"].values())


def multi_worker_diff():
  with tempfile.TemporaryDirectory() as tmp:
    single, multi = os.path.join(tmp, "s.npz"), os.path.join(tmp, "m.npz")
    _run_helper("single", single, "joint")
    sockets = [socket.socket() for _ in range(2)]
    for s in sockets:
      s.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]}
    for s in sockets:
      s.close()
    procs = []
    for index in range(2):
      tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
      procs.append(subprocess.Popen(
          [sys.executable, HELPER, "worker", multi, "joint"],
          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_CONFIG=tf_config),
          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for p in procs:
      if p.wait(timeout=900) != 0:
        raise RuntimeError("a worker failed")
    a, b = np.load(single), np.load(multi)
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a.files)


def main(argv):
  del argv
  if FLAGS.render_only:
    results = json.load(open(FLAGS.dist_output))
  else:
    results = {"machine": bench_utils.machine(),
               "xla": {name: xla_times(name) for name in ("mlp", "cnn")},
               "mirrored_joint": mirrored_diff("joint"),
               "mirrored_alternating": mirrored_diff("alternating"),
               "multi_worker": multi_worker_diff()}
    os.makedirs(os.path.dirname(FLAGS.dist_output), exist_ok=True)
    with open(FLAGS.dist_output, "w") as f:
      json.dump(results, f, indent=1)
  rows = [[n, f"{r['no_xla'] * 1000:.0f}", f"{r['xla'] * 1000:.0f}",
           f"{r['xla'] / r['no_xla']:.2f}"] for n, r in results["xla"].items()]
  text = f"""## Scale out: XLA and tf.distribute

Command: `python benchmarks/benchmark_distribute.py` — machine: {results['machine']}.

Epoch time of the BiFP step (90% sparsity, `PerformanceFairness` on both levels, models
and data of the engine benchmark, random group ids) with `compile(jit_compile=True)` vs
without; median of {FLAGS.xla_runs} runs × 2 timed epochs, interleaved in one process. Under XLA the
masks are ranked by bisection (scatter-based histograms compile poorly under XLA); on
CPU that is slower than the default histogram ranking, and XLA brings no gain on
these small models. It is there as the device-agnostic path for GPUs.

{bench_utils.table(["model", "ms/epoch without XLA", "ms/epoch with XLA", "XLA / no XLA"], rows)}

Same answer on many replicas as on one (MLP with an L2 regulariser, a Lagrangian
`PerformanceFairness` and a `DegradationFairness` penalty, 1/γ = 0.5, 2 epochs × 6 steps
of global batch 32): max |difference| over weights, scores, masks, multipliers and both
optimizers' slots —

| run | max abs diff vs one device |
|---|---|
| MirroredStrategy, 2 logical CPUs, `joint` | {results['mirrored_joint']:.2e} |
| MirroredStrategy, 2 logical CPUs, `alternating` | {results['mirrored_alternating']:.2e} |
| MultiWorkerMirroredStrategy, 2 workers on localhost | {results['multi_worker']:.2e} |
"""
  if FLAGS.dist_markdown:
    bench_utils.write_section("distribute", text)
  print(text)


if __name__ == "__main__":
  app.run(main)
