"""A CSV file read into checked rows, and the spellings of a missing cell.

`inspect_csv` reads a file and checks everything a binary-label, grouped dataset needs
before it is encoded (`tabular.load_csv` encodes what it returns): UTF-8 text (a BOM is
dropped), a delimiter (`,`, or `;`, tab or `|` when the header is split by one of them
and not by commas), unique column names, every row as long as the header, a binary label
on every row, at least two groups, a feature column, rows enough for the splits and an
encoding that fits in memory. Each problem is a `ValueError` of one line naming the file
and, where there is one, the line.

This module imports only the standard library and NumPy: the main job loads it by path
to check a CSV before it imports TensorFlow.
"""

import collections
import csv
import dataclasses
import importlib.util
import io
import os
import sys

import numpy as np

MISSING = ("", "nan", "na", "n/a", "null", "none", "?")
MISSING_CATEGORY = "missing"  # The one category of every missing spelling.
DELIMITERS = (",", ";", "\t", "|")
# A table whose encoded features (float32, every split) would need more is refused: the
# one-hot encoding of a column of identifiers is rows x rows.
MAX_ENCODED_BYTES = 4 * 2**30
FLOAT32_MAX = float(np.finfo(np.float32).max)  # Models compute in float32.
OUTLIER_RATIO = 1e6
# A categorical column with more distinct values than this and than half the training
# rows gets a note: probably an identifier.
IDENTIFIER_CATEGORIES = 100
# Columns numeric but for this share of their cells get a note: probably typos.
MOSTLY_NUMERIC = 0.9


def is_missing(value):
  return value is None or str(value).strip().lower() in MISSING


def category(value):
  """A categorical cell; every spelling of a missing value is one category."""
  return MISSING_CATEGORY if is_missing(value) else value


def is_infinite(value):
  """A number that is not finite: 'inf', '-inf', '1e999' (overflows to inf)."""
  if is_missing(value):
    return False
  try:
    return not np.isfinite(float(value))
  except (TypeError, ValueError):
    return False


def number(value):
  """float(value); NaN for a missing value (empty, 'NaN', 'NA', '?', ...) and for a
  non-finite number (inf, -inf, 1e999): both are imputed, never used as they are."""
  if is_missing(value):
    return float("nan")
  result = float(value)
  return result if np.isfinite(result) else float("nan")


def is_number(value):
  """A number (finite or not: a non-finite one is treated as missing), or a missing
  value: what a numeric column may hold."""
  if is_missing(value):
    return True
  try:
    float(value)
    return True
  except (TypeError, ValueError):
    return False


def random_split(n, fractions, seed):
  """Index arrays for (train, validation, test) given validation and test fractions."""
  val_fraction, test_fraction = fractions
  order = np.random.default_rng(seed).permutation(n)
  n_test, n_val = int(round(test_fraction * n)), int(round(val_fraction * n))
  return order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]


@dataclasses.dataclass
class CsvTable:
  """A CSV file's header and rows (lists of strings, each as long as the header)."""
  header: list
  rows: list
  lines: list  # The file line each row starts on (for messages).
  delimiter: str = ","


GROUP_KEY = "\0group"  # Set on every row: its group's name (one column, or a combination).


def group_columns(group):
  """The sensitive-attribute columns of `group`: a name, "a,b" or a list of names.

  Raises:
    ValueError: With no column, an empty name or a column named twice.
  """
  if isinstance(group, str):
    columns = [c.strip() for c in group.split(",")] if "," in group else [group]
  else:
    columns = [str(c).strip() for c in group]
  if not columns or any(not c for c in columns):
    raise ValueError(f"the group must name one or more columns ('sex' or 'sex,race'), got "
                     f"{group!r}.")
  twice = sorted({c for c in columns if columns.count(c) > 1})
  if twice:
    raise ValueError(f"the group names column(s) {twice} twice.")
  return columns


@dataclasses.dataclass
class CsvPlan:
  """What `inspect_csv` found: the rows (dicts) of each split and how to encode them."""
  splits: tuple  # (train rows, validation rows, test rows), each a list of dicts.
  labels: list  # The label's two values; the second is 1.
  group_names: list
  numeric: list
  categorical: list
  notes: list
  group_key: str = GROUP_KEY  # The row key holding each row's group name.


def read_table(path):
  """Reads a CSV file with a header row.

  Args:
    path: The file.

  Returns:
    A `CsvTable`.

  Raises:
    ValueError: One line naming the file (and line) for a file that is empty, binary or
      not UTF-8, has duplicate column names, a row longer or shorter than the header, or
      a field the csv module cannot read.
    OSError: If the file cannot be opened.

  Example:

  ```python
  table = read_table("data.csv")
  print(table.header, len(table.rows))
  ```
  """
  with open(path, "rb") as f:
    data = f.read()
  if b"\x00" in data:
    line = data[:data.index(b"\x00")].count(b"\n") + 1
    raise ValueError(f"{path} is not a CSV text file: it holds NUL bytes (line {line}).")
  try:
    text = data.decode("utf-8-sig")  # Drops a byte-order mark (Excel writes one).
  except UnicodeDecodeError as err:
    line = data[:err.start].count(b"\n") + 1
    raise ValueError(f"{path} is not UTF-8 text (byte 0x{data[err.start]:02x} on line "
                     f"{line}): save it as UTF-8, e.g. `iconv -f latin1 -t utf-8`.") from err
  if not text.strip():
    raise ValueError(f"{path} is empty (no header row).")
  delimiter = _delimiter(text)
  # Lines end at \n, \r or \r\n only, as the csv module expects (str.splitlines would
  # also split at \x0c, \u2028, ... inside a cell).
  reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
  rows, lines = [], []
  try:
    header = next(reader)
    start = reader.line_num + 1
    for row in reader:
      if any(cell.strip() for cell in row):  # Blank lines are not rows.
        rows.append(row)
        lines.append(start)
      start = reader.line_num + 1
  except csv.Error as err:
    raise ValueError(f"{path}, line {reader.line_num}: {err} (a binary file or an unclosed "
                     "quote?).") from err
  header = [name.strip() for name in header]
  duplicates = sorted({name for name in header if header.count(name) > 1})
  if duplicates:
    raise ValueError(f"{path} has duplicate column names {duplicates}: rename them (each "
                     "column is one feature, the label or the group).")
  ragged = [i for i, row in enumerate(rows) if len(row) != len(header)]
  if ragged:
    first = ragged[0]
    raise ValueError(
        f"{path}, line {lines[first]}: {len(rows[first])} fields, the header has "
        f"{len(header)} ({len(ragged)} such row{'s' if len(ragged) > 1 else ''}; a "
        f"'{delimiter}' inside an unquoted value, an unclosed quote or a missing field?).")
  return CsvTable(header, rows, lines, delimiter)


def _delimiter(text):
  """',' unless the header has no comma and another delimiter splits it."""
  line = io.StringIO(text, newline="").readline()
  if len(next(csv.reader([line]), [])) > 1:
    return ","
  counts = {d: line.count(d) for d in DELIMITERS[1:]}
  best = max(counts, key=counts.get)
  return best if counts[best] else ","


def inspect_csv(path, label, group, seed=0, fractions=(0.1, 0.2)):
  """Reads and checks a CSV for `tabular.load_csv`: every reason it cannot be trained on
  is a one-line `ValueError`.

  Label and group cells are read without surrounding spaces. Label values that are all
  numbers are ordered as numbers (else as strings); the second is the positive class.
  Missing group cells form a group of their own, 'missing'.

  Args:
    path: The CSV file (with a header row).
    label: Name of the binary label column.
    group: Name of the sensitive-attribute column, or several ("sex,race" or a list):
      one group per combination that occurs (`Intersections`), named "sex=F, race=B".
    seed: Seed of the split.
    fractions: (validation, test) fractions.

  Returns:
    A `CsvPlan`; its `notes` say what was read in a way a user should know.

  Raises:
    ValueError: See `read_table`; also a missing label or group column, the label and
      group being one column, a missing label cell, a label without exactly two values,
      one group, no feature column, too few rows for a validation and a test row or for
      both labels in training, or encoded features larger than `MAX_ENCODED_BYTES`.
    OSError: If the file cannot be opened.

  Example:

  ```python
  plan = inspect_csv("data.csv", label="income", group="sex")
  print(plan.labels, plan.group_names, plan.notes)
  ```
  """
  table = read_table(path)
  header, notes = table.header, []
  if table.delimiter != ",":
    notes.append(f"read as {table.delimiter!r}-separated (the header has no comma)")
  if not table.rows:
    raise ValueError(f"{path} has a header but no rows.")
  columns = group_columns(group)
  for col, flag in [(label, "label")] + [(c, "group") for c in columns]:
    if col not in header:
      raise ValueError(f"{path} has no column {col!r} (the {flag}); columns: {sorted(header)}.")
  if label in columns:
    raise ValueError(f"{path}: the label and the group are the same column {label!r}: the "
                     "sensitive attribute cannot be what the model predicts.")
  rows = [dict(zip(header, row)) for row in table.rows]
  for r in rows:
    r[label] = r[label].strip()
    for c in columns:
      r[c] = r[c].strip()
  unlabelled = [line for line, r in zip(table.lines, rows) if is_missing(r[label])]
  if unlabelled:
    raise ValueError(f"{path}: the label {label!r} is missing (empty, NA, ?) on "
                     f"{len(unlabelled)} row(s), the first on line {unlabelled[0]}: drop "
                     "those rows or fill them in.")
  labels = _ordered({r[label] for r in rows})
  if len(labels) == 1:
    raise ValueError(f"{path}: the label {label!r} has one value ({labels[0]!r}) on all "
                     f"{len(rows)} rows: a binary label needs two.")
  if len(labels) != 2:
    raise ValueError(f"{path}: the label {label!r} must be binary, found {len(labels)} "
                     f"values {labels[:5]}{' ...' if len(labels) > 5 else ''}.")
  notes.append(f"label {label!r}: {labels[0]!r} is 0, {labels[1]!r} is 1 (the positive "
               "class)")
  for c in columns:
    no_group = sum(is_missing(r[c]) for r in rows)
    if no_group:
      for r in rows:
        r[c] = category(r[c])
      notes.append(f"the group {c!r} is missing (empty, NA, ?) on {no_group} row(s): they "
                   f"form a group of their own, {MISSING_CATEGORY!r}")
  group_names = _name_groups(path, rows, columns)
  group = ",".join(columns)
  features = [c for c in header if c != label and c not in columns]
  if not features:
    raise ValueError(f"{path} has no feature column besides the label {label!r} and the "
                     f"group {group!r}.")
  # Numeric: every value a number or missing (non-finite ones imputed as missing), and
  # at least one finite number.
  numeric = [c for c in features if all(is_number(r[c]) for r in rows)
             and any(np.isfinite(number(r[c])) for r in rows)]
  categorical = [c for c in features if c not in numeric]
  for c in numeric:
    notes += _outliers_note(c, rows, table.lines)
  typos = {}
  for c in categorical:
    typos[c] = _mostly_numeric_note(c, rows, table.lines)
    notes += typos[c]
  splits = [[rows[i] for i in idx] for idx in random_split(len(rows), fractions, seed)]
  _check_split_sizes(path, splits, label, labels, seed, fractions)
  notes += _absent_groups_note(group, group_names, splits)
  widths = {c: len({category(r[c]) for r in splits[0]}) for c in categorical}
  _check_encoded_size(path, splits, numeric, widths)
  identifiers = [c for c, n in widths.items() if n > IDENTIFIER_CATEGORIES and
                 n > len(splits[0]) / 2 and not typos[c]]
  for c in identifiers:
    notes.append(f"{c!r} has {widths[c]} distinct values in {len(splits[0])} training rows (an "
                 f"identifier?): one-hot encoded as {widths[c]} features that cannot "
                 "generalise; drop the column if it identifies rows")
  return CsvPlan(tuple(splits), labels, group_names, numeric, categorical, notes)


def _intersections():
  """tf_fairprune/intersections.py (numpy only). The job's flag checks load this file by
  path, without the package and TensorFlow; then it is loaded by path too."""
  module = sys.modules.get("tf_fairprune.intersections")
  if module is None and "tf_fairprune" in sys.modules:
    from tf_fairprune import intersections as module  # pylint: disable=g-import-not-at-top
  if module is None:
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "intersections.py")
    spec = importlib.util.spec_from_file_location("_intersections_for_flags", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  return module


def _name_groups(path, rows, columns):
  """Sets every row's group name (`GROUP_KEY`) and returns the group names in order.

  One column: its values, sorted. Several: one group per combination that occurs,
  "a=x, b=y", each column's values in `_ordered` order (`Intersections`).
  """
  if len(columns) == 1:
    (c,) = columns
    for r in rows:
      r[GROUP_KEY] = r[c]
    names = sorted({r[c] for r in rows})
    if len(names) < 2:
      raise ValueError(f"{path}: the group {c!r} has one value ({names[0]!r}) on all "
                       f"{len(rows)} rows: fairness needs at least two groups.")
    return names
  intersections = _intersections()
  attributes = {c: [r[c] for r in rows] for c in columns}
  try:
    # Its own order is `_ordered`'s: numbers as numbers, else as strings.
    combined = intersections.Intersections(attributes)
  except ValueError as err:
    raise ValueError(f"{path}: {err}") from err
  ids = combined.ids(attributes)
  for r, i in zip(rows, ids):
    r[GROUP_KEY] = combined.group_names[i]
  return list(combined.group_names)


def _ordered(values):
  """Values sorted as numbers when all are numbers ('2' before '10'), else as strings."""
  try:
    return sorted(values, key=float)
  except ValueError:
    return sorted(values)


def _mostly_numeric_note(column, rows, lines):
  """A note for a column that would be numeric but for a few cells."""
  present = [(line, r[column]) for line, r in zip(lines, rows) if not is_missing(r[column])]
  bad = [(line, v) for line, v in present if not is_number(v)]
  if not bad or len(bad) > (1 - MOSTLY_NUMERIC) * len(present):
    return []
  shown = ", ".join(f"{v!r} (line {line})" for line, v in bad[:3])
  return [f"{column!r}: {len(bad)} of {len(present)} values are not numbers ({shown}"
          f"{', ...' if len(bad) > 3 else ''}), so the column is one-hot encoded as "
          f"categories; write missing values as empty, NA or ? to keep it numeric"]


def _absent_groups_note(group, group_names, splits):
  """A note naming the groups some split has no row of (a small group, split at random)."""
  counts = [collections.Counter(r[GROUP_KEY] for r in rows) for rows in splits]
  absent = [(name, [split for split, c in zip(("training", "validation", "test"), counts)
                    if not c[name]]) for name in group_names]
  absent = [(name, where) for name, where in absent if where]
  if not absent:
    return []
  said = "; ".join(f"{name!r} ({sum(c[name] for c in counts)} rows) in the "
                   f"{' and '.join(where)} split" for name, where in absent[:5])
  return [f"the group {group!r} has no rows in a split: {said}"
          f"{'; ...' if len(absent) > 5 else ''}; a group's accuracy cannot be measured where "
          "it has no rows (--min_group_size merges small groups)"]


def _outliers_note(column, rows, lines):
  """A note for a numeric column with values beyond float32's range and a million times
  its median magnitude (sentinels for missing values, often): those few set its
  standardisation and leave the other values near 0. A column of huge numbers on one
  scale is standardised as any other."""
  finite = [(line, number(r[column])) for line, r in zip(lines, rows)]
  finite = [(line, v) for line, v in finite if np.isfinite(v)]
  median = float(np.median([abs(v) for _, v in finite]))
  big = [(line, v) for line, v in finite
         if abs(v) > FLOAT32_MAX and abs(v) > OUTLIER_RATIO * median]
  if not big:
    return []
  shown = ", ".join(f"{v:.3g} (line {line})" for line, v in big[:3])
  return [f"{column!r}: {len(big)} of {len(finite)} values lie beyond float32's range, over "
          f"{OUTLIER_RATIO:.0e} times the column's median ({shown}"
          f"{', ...' if len(big) > 3 else ''}), and set its standardisation, which leaves the "
          "other values near 0; if they stand for missing values, write them as empty, NA "
          "or ?"]


def _check_split_sizes(path, splits, label, labels, seed, fractions):
  train, validation, test = splits
  if not validation or not test:
    raise ValueError(
        f"{path} has {sum(map(len, splits))} rows: too few for a validation split "
        f"({fractions[0]:.0%}) and a test split ({fractions[1]:.0%}) of at least one row "
        "each.")
  seen = {r[label] for r in train}
  for value in labels:
    if value not in seen:
      raise ValueError(f"{path}: the training split (seed {seed}) has no row with the label "
                       f"{label!r} = {value!r}: too few such rows to train on.")


def _check_encoded_size(path, splits, numeric, widths):
  """Refuses a table whose float32 features would not fit `MAX_ENCODED_BYTES`."""
  rows = sum(map(len, splits))
  # Numeric columns may add a missing-indicator column each: counted at most.
  width = 2 * len(numeric) + sum(widths.values())
  size = 4 * rows * width
  if size <= MAX_ENCODED_BYTES:
    return
  widest = max(widths, key=widths.get) if widths else None
  which = (f"column {widest!r} alone has {widths[widest]} categories in {len(splits[0])} "
           "training rows: drop it if it identifies rows" if widest is not None and
           widths[widest] > width / 4 else "drop columns or rows")
  raise ValueError(f"{path}: the encoded features would take {size / 2**30:.1f} GiB ({rows} "
                   f"rows x {width} features; at most {MAX_ENCODED_BYTES / 2**30:.0f} GiB): "
                   f"{which}.")
