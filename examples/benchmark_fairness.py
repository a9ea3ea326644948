r"""BiFP vs BiP (fairness off) on UCI Adult (sex) at 90% sparsity, several seeds.

For each seed: train a dense 2x256 MLP, then prune a copy of it to the target sparsity
with each method for the same number of epochs, and audit the test split:
accuracy, performance gap (accuracy gap between groups) and degradation gap (gap in the
accuracy each group lost against the dense model), with group sizes.

Methods (all the same bi-level step, only the fairness switches differ):
  bip                  fairness off (BiP)
  bifp                 PerformanceFairness + DegradationFairness at both levels (BiFP)
  bifp_no_mask_term    fairness on the weights only
  bifp_no_weight_term  fairness on the mask only
  bifp_x5              BiFP with 5x the fairness weight (the trade-off's next point)

Writes the `fairness` section of BENCHMARKS.md and benchmarks/results/fairness_adult.json.

  python examples/benchmark_fairness.py                 # 3 seeds (~5 minutes on 2 cores)
  python examples/benchmark_fairness.py --seeds=1 --epochs=1 --write_markdown=false
"""

import json
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tf_keras as keras  # pylint: disable=g-import-not-at-top

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_utils  # pylint: disable=g-import-not-at-top
import tf_fairprune  # pylint: disable=g-import-not-at-top
from tf_fairprune import datasets  # pylint: disable=g-import-not-at-top
from tf_fairprune import models  # pylint: disable=g-import-not-at-top
from tf_fairprune.fairness import DegradationFairness  # pylint: disable=g-import-not-at-top
from tf_fairprune.fairness import PerformanceFairness  # pylint: disable=g-import-not-at-top
from tf_fairprune.fairness import dense_correctness  # pylint: disable=g-import-not-at-top
from tf_fairprune.fairness import evaluate_fairness  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_integer("seeds", 3, "Number of seeds (0..seeds-1).")
flags.DEFINE_float("sparsity", 0.9, "Target sparsity.")
flags.DEFINE_integer("dense_epochs", 5, "Epochs of dense training.")
flags.DEFINE_integer("epochs", 5, "Epochs of pruning (same for every method).")
flags.DEFINE_float("fairness_weight", 1.0, "λ of both fairness terms (the paper's 1).")
flags.DEFINE_integer("batch_size", 256, "Batch size.")
flags.DEFINE_string("sensitive", "sex", "Sensitive attribute of Adult.")
flags.DEFINE_string("output", os.path.join(bench_utils.ROOT, "benchmarks", "results",
                                           "fairness_adult.json"), "Raw results.")
flags.DEFINE_bool("write_markdown", True, "Update BENCHMARKS.md.")

METHODS = {  # name: (levels with fairness terms, λ multiplier of --fairness_weight)
    "bip": ((), 1.0),
    "bifp": (("weights", "mask"), 1.0),
    "bifp_no_mask_term": (("weights",), 1.0),
    "bifp_no_weight_term": (("mask",), 1.0),
    "bifp_x5": (("weights", "mask"), 5.0),
}


def bce():
  return keras.losses.BinaryCrossentropy(from_logits=True)


def run_seed(data, seed):
  keras.utils.set_random_seed(seed)
  dense = models.mlp(data.train.x.shape[1])
  dense.compile(keras.optimizers.Adam(1e-3), bce())
  dense.fit(data.train.x, data.train.y, batch_size=FLAGS.batch_size,
            epochs=FLAGS.dense_epochs, verbose=0)
  test = (data.test.x, data.test.y, data.test.groups)
  dense_report = evaluate_fairness(dense, test, from_logits=True)
  rows = [{"method": "dense", "seed": seed, "accuracy": dense_report.accuracy,
           "performance_gap": dense_report.gaps["performance_gap"], "degradation_gap": 0.0,
           "group_accuracy": [g["accuracy"] for g in dense_report.groups],
           "group_size": [g["size"] for g in dense_report.groups], "sparsity": 0.0,
           "train_seconds": None}]
  train_dc = dense_correctness(dense, data.train.x, data.train.y, from_logits=True)
  packed = tf_fairprune.pack_group_data(data.train.x, data.train.groups, dense_correct=train_dc)
  for method, (levels, scale) in METHODS.items():
    keras.utils.set_random_seed(seed)
    weight = FLAGS.fairness_weight * scale
    constraints = [PerformanceFairness(weight=weight), DegradationFairness(weight=weight)]
    pruned = tf_fairprune.fair_prune_wrapper(
        dense, FLAGS.sparsity, fairness=constraints, fairness_on=levels,
        num_groups=data.num_groups)
    pruned.set_reference_model(None)  # Dense correctness is packed with the data.
    pruned.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                   mask_optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss=bce())
    start = time.perf_counter()
    pruned.fit(packed, data.train.y, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs, verbose=0)
    seconds = time.perf_counter() - start
    report = evaluate_fairness(pruned, test, dense_model=dense, from_logits=True)
    rows.append({"method": method, "seed": seed, "accuracy": report.accuracy,
                 "performance_gap": report.gaps["performance_gap"],
                 "degradation_gap": report.gaps["degradation_gap"],
                 "max_excess_gap": report.gaps["max_excess_gap"],
                 "group_accuracy": [g["accuracy"] for g in report.groups],
                 "group_size": [g["size"] for g in report.groups],
                 "sparsity": float(pruned.measured_sparsity()), "train_seconds": seconds})
    print(f"seed {seed} {method}: acc {report.accuracy:.4f} perf gap "
          f"{report.gaps['performance_gap']:.4f} degr gap {report.gaps['degradation_gap']:.4f}",
          flush=True)
  return rows


def render(results):
  rows = results["rows"]
  names = results["group_names"]
  sizes = rows[0]["group_size"]
  table_rows = []
  for method in ["dense"] + list(METHODS):
    r = [x for x in rows if x["method"] == method]
    group_cols = [bench_utils.fmt_mean_std([x["group_accuracy"][k] for x in r], 100)
                  for k in range(len(names))]
    table_rows.append([method, bench_utils.fmt_mean_std([x["accuracy"] for x in r], 100),
                       *group_cols,
                       bench_utils.fmt_mean_std([x["performance_gap"] for x in r], 100),
                       bench_utils.fmt_mean_std([x["degradation_gap"] for x in r], 100),
                       f"{np.mean([x['sparsity'] for x in r]):.3f}"])
  mean = lambda m, k: float(np.mean([x[k] for x in rows if x["method"] == m]))
  perf_change = mean("bifp", "performance_gap") - mean("bip", "performance_gap")
  degr_change = mean("bifp", "degradation_gap") - mean("bip", "degradation_gap")
  acc_change = mean("bifp", "accuracy") - mean("bip", "accuracy")
  header = ["method", "accuracy %"] + [f"acc. {n} %" for n in names] + [
      "performance gap (pts)", "degradation gap (pts)", "sparsity"]
  return f"""## Fairness: BiFP vs BiP on UCI Adult ({results['sensitive']}), {results['sparsity']:.0%} sparsity

Command: `python examples/benchmark_fairness.py` — machine: {results['machine']}.
Real data (UCI Adult, original files). Test split group sizes: {', '.join(f'{n} {s}' for n, s in zip(names, sizes))}.
Model: MLP {results['num_features']}-256-256-1, dense training {results['dense_epochs']} epochs (Adam 1e-3), then
{results['epochs']} epochs of pruning for every method from the same dense model: SGD(0.01, m=0.9) on weights,
SGD(0.1, m=0.9) on scores, 1/γ = 1e-4, batch {results['batch_size']}. BiFP =
`PerformanceFairness` + `DegradationFairness`, penalty mode, λ = {results['fairness_weight']} (×5 for
`bifp_x5`), at the levels named; `bip` is the same step with fairness off. Mean ± std over {results['seeds']} seeds (seed = dense init, data order, pruning).

{bench_utils.table(header, table_rows)}

BiFP − BiP (means): accuracy {acc_change * 100:+.2f} pts, performance gap {perf_change * 100:+.2f} pts,
degradation gap {degr_change * 100:+.2f} pts.
"""


def main(argv):
  del argv
  data = datasets.load_adult(FLAGS.sensitive)
  results = {"machine": bench_utils.machine(), "sensitive": FLAGS.sensitive,
             "sparsity": FLAGS.sparsity, "seeds": FLAGS.seeds, "epochs": FLAGS.epochs,
             "dense_epochs": FLAGS.dense_epochs, "batch_size": FLAGS.batch_size,
             "fairness_weight": FLAGS.fairness_weight, "group_names": data.group_names,
             "num_features": data.train.x.shape[1], "rows": []}
  for seed in range(FLAGS.seeds):
    results["rows"] += run_seed(data, seed)
  os.makedirs(os.path.dirname(FLAGS.output), exist_ok=True)
  with open(FLAGS.output, "w") as f:
    json.dump(results, f, indent=1)
  text = render(results)
  if FLAGS.write_markdown:
    bench_utils.write_section("fairness", text)
  print(text)


if __name__ == "__main__":
  app.run(main)
