"""fair_prune_wrapper / strip_fair_pruning on Sequential, Functional and nested models."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tf_fairprune
from tf_fairprune import mask_updater
from tf_fairprune import models
from conftest import make_mlp


def _functional_with_nested():
  inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(6, name="inner_dense"),
                            keras.layers.BatchNormalization(name="inner_bn")], name="inner")
  inp = keras.Input((4,), name="features")
  h = keras.layers.Dense(6, activation="relu", name="d1")(inp)
  h = inner(h)
  h = keras.layers.Dropout(0.1)(h)
  out = keras.layers.Dense(2, name="head")(keras.layers.Add()([h, h]))
  return keras.Model(inp, out, name="net")


@pytest.mark.parametrize("make", [make_mlp, _functional_with_nested])
def test_wraps_prunable_layers_and_never_mutates_the_original(make):
  model = make()
  before = [w.copy() for w in model.get_weights()]
  layers_before = list(model.layers)
  pruned = tf_fairprune.fair_prune_wrapper(model, target_sparsity=0.75)
  assert isinstance(pruned, tf_fairprune.FairPruneModel)
  wrappers = pruned.fair_prune_wrappers
  assert wrappers and all(w.layer not in model._flatten_layers() for w in wrappers)
  # Scores start at |θ| of the dense model; θ itself is rescaled by one gain per tensor.
  for w in wrappers:
    for theta, score in zip(w.prunable_weights, w.score_variables):
      ratio = np.abs(theta.numpy()) / np.maximum(score.numpy(), 1e-12)
      np.testing.assert_allclose(ratio[score.numpy() > 1e-6], ratio.max(), rtol=1e-4)
  assert model.layers == layers_before
  for a, b in zip(before, model.get_weights()):
    np.testing.assert_array_equal(a, b)
  assert abs(float(pruned.measured_sparsity()) - 0.75) < 0.02


def test_initial_mask_is_global_magnitude_pruning():
  model = make_mlp()
  pruned = tf_fairprune.fair_prune_wrapper(model, target_sparsity=0.6)
  weights = np.concatenate([np.abs(model.get_layer(n).kernel.numpy()).ravel()
                            for n in ("hidden", "logits")])
  threshold = np.sort(weights)[::-1][int(round(0.4 * weights.size)) - 1]
  masks = np.concatenate([m.numpy().ravel() for w in pruned.fair_prune_wrappers
                          for m in w.mask_variables])
  np.testing.assert_array_equal(masks, (weights >= threshold).astype("float32"))


def test_rescale_keeps_each_tensors_norm_and_can_be_turned_off():
  model = make_mlp()
  dense = {n: model.get_layer(n).kernel.numpy() for n in ("hidden", "logits")}
  for rescale in (True, False):
    pruned = tf_fairprune.fair_prune_wrapper(model, 0.8, mask_scope="layer", rescale=rescale)
    for w in pruned.fair_prune_wrappers:
      theta, mask = w.prunable_weights[0].numpy(), w.mask_variables[0].numpy()
      if rescale:
        np.testing.assert_allclose(np.linalg.norm(theta * mask), np.linalg.norm(dense[w.layer.name]),
                                   rtol=1e-5)
      else:
        np.testing.assert_array_equal(theta, dense[w.layer.name])


def _floor_held_model(k):
  """Global ranking at 90% keeps `big` denser than the target and holds `tiny` (weights
  ~1e-3 of big's) at its layer floor: max(1, ⌈0.1·0.1·n⌉) = 3 of its 256 weights."""
  model = k.Sequential([k.Input((16,)), k.layers.Dense(32, use_bias=False, name="big"),
                        k.layers.Dense(8, use_bias=False, name="tiny")])
  rng = np.random.default_rng(0)
  model.get_layer("big").set_weights([rng.standard_normal((16, 32)).astype("float32")])
  model.get_layer("tiny").set_weights([1e-3 * rng.standard_normal((32, 8)).astype("float32")])
  return model


def _top_norm(theta, count):
  return np.linalg.norm(np.sort(np.abs(theta).ravel())[::-1][:count])


def test_rescale_skips_a_tensor_held_at_the_floor(k):
  model = _floor_held_model(k)
  dense = {n: model.get_layer(n).kernel.numpy() for n in ("big", "tiny")}
  pruned = tf_fairprune.fair_prune_wrapper(model, 0.9)
  by_name = {w.layer.name: w for w in pruned.fair_prune_wrappers}
  theta = {n: by_name[n].prunable_weights[0].numpy() for n in by_name}
  mask = {n: by_name[n].mask_variables[0].numpy() for n in by_name}
  assert mask["tiny"].sum() == 3 and mask["big"].sum() == round(0.1 * 768) - 3  # Floor held.
  # big (denser than the target) keeps its dense norm, as without the cap.
  np.testing.assert_allclose(np.linalg.norm(theta["big"] * mask["big"]),
                             np.linalg.norm(dense["big"]), rtol=1e-5)
  # tiny, held at its floor, is not rescaled (uncapped: ‖θ‖ / ‖its 3 largest‖ ≈ 3.7).
  np.testing.assert_array_equal(theta["tiny"], dense["tiny"])
  capped = np.linalg.norm(dense["tiny"]) / _top_norm(dense["tiny"], 26)  # Its top 10%.
  uncapped = np.linalg.norm(dense["tiny"]) / _top_norm(dense["tiny"], 3)
  assert uncapped > 2 * capped > 2
  # The uncapped rule (the behaviour before the cap) and the alternatives, on the same masks.
  thetas = [tf.constant(dense[n]) for n in ("big", "tiny")]
  masks = [tf.constant(mask[n]) for n in ("big", "tiny")]
  def gains(cap, scope="global"):
    return [float(g) for g in mask_updater.rescale_gains(thetas, masks, 0.9, scope, 0.1, cap)]
  big_gain = np.linalg.norm(dense["big"]) / np.linalg.norm(dense["big"] * mask["big"])
  np.testing.assert_allclose(gains("none"), [big_gain, uncapped], rtol=1e-5)
  np.testing.assert_allclose(gains("target"), [big_gain, capped], rtol=1e-5)
  np.testing.assert_allclose(gains("floor"), [big_gain, 1.0], rtol=1e-5)
  model_gain = np.linalg.norm([np.linalg.norm(dense["big"]), np.linalg.norm(dense["tiny"])]) / \
      np.linalg.norm([np.linalg.norm(dense["big"] * mask["big"]),
                      np.linalg.norm(dense["tiny"] * mask["tiny"])])
  np.testing.assert_allclose(gains("model"), [min(big_gain, model_gain), model_gain], rtol=1e-5)
  np.testing.assert_allclose(gains(None), gains("floor"), rtol=1e-6)  # The default.
  np.testing.assert_allclose(gains("both"), gains("floor"), rtol=1e-6)  # big: not capped.
  np.testing.assert_allclose(gains("target", scope="layer"), gains("none"), rtol=1e-6)
  np.testing.assert_allclose(gains("floor", scope="layer"), gains("none"), rtol=1e-6)
  with pytest.raises(ValueError, match="cap must be one of"):
    gains("huge")


def test_rescale_rejects_an_unknown_rule_name(k):
  model = k.Sequential([k.Input((4,)), k.layers.Dense(2)])
  with pytest.raises(ValueError, match="rescale must be True, False or one of"):
    tf_fairprune.fair_prune_wrapper(model, 0.5, rescale="huge")


def test_rescale_cap_both_holds_floor_tensors_and_caps_the_rest_at_target(k):
  """The "both" cap: `tiny` (held at its floor) gets gain 1 as under "floor"; `mid`
  (weights ~0.5 of big's) keeps fewer than its 10% under global ranking but more than
  its floor, so its gain is capped at its gain at the target as under "target"; `big`
  (denser than the target) is rescaled as without a cap."""
  model = k.Sequential([k.Input((16,)), k.layers.Dense(32, use_bias=False, name="big"),
                        k.layers.Dense(32, use_bias=False, name="mid"),
                        k.layers.Dense(8, use_bias=False, name="tiny")])
  rng = np.random.default_rng(0)
  for name, shape, scale in (("big", (16, 32), 1.0), ("mid", (32, 32), 0.5),
                             ("tiny", (32, 8), 1e-3)):
    model.get_layer(name).set_weights([scale * rng.standard_normal(shape).astype("float32")])
  names = ("big", "mid", "tiny")
  dense = {n: model.get_layer(n).kernel.numpy() for n in names}
  pruned = tf_fairprune.fair_prune_wrapper(model, 0.9, rescale="both")
  by_name = {w.layer.name: w for w in pruned.fair_prune_wrappers}
  theta = {n: by_name[n].prunable_weights[0].numpy() for n in names}
  mask = {n: by_name[n].mask_variables[0].numpy() for n in names}
  assert mask["tiny"].sum() == 3  # Floor held: max(1, ⌈0.1·0.1·256⌉).
  assert mask["big"].sum() > 51  # Denser than its 10% (of 512).
  assert 11 < mask["mid"].sum() < 102  # Above its floor (⌈10.24⌉), below its 10%.
  gain = {n: np.linalg.norm(dense[n]) / np.linalg.norm(dense[n] * mask[n]) for n in names}
  at_target = {n: np.linalg.norm(dense[n]) / _top_norm(dense[n], round(0.1 * dense[n].size))
               for n in names}
  assert gain["mid"] > 1.2 * at_target["mid"] and gain["big"] < at_target["big"]
  expected = {"big": gain["big"], "mid": at_target["mid"], "tiny": 1.0}
  for n in names:  # Applied by fair_prune_wrapper's first-mask rescale.
    np.testing.assert_allclose(theta[n], expected[n] * dense[n], rtol=1e-5, atol=1e-9)
  thetas = [tf.constant(dense[n]) for n in names]
  masks = [tf.constant(mask[n]) for n in names]
  def gains(cap, scope="global", layer_floor=0.1):
    return [float(g) for g in mask_updater.rescale_gains(thetas, masks, 0.9, scope,
                                                          layer_floor, cap)]
  np.testing.assert_allclose(gains("both"), [expected[n] for n in names], rtol=1e-5)
  # "both" = "floor" on the floor-held tensor and "target" on the others.
  floor, target = gains("floor"), gains("target")
  np.testing.assert_allclose(gains("both"), [target[0], target[1], floor[2]], rtol=1e-6)
  assert gains("none")[2] > target[2] > 1.2  # "target" alone would rescale tiny.
  assert floor[1] == pytest.approx(gain["mid"], rel=1e-5)  # "floor" alone: mid uncapped.
  np.testing.assert_allclose(gains(None), floor, rtol=1e-6)  # The default is "floor".
  # Without a floor, no tensor is floor-held: "both" is "target"; layer ranking: uncapped.
  np.testing.assert_allclose(gains("both", layer_floor=0.0), target, rtol=1e-6)
  np.testing.assert_allclose(gains("both", scope="layer"), gains("none"), rtol=1e-6)


def test_rescale_leaves_tensors_above_their_floor_as_before(k):
  """Layer ranking puts every tensor at the target and global ranking here keeps both
  tensors above their floors (hidden near the target density): none is floor-held, so
  under the default rule each keeps its dense norm, as without a bound."""
  model = make_mlp(k=k)
  dense = {n: model.get_layer(n).kernel.numpy() for n in ("hidden", "logits")}
  for scope in ("layer", "global"):
    pruned = tf_fairprune.fair_prune_wrapper(model, 0.8, mask_scope=scope)
    for w in pruned.fair_prune_wrappers:
      theta, mask = w.prunable_weights[0].numpy(), w.mask_variables[0].numpy()
      assert mask.sum() > max(1, np.ceil(0.1 * 0.2 * mask.size))  # Above its floor.
      if w.layer.name == "hidden":
        assert abs(mask.mean() - 0.2) < 0.05  # Near the target density.
      np.testing.assert_allclose(np.linalg.norm(theta * mask),
                                 np.linalg.norm(dense[w.layer.name]), rtol=1e-5)


def test_no_constant_predictor_at_99_percent_on_few_features():
  """1% of a 2x256 MLP on 3 features still holds ~670 weights, far more than the task
  needs. Unrescaled, the first mask leaves a nearly silent network (outputs ~1/50 of
  the dense model's) and 60 steps end at the constant majority predictor."""
  rng = np.random.default_rng(0)
  n = 3000
  x = rng.standard_normal((n, 3)).astype("float32")
  y = ((x[:, 0] + 0.5 * x[:, 1] * x[:, 2] + 0.5 * rng.standard_normal(n)) > 1.0).astype("float32")
  dense = models.mlp(3)
  dense.compile(keras.optimizers.Adam(1e-3), keras.losses.BinaryCrossentropy(from_logits=True))
  dense.fit(x, y, batch_size=256, epochs=5, verbose=0)
  positive = {}
  for rescale in (True, False):
    keras.utils.set_random_seed(0)
    pruned = tf_fairprune.fair_prune_wrapper(dense, 0.99, rescale=rescale)
    pruned.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                   loss=keras.losses.BinaryCrossentropy(from_logits=True))
    pruned.fit(x, y, batch_size=256, epochs=5, verbose=0)
    pred = pruned.predict(x, verbose=0).reshape(-1) > 0
    positive[rescale] = pred.mean()
    if rescale:
      assert (pred == y).mean() > (1 - y.mean()) + 0.05  # Beats the majority label.
  assert 0.05 < positive[True] < 0.95
  assert positive[False] == 0.0  # The failure the rescale fixes.


def test_nested_model_layers_are_wrapped_and_predictions_match_at_zero_sparsity():
  model = _functional_with_nested()
  pruned = tf_fairprune.fair_prune_wrapper(model, target_sparsity=0.0)
  names = sorted(w.name for w in pruned.fair_prune_wrappers)
  assert names == ["fair_prune_d1", "fair_prune_head", "fair_prune_inner_dense"]
  x = np.random.default_rng(0).standard_normal((5, 4)).astype("float32")
  np.testing.assert_allclose(pruned.predict(x, verbose=0), model.predict(x, verbose=0),
                             atol=1e-6)


def test_layer_and_list_of_layers():
  wrapped = tf_fairprune.fair_prune_wrapper(keras.layers.Dense(3))
  assert isinstance(wrapped, tf_fairprune.FairPruneWrapper)
  wrapped = tf_fairprune.fair_prune_wrapper([keras.layers.Dense(3), keras.layers.Conv2D(2, 3)])
  assert all(isinstance(w, tf_fairprune.FairPruneWrapper) for w in wrapped)


def test_selective_pruning_keeps_existing_wrappers_only():
  inp = keras.Input((4,))
  h = tf_fairprune.fair_prune_wrapper(keras.layers.Dense(8, name="pruned"))(inp)
  out = keras.layers.Dense(1, name="kept_dense")(h)
  pruned = tf_fairprune.fair_prune_wrapper(keras.Model(inp, out), target_sparsity=0.5)
  assert [w.layer.name for w in pruned.fair_prune_wrappers] == ["pruned"]
  assert isinstance(pruned.get_layer("kept_dense"), keras.layers.Dense)


def test_strip_gives_plain_model_with_zeros_and_same_outputs():
  model = _functional_with_nested()
  pruned = tf_fairprune.fair_prune_wrapper(model, target_sparsity=0.7)
  x = np.random.default_rng(0).standard_normal((16, 4)).astype("float32")
  stripped = tf_fairprune.strip_fair_pruning(pruned)
  assert not any(isinstance(l, tf_fairprune.FairPruneWrapper)
                 for l in stripped._flatten_layers())
  assert type(stripped).__name__ == "Functional"
  np.testing.assert_array_equal(stripped.predict(x, verbose=0), pruned.predict(x, verbose=0))
  kernels = [stripped.get_layer("d1").kernel, stripped.get_layer("inner").get_layer("inner_dense").kernel,
             stripped.get_layer("head").kernel]
  zeros = sum(int(np.sum(k.numpy() == 0)) for k in kernels)
  total = sum(int(np.prod(k.shape)) for k in kernels)
  assert zeros == total - int(round(0.3 * total))
  assert stripped.get_layer("inner").get_layer("inner_bn").get_weights()[0].shape == (6,)


def test_strip_keeps_sequential_sequential():
  pruned = tf_fairprune.fair_prune_wrapper(make_mlp(), target_sparsity=0.5)
  stripped = tf_fairprune.strip_fair_pruning(pruned)
  assert isinstance(stripped, keras.Sequential)
  assert [l.name for l in stripped.layers] == ["hidden", "logits"]


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5, float("nan"), "0.5", True])
def test_bad_sparsity(sparsity):
  with pytest.raises((ValueError, TypeError), match="target_sparsity"):
    tf_fairprune.fair_prune_wrapper(make_mlp(), target_sparsity=sparsity)


def test_bad_objects():
  with pytest.raises(TypeError, match="Keras Model, Layer"):
    tf_fairprune.fair_prune_wrapper(np.zeros(3))
  pruned = tf_fairprune.fair_prune_wrapper(make_mlp())
  with pytest.raises(ValueError, match="already wrapped"):
    tf_fairprune.fair_prune_wrapper(pruned)
  with pytest.raises(ValueError, match="already wrapped"):
    tf_fairprune.fair_prune_wrapper(pruned.fair_prune_wrappers[0])
  no_weights = keras.Sequential([keras.Input((3,)), keras.layers.Flatten()])
  with pytest.raises(ValueError, match="no prunable weights"):
    tf_fairprune.fair_prune_wrapper(no_weights)
  with pytest.raises(ValueError, match="not built"):
    tf_fairprune.fair_prune_wrapper(keras.Sequential([keras.layers.Dense(2)]))
  with pytest.raises(TypeError):
    tf_fairprune.strip_fair_pruning("model")


def test_keras3_layers_get_keras3_wrappers():
  keras3 = pytest.importorskip("keras")
  if not keras3.__version__.startswith("3."):
    pytest.skip("Keras 3 not installed")
  wrapped = tf_fairprune.fair_prune_wrapper(keras3.layers.Dense(2))
  assert isinstance(wrapped, keras3.layers.Layer) and not isinstance(wrapped, keras.layers.Layer)
  direct = tf_fairprune.FairPruneWrapper(keras3.layers.Dense(2))
  assert type(direct) is type(wrapped)
  with pytest.raises(TypeError, match="one Keras"):
    from tf_fairprune import keras3 as k3  # pylint: disable=g-import-not-at-top
    k3.FairPruneWrapper(keras.layers.Dense(2))


class Subclassed(keras.Model):

  def __init__(self):
    super().__init__()
    self.d = keras.layers.Dense(2)

  def call(self, x):
    return self.d(x)


def test_subclassed_model_gets_guidance():
  model = Subclassed()
  model(tf.ones((1, 3)))
  with pytest.raises(ValueError, match="FairPruneModel"):
    tf_fairprune.fair_prune_wrapper(model)


def test_too_sparse_for_a_layer_warns():
  with pytest.warns(UserWarning, match="kept no weight"):
    tf_fairprune.fair_prune_wrapper(make_mlp(), 0.999)
  with pytest.warns(UserWarning, match="not the target 0.500"):
    tf_fairprune.fair_prune_wrapper(make_mlp(), 0.5, block_size=(100, 100))


def test_small_argument_mistakes_get_messages():
  with pytest.raises(ValueError, match="block_size must be two positive integers"):
    tf_fairprune.fair_prune_wrapper(make_mlp(), 0.5, block_size=4)
  with pytest.raises(ValueError, match="target_sparsity"):
    tf_fairprune.fair_prune_wrapper([keras.layers.Dense(4)], target_sparsity=5.0)
  with pytest.raises(ValueError, match="fairness_on"):
    tf_fairprune.fair_prune_wrapper(make_mlp(), 0.5, fairness_on=None)
  single = tf_fairprune.fair_prune_wrapper(
      make_mlp(), 0.5, fairness=tf_fairprune.fairness.PerformanceFairness())
  assert len(single.fairness) == 1  # One constraint, not in a list: accepted.
