"""The checks `fit`, `evaluate` and `check_data` make on array data before a step.

Packed numpy group ids are checked against `num_groups` at once, and numpy labels
against the judged output's units; tensors and datasets are left to the in-graph
checks of the step (`training._unpack`, `_update_metrics`), which work under XLA too.
"""

import warnings

import numpy as np
import tensorflow as tf

from tf_fairprune import groups as groups_lib
from tf_fairprune.fairness import outcomes


def x_and_y(args, kwargs):
  """The `x` and `y` of a `fit` / `evaluate` call's arguments (None where absent)."""
  x = args[0] if args else kwargs.get("x")
  y = args[1] if len(args) > 1 else kwargs.get("y")
  return x, y


def check_arrays(model, x, y=None, stacklevel=1):
  """Checks packed numpy group ids and labels of `model`'s data.

  Args:
    model: A `FairPruneModel`.
    x: The inputs, group ids packed (`pack_group_data`) or not.
    y: The labels, or None.
    stacklevel: The frame the warning names, counted from this function's caller (1:
      the caller, 2: the caller's caller).

  Raises:
    ValueError: For a group id outside [0, num_groups) or labels the output cannot read.

  Example:

  ```python
  check_arrays(model, pack_group_data(x, g), y)  # Raises for g outside [0, K).
  ```
  """
  _check_packed_groups(x, model.num_groups, stacklevel + 1)
  _check_labels(model, x, y)


def _packed_ids(x):
  if not isinstance(x, dict) or groups_lib.GROUP_KEY not in x:
    return None
  return x[groups_lib.GROUP_KEY]


def _check_packed_groups(x, num_groups, stacklevel):
  """Checks packed numpy ids at once (the in-graph check covers every other input)."""
  ids = _packed_ids(x)
  if ids is None or isinstance(ids, (tf.Tensor, tf.data.Dataset)) or not hasattr(ids, "__len__"):
    return
  ids = groups_lib.check_ids(ids, num_groups)
  present = np.unique(ids)
  if len(present) == 1:
    warnings.warn(f"tf_fairprune: the data holds one group only (id {present[0]}): there "
                  "is nothing to compare, so every gap is 0 and fairness terms do nothing.",
                  UserWarning, stacklevel=stacklevel + 1)


def _check_labels(model, x, y):
  """Checks numpy labels at once against the model's output units, when known and group
  ids are packed (only then are group statistics formed; the in-graph check in
  `_update_metrics` covers every other input). A model without group data may be a
  regression."""
  if _packed_ids(x) is None:
    return
  if y is None or not isinstance(y, (np.ndarray, list)):
    return
  outputs = getattr(model, "outputs", None) or []
  shape = tuple(outputs[0].shape) if len(outputs) == 1 else ()
  if not shape:
    return
  units = 1 if len(shape) == 1 else shape[-1]
  outcomes.check_label_array(y, units, getattr(model, "_signed_labels", False))
