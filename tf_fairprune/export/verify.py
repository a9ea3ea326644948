"""The check of a flatbuffer against its Keras model: run it in the LiteRT interpreter
on sample inputs and judge the difference (against float64 too when the model is
ill-conditioned)."""

import collections

import numpy as np
import tensorflow as tf

from tf_fairprune import conditioning as conditioning_lib
from tf_fairprune import flavours


def interpreter_class():
  """The TFLite interpreter that `export_tflite` checks files in.

  Returns:
    `(cls, name)`: LiteRT's `ai_edge_litert.interpreter.Interpreter` and
    `"ai_edge_litert"` when it is installed (`pip install -e ".[litert]"`), else
    `tf.lite.Interpreter` and `"tf.lite"`. `cls(model_content=flatbuffer)` builds one.
  """
  try:
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
    return Interpreter, "ai_edge_litert"
  except ImportError:
    return tf.lite.Interpreter, "tf.lite"


# What `compare` found: max |TFLite − Keras|, the interpreter's name, max |Keras output|,
# and both sides' outputs (lists with one [samples, ...] array per output).
Comparison = collections.namedtuple("Comparison", "diff interpreter scale outputs expected")


def compare(flatbuffer, model, inputs):
  """`run_tflite`, with both sides' outputs (a `Comparison`)."""
  interpreter_cls, name = interpreter_class()
  interpreter = interpreter_cls(model_content=flatbuffer)
  interpreter.allocate_tensors()
  runner = interpreter.get_signature_runner()
  signature = interpreter.get_signature_list()["serving_default"]
  input_names, model_output_names = flavours.of(model).io_names(model)
  feed_names = list(signature["inputs"])
  if sorted(input_names) == sorted(feed_names):
    feed_names = input_names
  expected = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
  expected = list(expected.values()) if isinstance(expected, dict) else expected
  expected = list(expected) if isinstance(expected, (list, tuple)) else [expected]
  output_names = list(signature["outputs"])
  if sorted(output_names) == sorted(model_output_names):
    output_names = list(model_output_names)
  rows = [runner(**{n: a[i:i + 1] for n, a in zip(feed_names, inputs)})
          for i in range(inputs[0].shape[0])]
  outputs = [np.concatenate([r[n] for r in rows]).astype(np.float64) for n in output_names]
  diff = conditioning_lib.max_abs_diff(outputs, expected)
  scale = max(float(np.max(np.abs(e))) for e in expected)
  return Comparison(diff, name, scale, outputs, expected)


def run_tflite(flatbuffer, model, inputs):
  """Runs a flatbuffer on sample inputs and compares it with the Keras model.

  Args:
    flatbuffer: A TFLite model (bytes), e.g. from `convert`.
    model: The Keras model it was converted from.
    inputs: A list with one array per model input, the samples along axis 0; each
      sample is run through the interpreter on its own (batch 1).

  Returns:
    `(max_abs_diff, interpreter_name, output_scale)`: max |TFLite − Keras| over every
    sample and output, the interpreter used (see `interpreter_class`), and
    max |Keras output| (what `export_tflite` scales its tolerance by).

  Raises:
    RuntimeError: If the interpreter cannot prepare or run the file (e.g. int8 with
      unstructured sparsity under XNNPACK).
    ValueError: If the interpreter rejects the file or the inputs.

  Example:

  ```python
  diff, interpreter, scale = run_tflite(convert(model), model, [x[:8]])
  ```
  """
  comparison = compare(flatbuffer, model, inputs)
  return comparison.diff, comparison.interpreter, comparison.scale


def tolerance_for(quantize, expected_scale):
  """The largest |TFLite − Keras| accepted: 1e-3 (float) or 5e-2 (quantized) times
  max(1, max |Keras output|)."""
  return (1e-3 if quantize is None else 5e-2) * max(1.0, expected_scale)


# What `judge` decided: whether the file is accepted, the model's `Conditioning` (its
# float32 noise; its distances from float64 when they were needed), the tolerance, and
# the `Comparison` judged.
Verdict = collections.namedtuple("Verdict", "accepted conditioning tolerance comparison")


def judge(comparison, model, inputs, quantize):
  """The `Verdict` on a file's comparison with Keras.

  Within the plain tolerance of Keras it is accepted. A float file outside it is judged
  against the model run in float64 (`conditioning.float64_outputs`): accepted when it is
  within the tolerance plus `NOISE_FACTOR` × the model's float32 noise of it (so never
  refused for being closer to float64 than Keras float32 is); with no float64 run, when
  its difference from Keras is within the tolerance plus `NOISE_FACTOR_WITHOUT_FLOAT64`
  × the noise that a few-ulp input change causes.
  """
  tolerance = tolerance_for(quantize, comparison.scale)
  found = conditioning_lib.Conditioning(
      conditioning_lib.float32_noise(model, inputs, comparison.expected))
  if comparison.diff <= tolerance:
    return Verdict(True, found, tolerance, comparison)
  if quantize is not None:
    return Verdict(False, found, tolerance, comparison)
  noise = found.float32_noise if np.isfinite(found.float32_noise) else 0.0
  exact = conditioning_lib.float64_outputs(model, inputs)
  if exact is not None:
    found.keras_vs_float64 = conditioning_lib.max_abs_diff(comparison.expected, exact)
    found.tflite_vs_float64 = conditioning_lib.max_abs_diff(comparison.outputs, exact)
    noise = max(noise, found.keras_vs_float64)
    found.judged_by = "float64"
    return Verdict(found.tflite_vs_float64 <= tolerance + conditioning_lib.NOISE_FACTOR * noise,
                   found, tolerance, comparison)
  found.judged_by = "noise"
  return Verdict(
      comparison.diff <= tolerance + conditioning_lib.NOISE_FACTOR_WITHOUT_FLOAT64 * noise,
      found, tolerance, comparison)


def mismatch(verdict, what):
  """The one-line account of a refused comparison (`what` names the outputs)."""
  found = verdict.conditioning
  text = (f"{what} differ from Keras by {verdict.comparison.diff:.3g} "
          f"(tolerance {verdict.tolerance:.3g}")
  if found.tflite_vs_float64 is not None:
    text += (f"; from the model run in float64 by {found.tflite_vs_float64:.3g}, where Keras "
             f"float32 is {found.keras_vs_float64:.3g} from it")
  return text + ")"
