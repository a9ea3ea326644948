"""The benchmark's judging rules and baseline setup (benchmarks/bench_utils.py,
tf_fairprune/baselines)."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
import bench_utils  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_fairprune import baselines  # pylint: disable=g-import-not-at-top,wrong-import-position


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
  schedule = baselines.gmp_schedule(sparsity, ramp_steps)
  assert schedule.end_step <= max(ramp_steps, schedule.frequency)
  assert schedule.end_step % schedule.frequency == 0  # TFMOT prunes only on those steps.
  assert schedule.frequency <= 100
  prune, value = schedule(schedule.end_step)
  assert bool(prune) and float(value) == pytest.approx(sparsity)


@pytest.mark.parametrize("spec", ["sgd", "adam:-1", "rmsprop:0.1", "sgd:abc", "sgd:nan"])
def test_make_optimizer_rejects_bad_specs(spec):
  with pytest.raises(ValueError, match="optimizer"):
    baselines.make_optimizer(spec)


def test_make_optimizer():
  assert float(baselines.make_optimizer("adam:0.001").learning_rate) == pytest.approx(0.001)
  sgd = baselines.make_optimizer("sgd:0.03")
  assert float(sgd.learning_rate) == pytest.approx(0.03) and sgd.momentum == 0.9


def test_layer_floor_benchmark_counts_emptied_layers_and_renders():
  import tf_keras  # pylint: disable=g-import-not-at-top
  import tf_fairprune  # pylint: disable=g-import-not-at-top
  import benchmark_layer_floor as lf  # pylint: disable=g-import-not-at-top
  from tf_fairprune import mask_updater  # pylint: disable=g-import-not-at-top
  assert lf.scope_args("layer") == ("_layer", {})
  assert lf.scope_args("floor0.1") == ("", {"layer_floor": 0.1})
  assert lf.scope_args("floor0-norescale") == ("", {"layer_floor": 0.0, "rescale": False})
  assert lf.scope_args("floor0.1-uncapped") == ("", {"layer_floor": 0.1})
  assert [lf.scope_cap(s) for s in ("floor0.1", "layer", "floor0.1-uncapped",
                                    "floor0.1-capmodel", "floor0.1-capfloor",
                                    "floor0.1-captarget", "floor0.1-capboth")] == [
                                        mask_updater.DEFAULT_RESCALE_CAP,
                                        mask_updater.DEFAULT_RESCALE_CAP,
                                        "none", "model", "floor", "target", "both"]
  with pytest.raises(ValueError, match="scope"):
    lf.scope_args("global")
  with pytest.raises(ValueError, match="scope"):
    lf.scope_args("floor0.1-capped")
  model = tf_keras.Sequential([tf_keras.Input((8,)), tf_keras.layers.Dense(32, name="hidden"),
                               tf_keras.layers.Dense(4, name="out")])
  model.get_layer("out").set_weights([w * 1e-6 for w in model.get_layer("out").get_weights()])
  pure = tf_fairprune.fair_prune_wrapper(model, 0.9, layer_floor=0.0)
  floored = tf_fairprune.fair_prune_wrapper(model, 0.9)
  assert lf.emptied_layers(pure)[0] == ["out"]  # Global ranking empties the small layer.
  empty, density = lf.emptied_layers(floored)
  assert empty == [] and 0 < density["out"] < density["hidden"]

  def row(seed, scope, accuracy, emptied, share):
    return {"model": "resnet10", "width": 8, "seed": seed, "method": "bip", "scope": scope,
            "target_sparsity": 0.99, "accuracy": accuracy, "performance_gap": 0.05,
            "degradation_gap": 0.02, "max_excess_gap": 0.01, "emptied_layers": emptied,
            "wrapped_layers": 13, "collapsed": share >= lf.COLLAPSE_SHARE,
            "group_size": {"a": 950, "b": 50}, "train_rows": 3000, "epochs": 2,
            "dense_epochs": 4, "keras": "2"}
  dense = dict(row(0, "dense", 0.8, [], 0.1), method="dense", target_sparsity=0.0)
  rows = [dense, row(0, "floor0", 0.1, ["a", "b"], 1.0), row(1, "floor0", 0.3, ["a"], 0.5),
          row(1, "floor0", 0.9, [], 0.1),  # The same run twice: the first one counts.
          row(0, "floor0.1", 0.7, [], 0.2)]
  text = lf.render(rows)
  assert "colored Fashion-MNIST (semi-synthetic)" in text and "Test group sizes: a 950, b 50" in text
  assert "| BiP | 99% | global, floor 0 (pure) | 20.0 ± 14.1 |" in text
  assert "| n/a | 1.5 / 13 | 1/2 |" in text
  assert "| BiP | 99% | global, floor 0.1 (default) | 70.0 ± 0.0 |" in text
