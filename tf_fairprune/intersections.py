"""Intersectional groups: one group per observed combination of several attributes.

Harm from pruning concentrates where groups intersect and are small (women of one
race, older men without a degree). `Intersections` forms one group id per combination
of several sensitive attributes seen in the rows it is built from, names each group by
its parts ("sex=Female, race=Black") and maps any other split's rows to the same ids, so
that training, validation and test agree. A combination too small to judge can be merged
into one "other" group (`min_group_size`), and a combination that has rows in a split
but none in the rows the groups were formed from is an error naming it, never a silent
new id.

```python
groups = tf_fairprune.Intersections({"sex": sex_train, "race": race_train},
                                    min_group_size=30)
g_train = groups.ids({"sex": sex_train, "race": race_train})
g_test = groups.ids({"sex": sex_test, "race": race_test})
x_packed = tf_fairprune.pack_group_data(x_train, g_train)
report = tf_fairprune.fairness.fairness_report(y_test, pred, g_test, group_names=groups.group_names)
```
"""

import math

import numpy as np


def _is_nan(value):
  """NaN or ±inf (a float's missing-value spellings)."""
  if isinstance(value, float):
    return not math.isfinite(value)
  try:
    return bool(value != value)  # NaN of other number types.
  except (TypeError, ValueError):
    return False


def _as_column(values, column, length=None):
  """A 1-D object array of hashable category values, checked."""
  if isinstance(values, (list, tuple)):
    # Kept as objects: np.asarray would turn a NaN among strings into the string 'nan'.
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
  else:
    arr = np.asarray(values)
  if arr.ndim == 2 and arr.shape[1] == 1:
    arr = arr[:, 0]
  if arr.ndim != 1:
    raise ValueError(f"attribute {column!r} must hold one value per example (shape [n]), got "
                     f"shape {arr.shape}.")
  if length is not None and len(arr) != length:
    raise ValueError(f"attribute {column!r} has {len(arr)} values, the others {length}: every "
                     "attribute needs one value per example.")
  if not len(arr):
    raise ValueError(f"attribute {column!r} has no values: groups need rows.")
  out = np.array([v.item() if isinstance(v, np.generic) else v for v in arr.tolist()],
                 dtype=object) if arr.dtype != object else arr
  if any(v is None for v in out):
    raise ValueError(f"attribute {column!r} contains None: every example needs a value (give "
                     "missing values a category of their own, e.g. 'missing').")
  if any(_is_nan(v) for v in out):
    raise ValueError(f"attribute {column!r} contains NaN or inf: every example needs a "
                     "value (give missing values a category of their own, e.g. 'missing').")
  return out


def _sorted_categories(values):
  """Distinct values, numbers as numbers ('2' before '10' for numeric strings too)."""
  distinct = set(values)
  try:
    return sorted(distinct, key=float)
  except (TypeError, ValueError):
    return sorted(distinct, key=str)


def _columns(attributes):
  """(names, arrays) from a dict, or a list / tuple of arrays (named 'attribute i')."""
  if isinstance(attributes, dict):
    if not attributes:
      raise ValueError("Intersections needs at least one attribute, got an empty dict.")
    names = [str(k) for k in attributes]
    arrays = list(attributes.values())
  elif isinstance(attributes, (list, tuple)):
    if not attributes:
      raise ValueError("Intersections needs at least one attribute, got an empty list.")
    names = [f"attribute {i}" for i in range(len(attributes))]
    arrays = list(attributes)
  else:
    raise TypeError("attributes must be a dict {name: values} or a list of value arrays, got "
                    f"{type(attributes).__name__}.")
  length = None
  cols = []
  for name, values in zip(names, arrays):
    col = _as_column(values, name, length)
    length = len(col)
    cols.append(col)
  return names, cols


class Intersections:
  """One group per combination of several sensitive attributes.

  The groups are the combinations that occur in the rows given here (usually the
  training split, or every split of a dataset); they are numbered in the order of each
  attribute's categories (sorted, numbers as numbers, or as given by `categories`), the
  first attribute varying slowest.

  Args:
    attributes: `{name: values}` (one array of category values per attribute, equal
      lengths; strings, integers or booleans), or a list of arrays (named "attribute 0",
      ...).
    categories: Optional `{name: ordered list of categories}` fixing the order of an
      attribute's categories (and so the group ids); values not listed sort after them.
    min_group_size: Combinations with fewer rows here than this are merged into one
      group, "other (< N rows)", numbered last; so are combinations `ids` meets that
      did not occur here. 0 (default) merges nothing, and such a combination is an error.

  Attributes:
    columns: The attribute names.
    group_names: One name per group id: the value itself for one attribute, else
      "name=value, name=value".
    parts: One tuple of attribute values per group id (None for the merged group).
    sizes: Rows per group among the rows given here.
    merged: The names of the combinations merged into "other" (empty if none).
    num_groups: The number of groups.

  Raises:
    ValueError: With no attribute, lengths that differ, a missing value (None, NaN), a
      negative `min_group_size`, fewer than two groups, as many groups as rows (every
      row its own group), or every combination below `min_group_size`.
    TypeError: If `attributes` is neither a dict nor a list.

  Example:

  ```python
  groups = Intersections({"sex": sex, "race": race}, min_group_size=30)
  ids = groups.ids({"sex": sex, "race": race})
  print(groups.group_names, groups.merged)
  ```
  """

  def __init__(self, attributes, categories=None, min_group_size=0):
    if isinstance(min_group_size, bool) or not isinstance(min_group_size, (int, np.integer)) \
        or min_group_size < 0:
      raise ValueError(f"min_group_size must be an integer >= 0, got {min_group_size!r}.")
    self.columns, cols = _columns(attributes)
    n = len(cols[0])
    categories = dict(categories or {})
    unknown = sorted(set(categories) - set(self.columns))
    if unknown:
      raise ValueError(f"categories names {unknown}, which are not attributes "
                       f"{self.columns}.")
    orders = []
    for name, col in zip(self.columns, cols):
      given = list(categories.get(name, []))
      rest = [v for v in _sorted_categories(col) if v not in given]
      orders.append({v: i for i, v in enumerate(given + rest)})
    keys = [tuple(row) for row in zip(*cols)]
    counts = {}
    for key in keys:
      counts[key] = counts.get(key, 0) + 1
    combos = sorted(counts, key=lambda k: tuple(o[v] for o, v in zip(orders, k)))
    kept = [c for c in combos if counts[c] >= min_group_size]
    small = [c for c in combos if counts[c] < min_group_size]
    if not kept:
      raise ValueError(f"every combination of {', '.join(self.columns)} has fewer than "
                       f"{min_group_size} rows (the largest {max(counts.values())}): merged, "
                       "they would be one group, and fairness needs two; use a smaller "
                       "min_group_size or fewer attributes.")
    self.min_group_size = int(min_group_size)
    self._ids = {c: i for i, c in enumerate(kept)}
    self.parts = list(kept) + ([None] if small else [])
    self.group_names = [self._name(c) for c in kept]
    self.merged = [self._name(c) for c in small]
    if small:
      self.group_names.append(f"other (< {min_group_size} rows)")
    twice = sorted({n for n in self.group_names if self.group_names.count(n) > 1})
    if twice:
      raise ValueError(f"different values print as the same group name {twice} (e.g. 1 and "
                       "'1' in one attribute, or a value holding ', name='): make each "
                       "attribute's values one type and free of ', '.")
    self.sizes = [counts[c] for c in kept] + ([sum(counts[c] for c in small)] if small else [])
    if len(self.group_names) < 2:
      raise ValueError(f"{', '.join(self.columns)} form one group ({self.group_names[0]!r}) on "
                       f"all {n} rows: fairness needs at least two groups.")
    if len(self.group_names) >= n:
      raise ValueError(f"{len(self.group_names)} groups from {n} rows: every row is its own "
                       "group, so no group's accuracy can be judged; use fewer attributes or "
                       "min_group_size.")

  def _name(self, combo):
    if len(self.columns) == 1:
      return str(combo[0])
    return ", ".join(f"{c}={v}" for c, v in zip(self.columns, combo))

  @property
  def num_groups(self):
    return len(self.group_names)

  def ids(self, attributes, split="these rows"):
    """The group id of every row of `attributes` (same names, or same order, as built).

    Args:
      attributes: Like the constructor's, for any split.
      split: What the rows are, for error messages ("test", ...).

    Returns:
      int32 group ids in `[0, num_groups)`.

    Raises:
      ValueError: If the attributes differ from the constructor's, or a combination
        did not occur in the rows the groups were formed from and nothing is merged
        (`min_group_size=0`).
    """
    if isinstance(attributes, dict) and set(map(str, attributes)) == set(self.columns):
      attributes = {c: attributes[c] for c in self.columns}  # Any order of the same names.
    columns, cols = _columns(attributes)
    if isinstance(attributes, dict) and columns != self.columns:
      raise ValueError(f"the attributes of {split} are {columns}, the groups were formed from "
                       f"{self.columns}.")
    if len(cols) != len(self.columns):
      raise ValueError(f"{split} has {len(cols)} attributes, the groups were formed from "
                       f"{len(self.columns)} ({', '.join(self.columns)}).")
    other = self.num_groups - 1 if self.merged else None
    out = np.empty(len(cols[0]), np.int32)
    unseen = {}
    for i, key in enumerate(zip(*cols)):
      gid = self._ids.get(key)
      if gid is None:
        if other is None:
          unseen[key] = unseen.get(key, 0) + 1
          continue
        gid = other
      out[i] = gid
    if unseen:
      said = ", ".join(f"{self._name(k)!r} ({n} rows)" for k, n in list(unseen.items())[:5])
      raise ValueError(f"{split} has {len(unseen)} combination(s) of {', '.join(self.columns)} "
                       f"that the groups were formed without: {said}"
                       f"{', ...' if len(unseen) > 5 else ''}; their accuracy could not be "
                       "steered or compared. Form the groups from rows that include them, or "
                       "merge small combinations (min_group_size=N puts them in 'other').")
    return out
