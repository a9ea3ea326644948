"""How much a model's own float32 arithmetic moves its outputs: the export check's yardstick.

An untrained or briefly trained net with batch normalisation can be ill-conditioned: a
MobileNetV2 moved its outputs by 0.02–0.14 for a 1e-7 input change, so two float32
implementations of it (Keras and TFLite) differ by that much while both are as right as
float32 can be. `export_tflite` therefore judges a file that misses the plain tolerance
against the model run in float64: a file no farther from float64 than the model's float32
noise allows is written, with the numbers in `TFLiteExport.conditioning`.
"""

import dataclasses

import numpy as np

from tf_fairprune import cloning
from tf_fairprune import flavours

# Relative size of the input perturbation that measures the float32 noise: a few units in
# the last place of float32 (2**-23 ≈ 1.2e-7).
PERTURBATION = 4 * 2.0**-23
# A file is accepted when it is at most this many times the model's float32 noise (plus
# the plain tolerance) away from the float64 run; without a float64 run, when it is at
# most this many times the noise away from Keras (two noisy implementations).
NOISE_FACTOR = 2.0
NOISE_FACTOR_WITHOUT_FLOAT64 = 4.0


@dataclasses.dataclass
class Conditioning:
  """The model's float32 noise on the sample inputs, and how the file was judged.

  Attributes:
    float32_noise: max |Keras(x') − Keras(x)| for inputs x' that differ from x by
      a few float32 units in the last place (NaN for integer inputs such as token ids).
      Of a well-conditioned model this is ~1e-6 of its outputs.
    keras_vs_float64: max |Keras float32 − the model run in float64|, or None when it
      was not needed (the plain check passed) or not possible (a layer with no float64
      copy, e.g. a subclassed model).
    tflite_vs_float64: max |TFLite − the model run in float64|, or None likewise.
    judged_by: `"keras"` (within the plain tolerance of Keras), `"float64"` (outside it,
      but within the model's own float32 noise of the float64 run) or `"noise"`
      (no float64 run: within a multiple of `float32_noise` of Keras).
  """
  float32_noise: float
  keras_vs_float64: float = None
  tflite_vs_float64: float = None
  judged_by: str = "keras"

  @property
  def ill_conditioned(self):
    """True when float32 noise alone moves the outputs by more than 1e-4."""
    noise = max(v for v in (self.float32_noise, self.keras_vs_float64, 0.0)
                if v is not None and np.isfinite(v))
    return noise > 1e-4


def max_abs_diff(a, b):
  """max |a − b| over lists of arrays of equal shapes."""
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(a, b))


def _as_list(outputs):
  if isinstance(outputs, dict):
    return list(outputs.values())
  return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _predict(model, inputs):
  return _as_list(model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0))


def float32_noise(model, inputs, expected, seed=0):
  """max |Keras(x') − `expected`| with every float input perturbed by `PERTURBATION`
  (relative); NaN when no input is float."""
  rng = np.random.default_rng(seed)
  if not any(a.dtype.kind == "f" for a in inputs):
    return float("nan")
  moved = [a * (1 + PERTURBATION * rng.choice([-1.0, 1.0], a.shape)).astype(a.dtype)
           if a.dtype.kind == "f" else a for a in inputs]
  return max_abs_diff(_predict(model, moved), expected)


def float64_outputs(model, inputs):
  """The outputs of a float64 copy of `model` (Sequential or Functional) on `inputs`, or
  None when no such copy can be made (subclassed models, layers without float64)."""
  if not flavours.of(model).is_graph_model(model):
    return None

  def copy(layer):
    return layer.__class__.from_config({**layer.get_config(), "dtype": "float64"})
  try:
    clone = cloning.clone_graph(model, copy)
    clone.set_weights([np.asarray(w, np.float64) if np.asarray(w).dtype.kind == "f" else w
                       for w in model.get_weights()])
    cast = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in inputs]
    return _predict(clone, cast)
  except (ValueError, TypeError, NotImplementedError, RuntimeError):
    return None
