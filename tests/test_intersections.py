"""Intersectional groups: one id per combination, the same ids on every split."""

import numpy as np
import pytest

from tf_fairprune.intersections import Intersections


SEX = np.array(["M", "F", "M", "F", "M", "F", "M", "M"])
RACE = np.array(["W", "W", "B", "B", "W", "W", "B", "W"])


def test_groups_are_the_observed_combinations_named_by_their_parts():
  groups = Intersections({"sex": SEX, "race": RACE}, categories={"sex": ["M", "F"]})
  # "sex" varies slowest, its categories in the given order; race sorted (B before W).
  assert groups.group_names == ["sex=M, race=B", "sex=M, race=W", "sex=F, race=B",
                                "sex=F, race=W"]
  assert groups.parts == [("M", "B"), ("M", "W"), ("F", "B"), ("F", "W")]
  ids = groups.ids({"sex": SEX, "race": RACE})
  assert ids.dtype == np.int32
  assert [groups.group_names[i] for i in ids[:4]] == ["sex=M, race=W", "sex=F, race=W",
                                                      "sex=M, race=B", "sex=F, race=B"]
  assert groups.sizes == np.bincount(ids).tolist() == [2, 3, 1, 2]
  assert groups.merged == [] and groups.num_groups == 4


def test_another_split_gets_the_same_ids_and_an_unseen_combination_is_named():
  groups = Intersections({"sex": SEX, "race": RACE})
  test = groups.ids({"sex": ["F", "M"], "race": ["B", "W"]}, split="test")
  assert [groups.group_names[i] for i in test] == ["sex=F, race=B", "sex=M, race=W"]
  with pytest.raises(ValueError, match=r"test has 1 combination\(s\) of sex, race that the "
                     r"groups were formed without: 'sex=F, race=A' \(2 rows\)"):
    groups.ids({"sex": ["F", "F"], "race": ["A", "A"]}, split="test")
  # The same names in another order are the same attributes.
  assert np.array_equal(groups.ids({"race": RACE, "sex": SEX}),
                        groups.ids({"sex": SEX, "race": RACE}))
  with pytest.raises(ValueError, match=r"the attributes of test are \['race', 'age'\]"):
    groups.ids({"race": RACE, "age": SEX}, split="test")


def test_small_combinations_and_unseen_ones_merge_into_other():
  groups = Intersections({"sex": SEX, "race": RACE}, min_group_size=2)
  assert groups.group_names[-1] == "other (< 2 rows)"
  assert groups.merged == ["sex=F, race=B"]  # One row.
  other = groups.num_groups - 1
  ids = groups.ids({"sex": ["F", "F"], "race": ["B", "A"]})
  assert ids.tolist() == [other, other]  # Small, and never seen.
  assert sum(groups.sizes) == len(SEX)


def test_numbers_sort_as_numbers_and_one_attribute_keeps_its_values_as_names():
  groups = Intersections([np.array([10, 2, 2, 10, 1])])
  assert groups.group_names == ["1", "2", "10"] and groups.columns == ["attribute 0"]
  assert groups.ids([np.array([2, 10])]).tolist() == [1, 2]
  booleans = Intersections({"young": np.array([True, False, True])})
  assert booleans.group_names == ["False", "True"]


@pytest.mark.parametrize("attributes,kwargs,error,message", [
    ({}, {}, ValueError, "at least one attribute"),
    ("sex", {}, TypeError, "must be a dict"),
    ({"sex": SEX, "race": RACE[:3]}, {}, ValueError, "'race' has 3 values, the others 8"),
    ({"age": np.array([1.0, np.nan, 2.0])}, {}, ValueError, "'age' contains NaN"),
    ({"sex": np.array(["M", None, "F"], object)}, {}, ValueError, "'sex' contains None"),
    ({"sex": np.array(["M", "M", "M"])}, {}, ValueError, "one group"),
    ({"id": np.arange(5)}, {}, ValueError, "5 groups from 5 rows"),
    ({"sex": SEX}, {"min_group_size": -1}, ValueError, "min_group_size must be"),
    ({"sex": SEX}, {"min_group_size": 100}, ValueError, "fewer than 100 rows"),
    ({"sex": SEX}, {"categories": {"race": ["W"]}}, ValueError, "not attributes"),
    ({"sex": SEX.reshape(2, 4)}, {}, ValueError, r"shape \[n\]"),
    # NaN among strings, or in an object column (pandas), was a category 'nan', or one
    # group per NaN row under one name.
    ({"sex": ["M", float("nan"), "F"]}, {}, ValueError, "'sex' contains NaN"),
    ({"age": np.array([20.0, np.nan, 30.0, 20.0]).astype(object)}, {}, ValueError,
     "'age' contains NaN"),
    ({"age": np.array([20.0, np.inf, 30.0, 20.0]).astype(object)}, {}, ValueError,
     "'age' contains NaN or inf"),
    ({"sex": np.array([], str)}, {}, ValueError, "'sex' has no values"),
    # 1 and '1' are two values that print as one name: reports key rows on names.
    ({"code": np.array([1, "1", 2, 2, 1], object)}, {}, ValueError,
     r"print as the same group name \['1'\]"),
])
def test_bad_attributes_get_one_line(attributes, kwargs, error, message):
  with pytest.raises(error, match=message):
    Intersections(attributes, **kwargs)


def test_exported_from_the_package():
  import tf_fairprune  # pylint: disable=g-import-not-at-top
  assert tf_fairprune.Intersections is Intersections
