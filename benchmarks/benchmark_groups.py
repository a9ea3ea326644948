r"""What a step costs as the number of groups grows (2 → 10 → 100 → 1,000).

Intersectional groups multiply: race × sex × age band is dozens, more columns hundreds.
Per-group statistics, multipliers and held-out measurements must grow with rows, not
with groups squared. This benchmark fits the engine benchmark's MLP (16,384 rows × 100
features, batch 256, 90% sparsity, tf_keras) with random group ids in K groups, for

* `bifp`: BiFP's default, "do no harm" (`ExcessDegradation`, K multipliers);
* `bifp_held_out`: the same with `HeldOutFairness` steering on the last 10% of the rows;
* `bifp_performance`: the worst-pair accuracy gap (`PerformanceFairness`, K × K
  multipliers: the one constraint whose multipliers grow with groups squared),

and reports each epoch's time over the same method's epoch with 2 groups in the same
round (configurations interleaved, order rotated every round): median and quartiles of
those per-round ratios, and the ratio of CPU times beside them.

  python benchmarks/benchmark_groups.py                 # K = 2, 10, 100, 1000; 7 rounds
  python benchmarks/benchmark_groups.py --rounds=3 --groups=2,100 --nowrite_markdown
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
import tf_fairprune  # pylint: disable=g-import-not-at-top
from tf_fairprune.fairness import constraints as C  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_list("groups", ["2", "10", "100", "1000"], "Numbers of groups (the first is the "
                  "reference of the ratios).")
flags.DEFINE_list("methods", ["bifp", "bifp_held_out", "bifp_performance"], "Methods.")
flags.DEFINE_integer("rounds", 7, "Timed epochs of every configuration.")
flags.DEFINE_integer("rows", 16384, "Training rows.")
flags.DEFINE_bool("write_markdown", True, "Update BENCHMARKS.md.")
flags.DEFINE_bool("render_only", False, "Only render the last results (groups.json).")

RESULTS = os.path.join(bench_utils.ROOT, "benchmarks", "results", "groups.json")
TARGET = 1.1  # The step with 100 groups ≤ 1.1× the step with 2.


def data(rows):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((rows, 100)).astype("float32")
  return x, (x[:, 0] > 0).astype("float32")


def build(method, num_groups, x, y):
  """(model, callbacks, packed inputs) of `method` with `num_groups` random groups."""
  keras.utils.set_random_seed(0)
  dense = keras.Sequential([keras.Input((100,)), keras.layers.Dense(1024, activation="relu"),
                            keras.layers.Dense(256, activation="relu"), keras.layers.Dense(1)])
  outputs = dense.predict(x, batch_size=2048, verbose=0)
  constraint = (C.PerformanceFairness(tolerance=0.02) if method == "bifp_performance"
                else C.ExcessDegradation(tolerance=0.01))
  model = tf_fairprune.fair_prune_wrapper(dense, 0.9, fairness=[constraint],
                                          num_groups=num_groups)
  model.set_reference_model(None)  # The dense outputs travel with the data.
  model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                mask_optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                loss=keras.losses.BinaryCrossentropy(from_logits=True))
  groups = np.random.default_rng(1).integers(0, num_groups, len(x)).astype("int32")
  packed = tf_fairprune.pack_group_data(x, groups, dense_outputs=outputs)
  callbacks = []
  if method == "bifp_held_out":
    n_val = len(x) // 10
    callbacks = [tf_fairprune.HeldOutFairness(
        ({k: v[-n_val:] for k, v in packed.items()}, y[-n_val:]), verbose=0)]
  return model, callbacks, packed


class _Timer(keras.callbacks.Callback):
  def on_epoch_begin(self, epoch, logs=None):
    self.start = time.perf_counter(), time.process_time()

  def on_epoch_end(self, epoch, logs=None):
    self.wall = time.perf_counter() - self.start[0]
    self.cpu = time.process_time() - self.start[1]


def measure(methods, counts, rounds, rows):
  """{"method/K": {"wall": [...], "cpu": [...]}}, every configuration once per round."""
  x, y = data(rows)
  built = {}
  for method in methods:
    for k in counts:
      model, callbacks, packed = build(method, k, x, y)
      model.fit(packed, y, batch_size=256, epochs=1, verbose=0, callbacks=callbacks)  # Trace.
      built[f"{method}/{k}"] = (model, callbacks, packed)
      print(f"built {method} with {k} groups", flush=True)
  times = {label: {"wall": [], "cpu": []} for label in built}
  labels = list(built)
  timer = _Timer()
  for r in range(rounds):
    for label in labels[r % len(labels):] + labels[:r % len(labels)]:
      model, callbacks, packed = built[label]
      model.fit(packed, y, batch_size=256, epochs=1, verbose=0, callbacks=callbacks + [timer])
      times[label]["wall"].append(timer.wall)
      times[label]["cpu"].append(timer.cpu)
    print(f"round {r}: " + ", ".join(f"{lab} {times[lab]['wall'][-1]:.2f}s" for lab in labels),
          flush=True)
  return times


def summarize(times, methods, counts):
  out = []
  for method in methods:
    ref = times[f"{method}/{counts[0]}"]
    for k in counts:
      t = times[f"{method}/{k}"]
      wall = np.asarray(t["wall"]) / np.asarray(ref["wall"])
      cpu = np.asarray(t["cpu"]) / np.asarray(ref["cpu"])
      out.append({"method": method, "groups": k, "median_s": float(np.median(t["wall"])),
                  "ratio": float(np.median(wall)), "q1": float(np.percentile(wall, 25)),
                  "q3": float(np.percentile(wall, 75)), "cpu_ratio": float(np.median(cpu)),
                  "rounds": len(wall)})
  return out


def render(result):
  rows = [[r["method"], str(r["groups"]), f"{r['median_s']:.2f}",
           f"{r['ratio']:.2f}× [{r['q1']:.2f}, {r['q3']:.2f}]", f"{r['cpu_ratio']:.2f}×"]
          for r in result["rows"]]
  met = [r for r in result["rows"] if r["groups"] == 100 and r["method"] != "bifp_performance"]
  verdict = "; ".join(
      f"{r['method']} {r['ratio']:.2f}× wall, {r['cpu_ratio']:.2f}× CPU ("
      + ("met" if r["q3"] <= TARGET else "not met" if r["q1"] > TARGET else
         "wall-clock spread straddles the target") + ")" for r in met)
  return (
      "Command: `python benchmarks/benchmark_groups.py` "
      f"({result['rounds']} rounds; {result['machine']}; load average "
      f"{result['load_average'][0]:.1f} at the start, {result['load_average'][1]:.1f} at the "
      "end; a load above the core count means the machine was shared with other work).\n\n"
      "Epoch time of the engine benchmark's MLP (16,384 rows, batch 256, 90% sparsity, "
      "tf_keras) with random group ids in K groups, as a ratio to the same method with "
      f"{result['rows'][0]['groups']} groups in the same round: median [quartiles] of the "
      "per-round ratios, and the median ratio of CPU times. `bifp` is BiFP's default (do no "
      "harm, K multipliers); `bifp_held_out` adds `HeldOutFairness` steering on 10% of the "
      "rows; `bifp_performance` bounds the worst-pair accuracy gap (K × K multipliers).\n\n"
      + bench_utils.table(["method", "groups", "s/epoch", "ratio to 2 groups", "CPU ratio"],
                          rows)
      + f"\n\nTarget (100 groups ≤ {TARGET}× 2 groups): {verdict or 'not measured'}.\n")


def main(argv):
  del argv
  if FLAGS.render_only:
    with open(RESULTS, encoding="utf-8") as f:
      text = render(json.load(f))
    if FLAGS.write_markdown:
      bench_utils.write_section("groups", text)
    print(text)
    return
  counts = [int(k) for k in FLAGS.groups]
  load = os.getloadavg()[0]
  times = measure(FLAGS.methods, counts, FLAGS.rounds, FLAGS.rows)
  result = {"rounds": FLAGS.rounds, "machine": bench_utils.machine(),
            "load_average": [load, os.getloadavg()[0]],
            "rows": summarize(times, FLAGS.methods, counts), "times": times}
  os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
  with open(RESULTS, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
  text = render(result)
  if FLAGS.write_markdown:
    bench_utils.write_section("groups", text)
  print(text)


if __name__ == "__main__":
  app.run(main)
