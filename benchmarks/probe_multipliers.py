r"""One BiFP run on colored Fashion-MNIST class × colour (SEMI-SYNTHETIC) with chosen
multiplier settings: the held-out trajectory and the test accuracy.

The do-no-harm constraint on 20 label-defined groups oscillated with the multipliers'
earlier defaults (BENCHMARKS.md, "intersections"); this reruns one seed of that
benchmark's cells (same data, dense model, budget) with other settings, and prints the
four groups with the largest test ψ:

  python benchmarks/probe_multipliers.py --seed=0            # the library's defaults
  python benchmarks/probe_multipliers.py --seed=0 --noper_row --nosplit_pressure \
      --image_validation_size=1200                            # the earlier rows' cell
  python benchmarks/probe_multipliers.py --seed=0 --damping=0 --multiplier_lr=0.05
  python benchmarks/probe_multipliers.py --seed=0 --method=bip   # fairness off
"""

import contextlib
import io
import os
import sys

from absl import app
from absl import flags
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tf_keras as keras  # pylint: disable=g-import-not-at-top

import bench_utils  # pylint: disable=g-import-not-at-top
import pipeline  # pylint: disable=g-import-not-at-top
import tf_fairprune  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_float("damping", 10.0, "Lagrangian damping κ.")
flags.DEFINE_float("multiplier_lr", 0.2, "Lagrangian dual step η.")
flags.DEFINE_float("max_multiplier", 5.0, "Lagrangian λ_max.")
flags.DEFINE_bool("detach_average", True, "ExcessDegradation's detach_average.")
flags.DEFINE_integer("image_train_size", 12000, "Training images (the benchmark's).")
bench_utils.define_rule_flags()
flags.DEFINE_integer("image_validation_size", 6000, "Validation images (the benchmark's; "
                     "1200 for its earlier rows).")
flags.DEFINE_enum("method", "bifp", ["bifp", "ceag", "bip"], "Method (bip: no constraint).")


def main(argv):
  del argv
  data = pipeline.load_dataset("colored-fmnist", FLAGS.seed, group="class,colour",
                               image_train_size=FLAGS.image_train_size, minority_fraction=0.2,
                               image_validation_size=FLAGS.image_validation_size)
  batch_size = pipeline.default_batch_size(data, 256)
  keras.utils.set_random_seed(FLAGS.seed)
  with contextlib.redirect_stdout(io.StringIO()):
    dense = pipeline.train_dense(data, 5, batch_size)
  keras.utils.set_random_seed(FLAGS.seed)
  rule = bench_utils.lagrangian(damping=FLAGS.damping, multiplier_lr=FLAGS.multiplier_lr,
                                max_multiplier=FLAGS.max_multiplier)
  constraint = tf_fairprune.fairness.ExcessDegradation(
      tolerance=0.01, detach_average=FLAGS.detach_average, enforcement=rule)
  out = pipeline.prune(FLAGS.method, dense, data, 0.9, 5, batch_size, fairness=[constraint],
                       verbose=0)
  held_out = out.get("held_out") or {}
  for c in held_out.get("candidates") or []:
    c = c if isinstance(c, dict) else c.__dict__
    print(f"step {c['step']}: validation accuracy {c['accuracy']:.3f}, "
          f"violation {c['violation']:+.3f}")
  print("selected:", {k: (held_out.get("selected") or {}).get(k)
                      for k in ("step", "accuracy", "reason")})
  pred = out["model"].predict(data.test.x, verbose=0).argmax(-1)
  # The figures of benchmark_intersections.py's rows: per group, simultaneous intervals.
  groups = pipeline.audit(out["model"], dense, data.test, data).group_verdicts(0.01)
  print(f"test accuracy {np.mean(pred == data.test.y):.4f}; largest class share "
        f"{np.bincount(pred).max() / len(pred):.3f}; max ψ "
        f"{100 * max(g.excess for g in groups):.1f} points; judged "
        f"{sum(g.judged for g in groups)}/{len(groups)}, not met "
        f"{sum(g.verdict == 'not met' for g in groups)}")
  for g in sorted(groups, key=lambda g: -g.excess)[:4]:
    print(f"  ψ {100 * g.excess:5.1f} [{100 * g.excess_interval[0]:5.1f}, "
          f"{100 * g.excess_interval[1]:5.1f}] {g.verdict:11s} n={g.size:4d} {g.name}")


if __name__ == "__main__":
  app.run(main)
