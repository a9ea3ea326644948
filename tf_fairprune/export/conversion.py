"""Keras model -> TFLite flatbuffer: the converter's settings, and the copy of a model
that TFLite's builtins can run (recurrent layers unrolled, float16 layers in float32)."""

import contextlib
import io
import warnings

import tensorflow as tf

from tf_fairprune import _private
from tf_fairprune import cloning
from tf_fairprune import flavours


def convert(model, sparse=True, quantize=None, representative_dataset=None, rnn=None):
  """Converts a Keras model to a TFLite flatbuffer, without `export_tflite`'s check.

  The conversion `export_tflite` uses, for measuring files (e.g. their size at each
  sparsity) without running or writing them. Strip a fair-pruned model first
  (`strip_fair_pruning`); nothing here checks the outputs or falls back to dense.

  Args:
    model: A plain Keras model (Keras 3 or tf_keras).
    sparse: Store sparse tensors (`tf.lite.Optimize.EXPERIMENTAL_SPARSITY`).
    quantize: One of `QUANTIZE_MODES`: None (float), "dynamic" (dynamic range), "int8"
      (needs `representative_dataset`) or "qat" (a model from
      `quantize_preserving_sparsity`).
    representative_dataset: For "int8": a callable yielding lists of input arrays.
    rnn: One of `RNN_MODES`; "select_tf_ops" keeps TensorFlow ops (Flex) for recurrent
      layers. ("unroll" is applied by `export_tflite` before it converts.)

  Returns:
    The flatbuffer, as bytes.

  Raises:
    ValueError: If TFLite's builtin ops cannot run a recurrent layer as a loop and
      `rnn` is None (the message names both `rnn` options).
    Exception: Whatever else the TFLite converter raises.

  Example:

  ```python
  sizes = {s: len(convert(tf_fairprune.strip_fair_pruning(m), sparse=s)) for s in (False, True)}
  ```
  """
  converter = tf.lite.TFLiteConverter.from_keras_model(model)
  if rnn == "select_tf_ops":
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    _private.keep_tensor_list_ops(converter)
  optimizations = []
  if quantize is not None:
    optimizations.append(tf.lite.Optimize.DEFAULT)
  if sparse:
    optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
  converter.optimizations = optimizations
  if quantize == "int8":
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  # Keras 3's export prints the saved signature to stdout: keep the user's output clean.
  with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
    warnings.simplefilter("ignore", UserWarning)  # The converter's statistics notice.
    try:
      return converter.convert()
    except Exception as err:  # pylint: disable=broad-except
      if "TensorList" in str(err) and rnn is None:
        raise ValueError(
            "TFLite's builtin ops cannot run this model's recurrent layer as a loop "
            "(TensorListReserve needs a static element shape). Pass rnn='unroll' to "
            "export_tflite (the RNN unrolled over its fixed time steps: builtin ops, "
            "checked in LiteRT) or rnn='select_tf_ops' (TensorFlow's ops inside the file: "
            "the app must link the Flex delegate).") from err
      raise


def computes_in_float16(model):
  """True when a layer of `model` computes in float16 (a `mixed_float16` policy)."""
  return any(str(getattr(l, "compute_dtype", "")) in ("float16", "bfloat16")
             for l in _private.flatten_layers(model, include_self=False))


FLOAT16_NOTE = (
    "the model computes in float16 (mixed precision) and TFLite has no float16 kernels "
    "for its ops, so a float32 copy (the same weights: mixed-precision variables are "
    "float32) was converted and checked")


def has_rnn(model):
  """True when `model` holds a recurrent layer (LSTM, GRU, SimpleRNN, any `RNN`)."""
  k = flavours.of(model).keras
  return any(isinstance(l, k.layers.RNN)
             for l in _private.flatten_layers(model, include_self=False))


def convertible_copy(model, unroll, float32):
  """A copy of `model` that TFLite builtins can run: its RNN layers unrolled over their
  (static) time steps (`unroll`; a dynamic loop needs TensorList ops, which only select
  TF ops run) and every layer computing in float32 (`float32`: a `mixed_float16`
  model, whose float16 ops the converter cannot lower).

  Raises:
    ValueError: For a subclassed model (which cannot be copied; the message names what
      to do instead), or `unroll` with an input of no fixed number of time steps.

  Example:

  ```python
  model = convertible_copy(model, unroll=has_rnn(model), float32=computes_in_float16(model))
  ```
  """
  if not flavours.of(model).is_graph_model(model):
    if unroll:
      raise ValueError("rnn='unroll' needs a Sequential or Functional model; use "
                       "rnn='select_tf_ops' for a subclassed one.")
    raise ValueError(
        f"export_tflite: '{model.name}' computes in float16 (mixed precision), which TFLite "
        "cannot convert, and a subclassed model cannot be copied in float32 here: build "
        "it again under the float32 policy, copy the weights over (mixed-precision "
        "variables are float32 already) and export that (README, 'Mixed precision').")
  k = flavours.of(model).keras

  def copy(layer):
    config = layer.get_config()
    if unroll and isinstance(layer, k.layers.RNN):
      config["unroll"] = True
    if float32:
      config["dtype"] = "float32"
    return layer.__class__.from_config(config)
  if unroll:
    for t in model.inputs:
      if len(t.shape) >= 3 and t.shape[1] is None:
        raise ValueError(f"rnn='unroll' needs a fixed number of time steps; input "
                         f"'{t.name}' has shape {tuple(t.shape)}. Give the model's Input a "
                         "fixed length, or use rnn='select_tf_ops'.")
  clone = cloning.clone_graph(model, copy)
  clone.set_weights(model.get_weights())
  return clone
