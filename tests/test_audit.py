"""evaluate_fairness / fairness_report agree with fairlearn (the oracle) on any input."""

import json

import numpy as np
import pytest
import tf_keras as keras
from fairlearn import metrics as fl
from hypothesis import assume, given, settings, strategies as st
from sklearn.metrics import accuracy_score

import tf_fairprune
from tf_fairprune.fairness import evaluate_fairness, fairness_report
from conftest import make_data, make_mlp


@st.composite
def binary_predictions(draw):
  n = draw(st.integers(8, 80))
  k = draw(st.integers(2, 4))
  bits = st.lists(st.integers(0, 1), min_size=n, max_size=n)
  y_true, y_pred, dense = draw(bits), draw(bits), draw(bits)
  groups = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
  return np.array(y_true), np.array(y_pred), np.array(dense), np.array(groups)


@settings(max_examples=60, deadline=None)
@given(binary_predictions())
def test_report_matches_fairlearn(data):
  y_true, y_pred, dense, groups = data
  present = np.unique(groups)
  assume(len(present) >= 2)
  # TPR/FPR are defined only where a group has positives and negatives.
  assume(all(set(y_true[groups == g]) == {0, 1} for g in present))
  report = fairness_report(y_true, y_pred, groups, dense_pred=dense)
  frame = fl.MetricFrame(metrics=accuracy_score, y_true=y_true, y_pred=y_pred,
                         sensitive_features=groups)
  by_group = {str(k): v for k, v in frame.by_group.items()}
  for row in report.groups:
    if row["size"]:
      assert row["accuracy"] == pytest.approx(by_group[row["name"]])
      assert row["size"] == int((groups == int(row["name"])).sum())
  assert report.accuracy == pytest.approx(accuracy_score(y_true, y_pred))
  gaps = report.gaps
  assert gaps["performance_gap"] == pytest.approx(frame.difference())
  assert gaps["demographic_parity_difference"] == pytest.approx(
      fl.demographic_parity_difference(y_true, y_pred, sensitive_features=groups))
  assert gaps["equalized_odds_difference"] == pytest.approx(
      fl.equalized_odds_difference(y_true, y_pred, sensitive_features=groups))
  assert gaps["equal_opportunity_difference"] == pytest.approx(
      fl.equal_opportunity_difference(y_true, y_pred, sensitive_features=groups))
  # Degradation: R_g = dense accuracy - pruned accuracy, from fairlearn frames too.
  dense_frame = fl.MetricFrame(metrics=accuracy_score, y_true=y_true, y_pred=dense,
                               sensitive_features=groups)
  r = dense_frame.by_group - frame.by_group
  overall = accuracy_score(y_true, dense) - accuracy_score(y_true, y_pred)
  assert gaps["degradation_gap"] == pytest.approx(r.max() - r.min())
  assert gaps["degradation"] == pytest.approx(overall)
  assert gaps["max_excess_gap"] == pytest.approx((r - overall).max())


def test_report_prints_and_serialises():
  y = np.array([1, 0, 1, 0, 1, 1])
  report = fairness_report(y, np.array([1, 0, 0, 0, 1, 0]), np.array([0, 0, 0, 1, 1, 2]),
                           dense_pred=y, group_names=["a", "b", "c"], num_groups=4)
  text = str(report)
  assert "performance_gap" in text and "TPR" in text and "excess ψ" in text
  payload = json.loads(report.to_json())
  assert [g["size"] for g in payload["groups"]] == [3, 2, 1, 0]
  assert payload["groups"][3]["accuracy"] is None  # Empty group: undefined, not 0.
  assert report.to_dict()["gaps"]["degradation"] == pytest.approx(2 / 6)


def test_multiclass_report():
  report = fairness_report([0, 1, 2, 2], [0, 2, 2, 2], [0, 0, 1, 1])
  assert not report.binary
  assert report.gaps["performance_gap"] == pytest.approx(0.5)
  assert report.gaps["demographic_parity_difference"] is None


def test_bad_report_input():
  with pytest.raises(ValueError, match="Lengths differ"):
    fairness_report([0, 1], [0], [0, 1])
  with pytest.raises(ValueError, match="non-negative"):
    fairness_report([0, 1], [0, 1], [0, -1])


def test_evaluate_fairness_on_models_and_inputs():
  x, y = make_data(n=200)
  g = (x[:, 3] > 0).astype(int)
  dense = make_mlp()
  dense.compile("adam", keras.losses.BinaryCrossentropy(from_logits=True))
  pruned = tf_fairprune.fair_prune_wrapper(dense, 0.8)
  pruned.compile("sgd", keras.losses.BinaryCrossentropy(from_logits=True))
  a = evaluate_fairness(pruned, (x, y, g), dense_model=dense)
  b = evaluate_fairness(pruned, (tf_fairprune.pack_group_data(x, g), y), dense_model=dense)
  assert a.to_dict() == b.to_dict()
  labels = (pruned.predict(x, verbose=0).reshape(-1) > 0).astype(int)
  expected = fairness_report(y, labels, g,
                             dense_pred=(dense.predict(x, verbose=0).reshape(-1) > 0).astype(int))
  assert a.to_dict() == expected.to_dict()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  ds = tf_fairprune.pack_group_data(tf.data.Dataset.from_tensor_slices((x, y)).batch(64),
                                    tf.data.Dataset.from_tensor_slices(g).batch(64))
  assert evaluate_fairness(pruned, ds, dense_model=dense).to_dict() == a.to_dict()
  with pytest.raises(ValueError, match="group"):
    evaluate_fairness(pruned, (x, y))


def test_from_logits_comes_from_the_model_never_from_the_values():
  x = np.random.default_rng(0).standard_normal((64, 8)).astype("float32")
  y = (x[:, 0] > 0).astype("float32")
  g = (x[:, 1] > 0).astype("int32")
  linear = make_mlp()  # Uncompiled, linear logits layer.
  linear.set_weights([w * 0.01 for w in linear.get_weights()])  # Outputs inside [0, 1]...
  outputs = linear.predict(x, verbose=0)
  assert 0 <= outputs.min() or outputs.max() <= 1
  inferred = tf_fairprune.fairness.evaluate_fairness(linear, (x, y, g))
  explicit = tf_fairprune.fairness.evaluate_fairness(linear, (x, y, g), from_logits=True)
  assert inferred.accuracy == explicit.accuracy  # ... still read as logits.
  custom = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1),
                             keras.layers.Lambda(lambda t: t)])
  with pytest.raises(ValueError, match="from_logits"):
    tf_fairprune.fairness.evaluate_fairness(custom, (x, y, g))


def test_absent_groups_are_reported_as_absent_not_as_a_zero_gap():
  y = np.array([1, 0, 1, 0])
  report = tf_fairprune.fairness.fairness_report(y, y, [0, 0, 1, 1], num_groups=3)
  assert report.absent_groups == ["2"] and report.gaps["performance_gap"] == 0.0
  alone = tf_fairprune.fairness.fairness_report(y, y, [0, 0, 0, 0], num_groups=2)
  assert alone.absent_groups == ["1"] and alone.gaps["performance_gap"] is None
  assert "absent" in str(alone)
