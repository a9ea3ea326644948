"""Fairness constraints: surrogates reduce their gaps, absent groups, multi-class, K groups,
Lagrange multipliers, the ablation switches, bad input, saving."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tf_fairprune
from tf_fairprune.fairness import constraints as C
from conftest import compile_binary, make_data, make_mlp


def _toy(n=400, seed=0):
  """Two groups whose labels depend on different features: a linear model is unfair."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, 2)).astype("float32")
  g = (rng.uniform(size=n) < 0.4).astype("int32")
  y = np.where(g == 0, x[:, 0] > 0, x[:, 1] > 0).astype("float32")
  x[:, 0] -= 1.5 * g  # Group 1 is also selected less often by a model that uses x0.
  dense_correct = (rng.uniform(size=n) < 0.9).astype("float32")
  return x, y, g, dense_correct


@pytest.mark.parametrize("cls", C.CONSTRAINTS)
def test_surrogate_gradient_reduces_its_gap(cls):
  x, y, g, dense_correct = _toy()
  w = tf.Variable([[3.0], [0.0]])
  b = tf.Variable([0.5])
  constraint = cls(from_logits=True)
  def measure():
    logits = x @ w + b
    smooth, hard, counts = constraint.statistics(y, logits, g, None, 2, dense_correct)
    return constraint.gap(smooth, counts), constraint.gap(hard, counts)
  smooth0, hard0 = measure()
  opt = keras.optimizers.SGD(2.0)
  for _ in range(100):
    with tf.GradientTape() as tape:
      logits = x @ w + b
      smooth, _, counts = constraint.statistics(y, logits, g, None, 2, dense_correct)
      loss = constraint.penalty(constraint.gap(smooth, counts))
    opt.apply_gradients(zip(tape.gradient(loss, [w, b]), [w, b]))
  smooth1, hard1 = measure()
  assert float(smooth0) > 0.02
  assert float(smooth1) < 0.5 * float(smooth0)
  assert float(hard1) < float(hard0)


def test_absent_groups_contribute_nothing_and_give_finite_gradients():
  logits = tf.Variable([[0.3], [-1.0], [2.0]])
  y = tf.constant([1.0, 0.0, 1.0])
  for groups in ([0, 0, 0], [2, 2, 2]):
    with tf.GradientTape() as tape:
      smooth, hard, counts = C.PerformanceFairness(from_logits=True).statistics(
          y, logits, tf.constant(groups), None, 3)
      gap = C.FairnessConstraint.gap(smooth, counts)
    assert float(gap) == 0.0
    grad = tape.gradient(gap, logits)
    assert grad is None or np.all(np.isfinite(grad.numpy()))


def test_worst_pair_over_k_groups_and_sample_weights():
  # Accuracy per group: g0 = 1.0, g1 = 0.5, g2 = 0.0; g3 absent.
  y = tf.constant([1.0, 1.0, 1.0, 1.0, 1.0])
  logits = tf.constant([[5.0], [5.0], [-5.0], [-5.0], [5.0]])
  g = tf.constant([0, 1, 1, 2, 1])
  c = C.PerformanceFairness(from_logits=True)
  _, hard, counts = c.statistics(y, logits, g, None, 4)
  np.testing.assert_allclose(counts.numpy(), [[1, 3, 1, 0]])
  assert float(c.gap(hard, counts)) == pytest.approx(1.0)
  # Weight 0 on group 2 removes it: gap = 1 - 2/3.
  _, hard, counts = c.statistics(y, logits, g, tf.constant([1.0, 1, 1, 0, 1]), 4)
  assert float(c.gap(hard, counts)) == pytest.approx(1 / 3, abs=1e-6)


def test_multiclass_outputs_probabilities_and_one_hot():
  probs = tf.constant([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]])
  sparse = tf.constant([0, 1, 0, 2])
  one_hot = tf.one_hot(sparse, 3)
  g = tf.constant([0, 0, 1, 1])
  c = C.PerformanceFairness(from_logits=False)
  for labels in (sparse, one_hot):
    smooth, hard, counts = c.statistics(labels, probs, g, None, 2)
    np.testing.assert_allclose(hard.numpy(), [[2.0, 0.0]])
    np.testing.assert_allclose(smooth.numpy(), [[1.5, 0.4]], rtol=1e-6)
  dp = C.DemographicParity(from_logits=False, positive_class=1)
  _, hard, counts = dp.statistics(sparse, probs, g, None, 2)
  assert float(dp.gap(hard, counts)) == pytest.approx(0.5)
  logits = tf.Variable(tf.math.log(probs))
  with tf.GradientTape() as tape:
    smooth, _, counts = C.PerformanceFairness(from_logits=True).statistics(sparse, logits, g, None, 2)
    gap = C.FairnessConstraint.gap(smooth, counts)
  assert np.all(np.isfinite(tape.gradient(gap, logits).numpy()))


def test_penalty_shapes():
  c = C.PerformanceFairness(weight=2.0, tolerance=0.1)
  assert float(c.penalty(tf.constant(0.05))) == 0.0
  assert float(c.penalty(tf.constant(0.3))) == pytest.approx(0.4)
  c = C.PerformanceFairness(weight=2.0, tolerance=0.1, squared=True)
  assert float(c.penalty(tf.constant(0.3))) == pytest.approx(0.08)
  c = C.PerformanceFairness(mode="lagrangian", tolerance=0.1)
  assert float(c.penalty(tf.constant(0.3), tf.constant(3.0))) == pytest.approx(0.6)


def test_multiplier_rises_while_violated_and_returns_to_zero():
  c = C.PerformanceFairness(mode="lagrangian", tolerance=0.05, multiplier_lr=0.5)
  m = tf.constant(0.0)
  trace = []
  for gap in [0.25] * 5 + [0.0] * 30:
    m = c.updated_multiplier(m, tf.constant(gap))
    trace.append(float(m))
  assert all(b > a for a, b in zip(trace[:4], trace[1:5]))
  assert trace[-1] == 0.0 and min(trace) >= 0.0


def _unfair_data(n=512):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((n, 8)).astype("float32")
  g = (rng.uniform(size=n) < 0.3).astype("int32")
  y = np.where(g == 0, x[:, 0] > 0, x[:, 1] * x[:, 2] > 0).astype("float32")
  return x, y, g


@pytest.mark.parametrize("tolerance,rises", [(0.0, True), (1.0, False)])
def test_lagrangian_mode_in_training(tolerance, rises):
  x, y, g = _unfair_data()
  model = compile_binary(tf_fairprune.fair_prune_wrapper(
      make_mlp(), 0.5, fairness=[C.PerformanceFairness(mode="lagrangian", tolerance=tolerance,
                                                       multiplier_lr=0.1)]))
  history = model.fit(tf_fairprune.pack_group_data(x, g), y, batch_size=64, epochs=2, verbose=0)
  multiplier = float(model.fairness_multipliers[0].numpy())
  assert history.history["performance_gap_multiplier"][-1] == pytest.approx(multiplier)
  assert (multiplier > 0) == rises


def _one_step(fairness_on):
  keras.utils.set_random_seed(0)
  x, y, g = _unfair_data(64)
  model = tf_fairprune.fair_prune_wrapper(
      make_mlp(), 0.5, fairness=[C.PerformanceFairness(weight=50.0)], fairness_on=fairness_on,
      implicit_gradient_scale=1.0)
  model.compile(optimizer=keras.optimizers.SGD(0.1), mask_optimizer=keras.optimizers.SGD(1.0),
                loss=keras.losses.BinaryCrossentropy(from_logits=True))
  model.fit(tf_fairprune.pack_group_data(x, g), y, batch_size=64, epochs=1, shuffle=False, verbose=0)
  weights = [v.numpy() for v in model.trainable_variables
             if "score" not in v.name]
  scores = [s.numpy() for w in model.fair_prune_wrappers for s in w.score_variables]
  return weights, scores


def _same(a, b):
  return all(np.array_equal(u, v) for u, v in zip(a, b))


def test_ablation_switches_route_fairness_gradients_to_exactly_their_level():
  bip_w, bip_s = _one_step(())
  mask_w, mask_s = _one_step(("mask",))
  weight_w, weight_s = _one_step(("weights",))
  both_w, both_s = _one_step(("weights", "mask"))
  assert _same(mask_w, bip_w) and not _same(mask_s, bip_s)
  assert _same(weight_s, bip_s) and not _same(weight_w, bip_w)
  assert _same(both_w, weight_w) and _same(both_s, mask_s)


def test_bad_constraint_arguments():
  with pytest.raises(ValueError, match="mode"):
    C.PerformanceFairness(mode="hard")
  with pytest.raises(ValueError, match="weight"):
    C.PerformanceFairness(weight=-1)
  with pytest.raises(ValueError, match="tolerance"):
    C.DemographicParity(tolerance=float("nan"))
  with pytest.raises(TypeError, match="fairness"):
    tf_fairprune.fair_prune_wrapper(make_mlp(), 0.5, fairness=["performance"])
  with pytest.raises(ValueError, match="distinct names"):
    tf_fairprune.fair_prune_wrapper(make_mlp(), 0.5,
                                    fairness=[C.PerformanceFairness(), C.PerformanceFairness()])
  with pytest.raises(ValueError, match="fairness_on"):
    tf_fairprune.fair_prune_wrapper(make_mlp(), 0.5, fairness_on=("scores",))
  with pytest.raises(ValueError, match="num_groups"):
    tf_fairprune.fair_prune_wrapper(make_mlp(), 0.5, num_groups=1)


def test_degradation_needs_dense_correctness_or_a_reference():
  x, y, g = _unfair_data(64)
  dense = make_mlp()
  model = compile_binary(tf_fairprune.fair_prune_wrapper(
      dense, 0.5, fairness=[C.DegradationFairness(from_logits=True)]))
  # fair_prune_wrapper keeps a frozen copy of the dense model as reference...
  reference = model._reference_model
  assert reference is not None and not reference.trainable
  before = [w.copy() for w in reference.get_weights()]
  model.fit(tf_fairprune.pack_group_data(x, g), y, epochs=1, verbose=0)
  assert _same(before, reference.get_weights())
  # ... or the correctness travels with the data; without either it is an error.
  model.set_reference_model(None)
  dc = tf_fairprune.fairness.dense_correctness(dense, x, y, from_logits=True)
  model.fit(tf_fairprune.pack_group_data(x, g, dense_correct=dc), y, epochs=1, verbose=0)
  with pytest.raises(ValueError, match="dense model's per-example correctness"):
    model.fit(tf_fairprune.pack_group_data(x, g), y, epochs=1, verbose=0)


def test_fair_model_saves_constraints_and_multipliers(tmp_path):
  x, y, g = _unfair_data(128)
  model = compile_binary(tf_fairprune.fair_prune_wrapper(
      make_mlp(), 0.5, num_groups=3, fairness_on=("mask",),
      fairness=[C.PerformanceFairness(mode="lagrangian", multiplier_lr=0.2),
                C.EqualizedOdds(weight=0.5, tolerance=0.02, squared=True)]))
  model.fit(tf_fairprune.pack_group_data(x, g), y, epochs=1, verbose=0)
  path = str(tmp_path / "fair.keras")
  model.save(path)
  restored = keras.models.load_model(path)
  assert [repr(c) for c in restored.fairness] == [repr(c) for c in model.fairness]
  assert restored.fairness_on == ("mask",) and restored.num_groups == 3
  assert float(restored.fairness_multipliers[0].numpy()) == pytest.approx(
      float(model.fairness_multipliers[0].numpy()))
  assert float(model.fairness_multipliers[0].numpy()) > 0
  logs = restored.evaluate(tf_fairprune.pack_group_data(x, g), y, verbose=0, return_dict=True)
  assert "equalized_odds_gap" in logs
