"""Which layers are prunable, and what the wrapper holds."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tf_fairprune
from tf_fairprune import registry
from tf_fairprune._compat import tfmot
from conftest import KERAS3


def _apply(layer, shape_or_input):
  if isinstance(shape_or_input, tuple):
    return layer(tf.random.uniform(shape_or_input))
  return layer(shape_or_input)


# make(k) builds the layer in flavour k (tf_keras or Keras 3): the registry looks them up
# along different paths (TFMOT's table vs Keras 3's names).
LAYERS = [
    ("dense", lambda k: k.layers.Dense(3), (2, 4), 1),
    ("conv1d", lambda k: k.layers.Conv1D(3, 2), (2, 6, 2), 1),
    ("conv2d", lambda k: k.layers.Conv2D(3, 3), (2, 6, 6, 2), 1),
    ("conv3d", lambda k: k.layers.Conv3D(2, 2), (1, 4, 4, 4, 2), 1),
    ("conv2d_transpose", lambda k: k.layers.Conv2DTranspose(3, 3), (2, 5, 5, 2), 1),
    ("separable", lambda k: k.layers.SeparableConv2D(3, 3), (2, 6, 6, 2), 1),
    ("embedding", lambda k: k.layers.Embedding(10, 4), tf.constant([[1, 2, 3]]), 1),
    ("lstm", lambda k: k.layers.LSTM(3), (2, 5, 4), 2),
    ("gru", lambda k: k.layers.GRU(3), (2, 5, 4), 2),
]


@pytest.mark.parametrize("name,make,inp,num_prunable", LAYERS, ids=[l[0] for l in LAYERS])
def test_supported_layers_get_scores_and_gradients(name, make, inp, num_prunable, k):
  del name
  wrapper = tf_fairprune.FairPruneWrapper(make(k))
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(tf.square(_apply(wrapper, inp)))
  assert len(wrapper.score_variables) == num_prunable
  assert len(wrapper.mask_variables) == num_prunable
  for score, theta in zip(wrapper.score_variables, wrapper.prunable_weights):
    assert score.shape == theta.shape
    np.testing.assert_allclose(score.numpy(), np.abs(theta.numpy()))
  grads = tape.gradient(loss, wrapper.score_variables)
  assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)
  # Scores trainable, masks not.
  ref = (lambda v: v.ref()) if k is keras else id  # Keras 3 variables have no .ref().
  trainable = {ref(v) for v in wrapper.trainable_weights}
  assert all(ref(s) in trainable for s in wrapper.score_variables)
  assert not any(ref(m) in trainable for m in wrapper.mask_variables)


def test_multi_head_attention_projections_are_prunable(k):
  # Keras 3: the scores are created on the first call, after build (its MultiHeadAttention
  # makes its projections from query, value and key together).
  inp = k.Input((5, 8))
  wrapper = tf_fairprune.FairPruneWrapper(k.layers.MultiHeadAttention(2, 4))
  out = wrapper(inp, inp)
  assert out.shape == (None, 5, 8)
  # Keras 3 names variables by their last path component only; their paths are unique.
  names = [v.name if k is keras else v.path for v in wrapper.score_variables]
  assert len(names) == 4 and len(set(names)) == 4
  x = np.ones((2, 5, 8), "float32")
  assert wrapper(x, x).shape == (2, 5, 8)  # Eagerly too, with the scores it made.


def test_mask_zeroes_the_effective_weights(k):
  layer = k.layers.Dense(4, use_bias=False)
  wrapper = tf_fairprune.FairPruneWrapper(layer)
  x = tf.eye(3)
  wrapper(x)
  mask = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]], "float32")
  wrapper.mask_variables[0].assign(mask)
  np.testing.assert_allclose(wrapper(x).numpy(), layer.kernel.numpy() * mask, rtol=1e-6)
  # The variable itself keeps its values (pruned entries can come back).
  assert np.count_nonzero(layer.kernel.numpy()) == 12


class MyDense(keras.layers.Dense):  # TFMOT rejects this by exact class match; we do not.
  pass


class CustomPrunable(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):

  def build(self, input_shape):
    self.w = self.add_weight("w", (input_shape[-1], 2))
    self.extra = self.add_weight("extra", (input_shape[-1], 2))

  def call(self, x):
    return tf.matmul(x, self.w) + tf.matmul(x, self.extra)

  def get_prunable_weights(self):
    return [self.w]


class DuckTyped(CustomPrunable.__bases__[0]):

  def build(self, input_shape):
    self.kern = self.add_weight("kern", (input_shape[-1], 2))

  def call(self, x):
    return tf.matmul(x, self.kern)

  def get_prunable_weights(self):
    return [self.kern]


class Unsupported(keras.layers.Layer):

  def build(self, input_shape):
    self.kernel = self.add_weight("kernel", (input_shape[-1], 2))

  def call(self, x):
    return tf.matmul(x, self.kernel)


def _keras3_classes():
  """Keras 3 twins of the custom layers above (Keras 3's add_weight takes shape first)."""

  class MyDense3(KERAS3.layers.Dense):
    pass

  class CustomPrunable3(KERAS3.layers.Layer, tfmot.sparsity.keras.PrunableLayer):

    def build(self, input_shape):
      self.w = self.add_weight(name="w", shape=(input_shape[-1], 2))
      self.extra = self.add_weight(name="extra", shape=(input_shape[-1], 2))

    def call(self, x):
      return tf.matmul(x, self.w) + tf.matmul(x, self.extra)

    def get_prunable_weights(self):
      return [self.w]

  class DuckTyped3(KERAS3.layers.Layer):

    def build(self, input_shape):
      self.kern = self.add_weight(name="kern", shape=(input_shape[-1], 2))

    def call(self, x):
      return tf.matmul(x, self.kern)

    def get_prunable_weights(self):
      return [self.kern]

  class Unsupported(KERAS3.layers.Layer):  # The same class name: the error names it.

    def build(self, input_shape):
      self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], 2))

    def call(self, x):
      return tf.matmul(x, self.kernel)

  return {"MyDense": MyDense3, "CustomPrunable": CustomPrunable3, "DuckTyped": DuckTyped3,
          "Unsupported": Unsupported}


def _classes(k):
  if k is keras:
    return {"MyDense": MyDense, "CustomPrunable": CustomPrunable, "DuckTyped": DuckTyped,
            "Unsupported": Unsupported}
  return _keras3_classes()


@pytest.mark.parametrize("make", [lambda c: c["MyDense"](2), lambda c: c["CustomPrunable"](),
                                  lambda c: c["DuckTyped"]()],
                         ids=["MyDense", "CustomPrunable", "DuckTyped"])
def test_subclasses_prunable_layer_and_duck_typing(make, k):
  wrapper = tf_fairprune.FairPruneWrapper(make(_classes(k)))
  wrapper(tf.ones((1, 3)))
  assert len(wrapper.score_variables) == 1


def test_unsupported_layer_with_kernels_is_named_in_the_error(k):
  Unsupported = _classes(k)["Unsupported"]  # pylint: disable=invalid-name,redefined-outer-name
  layer = Unsupported(name="mystery")
  layer.build((None, 3))
  with pytest.raises(ValueError, match=r"mystery.*Unsupported.*get_prunable_weights"):
    tf_fairprune.FairPruneWrapper(layer)
  with pytest.raises(ValueError, match="register_prunable_layer"):
    tf_fairprune.FairPruneWrapper(Unsupported())


def test_register_prunable_layer_makes_it_supported(k):
  class Registered(_classes(k)["Unsupported"]):
    pass
  tf_fairprune.register_prunable_layer(Registered, ["kernel"])
  wrapper = tf_fairprune.FairPruneWrapper(Registered())
  wrapper(tf.ones((1, 3)))
  assert [v.shape for v in wrapper.prunable_weights] == [(3, 2)]
  with pytest.raises(TypeError):
    tf_fairprune.register_prunable_layer(object, ["kernel"])


def test_weightless_and_nothing_to_prune_layers(k):
  assert registry.get_prunable_weights(k.layers.Flatten()) == []
  bn = k.layers.BatchNormalization()
  bn.build((None, 4))
  assert registry.get_prunable_weights(bn) == []
  with pytest.raises(ValueError, match="no prunable weights"):
    tf_fairprune.FairPruneWrapper(bn)


def test_wrapper_rejects_bad_inputs(k):
  with pytest.raises(TypeError, match="tf_keras layer"):
    tf_fairprune.FairPruneWrapper("dense")
  inner = tf_fairprune.FairPruneWrapper(k.layers.Dense(2))
  with pytest.raises(ValueError, match="already wrapped"):
    tf_fairprune.FairPruneWrapper(inner)
  with pytest.raises(ValueError, match="not models"):
    tf_fairprune.FairPruneWrapper(k.Sequential([k.Input((2,)), k.layers.Dense(1)]))


def test_config_round_trip(k):
  wrapper = tf_fairprune.FairPruneWrapper(k.layers.Dense(5, activation="relu"), name="w")
  config = k.layers.serialize(wrapper)
  with tf_fairprune.fair_prune_scope():
    clone = k.layers.deserialize(config)
  # Keras 3: the public FairPruneWrapper dispatches to the Keras 3 class (not a subclass).
  assert isinstance(clone, tf_fairprune.FairPruneWrapper if k is keras else type(wrapper))
  assert clone.name == "w"
  assert clone.layer.get_config() == wrapper.layer.get_config()
  clone(tf.ones((1, 3)))
  assert len(clone.score_variables) == 1
