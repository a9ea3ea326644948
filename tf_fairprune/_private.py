"""Every private name of tf_keras, Keras 3, TensorFlow, TFMOT and TFLite that
tf_fairprune uses, one adapter each (Keras 3's compile internals are the Keras 3
flavour table's, in `flavour_keras3.py`).

These are not public APIs and may move in a new release. Each is resolved here, at
import where it can be, and a move fails with an error naming what is missing instead
of an AttributeError deep in a training step; `tests/test_private.py` checks them all,
on both flavours.
"""

import importlib

import tensorflow as tf

from tf_fairprune import _compat  # Imports TFMOT without changing the user's Keras.


class PrivateAPIError(ImportError):
  """A private name tf_fairprune depends on is gone from the installed version."""


def resolve(module, name, what):
  try:
    return getattr(importlib.import_module(module), name)
  except (ImportError, AttributeError) as err:
    raise PrivateAPIError(
        f"tf_fairprune needs {what} ({module}.{name}), which the installed version does "
        f"not have ({err}). Install the tf_keras / TFMOT versions listed in setup.py.") from err


# tf_keras: the compiled-loss container, for the upper level's second forward pass
# (alternating mode) without touching the reported loss metric.
LossesContainer = resolve("tf_keras.src.engine.compile_utils", "LossesContainer",
                           "tf_keras' compiled-loss container")
# tf_keras: the functional model class and its config reconstruction, for
# FunctionalFairPruneModel (a graph network that saves and loads like keras.Model).
Functional = resolve("tf_keras.src.engine.functional", "Functional",
                      "tf_keras' functional model class")
reconstruct_from_config = resolve("tf_keras.src.engine.functional", "reconstruct_from_config",
                                   "tf_keras' functional config reconstruction")
connect_ancillary_layers = resolve("tf_keras.src.engine.functional",
                                    "connect_ancillary_layers",
                                    "tf_keras' functional config reconstruction")
SharedObjectLoadingScope = resolve("tf_keras.src.saving.legacy.serialization",
                                    "SharedObjectLoadingScope",
                                    "tf_keras' shared-object loading scope")


class TfmotRegistry:
  """TFMOT's table of which weights of which built-in layer are prunable."""

  _cls = _compat.TfmotPruneRegistry
  for _attr in ("_LAYERS_WEIGHTS_MAP", "_RNN_LAYERS", "_RNN_CELLS_WEIGHTS_MAP"):
    if not hasattr(_cls, _attr):
      raise PrivateAPIError(f"tf_fairprune needs TFMOT's PruneRegistry.{_attr}, which the "
                            "installed tensorflow-model-optimization does not have.")
  layers_weights = _cls._LAYERS_WEIGHTS_MAP  # pylint: disable=protected-access
  rnn_layers = _cls._RNN_LAYERS  # pylint: disable=protected-access
  rnn_cells_weights = _cls._RNN_CELLS_WEIGHTS_MAP  # pylint: disable=protected-access


def keep_tensor_list_ops(converter):
  """Asks the TFLite converter to keep TensorList ops (an RNN's dynamic loop) as select
  TF ops instead of lowering them (the converter's own advice for LSTM/GRU)."""
  converter._experimental_lower_tensor_list_ops = False  # pylint: disable=protected-access


def interpreter_ops(interpreter):
  """The ops of a TFLite interpreter (name, inputs, outputs): its private
  `_get_ops_details`, or None where the interpreter lacks it (then op reports are empty)."""
  get = getattr(interpreter, "_get_ops_details", None)
  return get() if get is not None else None


# Both flavours: state that Keras' attribute tracking must not see.
def untracked(obj, name, value):
  """Sets `obj.name = value` past Keras' attribute tracking (`Layer.__setattr__`).

  Keras tracks every attribute set on a layer or model: a variable becomes one of its
  weights (saved, counted, trained), a layer one of its sublayers, a list a tracked
  wrapper. Use this for what must stay out of that bookkeeping: helpers whose variables
  are the model's own or are made per `compile` (they would be saved twice, or under
  a changing name), traced functions, flags, plain lists Keras itself keeps plain, and
  the masked tensor a wrapper substitutes for a weight during one call. Reading the
  attribute back is an ordinary `obj.name`.

  Args:
    obj: A layer or model (of either flavour), or any object.
    name: The attribute's name.
    value: Its value.

  Example:

  ```python
  untracked(model, "_step_guard", step_guard.StepGuard())  # Not a tracked dependency.
  ```
  """
  object.__setattr__(obj, name, value)


# Both flavours: a layer's sublayers, recursively (what Keras' own weight tracking walks).
def flatten_layers(layer, include_self=True, recursive=True):
  """The layers of `layer` (itself first if `include_self`), nested ones if `recursive`."""
  return list(layer._flatten_layers(  # pylint: disable=protected-access
      include_self=include_self, recursive=recursive))


def output_layer(tensor):
  """The layer that produced a symbolic Keras tensor (of either flavour)."""
  return tensor._keras_history[0]  # pylint: disable=protected-access


def is_graph_network(model):
  """True for a Functional model of either flavour."""
  return bool(getattr(model, "_is_graph_network", False))


def dtype_policy(layer):
  """The dtype policy `layer` was built with (Keras 3's public property; tf_keras keeps
  it private on some layers)."""
  return getattr(layer, "dtype_policy", None) or layer._dtype_policy  # pylint: disable=protected-access


def compile_config(model):
  """The dict of compile arguments a saved tf_keras / Keras 3 model compiles again with."""
  return model._compile_config.config  # pylint: disable=protected-access


def tf_keras_inbound_nodes(model, layer):
  """[(node, input tensors)] of the calls of `layer` in a tf_keras Functional `model`."""
  # pylint: disable=protected-access
  return [(n, list(n.keras_inputs)) for i, n in enumerate(layer.inbound_nodes)
          if f"{layer.name}_ib-{i}" in model._network_nodes]


# TensorFlow: a cond that runs its branch in a replica's cross-replica merge (the way
# Keras' LossScaleOptimizers skip an update under a strategy).
strategy_supports_no_merge_call = tf.__internal__.distribute.strategy_supports_no_merge_call
smart_cond = tf.__internal__.smart_cond.smart_cond
