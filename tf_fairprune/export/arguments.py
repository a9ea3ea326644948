"""The checks of `export_tflite`'s arguments: one clear line per bad value, before any
conversion (so nothing is written)."""

from tf_fairprune import flavours
from tf_fairprune import quantization

QUANTIZE_MODES = (None, "dynamic", "int8", "qat")
RNN_MODES = (None, "unroll", "select_tf_ops")
TARGETS = ("cpu", "gpu")


def check_options(model, target, quantize, rnn, representative_dataset):
  """Raises on a value `export_tflite` does not take.

  Args:
    model: What was passed as the model.
    target: One of `TARGETS`.
    quantize: One of `QUANTIZE_MODES`.
    rnn: One of `RNN_MODES`.
    representative_dataset: Required (not None) for `quantize="int8"`.

  Raises:
    TypeError: If `model` is not a Keras model of either flavour.
    ValueError: For an unknown `target`, `quantize` or `rnn`, or `quantize="int8"`
      without a representative dataset.

  Example:

  ```python
  check_options(model, "cpu", None, None, None)  # Returns None: all fine.
  ```
  """
  if not isinstance(model, flavours.of(model).keras.Model):
    raise TypeError(f"export_tflite expects a Keras model (tf_keras or Keras 3), got "
                    f"{type(model).__name__}.")
  if target not in TARGETS:
    raise ValueError(f"target must be one of {TARGETS}, got {target!r}.")
  if quantize not in QUANTIZE_MODES:
    raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}.")
  if rnn not in RNN_MODES:
    raise ValueError(f"rnn must be one of {RNN_MODES}, got {rnn!r}.")
  if quantize == "int8" and representative_dataset is None:
    raise ValueError("quantize='int8' needs a representative_dataset (a callable that "
                     "yields lists of input arrays).")


def check_quantization(model, quantize):
  """Raises when `quantize` does not fit the model: a QAT model must be exported with
  `quantize="qat"`, and one trained that way must have kept its pruned zeros.

  Raises:
    ValueError: If `model` is quantization-aware and `quantize` is not `"qat"`, or (from
      `quantization.check_sparsity_preserved`) training refilled a pruned weight.

  Example:

  ```python
  check_quantization(qat_model, "qat")
  ```
  """
  if quantize == "qat":
    quantization.check_sparsity_preserved(model)
  elif quantization.is_qat_model(model):
    raise ValueError("This is a quantization-aware model: export it with quantize='qat'.")
