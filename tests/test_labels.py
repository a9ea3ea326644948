"""Label conventions the per-group statistics read: hinge losses (-1/1, decision at 0)
and labels a binary model cannot read (e.g. {0, 2})."""

import numpy as np
import pytest
import tensorflow as tf

import tf_fairprune
from tf_fairprune.fairness import PerformanceFairness, evaluate_fairness
from tf_fairprune.fairness.audit import dense_correctness
from conftest import make_data, make_mlp


def _data(n=256):
  x, y = make_data(n)
  groups = (np.arange(n) % 3 == 0).astype("int32")
  return x, y, groups


@pytest.mark.parametrize("loss", ["squared_hinge", "Hinge"])
def test_hinge_losses_group_accuracy_matches_numpy(k, loss):
  x, y01, groups = _data()
  y = 2.0 * y01 - 1.0  # Hinge labels -1/1.
  model = tf_fairprune.fair_prune_wrapper(make_mlp(k=k), target_sparsity=0.5,
                                          fairness=[PerformanceFairness()])
  loss_obj = k.losses.Hinge() if loss == "Hinge" else loss
  model.compile(optimizer=k.optimizers.SGD(0.05, momentum=0.9), loss=loss_obj)
  packed = tf_fairprune.pack_group_data(x, groups)
  model.fit(packed, y, batch_size=64, epochs=3, verbose=0)
  logs = model.evaluate(packed, y, batch_size=64, verbose=0, return_dict=True)
  scores = model.predict(x, batch_size=64, verbose=0).reshape(-1)
  correct = (scores > 0) == (y > 0)  # The hinge convention: decision at 0.
  expected = [correct[groups == g].mean() for g in (0, 1)]
  assert min(expected) > 0.6  # Trained: a wrong reading would be far off.
  np.testing.assert_allclose([logs["accuracy_g0"], logs["accuracy_g1"]], expected, atol=1e-6)
  gap = abs(expected[0] - expected[1])
  np.testing.assert_allclose(logs[PerformanceFairness().name], gap, atol=1e-6)
  report = evaluate_fairness(model, (packed, y))
  np.testing.assert_allclose([g["accuracy"] for g in report.groups], expected, atol=1e-6)
  np.testing.assert_array_equal(dense_correctness(model, x, y), correct.astype("float32"))


def test_binary_labels_outside_0_1_are_refused_at_fit_for_arrays(k):
  x, y, groups = _data(64)
  model = tf_fairprune.fair_prune_wrapper(make_mlp(k=k), target_sparsity=0.5)
  model.compile(optimizer="sgd", loss=k.losses.BinaryCrossentropy(from_logits=True))
  packed = tf_fairprune.pack_group_data(x, groups)
  before = [w.copy() for w in model.get_weights()]
  with pytest.raises(ValueError, match=r"Labels \[2.0\].*labels must be 0 and 1"):
    model.fit(packed, 2.0 * y, batch_size=32, epochs=1, verbose=0)
  with pytest.raises(ValueError, match=r"Labels \[2.0\]"):
    model.evaluate(packed, 2.0 * y, verbose=0)
  for a, b in zip(before, model.get_weights()):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_binary_labels_outside_0_1_in_a_dataset_raise_in_graph(k, jit_compile):
  x, y, groups = _data(64)
  model = tf_fairprune.fair_prune_wrapper(make_mlp(k=k), target_sparsity=0.5)
  model.compile(optimizer="sgd", loss=k.losses.BinaryCrossentropy(from_logits=True),
                jit_compile=jit_compile)
  ds = tf.data.Dataset.from_tensor_slices(
      (tf_fairprune.pack_group_data(x, groups), 2.0 * y)).batch(16)
  with pytest.raises(ValueError, match="labels 0 and 1"):
    model.fit(ds, epochs=2, verbose=0)
  with pytest.raises(ValueError, match="in evaluation batch 0"):
    model.evaluate(ds, verbose=0)
  # Proper labels train afterwards.
  ok = tf.data.Dataset.from_tensor_slices(
      (tf_fairprune.pack_group_data(x, groups), y)).batch(16)
  history = model.fit(ok, epochs=1, verbose=0)
  assert np.isfinite(history.history["loss"][-1])
