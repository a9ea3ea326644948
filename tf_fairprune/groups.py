"""How sensitive-group ids travel with the inputs through `fit`, `evaluate` and tf.data.

Group ids ride inside `x`, as in TF Model Remediation's `pack_min_diff_data`: the
packed inputs are a dict holding the model's own inputs plus reserved keys, so Keras
data adapters (numpy, validation_split, tf.data) carry them like any feature and
sample weights stay in their usual slot. The model unpacks them in `train_step` /
`test_step`; `predict` takes plain inputs.

```python
x_packed = tf_fairprune.pack_group_data(x, groups)
model.fit(x_packed, y, sample_weight=w)
model.evaluate(x_packed, y)
model.predict(x)                      # plain inputs
```
"""

import numpy as np
import tensorflow as tf


class DenseReference:
  """What is known of the dense model for a batch: its outputs, or only its correctness.

  With outputs, degradation compares the same surrogate on both models (zero at
  θ = θ_dense). With only the 0/1 correctness (`pack_group_data(dense_correct=...)`),
  the hard degradation is exact but its smooth side compares the pruned surrogate with
  0/1 values.
  """

  def __init__(self, outputs=None, correct=None):
    self.outputs = outputs
    self.correct_values = correct

  def correct(self, constraint, y_true, from_logits):
    """(smooth, hard) correctness of the dense model under `constraint`'s surrogate."""
    if self.outputs is not None:
      return constraint._correct(y_true, self.outputs, from_logits)  # pylint: disable=protected-access
    values = tf.reshape(tf.cast(self.correct_values, tf.float32), [-1])
    return values, values


INPUTS_KEY = "tf_fairprune/inputs"
GROUP_KEY = "tf_fairprune/group"
DENSE_CORRECT_KEY = "tf_fairprune/dense_correct"
DENSE_OUTPUTS_KEY = "tf_fairprune/dense_outputs"
_RESERVED = (INPUTS_KEY, GROUP_KEY, DENSE_CORRECT_KEY, DENSE_OUTPUTS_KEY)
RESERVED_KEYS = _RESERVED  # The keys that mark inputs packed by `pack_group_data`.


def check_ids(groups, num_groups, what="groups"):
  """Validates numpy group ids and returns them as int32."""
  if groups is None:
    raise ValueError(f"{what} is missing: pass one integer group id per example.")
  arr = np.asarray(groups)
  if arr.dtype == object or arr.dtype.kind not in "iufb":
    raise ValueError(f"{what} must hold integer group ids, got dtype {arr.dtype}.")
  if arr.dtype.kind == "f":
    if not np.all(np.isfinite(arr)):
      raise ValueError(f"{what} contains NaN or inf: every example needs a group id.")
    if not np.all(arr == np.round(arr)):
      raise ValueError(f"{what} must hold integer group ids, got non-integer values.")
  # Before any conversion, which would wrap (int32) or overflow (huge floats).
  if arr.size and np.max(arr) >= 2**31:
    raise ValueError(f"{what} has id {np.max(arr):.0f}: ids must be small integers in "
                     "[0, num_groups).")
  arr = arr.astype(np.int64)
  if arr.ndim == 2 and arr.shape[1] == 1:
    arr = arr[:, 0]
  if arr.ndim != 1:
    raise ValueError(f"{what} must be one id per example (shape [n]), got shape {arr.shape}.")
  if arr.size and arr.min() < 0:
    raise ValueError(f"{what} must be non-negative, got {arr.min()}.")
  if num_groups is not None and arr.size and arr.max() >= num_groups:
    raise ValueError(f"{what} has id {arr.max()} but num_groups={num_groups} "
                     f"(ids must be in [0, {num_groups})).")
  return arr.astype(np.int32)


def _num_examples(x):
  return len(tf.nest.flatten(x)[0])


def _judged_dense_outputs(dense_outputs, fairness_output, n):
  """The one output of `dense_outputs` (what `dense.predict(x)` returns: an array, a list
  or a dict of per-output arrays) that the fairness constraints judge, as float32."""
  heads = None
  if isinstance(dense_outputs, dict):
    heads = dense_outputs
  elif isinstance(dense_outputs, (list, tuple)) and dense_outputs and all(
      hasattr(h, "shape") and len(h.shape) >= 1 and len(h) == n for h in dense_outputs):
    heads = dict(enumerate(dense_outputs))  # predict's list: one array per output.
  if heads is None:
    return np.asarray(dense_outputs, dtype=np.float32)
  keys = list(heads)
  if fairness_output is None:
    if len(keys) != 1:
      shapes = [tuple(np.shape(heads[key])) for key in keys]
      raise ValueError(
          f"dense_outputs holds {len(keys)} outputs {shapes}: say which one the fairness "
          "constraints judge, as fair_prune_wrapper does: pack_group_data(..., "
          "fairness_output=INDEX) (or a name, for a dict of outputs).")
    return np.asarray(heads[keys[0]], dtype=np.float32)
  if isinstance(fairness_output, (int, np.integer)) and not isinstance(fairness_output, bool):
    if not -len(keys) <= fairness_output < len(keys):
      raise ValueError(f"fairness_output={fairness_output} is out of range: dense_outputs "
                       f"holds {len(keys)} outputs.")
    key = keys[fairness_output]
  elif isinstance(fairness_output, str) and isinstance(dense_outputs, dict):
    if fairness_output not in heads:
      raise ValueError(f"fairness_output={fairness_output!r} is not one of dense_outputs' "
                       f"outputs {keys}.")
    key = fairness_output
  elif isinstance(fairness_output, str):
    raise ValueError(
        f"fairness_output={fairness_output!r} is a name but dense_outputs is a list, which "
        "has none: pass the output's index, or dict(zip(dense.output_names, "
        "dense.predict(x))).")
  else:
    raise TypeError(f"fairness_output must be an output's index or name, got "
                    f"{fairness_output!r}.")
  return np.asarray(heads[key], dtype=np.float32)


def pack_group_data(x, groups, dense_correct=None, num_groups=None, dense_outputs=None,
                    fairness_output=None):
  """Packs sensitive-group ids (and optionally the dense model's outputs) with the inputs.

  Args:
    x: The model's inputs: an array, a list of arrays, a dict of arrays, or a
      `tf.data.Dataset` of `(x, y)` / `(x, y, sample_weight)` elements.
    groups: One integer id in `[0, num_groups)` per example. For a dataset: a dataset
      of ids (zipped element by element), a callable `(x, y) -> ids`, or the name of a
      feature of a dict `x`.
    dense_correct: Optional 0/1 per example: whether the dense model classified it
      correctly (see `dense_correctness`). Enough for the hard degradation; prefer
      `dense_outputs`, with which the surrogate compares like with like. Arrays only.
    num_groups: If given, ids are checked to be below it.
    dense_outputs: Optional dense model outputs per example (`dense.predict(x)`), for
      `DegradationFairness` / `ExcessDegradation` without a reference model (saves a
      dense forward pass per step). Arrays only. For a model with several outputs,
      what `predict` returns (a list or dict of arrays): the judged one is packed.
    fairness_output: With several outputs in `dense_outputs`: the index (or, for a
      dict, the name) of the one the fairness constraints judge — the output named by
      `fair_prune_wrapper(..., fairness_output=...)`.

  Returns:
    For arrays: the packed inputs, to pass as `x` to `fit` / `evaluate`. For a
    dataset: a dataset whose elements carry packed inputs.

  Raises:
    ValueError: For missing, non-integer, negative or out-of-range ids, a length that
      does not match the inputs, or several dense outputs and no `fairness_output`.

  Example:

  ```python
  model.fit(tf_fairprune.pack_group_data(x, sex), y, epochs=3)

  ds = tf.data.Dataset.from_tensor_slices((features, labels)).batch(64)
  model.fit(tf_fairprune.pack_group_data(ds, lambda x, y: x["sex"]))
  ```
  """
  if isinstance(x, tf.data.Dataset):
    return _pack_dataset(x, groups, num_groups)
  if isinstance(x, dict) and any(k in x for k in _RESERVED):
    raise ValueError("x is already packed with group data.")
  ids = check_ids(groups, num_groups)
  n = _num_examples(x)
  if len(ids) != n:
    raise ValueError(f"groups has {len(ids)} ids but x has {n} examples.")
  packed = dict(x) if isinstance(x, dict) else {INPUTS_KEY: x}
  packed[GROUP_KEY] = ids
  if dense_correct is not None:
    dense_correct = np.asarray(dense_correct, dtype=np.float32).reshape(-1)
    if len(dense_correct) != n:
      raise ValueError(f"dense_correct has {len(dense_correct)} values but x has {n} examples.")
    packed[DENSE_CORRECT_KEY] = dense_correct
  if dense_outputs is not None:
    dense_outputs = _judged_dense_outputs(dense_outputs, fairness_output, n)
    if len(dense_outputs) != n:
      raise ValueError(f"dense_outputs has {len(dense_outputs)} rows but x has {n} examples.")
    packed[DENSE_OUTPUTS_KEY] = dense_outputs
  return packed


def _pack_element(x, ids):
  packed = dict(x) if isinstance(x, dict) else {INPUTS_KEY: x}
  ids = tf.convert_to_tensor(ids)
  if ids.dtype.is_floating:
    # Never truncate: a float id must be a whole number (NaN and inf are not).
    ids = tf.debugging.assert_all_finite(ids, "Group ids must be integers; got NaN or inf.")
    whole = tf.debugging.assert_equal(
        ids, tf.round(ids), message="Group ids must be integers; got non-integer floats.")
    with tf.control_dependencies([whole]):
      ids = tf.identity(ids)
  elif not ids.dtype.is_integer:
    raise ValueError(f"Group ids must be integers, got {ids.dtype.name}.")
  # int64: an id >= 2**31 stays out of range (the model rejects it) instead of wrapping.
  packed[GROUP_KEY] = tf.cast(ids, tf.int64)
  return packed


def _pack_dataset(dataset, groups, num_groups):
  del num_groups  # Checked in the train step, where the batch is known.
  if isinstance(groups, tf.data.Dataset):
    def zipped(element, ids):
      element = element if isinstance(element, tuple) else (element,)
      return (_pack_element(element[0], ids),) + element[1:]
    return tf.data.Dataset.zip((dataset, groups)).map(zipped)
  if callable(groups) or isinstance(groups, str):
    def mapped(*element):
      x = element[0]
      if isinstance(groups, str):
        if not isinstance(x, dict) or groups not in x:
          raise ValueError(f"The dataset's inputs have no feature named {groups!r}.")
        ids = x[groups]
      else:
        ids = groups(*element[:2]) if len(element) > 1 else groups(x)
      return (_pack_element(x, ids),) + element[1:]
    return dataset.map(mapped)
  raise TypeError("For a dataset, `groups` must be a dataset of ids, a callable "
                  "(x, y) -> ids or the name of a feature.")


def unpack_group_data(x):
  """Splits packed inputs into (model inputs, group ids or None, dense reference or None).

  The dense reference is a `DenseReference` built from the packed
  dense outputs (or dense correctness), None if neither was packed.
  """
  if not isinstance(x, dict) or GROUP_KEY not in x:
    return x, None, None
  x = dict(x)
  groups = x.pop(GROUP_KEY)
  dense_correct = x.pop(DENSE_CORRECT_KEY, None)
  dense_outputs = x.pop(DENSE_OUTPUTS_KEY, None)
  if set(x) == {INPUTS_KEY}:
    x = x[INPUTS_KEY]
  dense = None
  if dense_outputs is not None or dense_correct is not None:
    dense = DenseReference(outputs=dense_outputs, correct=dense_correct)
  return x, groups, dense


def intersectional_groups(*attributes):
  """Combines categorical attributes into one group id per example, for one array set.

  Ids are numbered by the combinations these rows hold, so two splits combined
  separately may disagree; for training / validation / test use `Intersections`, which
  forms the groups once, names them and maps every split to the same ids.

  Args:
    *attributes: Arrays of equal length, each with integer categories (e.g. sex in
      {0, 1} and race in {0..4}).

  Returns:
    `(ids, names)`: int32 ids in `[0, K)` numbered by the combinations that occur, and
    a list of K tuples naming the combination behind each id.

  Raises:
    ValueError: With no attributes, lengths that differ, or non-integer categories.

  Example:

  ```python
  ids, names = tf_fairprune.intersectional_groups(sex, race)
  ```
  """
  if not attributes:
    raise ValueError("intersectional_groups needs at least one attribute.")
  cols = [check_ids(a, None, what=f"attribute {i}") for i, a in enumerate(attributes)]
  if len({len(c) for c in cols}) != 1:
    raise ValueError("All attributes must have the same length.")
  stacked = np.stack(cols, axis=1)
  combos, ids = np.unique(stacked, axis=0, return_inverse=True)
  return ids.reshape(-1).astype(np.int32), [tuple(int(v) for v in c) for c in combos]
