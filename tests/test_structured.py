"""Block, N:M and channel masks: structure, exact counts, training, save/load, errors."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tf_fairprune
from tf_fairprune import masking
from conftest import compile_binary, make_data


def _rand(shape, seed=0):
  return tf.constant(np.random.default_rng(seed).standard_normal(shape).astype("float32"))


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_block_masks_are_whole_blocks_with_exact_count(scope):
  scores = [_rand((16, 8)), _rand((8, 4), 1)]
  masks = masking.structured_masks(scores, 0.75, [((4, 1), None, "weight")] * 2, scope=scope)
  kept = []
  for m in masks:
    blocks = m.numpy().reshape(m.shape[0] // 4, 4, m.shape[1])
    assert np.all(blocks.min(axis=1) == blocks.max(axis=1))  # Each block all-0 or all-1.
    kept.append(int(blocks[:, 0, :].sum()))
  if scope == "global":
    assert sum(kept) == round(0.25 * (32 + 8))
  else:
    assert kept == [8, 2]


def test_edge_blocks_of_uneven_kernels_are_smaller():
  score = np.ones((6, 3), "float32")
  score[4:, :] = 3.0  # The 2-row edge blocks: mean 3 over their real entries.
  mask = masking.structured_masks([tf.constant(score)], 0.5, [((4, 1), None, "weight")])[0]
  np.testing.assert_array_equal(mask.numpy()[4:], 1.0)  # 3 of 6 blocks kept: the edge ones.
  np.testing.assert_array_equal(mask.numpy()[:4], 0.0)


def test_blocks_are_ranked_by_mean_magnitude():
  score = np.zeros((4, 2), "float32")
  score[:2, 0] = [5.0, -5.0]   # Block (0,0): mean 5.
  score[2:, 1] = [1.0, 20.0]   # Block (1,1): mean 10.5.
  score[2:, 0] = [6.0, 6.0]    # Block (1,0): mean 6.
  mask = masking.structured_masks([tf.constant(score)], 0.5, [((2, 1), None, "weight")])[0]
  np.testing.assert_array_equal(mask.numpy(), [[0, 0], [0, 0], [1, 1], [1, 1]])


def test_n_by_m_keeps_n_of_every_m_inputs():
  score = _rand((8, 5))
  mask = masking.structured_masks([score], 0.5, [((1, 1), (2, 4), "weight")])[0].numpy()
  assert np.all(mask.reshape(2, 4, 5).sum(axis=1) == 2)
  kept = np.abs(score.numpy()).reshape(2, 4, 5)
  chosen = mask.reshape(2, 4, 5)
  assert np.all(np.min(np.where(chosen == 1, kept, np.inf), axis=1) >=
                np.max(np.where(chosen == 0, kept, -np.inf), axis=1))
  conv = masking.structured_masks([_rand((3, 3, 8, 2))], 0.5, [((1, 1), (2, 4), "weight")])[0]
  assert np.all(conv.numpy().reshape(3, 3, 2, 4, 2).sum(axis=3) == 2)


def test_channel_masks_remove_whole_filters():
  masks = masking.structured_masks([_rand((3, 3, 2, 10)), _rand((40, 6), 1)], 0.5,
                                   [((1, 1), None, "channel")] * 2)
  for m in masks:
    per_channel = m.numpy().reshape(-1, m.shape[-1])
    assert np.all(per_channel.min(axis=0) == per_channel.max(axis=0))
  assert sum(int(m.numpy().reshape(-1, m.shape[-1])[0].sum()) for m in masks) == 8


@pytest.mark.parametrize("kwargs,sparsity", [
    (dict(block_size=(4, 1)), 0.75),
    (dict(sparsity_m_by_n=(2, 4)), 0.5),
    (dict(granularity="channel"), 0.5),
])
def test_structured_training_and_save_load(tmp_path, kwargs, sparsity, k):
  x, y = make_data(n=256)
  model = k.Sequential([k.Input((8,)), k.layers.Dense(16, activation="relu"),
                        k.layers.Dense(4, activation="relu"), k.layers.Dense(1)])
  pruned = compile_binary(tf_fairprune.fair_prune_wrapper(model, sparsity, **kwargs),
                          mask_optimizer=k.optimizers.SGD(5.0))
  pruned.fit(x, y, batch_size=32, epochs=2, verbose=0)
  wrappers = pruned.fair_prune_wrappers
  expected = masking.structured_masks(
      [s for w in wrappers for s in w.score_variables], sparsity,
      [w.structure for w in wrappers for _ in w.score_variables], scope=pruned.mask_scope)
  actual = [m for w in wrappers for m in w.mask_variables]
  for a, e in zip(actual, expected):
    np.testing.assert_array_equal(a.numpy(), e.numpy())
  path = str(tmp_path / "m.keras")
  pruned.save(path)
  restored = k.models.load_model(path)
  assert [w.structure for w in restored.fair_prune_wrappers] == [w.structure for w in wrappers]
  np.testing.assert_array_equal(restored.predict(x, verbose=0), pruned.predict(x, verbose=0))


def test_structure_errors():
  mlp = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
  conv = keras.Sequential([keras.Input((8, 8, 4)), keras.layers.Conv2D(4, 3)])
  with pytest.raises(ValueError, match="2-D kernels"):
    tf_fairprune.fair_prune_wrapper(conv, 0.5, block_size=(4, 1))
  with pytest.raises(ValueError, match="by construction"):
    tf_fairprune.fair_prune_wrapper(conv, 0.9, sparsity_m_by_n=(2, 4))
  with pytest.raises(ValueError, match="divisible by M=4"):
    tf_fairprune.fair_prune_wrapper(mlp, 0.5, sparsity_m_by_n=(2, 4))
  with pytest.raises(ValueError, match="granularity"):
    tf_fairprune.fair_prune_wrapper(mlp, 0.5, granularity="block")
  with pytest.raises(ValueError, match="one of"):
    tf_fairprune.fair_prune_wrapper(mlp, 0.5, block_size=(2, 1), granularity="channel")
  with pytest.raises(ValueError, match="last axis"):
    tf_fairprune.FairPruneWrapper(keras.layers.Conv2DTranspose(2, 3), granularity="channel")


def test_n_by_m_warns_that_tflite_densifies_it():
  mlp = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
  with pytest.warns(UserWarning, match="densified at load"):
    tf_fairprune.fair_prune_wrapper(mlp, 0.5, sparsity_m_by_n=(2, 4))
