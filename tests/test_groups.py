"""Group ids through fit / evaluate / tf.data; validation; intersectional groups."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tf_fairprune
from tf_fairprune import groups as groups_lib
from tf_fairprune.fairness import PerformanceFairness
from conftest import FLAVOURS, compile_binary, make_data, make_mlp


def _on_both(names, values, keras3_values):
  """Parameters for the `k` fixture plus `names`: every value on tf_keras, on Keras 3 only
  `keras3_values` (the cases that go through its own fit/evaluate path; the rest would
  repeat flavour-independent checks at the cost of another trace)."""
  cases = [(flavour,) + (v if isinstance(v, tuple) else (v,))
           for flavour in FLAVOURS
           for v in (values if flavour == "tf_keras" else keras3_values)]
  return pytest.mark.parametrize(("k",) + tuple(names), cases, indirect=["k"])


def _fair_model(k=keras, **kwargs):
  return compile_binary(tf_fairprune.fair_prune_wrapper(
      make_mlp(k=k), 0.5, fairness=[PerformanceFairness()], **kwargs))


def test_pack_and_unpack_arrays_and_dicts():
  x = np.zeros((4, 3), "float32")
  packed = tf_fairprune.pack_group_data(x, [0, 1, 1, 0])
  inputs, groups, dense = groups_lib.unpack_group_data(packed)
  assert inputs is x and dense is None
  np.testing.assert_array_equal(groups, [0, 1, 1, 0])
  assert groups.dtype == np.int32
  packed = tf_fairprune.pack_group_data({"a": x, "b": x}, np.array([0.0, 1.0, 1.0, 0.0]),
                                        dense_correct=[1, 0, 1, 1])
  inputs, groups, dense = groups_lib.unpack_group_data(packed)
  assert set(inputs) == {"a", "b"} and dense.correct_values.dtype == np.float32
  packed = tf_fairprune.pack_group_data(x, [0, 1, 1, 0], dense_outputs=np.ones((4, 1)))
  _, _, dense = groups_lib.unpack_group_data(packed)
  assert dense.outputs.shape == (4, 1) and dense.correct_values is None
  with pytest.raises(ValueError, match="dense_outputs has 3 rows"):
    tf_fairprune.pack_group_data(x, [0, 1, 1, 0], dense_outputs=np.ones((3, 1)))
  assert groups_lib.unpack_group_data(x)[1] is None


@pytest.mark.parametrize("groups,match", [
    (None, "missing"),
    ([0, 1, 2.5, 0], "integer"),
    ([0, np.nan, 1, 0], "NaN"),
    ([0, -1, 1, 0], "non-negative"),
    ([0, 1, 5, 0], "num_groups=3"),
    ([0, 1, 1], "4 examples"),
    (["a", "b", "c", "d"], "integer"),
])
def test_bad_group_ids(groups, match):
  with pytest.raises(ValueError, match=match):
    tf_fairprune.pack_group_data(np.zeros((4, 2)), groups, num_groups=3)


def test_packing_twice_is_an_error():
  packed = tf_fairprune.pack_group_data(np.zeros((2, 2)), [0, 1])
  with pytest.raises(ValueError, match="already packed"):
    tf_fairprune.pack_group_data(packed, [0, 1])


def test_fit_evaluate_with_sample_weights_and_validation_split(k):
  x, y = make_data()
  g = (x[:, 2] > 0).astype(int)
  model = _fair_model(k)
  history = model.fit(tf_fairprune.pack_group_data(x, g), y, sample_weight=np.ones(len(x)),
                      batch_size=32, epochs=1, validation_split=0.25, verbose=0)
  for key in ("accuracy_g0", "accuracy_g1", "performance_gap", "val_performance_gap"):
    assert key in history.history
  # Weight 0 on group 1: its accuracy is undefined (no weight) and the gap is 0.
  logs = model.evaluate(tf_fairprune.pack_group_data(x, g), y, sample_weight=(g == 0) * 1.0,
                        verbose=0, return_dict=True)
  assert np.isnan(logs["accuracy_g1"]) and logs["performance_gap"] == 0.0
  assert model.predict(x, verbose=0).shape == (len(x), 1)


def test_many_groups_log_the_worst_and_best_group_not_one_key_each(k):
  # 40 groups: 40 log keys flooded the progress bar and History and cost more per step
  # than the group sums themselves (benchmarks/benchmark_groups.py).
  x, y = make_data(n=160)
  g = np.arange(160) % 40
  g[g == 39] = 38  # Group 39 absent.
  model = _fair_model(k, num_groups=40)
  logs = model.evaluate(tf_fairprune.pack_group_data(x, g), y, batch_size=32, verbose=0,
                        return_dict=True)
  assert not any(key.startswith("accuracy_g") for key in logs)
  logits = model.predict(x, verbose=0).reshape(-1)
  correct = ((logits > 0) == (y > 0.5))
  rates = [correct[g == i].mean() for i in range(39)]
  assert logs["accuracy_worst_group"] == pytest.approx(min(rates), abs=1e-6)
  assert logs["accuracy_best_group"] == pytest.approx(max(rates), abs=1e-6)


def test_group_accuracy_is_accumulated_over_the_epoch_not_averaged_per_batch(k):
  x, y = make_data(n=96)
  g = np.zeros(96, int)
  g[:4] = 1  # Group 1 only in the first batch.
  model = _fair_model(k)
  logs = model.evaluate(tf_fairprune.pack_group_data(x, g), y, batch_size=32, verbose=0,
                        return_dict=True)
  logits = model.predict(x, verbose=0).reshape(-1)
  correct = ((logits > 0) == (y > 0.5))
  assert logs["accuracy_g0"] == pytest.approx(correct[g == 0].mean(), abs=1e-6)
  assert logs["accuracy_g1"] == pytest.approx(correct[g == 1].mean(), abs=1e-6)
  assert logs["performance_gap"] == pytest.approx(
      abs(correct[g == 0].mean() - correct[g == 1].mean()), abs=1e-6)


@_on_both(["how"], ["dataset", "callable", "feature"], ["dataset", "feature"])
def test_tf_data_pipelines(k, how):
  x, y = make_data(n=128)
  g = (x[:, 2] > 0).astype("int32")
  if how == "feature":
    inp = {"features": x, "group": g}
    model_in = k.Input((8,), name="features")
    out = k.layers.Dense(1)(k.layers.Dense(16, activation="relu")(model_in))
    model = compile_binary(tf_fairprune.fair_prune_wrapper(
        k.Model({"features": model_in}, out), 0.5, fairness=[PerformanceFairness()]))
    ds = tf.data.Dataset.from_tensor_slices((inp, y)).batch(32)
    ds = tf_fairprune.pack_group_data(ds, "group").map(
        lambda x, y: ({n: v for n, v in x.items() if n != "group"}, y))
  else:
    model = _fair_model(k)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    groups = (tf.data.Dataset.from_tensor_slices(g).batch(32) if how == "dataset"
              else (lambda x, y: tf.cast(x[:, 2] > 0, tf.int32)))
    ds = tf_fairprune.pack_group_data(ds, groups)
  history = model.fit(ds, epochs=1, verbose=0)
  assert np.isfinite(history.history["performance_gap"][0])
  assert "accuracy_g1" in model.evaluate(ds, verbose=0, return_dict=True)


@_on_both(["jit_compile", "bad_id"], [(j, b) for j in (False, True) for b in (7, -1, 2**31 + 1)],
          [(False, 7), (True, 7)])
def test_out_of_range_ids_in_a_pipeline_fail_the_same_way_on_every_path(k, jit_compile, bad_id):
  x, y = make_data(n=64)
  ids = np.zeros(64, np.int64)
  ids[40] = bad_id  # In the second batch.
  ds = tf_fairprune.pack_group_data(tf.data.Dataset.from_tensor_slices((x, y)).batch(32),
                                    tf.data.Dataset.from_tensor_slices(ids).batch(32))
  model = compile_binary(tf_fairprune.fair_prune_wrapper(
      make_mlp(k=k), 0.5, fairness=[PerformanceFairness()]), jit_compile=jit_compile)
  with pytest.raises(ValueError, match=r"outside \[0, num_groups=2\) at batch 1 of epoch 0"):
    model.fit(ds, epochs=1, verbose=0)
  assert int(model.optimizer.iterations) == 1  # The bad batch changed nothing.
  with pytest.raises(ValueError, match="in evaluation batch 1"):
    model.evaluate(ds, verbose=0)


@_on_both(["ids", "match"], [([0.0, 0.5], "non-integer"), ([0.0, np.nan], "NaN")],
          [([0.0, 0.5], "non-integer")])
def test_float_ids_in_a_pipeline_are_never_truncated(k, ids, match):
  x, y = make_data(n=2)
  ds = tf_fairprune.pack_group_data(tf.data.Dataset.from_tensor_slices((x, y)).batch(2),
                                    tf.data.Dataset.from_tensor_slices(np.array(ids)).batch(2))
  with pytest.raises(tf.errors.InvalidArgumentError, match=match):
    _fair_model(k).fit(ds, epochs=1, verbose=0)


def test_numpy_ids_are_checked_before_training_and_one_group_warns(k):
  x, y = make_data(n=64)
  with pytest.raises(ValueError, match="2147483649"):
    tf_fairprune.pack_group_data(x, np.full(64, 2**31 + 1, np.int64))
  model = _fair_model(k)
  with pytest.raises(ValueError, match="num_groups=2"):
    model.fit(tf_fairprune.pack_group_data(x, np.full(64, 3)), y, epochs=1, verbose=0)
  assert int(model.optimizer.iterations) == 0
  with pytest.warns(UserWarning, match="one group only"):
    model.fit(tf_fairprune.pack_group_data(x, np.zeros(64, int)), y, epochs=1, verbose=0)


def test_fairness_without_group_ids_is_an_error(k):
  x, y = make_data(n=64)
  with pytest.raises(ValueError, match="pack_group_data"):
    _fair_model(k).fit(x, y, epochs=1, verbose=0)


def test_batch_without_a_group_gives_no_nan(k):
  x, y = make_data(n=64)
  model = _fair_model(k)
  history = model.fit(tf_fairprune.pack_group_data(x, np.zeros(64, int)), y, batch_size=32,
                      epochs=2, verbose=0)
  assert np.all(np.isfinite(history.history["loss"]))
  assert history.history["performance_gap"] == [0.0, 0.0]
  assert not model.stopped_on_non_finite_loss


def test_intersectional_groups():
  sex = np.array([0, 1, 0, 1, 1])
  race = np.array([2, 2, 0, 2, 0])
  ids, names = tf_fairprune.intersectional_groups(sex, race)
  assert names == [(0, 0), (0, 2), (1, 0), (1, 2)]
  np.testing.assert_array_equal(ids, [1, 3, 0, 3, 2])
  with pytest.raises(ValueError, match="same length"):
    tf_fairprune.intersectional_groups(sex, race[:3])
  with pytest.raises(ValueError, match="at least one"):
    tf_fairprune.intersectional_groups()
