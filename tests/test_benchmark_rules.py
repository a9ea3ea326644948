"""The benchmark's judging rules and baseline setup (benchmarks/bench_utils.py, pipeline.py)."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
import bench_utils  # pylint: disable=g-import-not-at-top,wrong-import-position
import pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position


def _cell(accuracies, gaps, gap="degradation_gap"):
  return [{"seed": i, "accuracy": a, gap: g} for i, (a, g) in enumerate(zip(accuracies, gaps))]


def test_lower_bound_is_the_one_sided_t_bound():
  d = [0.03, 0.05, 0.04, 0.06, 0.02]
  expected = np.mean(d) - 2.132 * np.std(d, ddof=1) / np.sqrt(5)
  assert bench_utils.lower_bound(d) == pytest.approx(expected)
  assert bench_utils.lower_bound([0.5]) == float("-inf")  # One seed: no claim.


def test_dominates_needs_a_gain_beyond_noise_and_no_loss():
  base = _cell([0.80, 0.81, 0.79, 0.80, 0.80], [0.10, 0.12, 0.11, 0.10, 0.12])
  clearly_fairer = _cell([0.80, 0.81, 0.79, 0.80, 0.80], [0.02, 0.03, 0.02, 0.03, 0.02])
  assert bench_utils.dominates(clearly_fairer, base, "degradation_gap")
  # Fairer but clearly less accurate: not a domination.
  worse = _cell([0.75, 0.76, 0.74, 0.75, 0.75], [0.02, 0.03, 0.02, 0.03, 0.02])
  assert not bench_utils.dominates(worse, base, "degradation_gap")
  # A difference within the seeds' noise is no domination either.
  noisy = _cell([0.80, 0.81, 0.79, 0.80, 0.80], [0.02, 0.20, 0.05, 0.18, 0.09])
  assert not bench_utils.dominates(noisy, base, "degradation_gap")
  assert not bench_utils.dominates(base, base, "degradation_gap")


@pytest.mark.parametrize("sparsity,ramp_steps", [(0.9, 117), (0.99, 1000), (0.5, 7), (0.9, 3)])
def test_gmp_schedule_reaches_the_target_on_a_pruning_step(sparsity, ramp_steps):
  schedule = pipeline.gmp_schedule(sparsity, ramp_steps)
  assert schedule.end_step <= max(ramp_steps, schedule.frequency)
  assert schedule.end_step % schedule.frequency == 0  # TFMOT prunes only on those steps.
  assert schedule.frequency <= 100
  prune, value = schedule(schedule.end_step)
  assert bool(prune) and float(value) == pytest.approx(sparsity)


@pytest.mark.parametrize("spec", ["sgd", "adam:-1", "rmsprop:0.1", "sgd:abc", "sgd:nan"])
def test_make_optimizer_rejects_bad_specs(spec):
  with pytest.raises(ValueError, match="optimizer"):
    pipeline.make_optimizer(spec)


def test_make_optimizer():
  assert float(pipeline.make_optimizer("adam:0.001").learning_rate) == pytest.approx(0.001)
  sgd = pipeline.make_optimizer("sgd:0.03")
  assert float(sgd.learning_rate) == pytest.approx(0.03) and sgd.momentum == 0.9
