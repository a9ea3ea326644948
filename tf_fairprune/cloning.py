"""Copying a Sequential or Functional model layer by layer, for either flavour.

`fair_prune_wrapper` copies a model with its prunable layers wrapped; `strip_fair_pruning`
and the TFLite export copy a wrapped model with the wrappers removed. Both walk the
graph the same way, here.
"""

from tf_fairprune import flavours
from tf_fairprune import wrapper as wrapper_lib


def type_error(obj):
  kind = f"{type(obj).__module__}.{type(obj).__name__}"
  return TypeError(f"Expected a Keras Model, Layer or list of Layers (tf_keras or Keras 3), "
                   f"got {kind}.")


def copy_layer(layer):
  new = layer.__class__.from_config(layer.get_config())
  if layer.built and not new.built and wrapper_lib.builds_sublayers_late(layer):
    wrapper_lib.build_like(new, layer)
  return new


def check_graph_model(model, what):
  if not flavours.of(model).is_graph_model(model):
    raise ValueError(
        f"{what} '{model.name}' is a subclassed model, which cannot be cloned. Subclass "
        "`tf_fairprune.FairPruneModel` instead of `keras.Model` and wrap the layers to "
        "prune with `tf_fairprune.FairPruneWrapper` inside it.")
  if not model.built or model.inputs is None:
    raise ValueError(
        f"{what} '{model.name}' is not built. Give it an input shape (e.g. start a "
        "Sequential model with `keras.Input(shape)`) before pruning it.")


def clone_graph(model, layer_fn):
  """Clones a graph model, calling `layer_fn` on every non-input layer (recursively)."""
  k = flavours.of(model).keras

  def clone_fn(layer):
    if not isinstance(layer, k.layers.Layer):
      # A Keras 3 operation node (`x + 3.0`, `keras.ops.relu(x)` on Keras tensors): it
      # has no weights or state, so the clone reuses it as it is.
      return layer
    if isinstance(layer, k.Model):
      check_graph_model(layer, "Nested model")
      return k.models.clone_model(layer, clone_function=clone_fn)
    return layer_fn(layer)
  return k.models.clone_model(model, clone_function=clone_fn)


def rebuild(clone, source, model_cls, **kwargs):
  """A model of `model_cls` over the graph of `clone`; Sequential if the source was."""
  k = flavours.of(source).keras
  if model_cls is k.Sequential:
    layers = [l for l in clone.layers if not isinstance(l, k.layers.InputLayer)]
    return k.Sequential([k.Input(batch_shape=source.input_shape)] + layers, name=source.name)
  return model_cls(inputs=clone.inputs, outputs=clone.outputs, name=source.name, **kwargs)
