r"""Does re-ranking the masks less often cost accuracy or fairness? (issue 20)

The top-k re-rank of the masks is the largest part of BiP's step after the model itself
(BENCHMARKS.md, "Engine"); `fair_prune_wrapper(mask_update_frequency=k)` re-ranks every
k steps. This script measures what k costs on the fairness benchmark's settings: per
dataset and seed, one dense model, then the SAME runs at each frequency, interleaved:

* BiP at --sparsity (fairness off),
* BiFP `PerformanceFairness` at ε = --fractions × the frequency-1 BiP's validation gap
  (one ε per seed for every frequency), steered on the validation split
  (`HeldOutFairness`, the main job's default),
* BiP and BiFP `ExcessDegradation(--harm_epsilon)` (BiFP's default constraint) at
  --harm_sparsity.

Reported on the TEST split per run and frequency: accuracy, the run's hard gap
(performance gap; max excess ψ for the excess runs), collapse, training seconds, and the
seed-paired difference against frequency 1 (mean ± std, and a 95% t interval).

  python benchmarks/benchmark_rerank_frequency.py                 # the BENCHMARKS.md run
  python benchmarks/benchmark_rerank_frequency.py --datasets=adult-sex   # split across processes
  python benchmarks/benchmark_rerank_frequency.py --render_only

Rows: benchmarks/results/rerank_frequency.jsonl (resumable); section "rerank_frequency"
of BENCHMARKS.md. Uses benchmark_fairness.py's flags for the shared settings (--epochs,
--dense_epochs, --batch_size, --sparsity, --harm_epsilon, --seeds, --datasets).
"""

import contextlib
import io
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
import benchmark_fairness  # pylint: disable=g-import-not-at-top
import pipeline  # pylint: disable=g-import-not-at-top
from tf_fairprune.fairness import constraints as C  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_list("frequencies", ["1", "10"], "Mask update frequencies; the first is the "
                  "reference the others are paired against.")
flags.DEFINE_list("dose_fractions", ["0.5", "0.25"], "ε of PerformanceFairness as fractions "
                  "of the reference BiP's validation gap.")
flags.DEFINE_float("harm_sparsity", 0.99, "Sparsity of the ExcessDegradation runs.")
flags.DEFINE_string("rows", os.path.join(bench_utils.ROOT, "benchmarks", "results",
                                         "rerank_frequency.jsonl"), "The rows' file.")
FLAGS.set_default("datasets", ["compas-race", "german-sex", "adult-sex"])


def _load():
  return bench_utils.read_rows(FLAGS.rows)


def run_seed(name, seed, done, out):
  data = pipeline.load_dataset(name, seed, image_train_size=FLAGS.image_train_size)
  batch_size = pipeline.default_batch_size(data, FLAGS.batch_size)
  keras.utils.set_random_seed(seed)
  with contextlib.redirect_stdout(io.StringIO()):
    dense = pipeline.train_dense(data, FLAGS.dense_epochs, batch_size)
  frequencies = [int(f) for f in FLAGS.frequencies]

  def run(run_name, method, sparsity, frequency, fairness=None, epsilon=None):
    key = (data.name, seed, run_name, sparsity, frequency)
    if key in done:
      return done[key]
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
      outcome = pipeline.prune(method, dense, data, sparsity, FLAGS.epochs, batch_size,
                               fairness=fairness or [], verbose=0,
                               mask_update_frequency=frequency)
    row = benchmark_fairness._row(data, seed, run_name, sparsity, outcome, dense, epsilon)  # pylint: disable=protected-access
    row["mask_update_frequency"] = frequency
    out.write(json.dumps(row) + "\n")
    out.flush()
    done[key] = row
    print(f"{name} seed {seed} {run_name} @{sparsity} every {frequency}: acc "
          f"{row['accuracy']:.4f} perf gap {row['performance_gap']:.4f} excess "
          f"{row['max_excess_gap']:.4f}{' COLLAPSED' if row['collapsed'] else ''} "
          f"{time.perf_counter() - start:.0f}s", flush=True)
    return row

  # Interleaved: each run at every frequency before the next run, so the machine's load
  # moves the frequencies' training times alike.
  reference = None
  for frequency in frequencies:
    row = run("bip", "bip", FLAGS.sparsity, frequency)
    reference = reference or row
  for fraction in (float(f) for f in FLAGS.dose_fractions):
    epsilon = fraction * reference["val_performance_gap"]
    for frequency in frequencies:
      run(f"bifp_performance_{fraction:g}", "bifp", FLAGS.sparsity, frequency,
          [C.PerformanceFairness(tolerance=epsilon)], epsilon)
  for frequency in frequencies:
    run("bip", "bip", FLAGS.harm_sparsity, frequency)
    run("bifp_excess", "bifp", FLAGS.harm_sparsity, frequency,
        [C.ExcessDegradation(tolerance=FLAGS.harm_epsilon)], FLAGS.harm_epsilon)


def _interval(diffs):
  """Mean ± half-width of the two-sided 95% t interval of paired differences."""
  diffs = np.asarray(diffs, dtype=float)
  if len(diffs) < 2:
    return float(diffs.mean()), float("nan")
  # Two-sided 95% = one-sided 97.5%; the table holds one-sided 95% quantiles, so use
  # the 97.5% values for small samples directly.
  t975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
          9: 2.262, 10: 2.228, 14: 2.145, 19: 2.093, 29: 2.045}
  dof = len(diffs) - 1
  t = t975.get(dof, t975[max(k for k in t975 if k <= dof)] if dof < 29 else 1.96)
  return float(diffs.mean()), float(t * diffs.std(ddof=1) / np.sqrt(len(diffs)))


def render(rows):
  frequencies = [int(f) for f in FLAGS.frequencies]
  ref = frequencies[0]
  out = [f"""## Mask re-rank frequency: what re-ranking less often costs

Command: `python benchmarks/benchmark_rerank_frequency.py` (rows in
`benchmarks/results/rerank_frequency.jsonl`; `--render_only` re-renders) — machine:
{bench_utils.machine()}, shared with other jobs. The fairness benchmark's settings (dense MLP
2×256, {FLAGS.epochs} pruning epochs, SGD 0.01 on weights, SGD 0.1 on scores), every run at
`mask_update_frequency` = {", ".join(map(str, frequencies))} from the same dense model and seed,
interleaved. BiFP `PerformanceFairness` at ε = {", ".join(FLAGS.dose_fractions)} × the
frequency-{ref} BiP's validation gap (the same ε for every frequency), steered on validation
(`HeldOutFairness`); BiFP `ExcessDegradation(tolerance={FLAGS.harm_epsilon:g})` is BiFP's default
constraint. **Test split**, points, mean ± std over seeds; *gap* is the run's hard metric
(accuracy gap between groups; max excess ψ for the excess runs); *Δ vs every {ref}* is the
seed-paired difference, mean ± 95% t half-width; *time* is the median ratio of training seconds
to the frequency-{ref} run of the same seed (one process, interleaved; the whole fit including
`HeldOutFairness`).
"""]
  costs = []  # (dataset, run, frequency, what): a cost the paired interval excludes 0 for.
  for d in dict.fromkeys(r["dataset"] for r in rows):
    dr = [r for r in rows if r["dataset"] == d]
    seeds = sorted({r["seed"] for r in dr})
    sizes = ", ".join(f"{n} {s}" for n, s in zip(dr[0]["group_names"], dr[0]["group_size"]))
    out.append(f"### {d}\n\nTest group sizes (seed 0): {sizes}. Seeds: {len(seeds)}.\n")
    table = []
    runs = list(dict.fromkeys((r["run"], r["sparsity"]) for r in dr))
    for run, sparsity in runs:
      metric = "max_excess_gap" if run == "bifp_excess" else "performance_gap"
      by = {f: {r["seed"]: r for r in dr if r["run"] == run and r["sparsity"] == sparsity
                and r["mask_update_frequency"] == f} for f in frequencies}
      for f in frequencies:
        rs = list(by[f].values())
        if not rs:
          continue
        paired = [s for s in by[f] if s in by[ref]]
        cells = [f"{run} @{sparsity:.0%}", f,
                 bench_utils.fmt_mean_std([r["accuracy"] for r in rs], 100),
                 bench_utils.fmt_mean_std([r[metric] for r in rs], 100)]
        if f == ref:
          cells += ["–", "–", "1"]
        else:
          da = _interval([100 * (by[f][s]["accuracy"] - by[ref][s]["accuracy"]) for s in paired])
          dg = _interval([100 * (by[f][s][metric] - by[ref][s][metric]) for s in paired])
          ratio = np.median([by[f][s]["train_seconds"] / by[ref][s]["train_seconds"]
                             for s in paired])
          cells += [f"{da[0]:+.1f} ± {da[1]:.1f}", f"{dg[0]:+.1f} ± {dg[1]:.1f}",
                    f"{ratio:.2f}"]
          label = f"{d} {run} @{sparsity:.0%}, every {f}"
          if da[0] + da[1] < 0:
            costs.append(f"{label}: accuracy {da[0]:+.1f} ± {da[1]:.1f} pts")
          if dg[0] - dg[1] > 0:
            costs.append(f"{label}: gap {dg[0]:+.1f} ± {dg[1]:.1f} pts")
          more = sum(by[f][s]["collapsed"] - by[ref][s]["collapsed"] for s in paired)
          if more > 0:
            costs.append(f"{label}: {more} more collapsed run(s) of {len(paired)}")
        cells.append(f"{sum(r['collapsed'] for r in rs)}/{len(rs)}")
        table.append(cells)
    out.append(bench_utils.table(
        ["run", "every k steps", "accuracy", "gap", f"Δ accuracy vs every {ref}",
         f"Δ gap vs every {ref}", "time", "collapsed"], table))
  out.append(f"Costs against every {ref} whose seed-paired 95% interval excludes zero, and "
             "added collapses (computed from the rows):\n\n" +
             ("\n".join(f"- {c}" for c in costs) if costs else "- none"))
  return "\n\n".join(out)


def main(argv):
  del argv
  rows = _load()
  if not FLAGS.render_only:
    done = {(r["dataset"], r["seed"], r["run"], r["sparsity"], r["mask_update_frequency"]): r
            for r in rows}
    os.makedirs(os.path.dirname(FLAGS.rows), exist_ok=True)
    with open(FLAGS.rows, "a", encoding="utf-8") as out:
      for name in FLAGS.datasets:
        seeds = FLAGS.seeds or pipeline.default_seeds(name, FLAGS.image_train_size)
        for seed in range(seeds):
          run_seed(name, seed, done, out)
    rows = _load()
  if not rows:
    raise app.UsageError(f"No rows in {FLAGS.rows}: run without --render_only first.")
  text = render(rows)
  if FLAGS.write_markdown:
    bench_utils.write_section("rerank_frequency", text)
  print(text)


if __name__ == "__main__":
  app.run(main)
