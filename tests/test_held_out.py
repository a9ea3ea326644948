"""HeldOutFairness: multipliers steered on held-out rates, the selected iterate, the floor."""

import warnings

import numpy as np
import pytest

import tf_fairprune
from tf_fairprune.fairness import held_out as held_out_lib
from tf_fairprune.fairness import Lagrangian
from tf_fairprune.fairness import Penalty
from tf_fairprune.fairness import PerformanceFairness
from conftest import compile_binary, make_mlp


def _cand(accuracy, gap, collapsed=False):
  return {"accuracy": accuracy, "gaps": {"performance_gap": gap}, "collapsed": collapsed}


TOL = {"performance_gap": 0.03}


def test_select_prefers_the_most_accurate_candidate_that_meets_epsilon():
  cands = [_cand(0.86, 0.10), _cand(0.84, 0.02), _cand(0.83, 0.01), _cand(0.85, 0.05)]
  i, reason = held_out_lib.select(cands, TOL)
  assert i == 1 and "meets every ε" in reason


def test_select_never_returns_a_collapsed_candidate():
  cands = [_cand(0.86, 0.10), _cand(0.70, 0.0, collapsed=True)]
  i, reason = held_out_lib.select(cands, TOL)
  assert i == 0 and "smallest held-out violation" in reason
  assert held_out_lib.select([_cand(0.7, 0.0, True)], TOL)[0] is None


def test_select_respects_the_accuracy_budget():
  cands = [_cand(0.86, 0.10), _cand(0.80, 0.02), _cand(0.845, 0.05)]
  assert held_out_lib.select(cands, TOL)[0] == 1  # No budget: meets ε at -6 points.
  i, reason = held_out_lib.select(cands, TOL, max_accuracy_loss=0.02)
  assert i == 2 and "within the accuracy budget" in reason  # Smallest violation within 2.


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


def test_multipliers_keep_acting_when_the_training_gap_is_met_but_the_held_out_gap_is_not(k):
  # Training rows: no gap at all (no noise); held-out rows: group 1's labels are noisy,
  # so the held-out gap stays large. Training rates would release the multiplier; the
  # held-out rates keep it pushing.
  x, y, g = _groups_data(n=256, flip=0.0)
  xv, yv, gv = _groups_data(n=256, seed=1, flip=0.4)
  model = _model(k, tolerance=0.02, damping=0.0, multiplier_lr=0.5)
  train = tf_fairprune.pack_group_data(x, g)
  callback = tf_fairprune.HeldOutFairness((tf_fairprune.pack_group_data(xv, gv), yv),
                                          update_every=2, verbose=0, restore=False)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # ε is out of reach here: that warning is expected.
    model.fit(train, y, batch_size=64, epochs=2, verbose=0, callbacks=[callback])
  held_out_gap = callback.last.gaps["performance_gap"]
  assert held_out_gap > 0.1
  lam = [c["multipliers"][0] for c in callback.candidates]
  assert all(b >= a for a, b in zip(lam, lam[1:])) and lam[-1] > 0.1  # Rises all run.
  # The same model trained on training rates alone: the training gap is within noise of
  # zero, so its multiplier stays near zero.
  plain = _model(k, tolerance=0.02, damping=0.0, multiplier_lr=0.5)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    plain.fit(train, y, batch_size=64, epochs=2, verbose=0)
  assert float(np.max(plain.fairness_multipliers[0].numpy())) < float(
      np.max(model.fairness_multipliers[0].numpy()))


def test_the_returned_model_is_the_selected_iterate(k):
  x, y, g = _groups_data(n=256, flip=0.2)
  xv, yv, gv = _groups_data(n=256, seed=1, flip=0.2)
  model = _model(k, tolerance=0.05)
  held = (tf_fairprune.pack_group_data(xv, gv), yv)
  callback = tf_fairprune.HeldOutFairness(held, update_every=1, verbose=0)
  model.fit(tf_fairprune.pack_group_data(x, g), y, batch_size=64, epochs=3, verbose=0,
            callbacks=[callback])
  chosen = callback.selected
  assert chosen["index"] < len(callback.candidates)
  again = held_out_lib.measure(model, held_out_lib._batches(held, 1024))  # pylint: disable=protected-access
  assert again.accuracy == pytest.approx(chosen["accuracy"], abs=1e-6)
  assert again.gaps["performance_gap"] == pytest.approx(chosen["gaps"]["performance_gap"],
                                                        abs=1e-6)
  i, _ = held_out_lib.select(callback.candidates, {"performance_gap": 0.05})
  assert i == chosen["index"]
  # restore=False keeps the last iterate instead.
  last = _model(k, tolerance=0.05)
  keep = tf_fairprune.HeldOutFairness(held, update_every=1, verbose=0, restore=False)
  last.fit(tf_fairprune.pack_group_data(x, g), y, batch_size=64, epochs=3, verbose=0,
           callbacks=[keep])
  final = held_out_lib.measure(last, held_out_lib._batches(held, 1024))  # pylint: disable=protected-access
  assert final.accuracy == pytest.approx(keep.candidates[-1]["accuracy"], abs=1e-6)


def test_measurement_is_the_numpy_computation_over_the_whole_held_out_set(k):
  # The held-out pass runs as one traced reduction: it must add up every batch (the
  # last one partial here) exactly as a plain numpy computation over all rows does.
  x, y, g = _groups_data(n=300, flip=0.2)
  model = _model(k, tolerance=0.05)
  w = np.random.default_rng(2).uniform(0.5, 2.0, len(y)).astype("float32")
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model.fit(tf_fairprune.pack_group_data(x, g), y, batch_size=64, epochs=1, verbose=0)
  m = held_out_lib.measure(model, held_out_lib._batches(  # pylint: disable=protected-access
      (tf_fairprune.pack_group_data(x, g), y, w), 128))
  logits = np.asarray(model(x, training=False)).reshape(-1)
  pred = (logits > 0).astype("float32")
  correct = (pred == y).astype("float64")
  sums = np.array([np.sum(w * correct * (g == j)) for j in (0, 1)])
  counts = np.array([np.sum(w * (g == j)) for j in (0, 1)])
  np.testing.assert_allclose(m.stats[0][0].reshape(-1), sums, rtol=1e-6)
  np.testing.assert_allclose(m.stats[0][1].reshape(-1), counts, rtol=1e-6)
  np.testing.assert_allclose(m.group_counts, counts, rtol=1e-6)
  np.testing.assert_allclose(m.group_accuracy, sums / counts, rtol=1e-6)
  assert m.accuracy == pytest.approx(sums.sum() / counts.sum(), rel=1e-6)
  assert m.gaps["performance_gap"] == pytest.approx(np.ptp(sums / counts), abs=1e-6)
  np.testing.assert_allclose(m.class_shares, np.bincount(pred.astype(int), minlength=2) / 300)
  np.testing.assert_allclose(m.label_shares, np.bincount(y.astype(int), minlength=2) / 300)
  assert m.dense_class_shares is None


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

  callback = tf_fairprune.HeldOutFairness(data, update_every=2, verbose=0, restore=False)
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


def test_the_held_out_step_is_kept_across_fits_until_compile_or_a_new_reference(k):
  x, y, g = _groups_data(n=128)
  model = _model(k, tolerance=0.5)
  data = (tf_fairprune.pack_group_data(x, g), y)
  fit = lambda: model.fit(*data, batch_size=64, epochs=1, verbose=0, callbacks=[
      tf_fairprune.HeldOutFairness(data, verbose=0, restore=False)])
  fit()
  held = model.__dict__["_other_mode_step"][1]  # Kept while the mode is training rates.
  generation = model.__dict__["_trace_generation"]
  fit()
  assert model.__dict__["_other_mode_step"][1] is held  # Reused, not traced again,
  assert model.__dict__["_trace_generation"] == generation  # nor the callback's functions.
  # A new optimizer (and loss) must be used: Keras 3 skips `train_function = None`
  # when it is None already, which once left the old step (and optimizer) in place.
  sgd = k.optimizers.SGD(0.05)
  model.compile(optimizer=sgd, loss=k.losses.BinaryCrossentropy(from_logits=True))
  assert model.__dict__["_other_mode_step"] is None
  fit()
  assert int(sgd.iterations.numpy()) == 2
  model.set_reference_model(None)
  assert model.__dict__["_other_mode_step"] is None and model.train_function is None


def test_a_collapsing_run_is_flagged_backs_off_and_is_not_returned():
  # A model that predicts one class for every held-out row, where the labels are
  # balanced: collapsed. Every candidate collapses -> nothing is selected, a warning.
  m = held_out_lib.Measurement(stats=[], gaps={}, accuracy=0.5, group_accuracy=np.ones(2),
                               group_counts=np.ones(2), class_shares=np.array([1.0, 0.0]),
                               dense_class_shares=None, label_shares=np.array([0.5, 0.5]))
  assert m.collapsed
  m.dense_class_shares = np.array([0.995, 0.005])  # The dense model was constant too.
  assert not m.collapsed


def test_collapse_in_training_backs_the_multipliers_off(k):
  x, y, g = _groups_data(n=256, flip=0.3)
  model = _model(k, tolerance=0.0, multiplier_lr=1.0)
  callback = tf_fairprune.HeldOutFairness((tf_fairprune.pack_group_data(x, g), y),
                                          update_every=1, verbose=0)
  model.fit(tf_fairprune.pack_group_data(x, g), y, batch_size=64, epochs=1, verbose=0,
            callbacks=[callback])
  # Force a collapse: every output strongly negative, then one more measurement.
  layer = model.layers[-1].layer
  bias = layer.bias
  bias.assign(bias.numpy() - 1e4)
  before = float(np.max(model.fairness_multipliers[0].numpy()))
  callback._record(callback._measure(), 1, 0)  # pylint: disable=protected-access
  assert callback.candidates[-1]["collapsed"] and callback.candidates[-1]["backed_off"]
  assert float(np.max(model.fairness_multipliers[0].numpy())) == pytest.approx(0.5 * before)
  i, _ = held_out_lib.select(callback.candidates, {"performance_gap": 0.0})
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
  assert c.mode == "penalty" and c.weight == 2.0
  same = PerformanceFairness(mode="penalty", weight=2.0)
  assert same.enforcement == c.enforcement
  restored = PerformanceFairness.from_config(c.get_config())
  assert restored.enforcement == c.enforcement
  assert PerformanceFairness(enforcement="penalty").enforcement == Penalty()
  with pytest.raises(ValueError, match="Unknown enforcement rule"):
    PerformanceFairness(enforcement="hard")
  with pytest.raises(ValueError, match="not both"):
    PerformanceFairness(enforcement=Penalty(), weight=1.0)
  with pytest.raises(TypeError, match="unexpected"):
    PerformanceFairness(wieght=1.0)


def test_bad_arguments_and_data_are_refused(k):
  x, y, g = _groups_data(n=64)
  with pytest.raises(ValueError, match="group ids"):
    tf_fairprune.HeldOutFairness((x, y))
  with pytest.raises(ValueError, match="update_every"):
    tf_fairprune.HeldOutFairness((tf_fairprune.pack_group_data(x, g), y), update_every=0)
  with pytest.raises(ValueError, match="max_accuracy_loss"):
    tf_fairprune.HeldOutFairness((tf_fairprune.pack_group_data(x, g), y),
                                 max_accuracy_loss=2.0)
  plain = compile_binary(tf_fairprune.fair_prune_wrapper(make_mlp(k=k), 0.5))
  with pytest.raises(ValueError, match="fairness constraints"):
    plain.fit(tf_fairprune.pack_group_data(x, g), y, verbose=0, callbacks=[
        tf_fairprune.HeldOutFairness((tf_fairprune.pack_group_data(x, g), y))])


def test_held_out_state_survives_save_and_load(tmp_path, k):
  x, y, g = _groups_data(n=256, flip=0.3)
  model = _model(k, tolerance=0.0)
  data = (tf_fairprune.pack_group_data(x, g), y)
  callback = tf_fairprune.HeldOutFairness(data, update_every=2, verbose=0, restore=False)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model.fit(*data, batch_size=64, epochs=1, verbose=0, callbacks=[callback])
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
    callback = tf_fairprune.HeldOutFairness(data, update_every=2, verbose=0, restore=False)
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      model.fit(*data, batch_size=64, epochs=2, verbose=0, shuffle=False,
                callbacks=[callback])
    results.append((model.fairness_multipliers[0].numpy(), model.get_weights()))
  np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-4)
  assert float(np.max(results[1][0])) > 0


def test_a_held_out_set_too_small_for_epsilon_is_named(k):
  x, y, g = _groups_data(n=128)
  model = _model(k, tolerance=0.02)
  data = (tf_fairprune.pack_group_data(x, g), y)
  callback = tf_fairprune.HeldOutFairness(data, verbose=0)
  with pytest.warns(UserWarning, match="cannot tell a gap of ε from zero"):
    model.fit(*data, epochs=1, verbose=0, callbacks=[callback])
  n0, n1 = np.bincount(g)
  assert callback.resolvable_gap == pytest.approx(1.96 * np.sqrt(0.25 / n0 + 0.25 / n1))
  assert held_out_lib.resolvable_gap([5000, 5000]) < 0.02 < held_out_lib.resolvable_gap([64, 64])


def test_held_out_ids_out_of_range_raise_and_one_group_warns(k):
  x, y, g = _groups_data(n=128)
  model = _model(k, tolerance=0.5)
  train = tf_fairprune.pack_group_data(x, g)
  bad = dict(train)
  bad[next(key for key in bad if "group" in key)] = np.where(g == 1, 2, 0).astype("int32")
  with pytest.raises(ValueError, match="outside"):
    model.fit(train, y, epochs=1, verbose=0,
              callbacks=[tf_fairprune.HeldOutFairness((bad, y), verbose=0)])
  one = tf_fairprune.pack_group_data(x, np.zeros_like(g))
  with pytest.warns(UserWarning, match="fewer than two groups"):
    model.fit(train, y, epochs=1, verbose=0,
              callbacks=[tf_fairprune.HeldOutFairness((one, y), verbose=0)])
  assert not model._objective.held_out  # pylint: disable=protected-access  # Reset after fit.
