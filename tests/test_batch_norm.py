"""recalibrate_batch_norm: exact running averages of what the pruned net feeds each layer."""

import numpy as np
import pytest
import tensorflow as tf

import tf_fairprune


def _model(k):
  return k.Sequential([k.Input((6,)), k.layers.Dense(8, name="d"),
                       k.layers.BatchNormalization(name="bn"), k.layers.ReLU(),
                       k.layers.Dense(1, name="out")])


X = (3 * np.random.default_rng(0).standard_normal((96, 6)) + 1).astype("float32")


def _expected(dense_layer, batch_size):
  h = dense_layer(X).numpy()
  batches = [h[i:i + batch_size] for i in range(0, len(h), batch_size)]
  return np.mean([b.mean(0) for b in batches], 0), np.mean([b.var(0) for b in batches], 0)


@pytest.mark.parametrize("form", ["array", "packed", "tuple", "dataset"])
def test_statistics_become_the_average_over_the_data(k, form):
  model = _model(k)
  pruned = tf_fairprune.fair_prune_wrapper(model, 0.5)
  data = {"array": X, "packed": tf_fairprune.pack_group_data(X, np.arange(96) % 2),
          "tuple": (X, np.zeros(96)),
          "dataset": tf.data.Dataset.from_tensor_slices((X, np.zeros(96))).batch(32)}[form]
  assert tf_fairprune.recalibrate_batch_norm(pruned, data, batch_size=32) == 3
  bn = [l for l in pruned.layers if l.name == "bn"][0]
  mean, var = _expected([l for l in pruned.layers if "d" == getattr(l, "layer", l).name][0],
                        32)
  np.testing.assert_allclose(bn.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(bn.moving_variance.numpy(), var, rtol=1e-4, atol=1e-4)
  assert bn.momentum == pytest.approx(0.99)  # Restored.
  # Nothing but the statistics moved: the masks and weights are as they were.
  assert float(pruned.measured_sparsity()) == pytest.approx(0.5)


def test_a_pruned_net_predicts_from_its_own_statistics_after_recalibration(k):
  model = _model(k)
  model.get_layer("bn").moving_mean.assign(np.full(8, 50.0, "float32"))  # Stale statistics.
  stripped = tf_fairprune.strip_fair_pruning(tf_fairprune.fair_prune_wrapper(model, 0.5))
  stale = stripped.predict(X, verbose=0)
  tf_fairprune.recalibrate_batch_norm(stripped, X, batch_size=96, steps=1)
  fresh = stripped.predict(X, verbose=0)
  # One batch of all rows: inference now normalises exactly as training mode does.
  np.testing.assert_allclose(fresh, stripped(X, training=True).numpy(), atol=1e-4)
  assert np.abs(fresh - stale).max() > 1e-2


def test_bad_calls_get_one_line(k):
  plain = k.Sequential([k.Input((6,)), k.layers.Dense(1)])
  with pytest.raises(ValueError, match="no BatchNormalization"):
    tf_fairprune.recalibrate_batch_norm(plain, X)
  with pytest.raises(ValueError, match="holds no batch"):
    tf_fairprune.recalibrate_batch_norm(_model(k), X[:0])
  with pytest.raises(ValueError, match="batch_size"):
    tf_fairprune.recalibrate_batch_norm(_model(k), X, batch_size=0)
