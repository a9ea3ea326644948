"""Channel pruning shrinks the model: fewer channels, the same predictions."""

import numpy as np
import pytest
import tf_keras as keras

import tf_fairprune
from tf_fairprune import models

layers = keras.layers


def _prune(model, x, y, sparsity=0.5, loss=None, epochs=2):
  k = tf_fairprune.flavours.of(model).keras
  pruned = tf_fairprune.fair_prune_wrapper(model, sparsity, granularity="channel")
  pruned.compile(optimizer=k.optimizers.SGD(0.05),
                 loss=loss or k.losses.SparseCategoricalCrossentropy(from_logits=True))
  pruned.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
  return pruned


def _images(n=64, size=16, seed=0):
  rng = np.random.default_rng(seed)
  return rng.random((n, size, size, 3)).astype("float32"), rng.integers(0, 4, n)


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet10", "mobilenet_v2"])
def test_shrunk_model_predicts_like_the_pruned_one(name, k):
  x, y = _images(size=32 if name == "mobilenet_v2" else 16)
  build = {
      "mlp": lambda: models.mlp(16 * 16 * 3, outputs=4, keras_module=k),
      "cnn": lambda: models.cnn((16, 16, 3), 4, width=8, keras_module=k),
      "resnet10": lambda: models.resnet10((16, 16, 3), 4, width=8, keras_module=k),
      "mobilenet_v2": lambda: models.mobilenet_v2((32, 32, 3), 4, width=0.35,
                                                   blocks=((1, 16, 1, 1), (6, 24, 2, 2)),
                                                   keras_module=k),
  }
  if name == "mlp":
    x = x.reshape(len(x), -1)
  pruned = _prune(build[name](), x, y)
  stripped = tf_fairprune.strip_fair_pruning(pruned)
  shrunk = tf_fairprune.strip_fair_pruning(pruned, shrink=True)
  assert type(shrunk) is type(stripped)  # Sequential stays Sequential.
  np.testing.assert_allclose(shrunk.predict(x, verbose=0), pruned.predict(x, verbose=0),
                             atol=1e-5)
  report = shrunk.shrink_report
  assert report.params_after < 0.75 * report.params_before
  assert report.channels  # Some layer lost channels ...
  assert shrunk.outputs[0].shape[-1] == 4  # ... but never the logits.


def test_pruned_channels_output_exact_zeros_and_keep_count():
  x, y = _images()
  pruned = _prune(models.cnn((16, 16, 3), 4, width=8), x, y)
  conv = [w for w in pruned.fair_prune_wrappers if isinstance(w.layer, layers.Conv2D)][0]
  keep = conv.channel_mask().numpy()
  assert keep.sum() == 4  # Exactly half of 8 filters, per layer by default.
  out = keras.Model(pruned.inputs, conv.output)(x).numpy()
  assert np.all(out[..., keep == 0] == 0.0)  # Bias masked too: relu(0) = 0.
  assert len(pruned.fair_prune_wrappers) == 3  # The logits layer is not wrapped.


def _bn_model(padding, kernel):
  inputs = keras.Input((8, 8, 3))
  h = layers.Conv2D(6, 3, padding="same", name="conv")(inputs)
  h = layers.BatchNormalization(name="bn")(h)
  h = layers.ReLU()(h)
  h = layers.Conv2D(5, kernel, padding=padding, name="next")(h)
  h = layers.GlobalAveragePooling2D()(h)
  return keras.Model(inputs, layers.Dense(2, name="logits")(h))


@pytest.mark.parametrize("padding,kernel,removable", [("same", 1, True), ("valid", 3, True),
                                                      ("same", 3, False)])
def test_nonzero_constants_fold_only_where_exact(padding, kernel, removable):
  x, y = _images(n=32, size=8)
  model = _bn_model(padding, kernel)
  pruned = _prune(model, x, y % 2, epochs=1)
  # A positive BN shift makes the pruned channels a nonzero constant after the ReLU.
  for layer in pruned.layers:
    inner = getattr(layer, "layer", layer)
    if inner.name == "bn":
      inner.beta.assign(np.full(6, 0.7, np.float32))
  shrunk = tf_fairprune.strip_fair_pruning(pruned, shrink=True)
  np.testing.assert_allclose(shrunk.predict(x, verbose=0), pruned.predict(x, verbose=0),
                             atol=1e-5)
  conv = shrunk.get_layer("conv")
  assert (conv.filters == 3) == removable  # Kept where a zero-padded 3x3 conv follows.


def test_residual_add_keeps_the_union_of_branch_channels():
  inputs = keras.Input((8,))
  a = layers.Dense(8, name="a")(inputs)
  b = layers.Dense(8, name="b")(inputs)
  h = layers.ReLU()(layers.Add()([a, b]))
  model = keras.Model(inputs, layers.Dense(1, name="logits")(h))
  pruned = tf_fairprune.fair_prune_wrapper(model, 0.5, granularity="channel")
  wa, wb = pruned.get_layer("fair_prune_a"), pruned.get_layer("fair_prune_b")
  # Force different pruned channels in the two branches, one shared.
  for wrapper, keep in ((wa, [1, 1, 1, 1, 0, 0, 0, 0]), (wb, [0, 1, 1, 1, 1, 0, 0, 0])):
    wrapper.mask_variables[0].assign(np.tile(np.array(keep, np.float32), (8, 1)))
  shrunk = tf_fairprune.strip_fair_pruning(pruned, shrink=True)
  x = np.random.default_rng(0).standard_normal((16, 8)).astype("float32")
  np.testing.assert_allclose(shrunk.predict(x, verbose=0), pruned.predict(x, verbose=0),
                             atol=1e-5)
  assert shrunk.get_layer("a").units == shrunk.get_layer("b").units == 5  # 8 - 3 shared.


def test_shrink_errors(mlp):
  pruned = tf_fairprune.fair_prune_wrapper(mlp, 0.5)
  with pytest.raises(ValueError, match="granularity='channel'"):
    tf_fairprune.strip_fair_pruning(pruned, shrink=True)


def test_channel_mode_defaults():
  model = models.mobilenet_v2((32, 32, 3), 2, 0.35, blocks=((1, 16, 1, 1),))
  pruned = tf_fairprune.fair_prune_wrapper(model, 0.5, granularity="channel")
  wrapped = {type(w.layer).__name__ for w in pruned.fair_prune_wrappers}
  assert "DepthwiseConv2D" not in wrapped and pruned.mask_scope == "layer"
  assert all(w.layer.name != "logits" for w in pruned.fair_prune_wrappers)


def test_unknown_consumers_keep_the_channels():
  inputs = keras.Input((8, 8, 3))
  h = layers.Conv2D(6, 3, padding="same", activation="relu", name="conv")(inputs)
  h = layers.Conv2DTranspose(4, 3, name="up")(h)  # Not handled: its inputs must stay.
  h = layers.GlobalAveragePooling2D()(h)
  model = keras.Model(inputs, layers.Dense(2, name="logits")(h))
  x, y = _images(n=32, size=8)
  pruned = _prune(model, x, y % 2, epochs=1)
  shrunk = tf_fairprune.strip_fair_pruning(pruned, shrink=True)
  assert shrunk.get_layer("conv").filters == 6
  np.testing.assert_allclose(shrunk.predict(x, verbose=0), pruned.predict(x, verbose=0),
                             atol=1e-5)
