"""Masks: exact k, deterministic ties, straight-through gradient, XLA."""

import numpy as np
import pytest
import tensorflow as tf

from tf_fairprune import masking


@pytest.mark.parametrize("method", masking.METHODS)
@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_exact_keep_count(sparsity, scope, method):
  rng = np.random.default_rng(1)
  scores = [tf.constant(rng.standard_normal(s).astype("float32")) for s in [(7, 5), (13,), (3, 3, 4)]]
  masks = masking.topk_masks(scores, sparsity, scope=scope, method=method)
  sizes = [int(np.prod(s.shape)) for s in scores]
  kept = [int(m.numpy().sum()) for m in masks]
  if scope == "global":
    assert sum(kept) == int(round((1 - sparsity) * sum(sizes)))
  else:
    assert kept == [int(round((1 - sparsity) * n)) for n in sizes]
  for m, s in zip(masks, scores):
    assert m.shape == s.shape
    assert set(np.unique(m.numpy())) <= {0.0, 1.0}


def test_global_mask_keeps_largest_magnitudes():
  scores = [tf.constant([[0.1, -5.0], [0.3, 0.2]]), tf.constant([4.0, -0.05, 0.25])]
  masks = masking.topk_masks(scores, 4 / 7)  # keep 3 of 7
  np.testing.assert_array_equal(masks[0].numpy(), [[0, 1], [1, 0]])
  np.testing.assert_array_equal(masks[1].numpy(), [1, 0, 0])


@pytest.mark.parametrize("method", masking.METHODS)
def test_ties_are_broken_by_position_and_repeatably(method):
  scores = [tf.ones((2, 3)), tf.ones((4,))]
  first = masking.topk_masks(scores, 0.5, method=method)
  again = masking.topk_masks(scores, 0.5, method=method)
  # 10 equal scores, keep 5: the first five in flattened model order.
  np.testing.assert_array_equal(first[0].numpy(), np.ones((2, 3)) * [[1, 1, 1], [1, 1, 0]])
  np.testing.assert_array_equal(first[1].numpy(), np.zeros(4))
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_all_methods_select_identical_masks():
  rng = np.random.default_rng(7)
  for trial in range(60):
    n = int(rng.integers(1, 400))
    values = rng.standard_normal(n).astype("float32") * 10.0 ** rng.integers(-6, 4)
    if trial % 3 == 0:
      values = np.round(values, 1)  # Many ties.
    if trial % 10 == 0:
      values[:] = 0.0
    sparsity = float(rng.uniform(0.0, 0.999))
    a = masking.topk_masks([tf.constant(values)], sparsity, method="sort")[0]
    for method in ("histogram", "bisect"):
      b = masking.topk_masks([tf.constant(values)], sparsity, method=method)[0]
      np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=f"{method}, trial {trial}")


def test_keep_count_rounds_and_is_exact_for_large_sizes():
  assert int(masking.keep_count(0.9, 352)) == 35  # 35.2 -> 35
  assert int(masking.keep_count(0.0, 10)) == 10
  assert int(masking.keep_count(0.999, 123_456_789)) == 123_457


def test_straight_through_gradient_is_identity():
  scores = tf.Variable([0.5, -1.0, 2.0])
  mask = tf.constant([1.0, 0.0, 1.0])
  with tf.GradientTape() as tape:
    out = masking.straight_through(tf.convert_to_tensor(scores), mask)
    loss = tf.reduce_sum(out * tf.constant([3.0, 4.0, 5.0]))
  np.testing.assert_array_equal(out.numpy(), mask.numpy())
  np.testing.assert_array_equal(tape.gradient(loss, scores).numpy(), [3.0, 4.0, 5.0])


def test_bad_arguments():
  with pytest.raises(ValueError, match="scope"):
    masking.topk_masks([tf.ones(3)], 0.5, scope="channel-ish")
  with pytest.raises(ValueError, match="at least one"):
    masking.topk_masks([], 0.5)
  with pytest.raises(ValueError, match="method"):
    masking.topk_masks([tf.ones(3)], 0.5, method="magic")


def test_topk_compiles_under_xla_with_a_dynamic_sparsity():
  scores = [tf.constant(np.random.default_rng(0).standard_normal((50, 20)).astype("float32"))]
  fn = tf.function(lambda s: masking.topk_masks(scores, s, method="bisect")[0], jit_compile=True)
  for sparsity in (0.3, 0.8):
    np.testing.assert_array_equal(fn(tf.constant(sparsity)).numpy(),
                                  masking.topk_masks(scores, sparsity)[0].numpy())


def _always_floored(scores, sparsity, floor):
  """The floored global ranking computed in full (the definition the shortcut keeps)."""
  flats = [tf.reshape(tf.abs(s), [-1]) for s in scores]
  sizes = [int(f.shape[0]) for f in flats]
  floors = masking.layer_floors(sizes, sparsity, floor)
  raised = [tf.where(masking._sort_mask(f, n) > 0, float("inf"), f)  # pylint: disable=protected-access
            for f, n in zip(flats, floors)]
  joined = masking._sort_mask(tf.concat(raised, 0), masking.keep_count(sparsity, sum(sizes)))  # pylint: disable=protected-access
  return [tf.reshape(m, s.shape) for m, s in zip(tf.split(joined, sizes), scores)]


@pytest.mark.parametrize("scale", [1.0, 1e-3])  # 1e-3: the floor binds on the small tensor.
@pytest.mark.parametrize("ties", [False, True])
def test_floor_shortcut_gives_the_floored_ranking(scale, ties):
  rng = np.random.default_rng(3)
  raw = [rng.random((40, 30)), rng.random((30, 7)) * scale, rng.random((7,))]
  if ties:  # Few distinct values: ties at the threshold, inside and across tensors.
    raw = [np.round(r * 8) / 8 * (scale if i == 1 else 1.0) for i, r in enumerate(raw)]
  scores = [tf.constant(r, tf.float32) for r in raw]
  for sparsity in (0.5, 0.9, 0.97):
    expected = _always_floored(scores, sparsity, 0.1)
    for method in masking.METHODS:
      got = masking.topk_masks(scores, sparsity, method=method, floor=0.1)
      for a, b in zip(got, expected):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=f"{method} {sparsity}")
    fn = tf.function(lambda s: masking.topk_masks(scores, s, method="bisect", floor=0.1),
                     jit_compile=True)
    for a, b in zip(fn(tf.constant(sparsity, tf.float64)), expected):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
