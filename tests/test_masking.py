"""Masks: exact k, deterministic ties, straight-through gradient, XLA."""

import json

import numpy as np
import pytest
import tensorflow as tf

import tf_fairprune
from tf_fairprune import masking
from conftest import MaskAudit, make_mlp


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


@pytest.mark.parametrize("sparsity", [np.float32(0.75), np.float64(0.75), np.int64(0)])
def test_numpy_scalar_sparsity_gives_the_python_scalars_masks(sparsity):
  scores = [tf.constant(np.random.default_rng(0).standard_normal((7, 9)).astype("float32"))]
  expected = masking.topk_masks(scores, float(sparsity))[0].numpy()
  np.testing.assert_array_equal(masking.topk_masks(scores, sparsity)[0].numpy(), expected)
  assert int(masking.keep_count(sparsity, 63)) == int(masking.keep_count(float(sparsity), 63))


@pytest.mark.parametrize("flag", [True, np.bool_(False)])
def test_bool_sparsity_is_refused(flag):
  with pytest.raises(TypeError, match="sparsity must be a number"):
    masking.keep_count(flag, 10)


def test_numpy_integer_block_size_accepted_bools_and_fractions_refused(k):
  model = make_mlp(k=k)
  wrapped = tf_fairprune.fair_prune_wrapper(model, 0.5, block_size=(np.int64(4), np.int32(1)))
  assert {w.block_size for w in wrapped.fair_prune_wrappers} == {(4, 1)}
  json.dumps(wrapped.fair_prune_wrappers[0].get_config()["block_size"])  # Plain ints.
  for bad in [(True, 1), (4.5, 1), (np.float64(4), 1)]:
    with pytest.raises(ValueError, match="block_size must be two positive integers"):
      tf_fairprune.FairPruneWrapper(k.layers.Dense(4), block_size=bad)


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
      got = masking.topk_masks(scores, sparsity, method=method, layer_floor=0.1)
      for a, b in zip(got, expected):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=f"{method} {sparsity}")
    fn = tf.function(lambda s: masking.topk_masks(scores, s, method="bisect", layer_floor=0.1),
                     jit_compile=True)
    for a, b in zip(fn(tf.constant(sparsity, tf.float64)), expected):
      np.testing.assert_array_equal(a.numpy(), b.numpy())


# ---------------------------------------------------------------- the warm-started re-rank
def _hint_cases(rows, threshold_bits, rng):
  """Hints a re-rank may meet: none yet, the right one, a slightly or far wrong one."""
  good = np.stack([threshold_bits, np.full(rows, 4096)], 1)
  return [masking.initial_hint(rows), good, good + [[3000, 0]] * 1,
          np.stack([rng.integers(0, 2**31 - 1, rows), rng.integers(0, 2**22, rows)], 1)]


@pytest.mark.parametrize("method,group_size", [("histogram", None), ("histogram", 50),
                                               ("bisect", None)])
def test_any_hint_gives_the_full_top_k(method, group_size, monkeypatch):
  """The hint only decides where the search starts: masks equal the stable sort's for a
  good, a wrong or no hint (ties, floors, layer scope, zeros; small tensors joined into
  one group, or the three tensors in two groups)."""
  if group_size:
    monkeypatch.setattr(masking, "GROUP_SIZE", group_size)
    assert masking._groups([153, 45, 5]) == [[0], [1, 2]]  # pylint: disable=protected-access
  rng = np.random.default_rng(11)
  select = masking.ranked_masks
  if method == "bisect":
    select = tf.function(masking.ranked_masks, jit_compile=True, reduce_retracing=True)
  for trial in range(8):
    raw = [rng.standard_normal((17, 9)), rng.standard_normal((9, 5)) * 1e-3,
           rng.standard_normal((5,))]
    if trial % 2:
      raw = [np.round(r * 4) / 4 for r in raw]  # Ties at the threshold.
    if trial == 3:
      raw[0][:] = 0.0
    scores = [tf.constant(r, tf.float32) for r in raw]
    scope = "layer" if trial % 4 == 2 and method == "histogram" else "global"  # One compile.
    sparsity = (0.5, 0.9, 0.97, 0.0)[trial % 4]
    expected = masking.topk_masks(scores, sparsity, scope, method="sort", layer_floor=0.1)
    rows = masking.hint_size(scope, [masking._PLAIN] * 3)  # pylint: disable=protected-access
    flat = np.abs(np.concatenate([r.ravel() for r in raw]).astype("float32"))
    kth = np.sort(flat)[::-1][int(masking.keep_count(sparsity, flat.size)) - 1]
    for hint in _hint_cases(rows, np.full(rows, np.float32(kth).view(np.int32)), rng):
      masks, next_hint = select(scores, tf.constant(sparsity, tf.float64),
                                tf.constant(hint, tf.int32), scope=scope, method=method,
                                layer_floor=0.1)
      assert next_hint.shape == (rows, 2)
      if scope == "global":  # The next search starts at the threshold found.
        assert next_hint[0, 0] == np.float32(kth).view(np.int32)
      for a, b in zip(masks, expected):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=f"trial {trial}, {hint}")


def _audited_fit(k, model, mask_lr, jit_compile=False, epochs=2):
  model.compile(optimizer=k.optimizers.SGD(0.05, momentum=0.9),
                mask_optimizer=k.optimizers.SGD(mask_lr, momentum=0.9),
                loss=k.losses.BinaryCrossentropy(from_logits=True), jit_compile=jit_compile)
  rng = np.random.default_rng(0)
  x = rng.standard_normal((96, model.input_shape[-1])).astype("float32")
  y = (x[:, 0] > 0).astype("float32")
  audit = MaskAudit(model)
  model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0,
            callbacks=[audit.callback()])
  return audit


def _tied_mlp(k, sparsity, second_scale, **kwargs):
  """6-24-12-1 with tied scores (the first kernel rounded to quarters) and the second
  kernel scaled: at 80% its layer floor binds for the first steps."""
  import tf_fairprune  # pylint: disable=g-import-not-at-top
  dense = k.Sequential([k.Input((6,)), k.layers.Dense(24, activation="relu"),
                        k.layers.Dense(12, activation="relu"), k.layers.Dense(1)])
  first, second = dense.layers[0], dense.layers[1]
  first.kernel.assign(np.round(np.asarray(first.kernel) * 4) / 4)
  second.kernel.assign(np.asarray(second.kernel) * second_scale)
  return tf_fairprune.fair_prune_wrapper(dense, sparsity, **kwargs)


def _small_then_large(k):
  """Score steps of 0.01 for 6 steps (the threshold stays near the last one), then 30."""
  return k.optimizers.schedules.PiecewiseConstantDecay([6], [0.01, 30.0])


def test_masks_equal_the_full_top_k_at_every_step_of_a_run(k):
  """Every re-rank of two short runs gives the stable sort's masks (under XLA:
  test_training.py's compiled-step test audits its steps the same way). Measured on these
  runs: at 80% the floor holds the second layer for 8 steps, then the warm start keeps
  part of a tie; at 50% the warm start finds the threshold inside its band at most
  steps and the full radix select takes over when it jumped out."""
  for sparsity in (0.8, 0.5):
    audit = _audited_fit(k, _tied_mlp(k, sparsity, 0.3), _small_then_large(k))
    assert audit.checked == 12 and not audit.wrong, (sparsity, audit.wrong)


def test_masks_ranked_alone_and_globally_equal_the_full_top_k_at_every_step(k):
  """A global ranking beside tables ranked on their own (prune_embeddings="layer"): each
  ranking keeps its own warm start."""
  dense = k.Sequential([k.Input((4,), dtype="int32"), k.layers.Embedding(20, 6),
                        k.layers.Flatten(), k.layers.Dense(8, activation="relu"),
                        k.layers.Dense(1)])
  model = tf_fairprune.fair_prune_wrapper(dense, 0.75, prune_embeddings="layer")
  assert [getattr(w, "mask_scope", None) for w in model.fair_prune_wrappers] == [
      "layer", None, None]
  model.compile(optimizer=k.optimizers.SGD(0.05, momentum=0.9),
                mask_optimizer=k.optimizers.SGD(_small_then_large(k), momentum=0.9),
                loss=k.losses.BinaryCrossentropy(from_logits=True))
  rng = np.random.default_rng(0)
  x = rng.integers(0, 20, (96, 4)).astype("int32")
  y = (x[:, 0] > 9).astype("float32")
  audit = MaskAudit(model)
  model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
            callbacks=[audit.callback()])
  assert audit.checked == 12 and not audit.wrong, audit.wrong
  assert len(model._mask_updater.hint_variables(model.fair_prune_wrappers)) == 2  # pylint: disable=protected-access


@pytest.mark.parametrize("kwargs,sparsity,scope", [
    (dict(block_size=(2, 1)), 0.75, "global"),
    (dict(sparsity_m_by_n=(2, 4)), 0.5, "global"),
    (dict(granularity="channel"), 0.5, "layer"),
])
def test_structured_masks_equal_the_full_top_k_at_every_step(kwargs, sparsity, scope):
  import tf_fairprune  # pylint: disable=g-import-not-at-top
  import tf_keras as k  # pylint: disable=g-import-not-at-top
  dense = k.Sequential([k.Input((8,)), k.layers.Dense(16, activation="relu"),
                        k.layers.Dense(8, activation="relu"), k.layers.Dense(1)])
  model = tf_fairprune.fair_prune_wrapper(dense, sparsity, mask_scope=scope, **kwargs)
  audit = _audited_fit(k, model, 1.0, epochs=1)
  assert audit.checked == 6 and not audit.wrong, audit.wrong
