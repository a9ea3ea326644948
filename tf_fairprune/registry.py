"""Which weights of which layer can be pruned.

Looks in the same places as TFMOT (its registry, ``PrunableLayer``, a duck-typed
``get_prunable_weights()``) and, unlike TFMOT, also accepts subclasses of supported
layers: the registry is searched along the class's MRO, not by exact class match.
"""

from tf_fairprune import _private
from tf_fairprune import flavours
from tf_fairprune._compat import PrunableLayer, keras

# Layers registered by users of this library: class -> attribute names (dotted paths).
_USER_LAYERS = {}

_HOW_TO = (
    "To make it prunable, either give the layer a `get_prunable_weights()` method "
    "(e.g. subclass `tfmot.sparsity.keras.PrunableLayer`), register its class with "
    "`tf_fairprune.register_prunable_layer(cls, ['kernel', ...])`, or wrap only the "
    "layers you want pruned with `fair_prune_wrapper(layer)` before building the model. "
    "If none of its weights should be pruned (e.g. a ViT position embedding or class "
    "token), register it with nothing to prune: "
    "`tf_fairprune.register_prunable_layer(cls, [])`."
)


def register_prunable_layer(layer_class, weight_names):
  """Declares which weights of a layer class are prunable.

  Args:
    layer_class: A `tf_keras` or Keras 3 `Layer` subclass. Its subclasses match too.
    weight_names: Attribute names of the weights to prune, dotted for weights of
      sublayers (e.g. `"_query_dense.kernel"`). An empty list marks the class as
      known with nothing to prune.

  Raises:
    TypeError: If `layer_class` is not a Keras layer class.

  Example:

  ```python
  tf_fairprune.register_prunable_layer(MyDense, ["kernel"])
  ```
  """
  if not (isinstance(layer_class, type) and
          issubclass(layer_class, flavours.of(layer_class).keras.layers.Layer)):
    raise TypeError(f"register_prunable_layer expects a Keras Layer class, got {layer_class!r}.")
  _USER_LAYERS[layer_class] = list(weight_names)


def _lookup(mapping, cls):
  for klass in cls.__mro__:
    if klass in mapping:
      return mapping[klass]
  return None


# Keras 3's built-in layers, by class name (TFMOT's table holds tf_keras classes only).
# Layers with nothing to prune (normalisation, pooling, ...) hold no 2-D+ kernels and
# need no entry. RNN layers prune their cell's kernels.
_KERAS3_LAYERS = {
    "Dense": ["kernel"], "EinsumDense": ["kernel"], "Embedding": ["embeddings"],
    "Conv1D": ["kernel"], "Conv2D": ["kernel"], "Conv3D": ["kernel"],
    "Conv1DTranspose": ["kernel"], "Conv2DTranspose": ["kernel"],
    "Conv3DTranspose": ["kernel"], "DepthwiseConv1D": [],
    "DepthwiseConv2D": [], "SeparableConv1D": ["pointwise_kernel"],
    "SeparableConv2D": ["pointwise_kernel"],
    "SimpleRNN": ["cell.kernel", "cell.recurrent_kernel"],
    "LSTM": ["cell.kernel", "cell.recurrent_kernel"],
    "GRU": ["cell.kernel", "cell.recurrent_kernel"],
    "MultiHeadAttention": ["_query_dense.kernel", "_key_dense.kernel", "_value_dense.kernel",
                           "_output_dense.kernel"],
}


# One policy on both flavours, TFMOT's: depthwise kernels are not pruned by default (a
# 3x3xC depthwise kernel is a few percent of a MobileNet's weights, and each of its
# channels is one input channel's only filter). Register the class to prune them:
# `register_prunable_layer(keras.layers.DepthwiseConv2D, ["kernel"])` (tf_keras:
# "depthwise_kernel").
_NOT_PRUNED_BY_DEFAULT = ("DepthwiseConv1D", "DepthwiseConv2D")


def _keras3_names(cls):
  for klass in cls.__mro__:
    root = klass.__module__.split(".")[0]
    if root in ("keras", "tf_keras") and klass.__name__ in _NOT_PRUNED_BY_DEFAULT:
      return []
    if root == "keras" and klass.__name__ in _KERAS3_LAYERS:
      return _KERAS3_LAYERS[klass.__name__]
  return None


def _weight_names(layer):
  """Registered weight names for `layer`'s class (or a base class), else None."""
  names = _lookup(_USER_LAYERS, type(layer))
  if names is None:
    names = _lookup(_private.TfmotRegistry.layers_weights, type(layer))
  if names is None:
    names = _keras3_names(type(layer))
  return names


def _is_rnn(layer):
  return any(k in _private.TfmotRegistry.rnn_layers for k in type(layer).__mro__)


def _rnn_cell_weights(layer):
  cell = layer.cell
  cells = cell.cells if isinstance(cell, keras.layers.StackedRNNCells) else [cell]
  weights = []
  for c in cells:
    if isinstance(c, PrunableLayer) or hasattr(c, "get_prunable_weights"):
      weights.extend(c.get_prunable_weights())
      continue
    names = _lookup(_private.TfmotRegistry.rnn_cells_weights, type(c))
    if names is None:
      raise ValueError(
          f"Layer '{layer.name}' ({type(layer).__name__}) uses the RNN cell "
          f"{type(c).__name__}, which tf_fairprune cannot prune. {_HOW_TO}")
    weights.extend(getattr(c, n) for n in names)
  return weights


def _resolve(layer, dotted):
  obj = layer
  for part in dotted.split("."):
    obj = getattr(obj, part)
  return obj


def has_explicit_prunable_weights(layer):
  return isinstance(layer, PrunableLayer) or callable(getattr(layer, "get_prunable_weights", None))


def is_known(layer):
  """True when this library knows how to treat `layer` (prunable or nothing to prune)."""
  return (has_explicit_prunable_weights(layer) or _is_rnn(layer) or
          _weight_names(layer) is not None)


def get_prunable_weights(layer):
  """Returns the list of prunable variables of a built layer.

  Args:
    layer: A built `tf_keras` layer.

  Returns:
    A list of `tf.Variable`; empty when the layer has nothing to prune.

  Raises:
    ValueError: If the layer holds trainable kernels but is not supported.
  """
  if has_explicit_prunable_weights(layer):
    return list(layer.get_prunable_weights())
  if _is_rnn(layer):
    return _rnn_cell_weights(layer)
  names = _weight_names(layer)
  if names is not None:
    return [_resolve(layer, n) for n in names]
  if any(len(w.shape) >= 2 for w in layer.trainable_weights):
    raise ValueError(
        f"Layer '{layer.name}' of type {type(layer).__name__} holds trainable kernels "
        f"but tf_fairprune does not know which of them to prune. {_HOW_TO}")
  return []
