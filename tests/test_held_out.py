"""HeldOutFairness: multipliers steered on held-out rates (on signal, not noise), the
selected iterate, the floor, and held-out data checked as training data is."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

import tf_fairprune
from tf_fairprune.fairness import held_out as held_out_lib
from tf_fairprune.fairness import intervals
from tf_fairprune.fairness import Lagrangian
from tf_fairprune.fairness import Penalty
from tf_fairprune.fairness import PerformanceFairness
from conftest import compile_binary, make_mlp

EPS = 0.03


def _cand(accuracy, gap, collapsed=False, epsilon=EPS):
  return held_out_lib.Candidate(epoch=1, step=0, accuracy=accuracy,
                                gaps={"performance_gap": gap}, violation=gap - epsilon,
                                collapsed=collapsed)


def test_select_prefers_the_most_accurate_candidate_that_meets_epsilon():
  cands = [_cand(0.86, 0.10), _cand(0.84, 0.02), _cand(0.83, 0.01), _cand(0.85, 0.05)]
  i, reason = held_out_lib.select(cands)
  assert i == 1 and "no violation it can tell from noise" in reason
  assert cands[1]["accuracy"] == 0.84  # Read as a dict too.


def test_select_never_returns_a_collapsed_candidate():
  cands = [_cand(0.86, 0.10), _cand(0.70, 0.0, collapsed=True)]
  i, reason = held_out_lib.select(cands)
  assert i == 0 and "the smallest violation" in reason
  assert held_out_lib.select([_cand(0.7, 0.0, True)])[0] is None


def test_select_respects_the_accuracy_budget():
  cands = [_cand(0.86, 0.10), _cand(0.80, 0.02), _cand(0.845, 0.05)]
  assert held_out_lib.select(cands)[0] == 1  # No budget: meets ε at -6 points.
  i, reason = held_out_lib.select(cands, max_accuracy_loss=0.02)
  assert i == 2 and "within the accuracy budget" in reason  # Smallest violation within 2.


def test_when_no_iterate_meets_epsilon_accuracy_is_not_traded_away():
  # Colored Fashion-MNIST, 20 class x colour groups: the smallest violation was an
  # iterate at 16% accuracy; a constraint no iterate met is not worth more than 5 points.
  cands = [_cand(0.835, 0.35), _cand(0.39, 0.29), _cand(0.16, 0.12), _cand(0.80, 0.30)]
  i, reason = held_out_lib.select(cands)
  assert i == 3 and "within 5 points of the most accurate" in reason
  assert held_out_lib.select(cands, max_accuracy_loss=1.0)[0] == 2  # A stated budget rules.


def test_select_returns_the_final_iterate_when_the_constraints_never_bound():
  cands = [_cand(0.86, 0.01), _cand(0.84, 0.02)]
  assert held_out_lib.select(cands)[0] == 0
  i, reason = held_out_lib.select(cands, never_bound=True)
  assert i == 1 and "never bound" in reason


def test_tolerances_are_epsilon_where_resolvable_and_the_half_width_where_not():
  def measurement(n):
    correct = np.array([[0.9 * n, 0.8 * n]])
    sums = intervals.GroupSums(correct, correct, [[n, n]], [[n, n]], [[n, n]])
    return held_out_lib.Measurement(
        constraints=[PerformanceFairness(tolerance=EPS)], sums=[sums],
        accuracy_sums=sums, loss_sums=None, class_shares=np.array([0.5, 0.5]),
        dense_class_shares=None, label_shares=np.array([0.5, 0.5]))
  big, small = measurement(20000), measurement(60)
  (tol_big,), (tol_small,) = big.tolerances(), small.tolerances()
  assert tol_big[0, 0, 1] == pytest.approx(EPS)  # Half-width ~0.7 points < ε.
  half = small.intervals["performance_gap"].half_widths[0, 0, 1]
  assert half > 0.1 and tol_small[0, 0, 1] == pytest.approx(half)
  # A 10-point gap violates ε on 20,000 rows a group, and is noise on 60.
  assert big.violation() == pytest.approx(0.10 - EPS)
  assert small.violation() < 0
  assert big.verdicts() == {"performance_gap": "not met"}
  assert small.verdicts() == {"performance_gap": "cannot tell"}


def _groups_data(n=512, seed=0, flip=0.0):
  """Two groups; the label rule of group 1 is noisier (its accuracy is lower)."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, 8)).astype("float32")
  g = (rng.random(n) < 0.5).astype("int32")
  x[:, 7] = g  # The group is a feature: a network can treat the groups differently.
  y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("float32")
  noisy = (g == 1) & (rng.random(n) < flip)
  y[noisy] = 1.0 - y[noisy]
  return x, y, g


def _model(k, tolerance=0.0, **rule):
  return compile_binary(tf_fairprune.fair_prune_wrapper(
      make_mlp(k=k), 0.5, fairness=[PerformanceFairness(
          tolerance=tolerance, enforcement=Lagrangian(**rule))]))


def _fit(model, data, callback, epochs=1, **kwargs):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return model.fit(*data, batch_size=64, epochs=epochs, verbose=0, callbacks=[callback],
                     **kwargs)


def test_multipliers_keep_acting_when_the_training_gap_is_met_but_the_held_out_gap_is_not(k):
  # Training rows: no gap at all (no noise); held-out rows: group 1's labels are noisy,
  # so the held-out gap stays large, far beyond its noise. Training rates would release
  # the multiplier; the held-out rates keep it pushing.
  x, y, g = _groups_data(n=256, flip=0.0)
  xv, yv, gv = _groups_data(n=256, seed=1, flip=0.4)
  model = _model(k, tolerance=0.02, damping=0.0, multiplier_lr=0.5)
  train = tf_fairprune.pack_group_data(x, g)
  callback = tf_fairprune.HeldOutFairness((tf_fairprune.pack_group_data(xv, gv), yv),
                                          update_every=2, verbose=0, restore=False)
  _fit(model, (train, y), callback, epochs=2)
  held_out_gap = callback.last.gaps["performance_gap"]
  assert held_out_gap > 0.1
  lam = [c["multipliers"][0] for c in callback.candidates]
  assert all(b >= a for a, b in zip(lam, lam[1:])) and lam[-1] > 0.1  # Rises all run.
  assert callback.selected["bound"] and callback.selected["verdicts"] == {
      "performance_gap": "not met"}
  # The same model trained on training rates alone: the training gap is within noise of
  # zero, so its multiplier stays near zero.
  plain = _model(k, tolerance=0.02, damping=0.0, multiplier_lr=0.5)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    plain.fit(train, y, batch_size=64, epochs=2, verbose=0)
  assert float(np.max(plain.fairness_multipliers[0].numpy())) < float(
      np.max(model.fairness_multipliers[0].numpy()))


def test_a_gap_the_held_out_set_cannot_resolve_leaves_the_run_as_fairness_off(k):
  # 40 held-out rows: a small gap there is noise. The multipliers must not move, and the
  # model returned must be exactly the one fairness off trains (same seed and order),
  # with a "cannot tell" verdict.
  x, y, g = _groups_data(n=256, flip=0.1)
  xv, yv, gv = _groups_data(n=40, seed=1, flip=0.1)
  held = (tf_fairprune.pack_group_data(xv, gv), yv)
  train = (tf_fairprune.pack_group_data(x, g), y)
  k.utils.set_random_seed(1)
  fair = _model(k, tolerance=0.05)
  callback = tf_fairprune.HeldOutFairness(held, update_every=2, verbose=0)
  _fit(fair, train, callback, epochs=2, shuffle=False)
  k.utils.set_random_seed(1)
  off = compile_binary(tf_fairprune.fair_prune_wrapper(make_mlp(k=k), 0.5))
  off.fit(*train, batch_size=64, epochs=2, verbose=0, shuffle=False)
  assert float(np.max(fair.fairness_multipliers[0].numpy())) == 0.0
  assert not callback.selected["bound"] and "never bound" in callback.selected["reason"]
  assert callback.selected["verdicts"]["performance_gap"] == "cannot tell"
  for a, b in zip(tf_fairprune.strip_fair_pruning(fair).get_weights(),
                  tf_fairprune.strip_fair_pruning(off).get_weights()):
    np.testing.assert_array_equal(a, b)


def test_the_returned_model_is_the_selected_iterate(k):
  x, y, g = _groups_data(n=256, flip=0.2)
  xv, yv, gv = _groups_data(n=256, seed=1, flip=0.2)
  model = _model(k, tolerance=0.05)
  held = (tf_fairprune.pack_group_data(xv, gv), yv)
  callback = tf_fairprune.HeldOutFairness(held, update_every=1, verbose=0)
  _fit(model, (tf_fairprune.pack_group_data(x, g), y), callback, epochs=3)
  chosen = callback.selected
  assert chosen["index"] < len(callback.candidates) and chosen["restored"]
  again = held_out_lib.measure(model, held_out_lib.batched(held, 1024))
  assert again.accuracy == pytest.approx(chosen["accuracy"], abs=1e-6)
  assert again.accuracy == pytest.approx(callback.candidates[chosen["index"]].accuracy,
                                         abs=1e-6)
  assert again.gaps["performance_gap"] == pytest.approx(chosen["gaps"]["performance_gap"],
                                                        abs=1e-6)
  i, _ = held_out_lib.select(callback.candidates, never_bound=not chosen["bound"])
  assert i == chosen["index"]
  # restore=False keeps the last iterate instead.
  last = _model(k, tolerance=0.05)
  keep = tf_fairprune.HeldOutFairness(held, update_every=1, verbose=0, restore=False)
  _fit(last, (tf_fairprune.pack_group_data(x, g), y), keep, epochs=3)
  final = held_out_lib.measure(last, held_out_lib.batched(held, 1024))
  assert final.accuracy == pytest.approx(keep.candidates[-1].accuracy, abs=1e-6)
  assert not keep.selected["restored"]


def test_selected_describes_the_returned_model_whatever_later_callbacks_do(k):
  # A callback after HeldOutFairness that sets other weights in its on_train_end (as
  # EarlyStopping(restore_best_weights=True) does): the model must still be the
  # selected iterate, and the user is told.
  x, y, g = _groups_data(n=256, flip=0.3)
  data = (tf_fairprune.pack_group_data(x, g), y)
  model = _model(k, tolerance=0.0, multiplier_lr=1.0)
  callback = tf_fairprune.HeldOutFairness(data, update_every=2, verbose=0)

  class Restore(k.callbacks.Callback):
    def on_train_begin(self, logs=None):
      self.start = self.model.get_weights()

    def on_train_end(self, logs=None):
      self.model.set_weights(self.start)

  with pytest.warns(UserWarning, match="another callback changed the weights"):
    model.fit(*data, batch_size=64, epochs=2, verbose=0, callbacks=[callback, Restore()])
  again = held_out_lib.measure(model, held_out_lib.batched(data, 1024))
  assert again.accuracy == pytest.approx(callback.selected["accuracy"], abs=1e-6)
  assert again.accuracy == pytest.approx(
      callback.candidates[callback.selected["index"]].accuracy, abs=1e-6)
  assert again.gaps == pytest.approx(callback.selected["gaps"], abs=1e-6)


def test_measurement_is_the_numpy_computation_over_the_whole_held_out_set(k):
  # The held-out pass runs as one traced reduction: it must add up every batch (the
  # last one partial here) exactly as a plain numpy computation over all rows does.
  x, y, g = _groups_data(n=300, flip=0.2)
  model = _model(k, tolerance=0.05)
  w = np.random.default_rng(2).uniform(0.5, 2.0, len(y)).astype("float32")
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model.fit(tf_fairprune.pack_group_data(x, g), y, batch_size=64, epochs=1, verbose=0)
  m = held_out_lib.measure(model, held_out_lib.batched(
      (tf_fairprune.pack_group_data(x, g), y, w), 128))
  logits = np.asarray(model(x, training=False)).reshape(-1)
  pred = (logits > 0).astype("float32")
  correct = (pred == y).astype("float64")
  sums = np.array([np.sum(w * correct * (g == j)) for j in (0, 1)])
  counts = np.array([np.sum(w * (g == j)) for j in (0, 1)])
  np.testing.assert_allclose(m.stats[0][0].reshape(-1), sums, rtol=1e-6)
  np.testing.assert_allclose(m.stats[0][1].reshape(-1), counts, rtol=1e-6)
  np.testing.assert_allclose(m.group_counts, counts, rtol=1e-6)
  np.testing.assert_array_equal(m.group_rows, np.bincount(g))  # Rows counted as rows.
  np.testing.assert_allclose(m.sums[0].weight_squares.reshape(-1),
                             [np.sum(w * w * (g == j)) for j in (0, 1)], rtol=1e-6)
  np.testing.assert_allclose(m.group_accuracy, sums / counts, rtol=1e-6)
  assert m.accuracy == pytest.approx(sums.sum() / counts.sum(), rel=1e-6)
  assert m.gaps["performance_gap"] == pytest.approx(np.ptp(sums / counts), abs=1e-6)
  np.testing.assert_allclose(m.class_shares, np.bincount(pred.astype(int), minlength=2) / 300)
  np.testing.assert_allclose(m.label_shares, np.bincount(y.astype(int), minlength=2) / 300)
  assert m.dense_class_shares is None and m.loss_sums is None


@pytest.mark.parametrize("steps_per_execution", [1, 3])
def test_measurements_fall_on_the_steps_the_rule_names(k, steps_per_execution):
  # The callback reads the optimizer's step counter only when a measurement may be
  # due: it must still measure exactly where reading it after every batch would.
  x, y, g = _groups_data(n=320)
  model = _model(k, tolerance=0.5)
  model.compile(optimizer=k.optimizers.SGD(0.05), steps_per_execution=steps_per_execution,
                loss=k.losses.BinaryCrossentropy(from_logits=True))
  data = (tf_fairprune.pack_group_data(x, g), y)
  seen = []  # Per epoch: the optimizer's step after every batch callback.

  class Steps(k.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
      seen.append([])

    def on_train_batch_end(self, batch, logs=None):
      seen[-1].append(int(model.optimizer.iterations.numpy()))

  class Steady(tf_fairprune.HeldOutFairness):  # Never relaxed: every 2 steps.
    _far_from_binding = staticmethod(lambda m, multipliers: False)

  callback = Steady(data, update_every=2, verbose=0, restore=False)
  for _ in range(2):  # A second fit keeps counting from its own start.
    seen.clear()
    start = int(model.optimizer.iterations.numpy())
    model.fit(*data, batch_size=64, epochs=2, verbose=0, callbacks=[callback, Steps()])
    expected, last = [], 0
    for epoch in seen:
      for step in epoch:
        if step - start - last >= 2:
          expected.append(step - start)
          last = step - start
      if epoch and epoch[-1] - start > last:
        expected.append(epoch[-1] - start)
        last = epoch[-1] - start
    assert [c["step"] for c in callback.candidates] == expected


def test_the_schedule_measures_half_as_often_while_far_from_binding():
  counter = {"steps": 0}
  schedule = held_out_lib.Schedule(2, lambda: counter["steps"])
  def run(batches):
    due = []
    for batch in range(batches):
      counter["steps"] += 1
      if schedule.batch_end(batch):
        due.append(schedule.step)
    return due
  assert run(8) == [2, 4, 6, 8]
  schedule.epoch_begin()
  schedule.relaxed = True
  assert run(8) == [12, 16]
  assert schedule.epoch_end() == 0  # Measured at the epoch's last step already.


def test_one_trace_serves_fits_with_and_without_held_out_steering(k):
  # The held-out mode is a value the step reads: switching it traces nothing again; the
  # held-out pass is kept until compile; a new optimizer after compile is the one used.
  x, y, g = _groups_data(n=128)
  model = _model(k, tolerance=0.5)
  data = (tf_fairprune.pack_group_data(x, g), y)
  callback = tf_fairprune.HeldOutFairness(data, verbose=0, restore=False)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model.fit(*data, batch_size=64, epochs=1, verbose=0, callbacks=[callback])
    step, measure = model.train_function, model.held_out_pass(callback._dataset)  # pylint: disable=protected-access
    assert not model.held_out_mode  # Back to training rates after fit.
    model.fit(*data, batch_size=64, epochs=1, verbose=0)
    model.fit(*data, batch_size=64, epochs=1, verbose=0, callbacks=[callback])
  assert model.train_function is step
  assert model.held_out_pass(callback._dataset) is measure  # pylint: disable=protected-access
  sgd = k.optimizers.SGD(0.05)
  model.compile(optimizer=sgd, loss=k.losses.BinaryCrossentropy(from_logits=True))
  assert model.train_function is None
  assert model.held_out_pass(callback._dataset) is not measure  # pylint: disable=protected-access
  model.fit(*data, batch_size=64, epochs=1, verbose=0, callbacks=[callback])
  assert int(sgd.iterations.numpy()) == 2


def _measurement(class_shares, dense_class_shares=None, label_shares=(0.5, 0.5)):
  ones = np.ones((1, 2))
  sums = intervals.GroupSums(ones, ones, ones, ones, ones)
  return held_out_lib.Measurement(
      constraints=[], sums=[], accuracy_sums=sums, loss_sums=None,
      class_shares=np.array(class_shares), dense_class_shares=dense_class_shares,
      label_shares=np.array(label_shares))


def test_a_collapsed_measurement_is_flagged():
  # A model that predicts one class for every held-out row, where the labels are
  # balanced: collapsed. Unless the dense model was constant too.
  assert _measurement([1.0, 0.0]).collapsed
  assert not _measurement([1.0, 0.0], dense_class_shares=np.array([0.995, 0.005])).collapsed
  assert not _measurement([0.6, 0.4]).collapsed


def test_collapse_in_training_backs_the_multipliers_off(k):
  x, y, g = _groups_data(n=256, flip=0.3)
  model = _model(k, tolerance=0.0, multiplier_lr=1.0)
  callback = tf_fairprune.HeldOutFairness((tf_fairprune.pack_group_data(x, g), y),
                                          update_every=1, verbose=0)
  _fit(model, (tf_fairprune.pack_group_data(x, g), y), callback)
  # Force a collapse: every output strongly negative, then one more measurement.
  layer = model.layers[-1].layer
  bias = layer.bias
  bias.assign(bias.numpy() - 1e4)
  lam = model.fairness_multipliers[0]
  lam.assign(tf.fill(lam.shape, 0.8))
  before = float(np.max(lam.numpy()))
  callback._record(callback._measure(), 1, 0)  # pylint: disable=protected-access
  assert callback.candidates[-1].collapsed and callback.candidates[-1].backed_off
  assert float(np.max(model.fairness_multipliers[0].numpy())) == pytest.approx(0.5 * before)
  i, _ = held_out_lib.select(callback.candidates)
  assert i != len(callback.candidates) - 1


def test_training_rates_warn_once_and_held_out_does_not(k):
  x, y, g = _groups_data(n=128)
  model = _model(k)
  data = tf_fairprune.pack_group_data(x, g)
  with pytest.warns(UserWarning, match="HeldOutFairness"):
    model.fit(data, y, epochs=1, verbose=0)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model.fit(data, y, epochs=1, verbose=0)  # Once per model.
  assert not [w for w in caught if "training batches" in str(w.message)]
  fresh = _model(k)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    fresh.fit(data, y, epochs=1, verbose=0, callbacks=[
        tf_fairprune.HeldOutFairness((data, y), verbose=0)])
  assert not [w for w in caught if "training batches" in str(w.message)]


def test_penalty_mode_is_unchanged_by_held_out_mode_defaults():
  c = PerformanceFairness(enforcement=Penalty(weight=2.0))
  assert isinstance(c.enforcement, Penalty) and c.enforcement.weight == 2.0
  assert not c.enforcement.uses_held_out and not c.enforcement.drives_multipliers
  # The pre-rule spelling is refused, naming the rule to pass instead.
  with pytest.raises(TypeError, match=r"enforcement=Penalty\(weight=2.0, "):
    PerformanceFairness(mode="penalty", weight=2.0)
  restored = PerformanceFairness.from_config(c.get_config())
  assert restored.enforcement == c.enforcement
  assert PerformanceFairness(enforcement="penalty").enforcement == Penalty()
  with pytest.raises(ValueError, match="Unknown enforcement rule"):
    PerformanceFairness(enforcement="hard")
  with pytest.raises(TypeError, match="enforcement=Penalty"):
    PerformanceFairness(enforcement=Penalty(), weight=1.0)
  with pytest.raises(TypeError, match="unexpected"):
    PerformanceFairness(wieght=1.0)


def test_bad_arguments_and_data_are_refused(k):
  x, y, g = _groups_data(n=64)
  packed = tf_fairprune.pack_group_data(x, g)
  with pytest.raises(ValueError, match="group ids"):
    tf_fairprune.HeldOutFairness((x, y))
  with pytest.raises(ValueError, match="update_every"):
    tf_fairprune.HeldOutFairness((packed, y), update_every=0)
  with pytest.raises(ValueError, match="max_accuracy_loss"):
    tf_fairprune.HeldOutFairness((packed, y), max_accuracy_loss=2.0)
  with pytest.raises(ValueError, match="y has 63 rows"):
    tf_fairprune.HeldOutFairness((packed, y[:-1]))
  nan = dict(packed)
  nan_key = next(key for key in nan if "inputs" in key)
  nan[nan_key] = x.copy()
  nan[nan_key][3, 2] = np.nan
  with pytest.raises(ValueError, match="NaN or inf inputs in 1 row"):
    tf_fairprune.HeldOutFairness((nan, y))
  with pytest.raises(ValueError, match="sample weights"):
    tf_fairprune.HeldOutFairness((packed, y, -np.ones_like(y)))
  plain = compile_binary(tf_fairprune.fair_prune_wrapper(make_mlp(k=k), 0.5))
  with pytest.raises(ValueError, match="fairness constraints"):
    plain.fit(packed, y, verbose=0, callbacks=[tf_fairprune.HeldOutFairness((packed, y))])
  # Labels the output cannot read: the same check, and message, as fit's, naming the
  # held-out data.
  model = _model(k, tolerance=0.5)
  with pytest.raises(ValueError) as from_fit:
    model.fit(packed, y * 2, verbose=0, epochs=1)
  with pytest.raises(ValueError) as from_held_out:
    _fit(model, (packed, y), tf_fairprune.HeldOutFairness((packed, y * 2), verbose=0))
  assert str(from_held_out.value) == (
      f"HeldOutFairness data (not the training data): {from_fit.value}")


def test_numpy_scalars_are_accepted_where_python_numbers_are(k):
  x, y, g = _groups_data(n=128)
  data = (tf_fairprune.pack_group_data(x, g), y)
  callback = tf_fairprune.HeldOutFairness(
      data, update_every=np.int64(2), max_accuracy_loss=np.float32(0.02),
      batch_size=np.int32(64), verbose=0)
  model = compile_binary(tf_fairprune.fair_prune_wrapper(
      make_mlp(k=k), np.float32(0.5), fairness=[PerformanceFairness(
          tolerance=np.float32(0.5), enforcement=Lagrangian(multiplier_lr=np.float64(0.1)))],
      num_groups=np.int64(2), mask_update_frequency=np.int32(1)))
  _fit(model, data, callback)
  assert callback.update_every == 2 and callback.candidates


def test_datasets_that_never_end_or_are_unbatched_get_a_clear_error(k):
  x, y, g = _groups_data(n=128)
  rows = tf.data.Dataset.from_tensor_slices((tf_fairprune.pack_group_data(x, g), y))
  with pytest.raises(ValueError, match="unbatched"):
    tf_fairprune.HeldOutFairness(rows)
  with pytest.raises(ValueError, match="repeats forever"):
    tf_fairprune.HeldOutFairness(rows.batch(32).repeat())
  callback = tf_fairprune.HeldOutFairness(rows.batch(32).repeat(), steps=4, verbose=0)
  model = _model(k, tolerance=0.5)
  _fit(model, (tf_fairprune.pack_group_data(x, g), y), callback)
  assert callback.final.group_rows.sum() == 128  # Four batches of 32 a pass.


def test_a_held_out_dataset_with_unreadable_rows_is_refused(k):
  x, y, g = _groups_data(n=128)
  model = _model(k, tolerance=0.5)
  bad_x = x.copy()
  bad_x[5] = np.inf
  for rows, match in (((bad_x, y), "NaN or inf outputs"), ((x, y * 3), "label")):
    ds = tf.data.Dataset.from_tensor_slices(
        (tf_fairprune.pack_group_data(rows[0], g), rows[1])).batch(32)
    with pytest.raises(ValueError, match=match):
      _fit(model, (tf_fairprune.pack_group_data(x, g), y),
           tf_fairprune.HeldOutFairness(ds, verbose=0))


def _unfair_held_out(n=512):
  """Held-out rows where group 1's labels are nearly random: a gap far beyond noise."""
  xv, yv, gv = _groups_data(n=n, seed=1, flip=0.45)
  return tf_fairprune.pack_group_data(xv, gv), yv


def test_held_out_state_survives_save_and_load(tmp_path, k):
  x, y, g = _groups_data(n=256, flip=0.3)
  model = _model(k, tolerance=0.0)
  data = (tf_fairprune.pack_group_data(x, g), y)
  callback = tf_fairprune.HeldOutFairness(_unfair_held_out(), update_every=2, verbose=0,
                                          restore=False)
  _fit(model, data, callback, epochs=3)
  assert float(np.max(model.fairness_multipliers[0].numpy())) > 0
  path = str(tmp_path / "m.keras")
  model.save(path)
  loaded = k.models.load_model(path)
  for a, b in zip(model.fairness_multipliers, loaded.fairness_multipliers):
    np.testing.assert_allclose(a.numpy(), b.numpy())
  np.testing.assert_allclose(model._objective.running_counts[0].numpy(),  # pylint: disable=protected-access
                             loaded._objective.running_counts[0].numpy())  # pylint: disable=protected-access


def test_held_out_mode_compiles_with_xla_and_matches(k):
  x, y, g = _groups_data(n=256, flip=0.3)
  data = (tf_fairprune.pack_group_data(x, g), y)
  results = []
  for jit in (False, True):
    k.utils.set_random_seed(0)
    model = _model(k, tolerance=0.0)
    model.compile(optimizer=k.optimizers.SGD(0.05, momentum=0.9),
                  loss=k.losses.BinaryCrossentropy(from_logits=True), jit_compile=jit)
    callback = tf_fairprune.HeldOutFairness(_unfair_held_out(), update_every=2, verbose=0,
                                            restore=False)
    _fit(model, data, callback, epochs=2, shuffle=False)
    results.append((model.fairness_multipliers[0].numpy(), model.get_weights()))
  np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-4)
  assert float(np.max(results[1][0])) > 0


def test_a_held_out_set_too_small_for_epsilon_is_named(k):
  x, y, g = _groups_data(n=128)
  model = _model(k, tolerance=0.02)
  # Weights of 5: a weighted count would say 5x the rows; the warning counts rows.
  data = (tf_fairprune.pack_group_data(x, g), y, np.full_like(y, 5.0))
  callback = tf_fairprune.HeldOutFairness(data, verbose=0)
  n0, n1 = np.bincount(g)
  with pytest.warns(UserWarning, match=f"cannot show ε met.*{min(n0, n1)} and {max(n0, n1)} rows"):
    model.fit(*data[:2], epochs=1, verbose=0, callbacks=[callback])
  assert callback.resolution["performance_gap"] > 0.1
  assert held_out_lib.resolvable_gap([5000, 5000]) < 0.02 < held_out_lib.resolvable_gap([64, 64])


def test_held_out_ids_out_of_range_raise_and_one_group_warns(k):
  x, y, g = _groups_data(n=128)
  model = _model(k, tolerance=0.5)
  train = tf_fairprune.pack_group_data(x, g)
  bad = dict(train)
  bad[next(key for key in bad if "group" in key)] = np.where(g == 1, 2, 0).astype("int32")
  with pytest.raises(ValueError, match="num_groups=2"):
    model.fit(train, y, epochs=1, verbose=0,
              callbacks=[tf_fairprune.HeldOutFairness((bad, y), verbose=0)])
  one = tf_fairprune.pack_group_data(x, np.zeros_like(g))
  with pytest.warns(UserWarning, match="fewer than two groups"):
    model.fit(train, y, epochs=1, verbose=0,
              callbacks=[tf_fairprune.HeldOutFairness((one, y), verbose=0)])
  assert not model.held_out_mode  # Reset after fit.


def test_a_bare_callback_steers_like_a_list_of_one(k):
  # Keras accepts `callbacks=cb`: the held-out mode, the guard and the restore must too.
  x, y, g = _groups_data(n=128)
  model = _model(k, tolerance=0.5)
  data = (tf_fairprune.pack_group_data(x, g), y)
  callback = tf_fairprune.HeldOutFairness(data, verbose=0)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model.fit(*data, batch_size=64, epochs=1, verbose=0, callbacks=callback)
  assert not [w for w in caught if "training batches" in str(w.message)]
  assert callback.selected is not None and not model.held_out_mode
  # The running rates held the held-out totals during fit; after it, training rates
  # start from none.
  assert float(np.sum(model._objective.running_counts[0].numpy())) == 0.0  # pylint: disable=protected-access


def test_held_out_inputs_a_user_may_give(k):
  x, y, g = _groups_data(n=128)
  packed = tf_fairprune.pack_group_data(x, g)
  model = _model(k, tolerance=0.5)
  # String labels: one clear line, naming the held-out data.
  with pytest.raises(ValueError, match="HeldOutFairness data .*Labels must be numbers"):
    _fit(model, (packed, y), tf_fairprune.HeldOutFairness(
        (packed, np.where(y > 0, "yes", "no")), verbose=0))
  # A dataset that repeats before a filter has no known size: counted once, refused.
  endless = tf.data.Dataset.from_tensor_slices((packed, y)).batch(32).repeat().filter(
      lambda *_: True)
  held_out = __import__("tf_fairprune.fairness.held_out.callback", fromlist=["x"])
  limit, held_out.MAX_PASS_BATCHES = held_out.MAX_PASS_BATCHES, 50
  try:
    with pytest.raises(ValueError, match="does not end within 50 batches"):
      tf_fairprune.HeldOutFairness(endless)
  finally:
    held_out.MAX_PASS_BATCHES = limit


def test_structured_masks_that_cannot_hit_the_target_still_give_candidates():
  # Channel (and block) masks on small layers land near, not at, the target sparsity:
  # once the masks are ranked at the final sparsity, every measurement is a candidate.
  import tf_keras  # pylint: disable=g-import-not-at-top
  x, y, g = _groups_data(n=256)
  model = compile_binary(tf_fairprune.fair_prune_wrapper(
      make_mlp(k=tf_keras, hidden=6), 0.4, granularity="channel",  # Measured 1/3.
      fairness=[PerformanceFairness(tolerance=0.5)]))
  data = (tf_fairprune.pack_group_data(x, g), y)
  callback = tf_fairprune.HeldOutFairness(data, update_every=1, verbose=0)
  _fit(model, data, callback, epochs=3)
  now, final, measured = model.sparsity_status()
  assert now == final and abs(measured - final) > 0.01  # Off target, by construction.
  assert len(callback.candidates) >= 3 and callback.selected["index"] is not None


def test_multi_output_labels_as_a_list():
  import tf_keras as k  # pylint: disable=g-import-not-at-top
  x, y, g = _groups_data(n=128)
  inputs = k.Input((8,))
  hidden = k.layers.Dense(8, activation="relu")(inputs)
  model = k.Model(inputs, [k.layers.Dense(1, name="a")(hidden), k.layers.Dense(1, name="b")(hidden)])
  pruned = tf_fairprune.fair_prune_wrapper(model, 0.5, fairness=[PerformanceFairness(
      tolerance=0.5)], fairness_output="a")
  pruned.compile(optimizer=k.optimizers.SGD(0.05),
                 loss=[k.losses.BinaryCrossentropy(from_logits=True)] * 2)
  packed = tf_fairprune.pack_group_data(x, g)
  callback = tf_fairprune.HeldOutFairness((packed, [y, 1 - y]), verbose=0)
  _fit(pruned, (packed, [y, 1 - y]), callback)
  logits = np.asarray(pruned.predict(x, verbose=0)[0]).reshape(-1)
  assert callback.final.accuracy == pytest.approx(np.mean((logits > 0) == y), abs=1e-6)
