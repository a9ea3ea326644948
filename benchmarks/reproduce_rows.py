r"""Reruns fairness-benchmark cells and compares them with the stored rows, weight for weight.

A change that should not alter what training computes (a faster re-rank, a fused
update) is checked by rerunning a few cells of `benchmark_fairness.py` and comparing the
digest of the returned model's weights with the stored row's (`weights`), beside its
test accuracy and gap. BiP and the BiFP cells at the given fractions are rerun; oracle
rows are skipped (fairlearn's runs do not depend on this library).

  python benchmarks/reproduce_rows.py --dataset=german-sex --seed=0
  python benchmarks/reproduce_rows.py --dataset=adult-sex --seed=1 --fractions=0.5
"""

import io
import json
import os
import sys

from absl import app
from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchmark_fairness  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "german-sex", "A dataset of benchmarks/results/fairness_verdict/.")
flags.DEFINE_integer("seed", 0, "The seed whose cells are rerun.")


def main(argv):
  del argv
  FLAGS.harm = False
  path = os.path.join(benchmark_fairness.RESULTS, f"{FLAGS.dataset}.jsonl")
  with open(path, encoding="utf-8") as f:
    stored = {(r["run"], r["sparsity"]): r for r in map(json.loads, f)
              if r["seed"] == FLAGS.seed}
  out = io.StringIO()
  benchmark_fairness.run_seed(FLAGS.dataset, FLAGS.seed, {}, out, {})
  differ = 0
  for line in out.getvalue().splitlines():
    row = json.loads(line)
    old = stored.get((row["run"], row["sparsity"]))
    if old is None or row["run"].startswith("oracle"):
      continue
    same = row["weights"] == old["weights"]
    differ += not same
    print(f"{FLAGS.dataset} seed {FLAGS.seed} {row['run']} @{row['sparsity']}: weights "
          f"{'identical' if same else 'DIFFER'}; accuracy {row['accuracy']:.4f} (stored "
          f"{old['accuracy']:.4f}), gap {row['performance_gap']:.4f} (stored "
          f"{old['performance_gap']:.4f})")
  sys.exit(1 if differ else 0)


if __name__ == "__main__":
  app.run(main)
