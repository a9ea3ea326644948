"""Intervals and verdicts: met / not met / cannot tell from simultaneous intervals, and
levelling down named (numpy only: fast)."""

import json

import numpy as np
import pytest

from tf_fairprune.fairness import fairness_report
from tf_fairprune.fairness import intervals
from tf_fairprune.fairness import verdict


def _sums(successes, n, paired=False, squares=None):
  successes, n = np.atleast_2d(successes).astype(float), np.atleast_2d(n).astype(float)
  squares = successes if squares is None else np.atleast_2d(squares).astype(float)
  return intervals.GroupSums(successes, squares, n, n, n, paired=paired)


def test_newcombe_difference_matches_the_published_example():
  # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80,
  # hybrid score interval 0.0524 to 0.3339.
  gap = intervals.pairwise_gap(_sums([56, 48], [70, 80]))
  assert gap.value == pytest.approx(0.2)
  assert gap.lower == pytest.approx(0.0524, abs=1e-4)
  assert gap.upper == pytest.approx(0.3339, abs=1e-4)
  assert gap.comparisons == 1


def test_wilson_matches_the_published_example():
  # Newcombe (1998), Stat Med 17:857, method 3 for 81/263: 0.2553 to 0.3662.
  lower, upper = intervals.wilson(81 / 263, 263, intervals.z_value())
  assert float(lower) == pytest.approx(0.2553, abs=1e-4)
  assert float(upper) == pytest.approx(0.3662, abs=1e-4)


@pytest.mark.parametrize("kind", ["pairwise", "excess"])
def test_intervals_cover_the_true_gap_simultaneously(kind):
  # Four groups, two of them small: the simultaneous interval of the gap must cover
  # the true gap in at least 95% of samples.
  rng = np.random.default_rng(0)
  n = np.array([600, 400, 90, 80])
  if kind == "pairwise":
    p = np.array([0.70, 0.68, 0.72, 0.66])
    truth = p.max() - p.min()
  else:  # Per-row losses in {-1, 0, 1}: P(+1) = b, P(-1) = c per group.
    b, c = np.array([0.06, 0.10, 0.04, 0.08]), np.array([0.03, 0.02, 0.05, 0.01])
    r = b - c
    truth = (r - (n / n.sum() * r).sum()).max()
  covered = 0
  for _ in range(400):
    if kind == "pairwise":
      s = rng.binomial(n, p)
      gap = intervals.pairwise_gap(_sums(s, n))
    else:
      cells = np.array([rng.multinomial(k, [bi, ci, 1 - bi - ci]) for k, bi, ci in zip(n, b, c)])
      gap = intervals.excess_gap(_sums(cells[:, 0] - cells[:, 1], n, paired=True,
                                       squares=cells[:, 0] + cells[:, 1]))
    covered += gap.lower <= truth <= gap.upper
  assert covered / 400 >= 0.95


def test_judge_is_three_valued():
  assert intervals.judge(0.01, 0.02, 0.03) == "met"
  assert intervals.judge(0.04, 0.06, 0.03) == "not met"
  assert intervals.judge(0.01, 0.06, 0.03) == "cannot tell"
  assert intervals.judge(None, None, 0.03) == "cannot tell"


def test_a_small_split_cannot_tell_what_a_large_one_can():
  big = intervals.pairwise_gap(_sums([8500, 8000], [10000, 10000]))
  small = intervals.pairwise_gap(_sums([85, 80], [100, 100]))
  assert big.value == pytest.approx(small.value) == pytest.approx(0.05)
  assert big.verdict(0.07) == "met" and big.verdict(0.03) == "not met"
  assert small.verdict(0.07) == "cannot tell" and small.verdict(0.03) == "cannot tell"
  assert intervals.resolution(_sums([85, 80], [100, 100])) > 0.07


def _levelling_data(female_drop):
  """Two groups: men served worse (80%) than women (93%) by the dense model; the pruned
  model keeps men and drops women by `female_drop` of their rows."""
  rng = np.random.default_rng(1)
  n_m, n_f = 6000, 3000
  groups = np.r_[np.zeros(n_m, int), np.ones(n_f, int)]
  y = rng.integers(0, 2, n_m + n_f)
  dense_correct = np.r_[rng.random(n_m) < 0.80, rng.random(n_f) < 0.93]
  dense = np.where(dense_correct, y, 1 - y)
  pruned = dense.copy()
  women_right = np.flatnonzero((groups == 1) & dense_correct)
  flip = rng.choice(women_right, int(female_drop * n_f), replace=False)
  pruned[flip] = 1 - pruned[flip]
  return y, pruned, dense, groups


def test_a_gap_closed_by_lowering_the_better_served_group_is_levelling_down():
  y, pruned, dense, groups = _levelling_data(0.10)
  report = fairness_report(y, pruned, groups, dense_pred=dense, group_names=["Male", "Female"])
  v = report.verdict("performance_gap", 0.05)
  assert v.value < 0.05 < report.dense_gaps["performance_gap"]
  assert v.verdict == "met by levelling down" and v.levelled_down
  assert [g.name for g in v.harmed] == ["Female"] and v.harmed[0].loss == pytest.approx(0.10, abs=0.01)
  text = v.text()
  assert "Female" in text and "points" in text and "MaxGroupLoss" in text
  # "Do no harm" is one-sided: the same model is judged on each group's excess loss.
  assert report.verdict("max_excess_gap", 0.01).verdict != "met by levelling down"
  # A model that keeps every group: the gap stays open, nothing is levelled down.
  y, same, dense, groups = _levelling_data(0.0)
  kept = fairness_report(y, same, groups, dense_pred=dense)
  assert kept.verdict("performance_gap", 0.05).verdict == "not met"
  assert not kept.verdict("performance_gap", 0.05).levelled_down


def test_report_carries_intervals_in_points_and_strict_json():
  y = np.array([1, 0, 1, 0, 1, 1])
  report = fairness_report(y, np.array([1, 0, 0, 0, 1, 0]), np.array([0, 0, 0, 1, 1, 2]),
                           dense_pred=y, group_names=["a", "b", "c"], num_groups=4)
  lo, hi = report.intervals["performance_gap"]
  assert lo <= report.gaps["performance_gap"] <= hi
  assert report.groups[0]["accuracy_interval"][0] < report.groups[0]["accuracy"]
  text = str(report)
  assert "points" in text and "95% interval" in text
  payload = report.to_json()
  assert "NaN" not in payload and json.loads(payload)["groups"][3]["accuracy"] is None
  with pytest.raises(KeyError, match="no gap"):
    report.verdict("accuracy_gap", 0.01)


def test_points_and_interval_text():
  assert verdict.points(0.0372) == "3.7" and verdict.points(None) == "–"
  assert verdict.interval_text(0.01, 0.052) == "[1.0, 5.2]"


def test_max_group_loss_measures_what_the_audit_reports():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tf_fairprune.fairness import MaxGroupLoss  # pylint: disable=g-import-not-at-top
  from tf_fairprune.groups import DenseReference  # pylint: disable=g-import-not-at-top
  y, pruned, dense, groups = _levelling_data(0.10)
  report = fairness_report(y, pruned, groups, dense_pred=dense)
  c = MaxGroupLoss(tolerance=0.02, from_logits=True)
  logits = tf.constant(np.where(pruned == 1, 2.0, -2.0)[:, None], tf.float32)
  dense_ref = DenseReference(correct=(y == dense).astype("float32"))
  _, hard, counts = c.statistics(tf.constant(y, tf.float32), logits, tf.constant(groups), None,
                                 2, dense=dense_ref)
  assert float(c.measure(hard, counts)) == pytest.approx(report.gaps["max_group_loss"], abs=1e-6)
  assert report.gaps["max_group_loss"] == pytest.approx(0.10, abs=0.01)
  lo, hi = report.intervals["max_group_loss"]
  assert lo > 0.05 and report.verdict("max_group_loss", 0.02).verdict == "not met"
  assert c.multiplier_shape(2) == (1, 2) and c.kind == "group"


def test_strict_json_holds_no_nan_and_no_numpy_scalars():
  from tf_fairprune.fairness.audit import strict_json  # pylint: disable=g-import-not-at-top
  results = {"accuracy": np.float32(0.8), "gaps": {"tpr": float("nan"), "n": np.int64(3)},
             "groups": [{"accuracy": np.nan, "ci": np.array([0.1, np.inf])}]}
  with pytest.raises(ValueError):
    json.dumps(results, allow_nan=False, default=float)  # What the job wrote before.
  text = json.dumps(strict_json(results), allow_nan=False)
  assert json.loads(text) == {"accuracy": pytest.approx(0.8), "gaps": {"tpr": None, "n": 3},
                              "groups": [{"accuracy": None, "ci": [pytest.approx(0.1), None]}]}


def test_pruning_loss_spread_over_every_group_is_not_levelling_down():
  # Every group loses ~5 points and the gap drifts 3.0 -> 2.9: plain pruning loss, not
  # a gap closed at one group's expense.
  rng = np.random.default_rng(3)
  n = 5000
  groups = np.r_[np.zeros(n, int), np.ones(n, int)]
  y = rng.integers(0, 2, 2 * n)
  dense_ok = np.r_[rng.random(n) < 0.90, rng.random(n) < 0.87]
  dense = np.where(dense_ok, y, 1 - y)
  pruned = dense.copy()
  for g in (0, 1):
    flip = rng.choice(np.flatnonzero((groups == g) & dense_ok), int(0.05 * n), replace=False)
    pruned[flip] = 1 - pruned[flip]
  report = fairness_report(y, pruned, groups, dense_pred=dense)
  v = report.verdict("performance_gap", 0.06)
  assert v.verdict == "met" and not v.levelled_down


def test_do_no_harm_met_by_harming_the_others_is_named_against_fairness_off():
  # Fairness off: group B lost 10 points, A nothing (psi_B = 5 > eps = 3). The "fair"
  # model meets psi <= eps by also taking 9 points from A: judged against fairness off, that is
  # levelling down; the dense model has no excess gap of its own to compare with.
  rng = np.random.default_rng(4)
  n = 4000
  groups = np.r_[np.zeros(n, int), np.ones(n, int)]
  y = rng.integers(0, 2, 2 * n)
  dense = y.copy()
  def drop(pred, group, share):
    pred = pred.copy()
    flip = rng.choice(np.flatnonzero((groups == group) & (pred == y)), int(share * n),
                      replace=False)
    pred[flip] = 1 - pred[flip]
    return pred
  off = drop(dense, 1, 0.10)
  fair = drop(off, 0, 0.09)
  off_report = fairness_report(y, off, groups, dense_pred=dense)
  report = fairness_report(y, fair, groups, dense_pred=dense)
  assert off_report.verdict("max_excess_gap", 0.03).verdict == "not met"
  assert report.verdict("max_excess_gap", 0.03).verdict == "met"  # Against dense: blind.
  v = report.verdict("max_excess_gap", 0.03, reference=off_report)
  assert v.verdict == "met by levelling down" and [g.name for g in v.harmed] == ["0"]
  assert v.reference_name == "fairness off"
  with pytest.raises(ValueError, match="same rows"):
    report.verdict("max_excess_gap", 0.03, reference=fairness_report(y[:10], fair[:10],
                                                                    groups[:10]))


def test_an_interval_that_cannot_be_computed_is_cannot_tell():
  # Squared weights that overflowed: no effective size, so no interval, whatever the
  # point estimate says.
  s = intervals.GroupSums([[90.0, 80.0]], [[90.0, 80.0]], [[100.0, 100.0]],
                          [[np.inf, np.inf]], [[100, 100]])
  gap = intervals.pairwise_gap(s)
  assert gap.value == pytest.approx(0.1) and gap.lower is None and gap.upper is None
  assert gap.verdict(0.5) == "cannot tell" and gap.resolution == float("inf")
  assert verdict.points(-0.0001) == "0.0" and verdict.points(float("inf")) == "∞"
