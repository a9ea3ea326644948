"""Per-group verdicts: for every group, did it lose more to pruning than the others?

A gap is one number over all groups; with many (intersectional) groups a practitioner
needs each group's own answer, and needs it to hold for all groups at once. For each
group `judge_groups` gives its accuracy, the accuracy it lost against the dense model
(R_g, paired) and its loss beyond the average (ψ_g = R_g − R, "do no harm"), each with
an interval that holds simultaneously over the groups (Bonferroni over the K groups
present, and over both verdicts when a loss bound is asked too: Wilson for accuracy, paired MOVER–Wilson for the loss, MOVER for ψ_g;
`intervals.py`). The verdict on "ψ_g ≤ ε" (and, if asked, "R_g ≤ δ") is met, not met or
cannot tell, so a group of 14 rows is not judged like one of 14,000: its interval is
wide, and it is listed among the groups this split cannot judge. The list leads with the
worst-off groups that can be judged.

```python
report = tf_fairprune.fairness.fairness_report(y, pred, groups, dense_pred=dense,
                                               group_names=names)
for g in report.group_verdicts(epsilon=0.01):
  print(g.text())
```
"""

import dataclasses

import numpy as np

from tf_fairprune.fairness import intervals as intervals_lib
from tf_fairprune.fairness import verdict as verdict_lib

MET, NOT_MET, CANNOT_TELL = intervals_lib.MET, intervals_lib.NOT_MET, intervals_lib.CANNOT_TELL
points, interval_text = verdict_lib.points, verdict_lib.interval_text


@dataclasses.dataclass
class GroupVerdict:
  """One group's accuracy, loss against the dense model and verdict (fractions).

  Attributes:
    name, size: The group and its rows.
    accuracy, accuracy_interval: Its accuracy and interval (simultaneous over groups).
    loss, loss_interval: Accuracy lost against the dense model (negative: gained).
    excess, excess_interval: ψ_g, its loss beyond the loss over all rows.
    epsilon: ε of "ψ_g ≤ ε".
    verdict: `MET`, `NOT_MET` or `CANNOT_TELL` for "ψ_g ≤ ε".
    max_loss, loss_verdict: δ of "R_g ≤ δ" and its verdict (None when not asked).
    resolution: Half the width of ψ_g's interval: the smallest departure from the
      average this split can tell from noise for this group.
  """
  name: str
  size: int
  accuracy: float
  accuracy_interval: list
  loss: float
  loss_interval: list
  excess: float
  excess_interval: list
  epsilon: float
  verdict: str
  resolution: float
  max_loss: float = None
  loss_verdict: str = None

  @property
  def judged(self):
    """Whether this split can judge this group: a verdict of "not met", or no verdict
    asked of it is "cannot tell"."""
    return self.harmed or (self.verdict != CANNOT_TELL and self.loss_verdict != CANNOT_TELL)

  @property
  def harmed(self):
    """A verdict of "not met": the group lost clearly more than allowed."""
    return NOT_MET in (self.verdict, self.loss_verdict)

  def text(self):
    """One line in points."""
    out = (f"{self.name} (n={self.size}): accuracy {points(self.accuracy)} "
           f"{interval_text(*self.accuracy_interval)}, lost {points(self.loss)} "
           f"{interval_text(*self.loss_interval)} against dense, {points(self.excess)} "
           f"{interval_text(*self.excess_interval)} beyond the average: {self.verdict} at "
           f"ε = {points(self.epsilon)}")
    if self.max_loss is not None:
      out += f"; loss {self.loss_verdict} at δ = {points(self.max_loss)}"
    if not self.judged:
      out += f" (resolves ±{points(self.resolution)} points)"
    return out

  def to_dict(self):
    out = dataclasses.asdict(self)
    out["judged"] = self.judged
    return out


def _pair(lower, upper):
  return [None if np.isnan(lower) else float(lower), None if np.isnan(upper) else float(upper)]


def judge_groups(correct_sums, loss_sums, names, epsilon, max_loss=None,
                 alpha=intervals_lib.ALPHA):
  """Every present group's `GroupVerdict`, worst-off judged groups first.

  Args:
    correct_sums: `intervals.GroupSums` of the model's per-row correctness ([1, K]).
    loss_sums: Paired `GroupSums` of dense correct − model correct ([1, K]).
    names: Group names (index = id).
    epsilon: ε of "ψ_g ≤ ε" (a fraction).
    max_loss: δ of "R_g ≤ δ", or None.
    alpha: 1 − the simultaneous level.

  Returns:
    A list: the groups this split can judge, by the lower bound of ψ_g (worst first),
    then those it cannot, largest first.
  """
  present = loss_sums.present[0]
  # Two verdicts a group (ψ_g and its loss) share the level: Bonferroni over both.
  alpha_each = alpha / 2 if max_loss is not None else alpha
  z = intervals_lib.z_value(alpha_each, int(present.sum()))
  acc_lower, acc_upper = correct_sums.group_intervals(z)
  loss_lower, loss_upper = loss_sums.group_intervals(z)
  excess = intervals_lib.excess_gap(loss_sums, alpha_each)
  out = []
  for k in np.flatnonzero(present):
    lo, hi = excess.contrast_lower[0, k], excess.contrast_upper[0, k]
    verdict = intervals_lib.judge(lo, hi, epsilon)
    loss_verdict = (None if max_loss is None else
                    intervals_lib.judge(loss_lower[0, k], loss_upper[0, k], max_loss))
    out.append(GroupVerdict(
        name=str(names[k]) if names is not None and k < len(names) else str(k),
        size=int(loss_sums.rows[0, k]),
        accuracy=float(correct_sums.means[0, k]),
        accuracy_interval=_pair(acc_lower[0, k], acc_upper[0, k]),
        loss=float(loss_sums.means[0, k]),
        loss_interval=_pair(loss_lower[0, k], loss_upper[0, k]),
        excess=float(excess.contrasts[0, k]), excess_interval=_pair(lo, hi),
        epsilon=float(epsilon), verdict=verdict,
        resolution=float((hi - lo) / 2) if np.isfinite(hi - lo) else float("inf"),
        max_loss=None if max_loss is None else float(max_loss), loss_verdict=loss_verdict))
  judged = sorted((g for g in out if g.judged),
                  key=lambda g: -(g.excess_interval[0] if g.excess_interval[0] is not None
                                  else -np.inf))
  return judged + sorted((g for g in out if not g.judged), key=lambda g: -g.size)


def summary(verdicts):
  """One sentence: how many groups are judged, met, not met, and who cannot be told."""
  judged = [g for g in verdicts if g.judged]
  harmed = [g for g in verdicts if g.harmed]
  unjudged = [g for g in verdicts if not g.judged]
  text = (f"{len(judged)} of {len(verdicts)} groups can be judged on this split; "
          f"{len(harmed)} lost clearly more than allowed"
          + (f" ({'; '.join(g.name for g in harmed[:5])}{'; …' if len(harmed) > 5 else ''})"
             if harmed else "") + ".")
  if unjudged:
    shown = "; ".join(f"{g.name} (n={g.size})" for g in unjudged[:5])
    text += (f" Cannot tell for {len(unjudged)}: {shown}{'; …' if len(unjudged) > 5 else ''}"
             " — too few rows to tell their loss from noise; more data or merged small "
             "groups could.")
  return text
