"""Verdicts a fairness practitioner can sign: met, not met, cannot tell — and levelling down.

A constraint "gap ≤ ε" is judged by the gap's simultaneous 95% interval (`intervals.py`):
"met" when the whole interval is within ε, "not met" when the whole interval is above
it, "cannot tell" otherwise (the data cannot resolve ε at this gap). Never "yes" beside
"cannot be shown".

A gap can also close because a group was made *worse off* — levelling down (Mittelstadt,
Wachter & Russell 2023). Against a reference model on the same rows (fairness off when
there is one, else the dense model), when the gap closed beyond noise and a group lost
more than `harm_tolerance` of accuracy beyond its interval *and* clearly more than the
groups on average (so plain pruning loss, spread evenly, does not count), or another
gap of the same model got clearly worse, a "met" becomes "met by levelling down",
naming who lost what and what to do instead.

Everything a person reads is in points (1 point = 0.01 of accuracy), labelled.
"""

import dataclasses
import math

import numpy as np

from tf_fairprune.fairness import intervals as intervals_lib

MET, NOT_MET, CANNOT_TELL = intervals_lib.MET, intervals_lib.NOT_MET, intervals_lib.CANNOT_TELL
LEVELLED_DOWN = "met by levelling down"
HARM_TOLERANCE = 0.01  # A group losing more than 1 point (beyond its interval) is harmed.
# Gaps that can close because a group was made worse off (judged against the dense model
# for the rate gaps, against a fairness-off model for all of them). Only a bound on each
# group's own loss (`max_group_loss`) cannot be met that way.
LEVELLING_GAPS = ("performance_gap", "demographic_parity_difference",
                  "equalized_odds_difference", "equal_opportunity_difference",
                  "degradation_gap", "max_excess_gap")
REMEDIES = ("to close a gap without making a group worse off, bound each group's loss "
            "against the dense model (the MaxGroupLoss constraint beside this one), or cap "
            "the accuracy given up (HeldOutFairness(max_accuracy_loss=...)); "
            "ExcessDegradation bounds only the loss beyond the average, which a loss for "
            "every group also meets")


def points(value, digits=1):
  """A fraction as points ("3.2"); "–" for None/NaN, "any" for inf."""
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "–"
  if math.isinf(value):
    return "∞"
  text = f"{100 * value:.{digits}f}"
  return text[1:] if text.startswith("-") and float(text) == 0 else text  # Never "-0.0".


def interval_text(lower, upper, digits=1):
  if lower is None or upper is None:
    return "[undefined]"
  return f"[{points(lower, digits)}, {points(upper, digits)}]"


@dataclasses.dataclass
class GroupLoss:
  """The accuracy a group lost against a reference model on the same rows (paired).

  Attributes:
    name: The group.
    size: Its rows.
    loss: Reference accuracy − model accuracy (negative: it gained).
    lower, upper: The loss's interval (95%, simultaneous over the groups).
    excess_lower: The lower bound of its loss beyond the average loss (ψ_g, 95%,
      simultaneous): > 0 when the group lost clearly more than the groups on average.
  """
  name: str
  size: int
  loss: float
  lower: float
  upper: float
  excess_lower: float = float("nan")

  def text(self):
    return (f"{self.name} (n={self.size}) lost {points(self.loss)} points "
            f"{interval_text(self.lower, self.upper)}")


def group_losses(loss_sums, names, alpha=intervals_lib.ALPHA):
  """`GroupLoss` per group present, from the paired `GroupSums` of reference correct −
  model correct ([1, K])."""
  present = loss_sums.present[0]
  z = intervals_lib.z_value(alpha, int(present.sum()))
  lower, upper = loss_sums.group_intervals(z)
  excess = intervals_lib.excess_gap(loss_sums, alpha).contrast_lower[0]
  return [GroupLoss(str(names[k]) if names and k < len(names) else str(k),
                    int(loss_sums.rows[0, k]), float(loss_sums.means[0, k]),
                    float(lower[0, k]), float(upper[0, k]), float(excess[k]))
          for k in range(present.size) if present[k]]


@dataclasses.dataclass
class Verdict:
  """The verdict on one constraint "gap ≤ ε" on one split.

  Attributes:
    gap: The gap's name (the audit's: `performance_gap`, `max_excess_gap`, ...).
    epsilon: ε (a fraction).
    value, lower, upper: The gap and its interval (fractions; bounds None when undefined).
    verdict: `MET`, `NOT_MET`, `CANNOT_TELL` or `LEVELLED_DOWN`.
    resolution: The smallest ε this split could show to be met at these rates (the
      largest half-width of the gap's contrasts); None when unknown.
    reference_name: What the levelling-down check compared against ("dense",
      "fairness off", ...), None when nothing was compared.
    reference: The reference model's gap on the same rows.
    harmed: `GroupLoss`es (against the reference) of the groups that lost more than
      `harm_tolerance` beyond their interval, and clearly more than average, while the
      gap closed.
    worse_gaps: (name, value, reference value) of other gaps that got clearly worse.
    harm_tolerance: δ of the levelling-down check.
  """
  gap: str
  epsilon: float
  value: float
  lower: float
  upper: float
  verdict: str
  resolution: float = None
  reference: float = None
  harmed: list = dataclasses.field(default_factory=list)
  worse_gaps: list = dataclasses.field(default_factory=list)
  harm_tolerance: float = HARM_TOLERANCE
  reference_name: str = None

  @property
  def levelled_down(self):
    return bool(self.harmed or self.worse_gaps)

  def harm_text(self):
    """Who lost what (and which gap rose), against the reference; "" if nobody."""
    parts = [g.text() for g in self.harmed]
    parts += [f"{name} rose {points(ref)} → {points(value)} points"
              for name, value, ref in self.worse_gaps]
    return "; ".join(parts)

  def text(self):
    """One paragraph in points: the verdict, the gap with its interval, ε, and (when
    levelled down) who lost what and what to do instead."""
    head = (f"{self.gap} {points(self.value)} points, 95% interval "
            f"{interval_text(self.lower, self.upper)}, against ε = {points(self.epsilon)}: "
            f"{self.verdict}")
    if self.verdict == CANNOT_TELL and self.resolution is not None:
      if math.isinf(self.resolution):
        head += " (a group here has no rows or no weight: no ε can be shown met)"
      else:
        head += (f" (this split resolves gaps down to about {points(self.resolution)} "
                 "points: ε below that cannot be shown met; more rows, or merged small "
                 "groups, could)")
    if self.levelled_down:
      moved = "closed" if self.verdict == LEVELLED_DOWN else "narrowed"
      head += (f". The gap {moved} against {self.reference_name} ({points(self.reference)} "
               f"points) while {self.harm_text()} — {REMEDIES}")
    return head + "."

  def to_dict(self):
    out = dataclasses.asdict(self)
    out["levelled_down"] = self.levelled_down
    return out


def clearly_worse(value, interval, reference, reference_interval):
  """`value` exceeds `reference` by more than both half-widths combined (as for two
  independent estimates: conservative here, where both are measured on the same rows)."""
  if None in (value, reference) or not interval or not reference_interval:
    return False
  if None in tuple(interval) + tuple(reference_interval):
    return False
  h = (interval[1] - interval[0]) / 2
  h_ref = (reference_interval[1] - reference_interval[0]) / 2
  return value - reference > math.hypot(h, h_ref)


def decide(gap, epsilon, value, interval, resolution=None, reference=None,
           reference_interval=None, losses=None, other_gaps=None,
           harm_tolerance=HARM_TOLERANCE, reference_name=None):
  """The `Verdict` of "gap ≤ ε".

  Args:
    gap: The gap's audit name.
    epsilon: ε (a fraction).
    value: The gap (None: undefined, e.g. fewer than two groups).
    interval: (lower, upper) of the gap.
    resolution: The smallest ε the split could show met (optional).
    reference: The reference model's value of the same gap (fairness off, or dense);
      None skips the levelling-down check.
    reference_interval: (lower, upper) of `reference`.
    losses: `GroupLoss`es against that reference.
    other_gaps: {name: (value, (lower, upper), reference value, (lower, upper))} of
      the model's other gaps and the reference's.
    harm_tolerance: δ: a group losing more than this (beyond its interval, and clearly
      more than average) is harmed.
    reference_name: What the reference is, for the text.
  """
  lower, upper = interval if interval else (None, None)
  verdict = intervals_lib.judge(lower, upper, epsilon) if value is not None else CANNOT_TELL
  harmed, worse = [], []
  closed = (gap in LEVELLING_GAPS and value is not None and reference is not None and
            clearly_worse(reference, reference_interval, value, interval))
  if closed:
    harmed = [g for g in (losses or []) if g.lower > harm_tolerance and
              not np.isnan(g.excess_lower) and g.excess_lower > 0.0]
    worse = [(name, v, ref) for name, (v, v_int, ref, ref_int) in (other_gaps or {}).items()
             if name != gap and name in LEVELLING_GAPS and clearly_worse(v, v_int, ref, ref_int)]
  if verdict == MET and (harmed or worse):
    verdict = LEVELLED_DOWN
  return Verdict(gap, float(epsilon), value, lower, upper, verdict, resolution, reference,
                 harmed, worse, harm_tolerance, reference_name if closed else None)
