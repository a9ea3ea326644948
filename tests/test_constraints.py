"""Fairness constraints: surrogates reduce their gaps, absent groups, multi-class, K groups,
Lagrange multipliers, the ablation switches, bad input, saving."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tf_fairprune
from tf_fairprune.fairness import constraints as C
from tf_fairprune.fairness import enforcement as E
from tf_fairprune.fairness import outcomes
from tf_fairprune.fairness.objective import DenseReference
from conftest import FLAVOURS, compile_binary, make_mlp


def _toy(n=400, seed=0):
  """Two groups whose labels depend on different features: a linear model is unfair."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, 2)).astype("float32")
  g = (rng.uniform(size=n) < 0.4).astype("int32")
  y = np.where(g == 0, x[:, 0] > 0, x[:, 1] > 0).astype("float32")
  x[:, 0] -= 1.5 * g  # Group 1 is also selected less often by a model that uses x0.
  dense_correct = (rng.uniform(size=n) < 0.9).astype("float32")
  return x, y, g, dense_correct


def _loss(c, smooth_sums, counts, ref_hard, ref_counts, multipliers=None):
  """The loss term of c's rule (`multipliers`: a Lagrangian rule's state)."""
  state = E.PenaltyState() if multipliers is None else E.LagrangianState(multipliers)
  return c.enforcement.loss(c, state, smooth_sums, counts, ref_hard, ref_counts)


def _dual_step(c, multipliers, hard, counts):
  """The multipliers after one update of c's Lagrangian rule."""
  return c.enforcement.update(c, E.LagrangianState(multipliers), hard, counts).multipliers


def _dense_ref(x, seed=1):
  """Outputs of a fixed 'dense' linear model, for the degradation constraints."""
  rng = np.random.default_rng(seed)
  return DenseReference(outputs=tf.constant(x @ rng.standard_normal((2, 1)).astype("float32")))


@pytest.mark.parametrize("cls", C.CONSTRAINTS)
def test_penalty_gradient_reduces_the_hard_gap_it_names(cls):
  x, y, g, _ = _toy()
  w = tf.Variable([[3.0], [0.0]])
  b = tf.Variable([0.5])
  constraint = cls(from_logits=True, enforcement=E.Penalty(squared=False), tolerance=0.0)
  dense = _dense_ref(x)
  def stats():
    return constraint.statistics(y, x @ w + b, g, None, 2, dense=dense)
  _, hard0, counts0 = stats()
  opt = keras.optimizers.SGD(0.5)
  for _ in range(150):
    with tf.GradientTape() as tape:
      smooth, hard, counts = stats()
      loss = _loss(constraint, smooth, counts, hard, counts)
    opt.apply_gradients(zip(tape.gradient(loss, [w, b]), [w, b]))
  _, hard1, counts1 = stats()
  before, after = float(constraint.measure(hard0, counts0)), float(constraint.measure(hard1, counts1))
  assert before > 0.05
  assert after < 0.6 * before  # The hard (0/1) gap, not the surrogate.


def test_margin_surrogate_cannot_be_lowered_by_shrinking_logits():
  margins = tf.constant([-2.0, -0.5, 0.3, 1.0, 4.0])
  np.testing.assert_allclose(outcomes.soft_step(margins, 0.5).numpy(),
                             outcomes.soft_step(0.01 * margins, 0.5).numpy(), rtol=1e-5)
  # The probability surrogate can: its gap shrinks with the logits' scale.
  probs = outcomes.smooth_correct(tf.ones(5), margins, from_logits=True)
  shrunk = outcomes.smooth_correct(tf.ones(5), 0.01 * margins, from_logits=True)
  assert float(tf.math.reduce_std(shrunk)) < 0.1 * float(tf.math.reduce_std(probs))


def test_degradation_is_zero_at_the_dense_model_smooth_and_hard():
  x, y, g, _ = _toy()
  dense = _dense_ref(x)
  for cls in (C.DegradationFairness, C.ExcessDegradation):
    c = cls(from_logits=True)
    smooth, hard, counts = c.statistics(y, dense.outputs, g, None, 2, dense=dense)
    np.testing.assert_allclose(smooth.numpy(), 0.0, atol=1e-6)
    assert float(c.measure(hard, counts)) == 0.0
    assert float(_loss(c, smooth, counts, hard, counts, tf.ones(c.multiplier_shape(2)))) == 0.0


def test_excess_is_one_sided():
  # Per-example degradation: group 0 loses 0.1 on average, group 1 nothing.
  sums, counts = tf.constant([[10.0, 0.0]]), tf.constant([[100.0, 100.0]])
  c = C.ExcessDegradation(tolerance=0.01,
                          enforcement=E.Lagrangian(multiplier_lr=1.0, noise_margin=0.0))
  assert float(c.measure(sums, counts)) == pytest.approx(0.05)  # ψ = 0.1 - 0.05.
  lam = _dual_step(c, tf.zeros([1, 2]), sums, counts).numpy()
  assert lam[0, 0] == pytest.approx(0.04) and lam[0, 1] == 0.0  # Group 1 gained: never pushed.


def _pair_loss(constraints, multipliers, s, dense_rates):
  """Loss of constraints on two groups with smooth accuracy s (a [2] variable)."""
  counts = tf.ones([1, 2])
  total = 0.0
  for c, lam in zip(constraints, multipliers):
    sums = (dense_rates - s)[None] if c.needs_dense else s[None]
    hard = tf.stop_gradient(sums)
    total += _loss(c, sums, counts, hard, counts, lam)
  return total


@pytest.mark.parametrize("rule", [E.Penalty(), E.Lagrangian(noise_margin=0.0)],
                         ids=["penalty", "lagrangian"])
def test_performance_plus_degradation_never_cancels_silently(rule):
  """Dense gap D = 0.2, pruned gap P = 0.15 (0 < P < D): the old linear equal-weight
  pair has exactly zero gradient there; the defaults move the gap."""
  dense_rates = tf.constant([0.9, 0.7])  # D = 0.2, group 0 ahead.
  s = tf.Variable([0.85, 0.70])           # P = 0.15.
  pair = [C.PerformanceFairness(enforcement=rule, tolerance=0.02),
          C.DegradationFairness(enforcement=rule, tolerance=0.02)]
  lams = [tf.zeros(c.multiplier_shape(2)) for c in pair]
  if rule.drives_multipliers:
    for _ in range(20):  # Dual ascent on the measured (here: fixed) rates.
      lams = [_dual_step(c, lam, ((dense_rates - s)[None] if c.needs_dense else s[None]),
                         tf.ones([1, 2]))
              for c, lam in zip(pair, lams)]
  with tf.GradientTape() as tape:
    loss = _pair_loss(pair, lams, s, dense_rates)
  grad = tape.gradient(loss, s).numpy()
  # Gradient descent narrows P (the larger violation, 0.13 vs 0.03): s0 down / s1 up.
  assert grad[0] - grad[1] > 1e-3
  old = [C.PerformanceFairness(enforcement=E.Penalty(squared=False), tolerance=0.0),
         C.DegradationFairness(enforcement=E.Penalty(squared=False), tolerance=0.0)]
  with tf.GradientTape() as tape:
    loss = _pair_loss(old, [None, None], s, dense_rates)
  np.testing.assert_allclose(tape.gradient(loss, s).numpy(), 0.0, atol=1e-7)


def test_combining_performance_and_degradation_warns(k):
  with pytest.warns(UserWarning, match="opposite directions"):
    tf_fairprune.fair_prune_wrapper(
        make_mlp(k=k), 0.5, fairness=[C.PerformanceFairness(), C.DegradationFairness()])


def test_absent_groups_contribute_nothing_and_give_finite_gradients():
  logits = tf.Variable([[0.3], [-1.0], [2.0]])
  y = tf.constant([1.0, 0.0, 1.0])
  c = C.PerformanceFairness(from_logits=True)
  for groups in ([0, 0, 0], [2, 2, 2]):
    with tf.GradientTape() as tape:
      smooth, hard, counts = c.statistics(y, logits, tf.constant(groups), None, 3)
      loss = _loss(c, smooth, counts, hard, counts, tf.ones(c.multiplier_shape(3)))
    assert float(c.measure(hard, counts)) == 0.0 and float(loss) == 0.0
    grad = tape.gradient(loss, logits)
    assert grad is None or np.all(np.isfinite(grad.numpy()))


def test_worst_pair_over_k_groups_and_sample_weights():
  # Accuracy per group: g0 = 1.0, g1 = 0.5, g2 = 0.0; g3 absent.
  y = tf.constant([1.0, 1.0, 1.0, 1.0, 1.0])
  logits = tf.constant([[5.0], [5.0], [-5.0], [-5.0], [5.0]])
  g = tf.constant([0, 1, 1, 2, 1])
  c = C.PerformanceFairness(from_logits=True)
  _, hard, counts = c.statistics(y, logits, g, None, 4)
  np.testing.assert_allclose(counts.numpy(), [[1, 3, 1, 0]])
  assert float(c.measure(hard, counts)) == pytest.approx(1.0)
  # Weight 0 on group 2 removes it: gap = 1 - 2/3.
  _, hard, counts = c.statistics(y, logits, g, tf.constant([1.0, 1, 1, 0, 1]), 4)
  assert float(c.measure(hard, counts)) == pytest.approx(1 / 3, abs=1e-6)


def test_multiclass_outputs_probabilities_and_one_hot():
  probs = tf.constant([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]])
  sparse = tf.constant([0, 1, 0, 2])
  one_hot = tf.one_hot(sparse, 3)
  g = tf.constant([0, 0, 1, 1])
  c = C.PerformanceFairness(from_logits=False, surrogate="probability")
  for labels in (sparse, one_hot):
    smooth, hard, counts = c.statistics(labels, probs, g, None, 2)
    np.testing.assert_allclose(hard.numpy(), [[2.0, 0.0]])
    np.testing.assert_allclose(smooth.numpy(), [[1.5, 0.4]], rtol=1e-6)
  # The margin surrogate is above 1/2 exactly where the prediction is right.
  smooth, _, _ = C.PerformanceFairness(from_logits=False).statistics(sparse, probs, [0, 1, 2, 3], None, 4)
  np.testing.assert_array_equal(smooth.numpy()[0] > 0.5, [True, True, False, False])
  dp = C.DemographicParity(from_logits=False, positive_class=1)
  _, hard, counts = dp.statistics(sparse, probs, g, None, 2)
  assert float(dp.measure(hard, counts)) == pytest.approx(0.5)
  logits = tf.Variable(tf.math.log(probs))
  with tf.GradientTape() as tape:
    smooth, hard, counts = C.PerformanceFairness(from_logits=True).statistics(sparse, logits, g, None, 2)
    loss = _loss(C.PerformanceFairness(), smooth, counts, hard, counts, tf.ones([1, 2, 2]))
  assert np.all(np.isfinite(tape.gradient(loss, logits).numpy()))


def test_penalty_shapes():
  # Two groups with smooth rates 0.9 / 0.6: gap 0.3.
  sums, counts = tf.constant([[0.9, 0.6]]), tf.ones([1, 2])
  c = C.PerformanceFairness(enforcement=E.Penalty(weight=2.0, squared=False), tolerance=0.1)
  assert float(_loss(c, sums, counts, sums, counts)) == pytest.approx(0.4)
  c = C.PerformanceFairness(enforcement=E.Penalty(weight=2.0), tolerance=0.1)  # Squared.
  assert float(_loss(c, sums, counts, sums, counts)) == pytest.approx(0.08)
  c = C.PerformanceFairness(enforcement=E.Penalty(weight=2.0), tolerance=0.5)
  assert float(_loss(c, sums, counts, sums, counts)) == 0.0
  c = C.PerformanceFairness(tolerance=0.1, enforcement=E.Lagrangian(damping=0.0))  # Σ λ · value.
  lam = tf.constant([[[0.0, 3.0], [1.0, 0.0]]])
  assert float(_loss(c, sums, counts, sums, counts, lam)) == pytest.approx(3 * 0.3 - 1 * 0.3)


def test_noise_margin_ignores_gaps_within_sampling_error():
  c = C.PerformanceFairness(tolerance=0.0,
                            enforcement=E.Lagrangian(multiplier_lr=1.0))  # z = 1 by default.
  gap_of_10_points = tf.constant([[0.9, 0.8]])
  small, large = tf.fill([1, 2], 20.0), tf.fill([1, 2], 2000.0)  # se ≈ 0.16 vs 0.016.
  assert float(tf.reduce_max(_dual_step(c, tf.zeros([1, 2, 2]), gap_of_10_points * small,
                                        small))) == 0.0
  assert float(tf.reduce_max(_dual_step(c, tf.zeros([1, 2, 2]), gap_of_10_points * large,
                                        large))) > 0.05


def test_multipliers_rise_while_violated_and_return_to_zero():
  c = C.PerformanceFairness(tolerance=0.05, enforcement=E.Lagrangian(
      multiplier_lr=0.5, max_multiplier=1.0, noise_margin=0.0))
  lam = tf.zeros([1, 2, 2])
  trace = []
  for gap in [0.25] * 5 + [0.0] * 30:
    lam = _dual_step(c, lam, tf.constant([[0.5 + gap, 0.5]]), tf.ones([1, 2]))
    trace.append(float(lam[0, 0, 1]))
    assert float(lam[0, 1, 0]) == 0.0  # The other direction is never violated.
  assert all(b > a for a, b in zip(trace[:4], trace[1:5]))
  assert max(trace) == pytest.approx(0.5)  # 5 steps of 0.5 * 0.2, then λ_max = 1 not reached.
  assert trace[-1] == 0.0 and min(trace) >= 0.0
  big = _dual_step(c, tf.zeros([1, 2, 2]) + 0.9, tf.constant([[1.0, 0.0]]), tf.ones([1, 2]))
  assert float(tf.reduce_max(big)) == 1.0  # Clipped at λ_max.


def test_each_rule_owns_its_state():
  lagrangian = C.PerformanceFairness()
  state = lagrangian.enforcement.init(lagrangian, 3)
  assert [tuple(v.shape) for v in tf.nest.flatten(state)] == [(1, 3, 3)]
  assert float(tf.reduce_max(state.multipliers)) == 0.0
  halved = lagrangian.enforcement.back_off(E.LagrangianState(tf.fill([1, 3, 3], 0.8)))
  np.testing.assert_allclose(halved.multipliers.numpy(), 0.4)
  penalty = C.PerformanceFairness(enforcement=E.Penalty())
  state = penalty.enforcement.init(penalty, 3)
  assert not tf.nest.flatten(state)  # A fixed weight has nothing to remember.
  sums, counts = tf.constant([[3.0, 1.0, 2.0]]), tf.ones([1, 3])
  assert penalty.enforcement.update(penalty, state, sums, counts) == state
  assert penalty.enforcement.back_off(state) == state
  np.testing.assert_array_equal(
      penalty.enforcement.multipliers(penalty, state, 3).numpy(), np.zeros([1, 3, 3]))


def _unfair_data(n=512):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((n, 8)).astype("float32")
  g = (rng.uniform(size=n) < 0.3).astype("int32")
  y = np.where(g == 0, x[:, 0] > 0, x[:, 1] * x[:, 2] > 0).astype("float32")
  return x, y, g


# Keras 3 runs the case where the multipliers rise (its step updates them and its history
# reports them); the other repeats the flavour-independent update rule.
@pytest.mark.parametrize("k,tolerance,rises",
                         [(f, t, r) for f in FLAVOURS for t, r in ((0.0, True), (1.0, False))
                          if f == "tf_keras" or r],
                         indirect=["k"])
def test_lagrangian_mode_in_training(k, tolerance, rises):
  x, y, g = _unfair_data()
  model = compile_binary(tf_fairprune.fair_prune_wrapper(
      make_mlp(k=k), 0.5, fairness=[C.PerformanceFairness(
          tolerance=tolerance, enforcement=E.Lagrangian(multiplier_lr=0.1))]))
  history = model.fit(tf_fairprune.pack_group_data(x, g), y, batch_size=64, epochs=2, verbose=0)
  multiplier = float(model.fairness_multipliers[0].numpy().max())
  assert history.history["performance_gap_multiplier"][-1] == pytest.approx(multiplier)
  assert (multiplier > 0) == rises


def _one_step(fairness_on):
  keras.utils.set_random_seed(0)
  x, y, g = _unfair_data(64)
  model = tf_fairprune.fair_prune_wrapper(
      make_mlp(), 0.5, fairness=[C.PerformanceFairness(enforcement=E.Penalty(weight=50.0))],
      fairness_on=fairness_on,
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


def test_bad_constraint_arguments(k):
  with pytest.raises(ValueError, match="enforcement rule 'hard'"):
    C.PerformanceFairness(enforcement="hard")
  with pytest.raises(ValueError, match="surrogate"):
    C.PerformanceFairness(surrogate="hinge")
  with pytest.raises(ValueError, match="rate_decay"):
    C.PerformanceFairness(enforcement=E.Lagrangian(rate_decay=1.0))
  with pytest.raises(ValueError, match="weight"):
    C.PerformanceFairness(enforcement=E.Penalty(weight=-1))
  with pytest.raises(ValueError, match="tolerance"):
    C.DemographicParity(tolerance=float("nan"))
  with pytest.raises(TypeError, match="fairness"):
    tf_fairprune.fair_prune_wrapper(make_mlp(k=k), 0.5, fairness=["performance"])
  with pytest.raises(ValueError, match="distinct names"):
    tf_fairprune.fair_prune_wrapper(make_mlp(k=k), 0.5,
                                    fairness=[C.PerformanceFairness(), C.PerformanceFairness()])
  with pytest.raises(ValueError, match="fairness_on"):
    tf_fairprune.fair_prune_wrapper(make_mlp(k=k), 0.5, fairness_on=("scores",))
  with pytest.raises(ValueError, match="num_groups"):
    tf_fairprune.fair_prune_wrapper(make_mlp(k=k), 0.5, num_groups=1)


def test_degradation_needs_dense_outputs_or_a_reference(tmp_path):
  x, y, g = _unfair_data(64)
  dense = make_mlp()
  dense_weights = [w.copy() for w in dense.get_weights()]
  model = compile_binary(tf_fairprune.fair_prune_wrapper(
      dense, 0.5, fairness=[C.DegradationFairness(from_logits=True)]))
  # fair_prune_wrapper keeps a frozen copy of the dense model as reference...
  reference = model._reference_model
  before = [w.copy() for w in reference.get_weights()]
  model.fit(tf_fairprune.pack_group_data(x, g), y, epochs=1, verbose=0)
  assert _same(before, reference.get_weights())
  # ... set_reference_model neither trains nor changes the user's model ...
  model.set_reference_model(dense)
  model.fit(tf_fairprune.pack_group_data(x, g), y, epochs=1, verbose=0)
  assert dense.trainable and _same(dense_weights, dense.get_weights())
  # ... or the dense outputs (or correctness) travel with the data.
  model.set_reference_model(None)
  model.fit(tf_fairprune.pack_group_data(x, g, dense_outputs=dense.predict(x, verbose=0)), y,
            epochs=1, verbose=0)
  dc = tf_fairprune.fairness.dense_correctness(dense, x, y, from_logits=True)
  model.fit(tf_fairprune.pack_group_data(x, g, dense_correct=dc), y, epochs=1, verbose=0)
  with pytest.raises(ValueError, match=r"set_reference_model\(dense_model\)"):
    model.fit(tf_fairprune.pack_group_data(x, g), y, epochs=1, verbose=0)
  # A .keras file does not hold the dense model: the error says what to pass.
  path = str(tmp_path / "degr.keras")
  model.save(path)
  restored = keras.models.load_model(path)
  with pytest.raises(ValueError, match="after `load_model`"):
    restored.fit(tf_fairprune.pack_group_data(x, g), y, epochs=1, verbose=0)
  restored.set_reference_model(dense)
  history = restored.fit(tf_fairprune.pack_group_data(x, g), y, epochs=1, verbose=0)
  assert np.isfinite(history.history["loss"][-1])


def test_fair_model_saves_constraints_and_multipliers(tmp_path, k):
  x, y, g = _unfair_data(128)
  model = compile_binary(tf_fairprune.fair_prune_wrapper(
      make_mlp(k=k), 0.5, num_groups=3, fairness_on=("mask",),
      fairness=[C.PerformanceFairness(enforcement=E.Lagrangian(multiplier_lr=0.2), tolerance=0.0),
                C.EqualizedOdds(enforcement=E.Penalty(weight=0.5), tolerance=0.02)]))
  model.fit(tf_fairprune.pack_group_data(x, g), y, epochs=1, verbose=0)
  path = str(tmp_path / "fair.keras")
  model.save(path)
  restored = k.models.load_model(path)
  assert [repr(c) for c in restored.fairness] == [repr(c) for c in model.fairness]
  assert restored.fairness_on == ("mask",) and restored.num_groups == 3
  np.testing.assert_allclose(restored.fairness_multipliers[0].numpy(),
                             model.fairness_multipliers[0].numpy())
  assert float(model.fairness_multipliers[0].numpy().max()) > 0
  logs = restored.evaluate(tf_fairprune.pack_group_data(x, g), y, verbose=0, return_dict=True)
  assert "equalized_odds_gap" in logs


# tf_keras: test_degradation_needs_dense_outputs_or_a_reference. Keras 3 deserialises the
# model through its own from_config; the reference must be asked for after loading there too.
@pytest.mark.parametrize("k", [f for f in FLAVOURS if f != "tf_keras"], indirect=True)
def test_degradation_model_loaded_from_a_keras_file_asks_for_its_reference(k, tmp_path):
  x, y, g = _unfair_data(64)
  dense = make_mlp(k=k)
  dense_weights = [w.copy() for w in dense.get_weights()]
  model = compile_binary(tf_fairprune.fair_prune_wrapper(
      dense, 0.5, fairness=[C.DegradationFairness(from_logits=True)]))
  model.fit(tf_fairprune.pack_group_data(x, g), y, epochs=1, verbose=0)
  path = str(tmp_path / "degr.keras")
  model.save(path)
  restored = k.models.load_model(path)
  assert [repr(c) for c in restored.fairness] == [repr(c) for c in model.fairness]
  with pytest.raises(ValueError, match="after `load_model`"):
    restored.fit(tf_fairprune.pack_group_data(x, g), y, epochs=1, verbose=0)
  restored.set_reference_model(dense)
  restored.fit(tf_fairprune.pack_group_data(x, g), y, epochs=1, verbose=0)
  assert dense.trainable and _same(dense_weights, dense.get_weights())


@pytest.mark.parametrize("detach", [True, False])
def test_excess_detached_average_only_helps_the_group(detach):
  """ψ_0 = R_0 − R: with the average detached its gradient reaches group 0's rate alone;
  without, it also pushes group 1's loss up (what collapsed many-group runs)."""
  c = C.ExcessDegradation(tolerance=0.0, detach_average=detach,
                          enforcement=E.Lagrangian(noise_margin=0.0, damping=0.0))
  s = tf.Variable([[0.2, 0.1]])  # Per-group degradation sums; counts 1 each.
  counts = tf.ones([1, 2])
  lam = tf.constant([[1.0, 0.0]])  # Only group 0's constraint binds.
  with tf.GradientTape() as tape:
    loss = _loss(c, s, counts, tf.stop_gradient(s), counts, lam)
  grad = tape.gradient(loss, s).numpy()[0]
  assert grad[0] > 0  # Lowering group 0's loss lowers the term either way.
  if detach:
    assert grad[1] == 0.0
  else:
    assert grad[1] < 0  # Raising group 1's loss would lower ψ_0.
  assert float(c.measure(s, counts)) == pytest.approx(0.05)  # The measurement is unchanged.
  assert C.ExcessDegradation.from_config(c.get_config()).detach_average == detach


def test_excess_of_a_file_without_the_option_resumes_attached():
  old = C.ExcessDegradation(tolerance=0.02).get_config()
  del old["detach_average"]  # As saved before the option existed.
  assert not C.ExcessDegradation.from_config(old).detach_average
  assert C.ExcessDegradation().detach_average  # The default for new constraints.


def test_one_constraint_not_in_a_list_is_kept_in_the_config():
  """A single constraint (not a list) is one constraint, for the config as for the model."""
  from tf_fairprune import config as config_lib  # pylint: disable=g-import-not-at-top
  c = C.PerformanceFairness(tolerance=0.03)
  assert config_lib.PruningConfig(fairness=c).fairness == [c]


def _row_gradients(constraint, counts, multipliers):
  """d(loss term)/d(each row's smooth value) for one row per entry of `counts`' groups,
  the batch's rows split into groups of those sizes (smooth sums: the rows' sum)."""
  rows = tf.Variable(tf.fill([int(sum(counts))], 0.1))
  groups = np.repeat(np.arange(len(counts)), counts)
  with tf.GradientTape() as tape:
    sums = tf.math.unsorted_segment_sum(rows, groups, len(counts))[None]
    loss = _loss(constraint, sums, tf.constant([counts], tf.float32), tf.stop_gradient(sums),
                 tf.constant([counts], tf.float32), multipliers)
  grad = tape.gradient(loss, rows).numpy()
  return [grad[groups == g][0] for g in range(len(counts))]


@pytest.mark.parametrize("cls", [C.ExcessDegradation, C.MaxGroupLoss])
def test_per_row_multiplier_weighs_every_row_alike_whatever_the_group_size(cls):
  """With `per_row` a multiplier λ puts 2λ/n on each row of its group, as on one of two
  equal groups: the loop gain does not grow as groups shrink or multiply. Without it a
  group of share p gets λ/(p·n) per row (a 10-row group of 1,000: 50× two equal groups')."""
  counts = [10.0, 90.0, 400.0, 500.0]
  lam = tf.constant([[1.0, 1.0, 1.0, 1.0]])
  rule = dict(noise_margin=0.0, damping=0.0)
  per_row = _row_gradients(cls(enforcement=E.Lagrangian(**rule)), counts, lam)
  np.testing.assert_allclose(per_row, 2.0 / sum(counts), rtol=1e-5)
  per_group = _row_gradients(cls(enforcement=E.Lagrangian(per_row=False, **rule)), counts, lam)
  np.testing.assert_allclose(per_group, [1.0 / n for n in counts], rtol=1e-5)
  # Two equal groups: the same term either way.
  same = [_row_gradients(cls(enforcement=E.Lagrangian(per_row=p, **rule)), [50.0, 50.0],
                         lam[:, :2]) for p in (True, False)]
  np.testing.assert_allclose(same[0], same[1], rtol=1e-6)


def test_per_row_pairwise_scale_is_one_for_two_equal_groups():
  c = C.PerformanceFairness()
  np.testing.assert_allclose(c.row_weight_scale(tf.constant([[50.0, 50.0]])).numpy(),
                             np.ones((1, 2, 2)))
  # 10 and 90 rows: 4·0.1·0.9/(0.1 + 0.9) = 0.36 (each row of the pair weighs as one of
  # two equal groups' would in total: 1/p_i + 1/p_j against 4).
  scale = c.row_weight_scale(tf.constant([[10.0, 90.0]])).numpy()
  assert scale[0, 0, 1] == pytest.approx(0.36) and scale[0, 1, 0] == pytest.approx(0.36)
  # An absent group: no scale (its constraints are not valid anyway), never NaN.
  assert np.isfinite(c.row_weight_scale(tf.constant([[0.0, 90.0]])).numpy()).all()


def test_a_lagrangian_saved_before_per_row_and_split_pressure_resumes_as_it_trained():
  config = E.serialize(E.Lagrangian(multiplier_lr=0.3))
  assert E.deserialize(config) == E.Lagrangian(multiplier_lr=0.3)
  del config["config"]["per_row"], config["config"]["split_pressure"]  # Saved before.
  assert E.deserialize(config, saved=True) == E.Lagrangian(multiplier_lr=0.3, per_row=False,
                                                           split_pressure=False)
  assert E.deserialize(config) == E.Lagrangian(multiplier_lr=0.3)  # A dict in new code.
  # A constraint's saved config goes the saved way.
  saved = C.ExcessDegradation(enforcement=E.Lagrangian(multiplier_lr=0.3)).get_config()
  del saved["enforcement"]["config"]["per_row"]
  assert not C.ExcessDegradation.from_config(saved).enforcement.per_row
  assert C.ExcessDegradation.from_config(saved).enforcement.split_pressure is True
  # The pre-rule spelling predates them too; new code spelled so gets the defaults.
  old = E.legacy_config({"tolerance": 0.02, "mode": "lagrangian", "damping": 1.0})
  assert E.deserialize(old["enforcement"]) == E.Lagrangian(damping=1.0, per_row=False,
                                                           split_pressure=False)
  new = E.legacy_config({"mode": "lagrangian", "damping": 1.0}, saved=False)
  assert E.deserialize(new["enforcement"]) == E.Lagrangian(damping=1.0)
  assert E.Lagrangian().per_row and E.Lagrangian().split_pressure  # The defaults.


def test_split_pressure_shares_the_push_among_the_violated_groups():
  """Four groups violated at once move their multipliers a quarter as fast as one alone
  (proportional term too); with one violated (as for any gap between two groups) nothing
  changes, and a met constraint's multiplier decays as fast as without sharing."""
  c = C.MaxGroupLoss(tolerance=0.0, enforcement=E.Lagrangian(noise_margin=0.0))
  plain = C.MaxGroupLoss(tolerance=0.0, enforcement=E.Lagrangian(noise_margin=0.0,
                                                                 split_pressure=False))
  counts = tf.fill([1, 4], 100.0)
  zeros = tf.zeros([1, 4])
  all_lose = tf.constant([[10.0, 20.0, 30.0, 40.0]])  # Loss rates 0.1 ... 0.4.
  one_loses = tf.constant([[10.0, 0.0, 0.0, 0.0]])
  np.testing.assert_allclose(_dual_step(c, zeros, all_lose, counts).numpy(),
                             _dual_step(plain, zeros, all_lose, counts).numpy() / 4, rtol=1e-6)
  np.testing.assert_allclose(_dual_step(c, zeros, one_loses, counts).numpy(),
                             _dual_step(plain, zeros, one_loses, counts).numpy())
  # Three violated, one met (a loss rate below ε = 0.15): the met one's decay is not shared.
  tol = C.MaxGroupLoss(tolerance=0.15, enforcement=E.Lagrangian(noise_margin=0.0))
  tol_plain = C.MaxGroupLoss(tolerance=0.15, enforcement=E.Lagrangian(
      noise_margin=0.0, split_pressure=False))
  ones = tf.ones([1, 4])
  rates = tf.constant([[10.0, 20.0, 30.0, 40.0]])
  shared, unshared = (_dual_step(x, ones, rates, counts).numpy()[0] for x in (tol, tol_plain))
  assert shared[0] == pytest.approx(unshared[0])  # Met (0.1 < 0.15): decays alike.
  np.testing.assert_allclose(shared[1:] - 1.0, (unshared[1:] - 1.0) / 3, rtol=1e-5)
  smooth = tf.constant([[5.0, 5.0, 5.0, 5.0]])
  # The proportional term: κ·v/4 each (0.25 ... 1.0) against κ·v (1 ... 4, below λ_max);
  # each term's row scale 2·p_g = 0.5 and smooth value 0.05.
  shared = float(_loss(c, smooth, counts, all_lose, counts, zeros))
  unshared = float(_loss(plain, smooth, counts, all_lose, counts, zeros))
  assert shared == pytest.approx(0.5 * 0.05 * (0.25 + 0.5 + 0.75 + 1.0), rel=1e-5)
  assert unshared == pytest.approx(4 * shared, rel=1e-5)
  assert E.Lagrangian().split_pressure


def test_split_pressure_counts_per_term_and_compiles_with_a_held_out_switch():
  """Equalized odds on two groups: its TPR and FPR gaps (two terms) violated together are
  each pushed as alone; the loss with a traced held-out switch compiles under XLA."""
  c = C.EqualizedOdds(tolerance=0.0, enforcement=E.Lagrangian(noise_margin=0.0))
  plain = C.EqualizedOdds(tolerance=0.0, enforcement=E.Lagrangian(noise_margin=0.0,
                                                                  split_pressure=False))
  counts = tf.fill([2, 2], 50.0)
  hard = tf.constant([[40.0, 20.0], [30.0, 10.0]])  # Both terms: group 0 above group 1.
  zeros = tf.zeros(c.multiplier_shape(2))
  np.testing.assert_allclose(_dual_step(c, zeros, hard, counts).numpy(),
                             _dual_step(plain, zeros, hard, counts).numpy())
  state = E.LagrangianState(tf.zeros(c.multiplier_shape(2)))
  loss = tf.function(jit_compile=True)(
      lambda held_out: c.enforcement.loss(c, state, hard, counts, hard, counts, held_out))
  assert float(loss(tf.constant(True))) == pytest.approx(float(loss(tf.constant(False))))
  assert float(loss(tf.constant(True))) > 0.0

