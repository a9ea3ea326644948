"""The sample inputs `export_tflite` checks a file on: validated, one array per input.

Every input a user may pass is either turned into one array per model input, in that
input's dtype and with the samples along axis 0, or refused in one line that names the
problem (never a traceback from inside Keras or the interpreter): no rows, inputs packed
with group ids, a dataset, a dict with unknown names, a count or shape that does not
match the model, rows that differ between inputs, non-numeric, ragged or non-finite values.
"""

import numpy as np
import tensorflow as tf

from tf_fairprune import groups as groups_lib


def _fail(message):
  return ValueError(f"export_tflite: sample_inputs {message}")


def _as_array(value, what):
  """`value` as a numeric numpy array with a sample axis, or a one-line error."""
  if value is None:
    raise _fail(f"{what} is None.")
  try:
    array = np.asarray(value)
  except (ValueError, TypeError) as err:  # Ragged nested lists.
    raise _fail(f"{what} is not an array ({str(err).splitlines()[0][:80]}).") from None
  if array.dtype == object or array.dtype.kind not in "biuf":
    raise _fail(f"{what} holds {array.dtype} values; it needs numbers (ragged lists or "
                "strings cannot be fed to the model).")
  if array.ndim == 0:
    raise _fail(f"{what} is a scalar; it needs the samples along axis 0.")
  if array.shape[0] == 0:
    raise _fail(f"{what} is empty (0 rows): pass at least one sample.")
  if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
    raise _fail(f"{what} holds NaN or inf, which no output check can compare.")
  return array


def _structure(model, sample_inputs):
  """The user's inputs as a list in the model's input order (arrays not yet checked)."""
  if isinstance(sample_inputs, tf.data.Dataset):
    raise _fail("is a tf.data.Dataset; pass arrays, e.g. next(iter(ds))[0] for one batch.")
  if isinstance(sample_inputs, dict):
    if any(key in sample_inputs for key in groups_lib.RESERVED_KEYS):
      raise _fail("holds group ids packed by pack_group_data; pass the model's plain "
                  "inputs (x, not pack_group_data(x, groups)).")
    inputs = getattr(model, "inputs", None)
    if not inputs:
      return list(sample_inputs.values())
    names = [t.name.split(":")[0] for t in inputs]
    unknown = sorted(set(sample_inputs) - set(names))
    if unknown or len(sample_inputs) != len(names):
      raise _fail(f"has the keys {sorted(sample_inputs)} but the model's inputs are "
                  f"{names}.")
    return [sample_inputs[n] for n in names]
  if isinstance(sample_inputs, (list, tuple)):
    if not sample_inputs:
      raise _fail("is empty: pass at least one sample.")
    return list(sample_inputs)  # One entry per model input.
  return [sample_inputs]


def _as_input_dtype(array, tensor):
  """`array` in the dtype of the model input `tensor` (float32 if it has none)."""
  dtype = tf.as_dtype(getattr(tensor, "dtype", None) or "float32")  # Keras 3: a string.
  if dtype.is_integer and array.dtype.kind == "f" and np.any(array != np.round(array)):
    raise ValueError(f"Input '{tensor.name}' is {dtype.name} (e.g. token ids) but "
                     "sample_inputs holds non-integer values for it.")
  return array.astype(dtype.as_numpy_dtype)


def _same_rows(arrays):
  rows = {a.shape[0] for a in arrays}
  if len(rows) > 1:
    raise _fail(f"arrays have different numbers of rows {[a.shape[0] for a in arrays]}; "
                "every input needs one row per sample.")


def sample_inputs(model, sample_inputs=None, num_samples=16, seed=0):
  """One array per model input (in its dtype), the samples along axis 0.

  Args:
    model: The Keras model the file was converted from.
    sample_inputs: An array, a list or tuple (one entry per model input), a dict keyed
      by input name, or None: `num_samples` standard normal rows (float inputs of
      known shape only).
    num_samples: Rows drawn when `sample_inputs` is None.
    seed: Seed of those rows.

  Returns:
    A list of numpy arrays, one per model input.

  Raises:
    ValueError: With one line naming the problem (see the module docstring).
  """
  if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or \
      num_samples < 1:
    raise ValueError(f"export_tflite: num_samples must be a positive integer, got "
                     f"{num_samples!r}.")
  inputs = getattr(model, "inputs", None)
  if sample_inputs is None:
    if inputs is None:
      raise ValueError(f"Model '{model.name}' is subclassed (it has no input shapes): pass "
                       "`sample_inputs` to export_tflite.")
    return _random(inputs, num_samples, seed)
  given = _structure(model, sample_inputs)
  if inputs is None:  # A subclassed model: no symbolic inputs to check against.
    arrays = [_as_array(a, "input" if len(given) == 1 else f"input {i}")
              for i, a in enumerate(given)]
    _same_rows(arrays)
    return [a.astype(np.float32) if a.dtype.kind == "f" else a for a in arrays]
  if len(given) != len(inputs):
    raise _fail(f"has {len(given)} arrays but the model has {len(inputs)} inputs.")
  arrays = []
  for value, tensor in zip(given, inputs):
    array = _as_array(value, f"for input '{tensor.name}'")
    expected = tuple(tensor.shape[1:])
    if len(expected) != array.ndim - 1 or any(
        e is not None and e != s for e, s in zip(expected, array.shape[1:])):
      raise ValueError(f"sample_inputs shape {array.shape} does not match the model input "
                       f"'{tensor.name}' of shape {tuple(tensor.shape)}.")
    arrays.append(_as_input_dtype(array, tensor))  # Token ids stay integers.
  _same_rows(arrays)
  return arrays


def _random(inputs, num_samples, seed):
  rng = np.random.default_rng(seed)
  arrays = []
  for t in inputs:
    shape = tuple(t.shape[1:])
    if any(d is None for d in shape):
      raise ValueError(f"Input '{t.name}' has an unknown dimension {tuple(t.shape)}: pass "
                       "`sample_inputs` to check the exported model.")
    if tf.as_dtype(t.dtype).is_integer:  # Keras 3 spells dtypes as strings.
      raise ValueError(f"Input '{t.name}' is {tf.as_dtype(t.dtype).name}: pass "
                       "`sample_inputs` (random floats are not valid ids).")
    arrays.append(rng.standard_normal((num_samples,) + shape).astype(np.float32))
  return arrays
