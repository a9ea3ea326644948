"""The selector: which measured iterate `HeldOutFairness` returns, and why.

Every held-out measurement at the target sparsity is a `Candidate`. The rule
(`select`), on the non-collapsed candidates within the accuracy budget:

1. if the constraints never bound during the run (no measurement found a violation the
   held-out set could tell from noise, so the multipliers never moved and the training
   was that of fairness off), the final iterate — what fairness off returns;
2. else the most accurate candidate with no violation the held-out set can tell from
   noise (each contrast within ε, or within the half-width of its interval where the set
   cannot resolve ε; `Measurement.tolerances`) — "within tolerance", which is not "met"
   (a verdict needs the whole interval within ε; `Measurement.verdicts`);
3. else the one with the smallest such violation — within `UNMET_ACCURACY_LOSS` (5
   points) of the most accurate candidate when no budget is given: a constraint no
   iterate met is not worth any accuracy (on colored Fashion-MNIST with 20 class ×
   colour groups the smallest violation was an iterate near chance accuracy:
   BENCHMARKS.md, "Intersectional groups").

Rule 1 keeps a run whose constraints the data cannot resolve from returning an iterate
picked on noise: it is then exactly the fairness-off model, with a "cannot tell"
verdict, never worse than it on both accuracy and fairness.
"""

import dataclasses
import math

NEVER_BOUND = ("the constraints never bound (no held-out violation beyond what the set can "
               "tell from noise: the multipliers stayed 0 and training was that of fairness "
               "off): the final iterate, as fairness off returns it")
MEETS = ("the most accurate on the held-out set among the iterates with no violation it can "
         "tell from noise")
SMALLEST = ("every iterate had a held-out violation beyond noise{budget}: the smallest "
            "violation")
# Rule 3's accuracy budget when none is given (a fraction: 0.05 = 5 points).
UNMET_ACCURACY_LOSS = 0.05


@dataclasses.dataclass
class Candidate:
  """One measured iterate at the target sparsity.

  Attributes:
    epoch: 1-based epoch of the measurement.
    step: Training steps of this `fit` when it was measured.
    accuracy: Held-out accuracy.
    gaps: Constraint name → held-out gap.
    violation: The largest gap excess over its tolerance (≤ 0: no violation the held-out
      set can tell from noise; `Measurement.violation`).
    collapsed: One class for ≥ 99% of the held-out rows (where the dense model was not).
    verdicts: Constraint name → "met" / "not met" / "cannot tell" (interval against ε).
    intervals: Constraint name → [lower, upper] of its gap (95%, simultaneous).
    backed_off: The multipliers backed off at this measurement (collapse or budget).
    group_accuracy: Held-out accuracy of each group.
    multipliers: The largest multiplier of each constraint after this measurement.
    bound: Some violation was beyond noise at this measurement (the multipliers pushed).
  """
  epoch: int
  step: int
  accuracy: float
  gaps: dict
  violation: float
  collapsed: bool = False
  verdicts: dict = dataclasses.field(default_factory=dict)
  intervals: dict = dataclasses.field(default_factory=dict)
  backed_off: bool = False
  group_accuracy: list = dataclasses.field(default_factory=list)
  multipliers: list = dataclasses.field(default_factory=list)
  bound: bool = False

  @property
  def within_tolerance(self):
    """No violation the held-out set can tell from noise (not "met": see `verdicts`)."""
    return self.violation <= 0.0

  def __getitem__(self, key):
    """Read as a dict too (`candidate["accuracy"]`), as in results files."""
    return getattr(self, key)

  def to_dict(self):
    return dataclasses.asdict(self)


def select(candidates, max_accuracy_loss=None, never_bound=False):
  """Picks the candidate to return; returns (index or None, reason).

  Args:
    candidates: `Candidate`s in the order measured.
    max_accuracy_loss: The accuracy (fraction) one may give up against the most
      accurate non-collapsed candidate; None for no budget.
    never_bound: The constraints never bound during the run (rule 1).

  Ties: the smaller violation, then the earlier (rule 2); the more accurate, then the
  earlier (rule 3).
  """
  alive = [i for i, c in enumerate(candidates) if not c.collapsed]
  if not alive:
    return None, "every candidate collapsed to one class"
  if never_bound and alive[-1] == len(candidates) - 1:
    return alive[-1], NEVER_BOUND
  best_accuracy = max(candidates[i].accuracy for i in alive)
  budget = math.inf if max_accuracy_loss is None else max_accuracy_loss
  within = [i for i in alive if candidates[i].accuracy >= best_accuracy - budget - 1e-12]
  met = [i for i in within if candidates[i].within_tolerance]
  if met:
    i = max(met, key=lambda j: (candidates[j].accuracy, -candidates[j].violation, -j))
    return i, MEETS
  if max_accuracy_loss is None:
    within = [i for i in alive
              if candidates[i].accuracy >= best_accuracy - UNMET_ACCURACY_LOSS - 1e-12]
  i = min(within, key=lambda j: (candidates[j].violation, -candidates[j].accuracy, j))
  return i, SMALLEST.format(
      budget=" within the accuracy budget" if max_accuracy_loss is not None else
      f" (among those within {100 * UNMET_ACCURACY_LOSS:g} points of the most accurate)")


def front(candidates, kept, max_accuracy_loss=None):
  """The candidates whose weights are worth keeping once the newest is in: the newest
  (rule 1 may return it), and every non-collapsed candidate no other kept one beats on
  both held-out accuracy and violation and within the budget of the most accurate —
  rules 2–3 select only among those.

  Args:
    candidates: All `Candidate`s so far, the newest last.
    kept: Indices whose weights are kept now.
    max_accuracy_loss: The budget (None: none).

  Returns:
    The indices to keep (the newest included).
  """
  new = len(candidates) - 1
  pool = [i for i in set(kept) | {new} if not candidates[i].collapsed]
  if not pool:
    return [new]
  key = lambda i: (candidates[i].accuracy, -candidates[i].violation)
  beats = lambda a, b: all(x >= y for x, y in zip(key(a), key(b))) and key(a) != key(b)
  best = max(c.accuracy for c in candidates if not c.collapsed)
  budget = math.inf if max_accuracy_loss is None else max_accuracy_loss
  keep = {i for i in pool if candidates[i].accuracy >= best - budget - 1e-12 and
          not any(beats(j, i) for j in pool)}
  return sorted(keep | {new})


@dataclasses.dataclass
class Selection:
  """What `HeldOutFairness` returned at the end of `fit`, measured on the returned model.

  Attributes:
    candidate: The `Candidate` whose weights the model has (None: the final weights, not
      measured as a candidate).
    index: Its position in `HeldOutFairness.candidates`.
    reason: Why.
    restored: The model was set to `candidate`'s weights.
    final_step: The last training step of the `fit`.
    accuracy, gaps, verdicts, intervals, resolution, collapsed: Of the returned model on
      the whole held-out set.
    met: Every verdict is "met".
    within_tolerance: No violation the held-out set can tell from noise.
    bound: The constraints ever bound (a violation beyond noise moved the multipliers).
    bound_at: The steps of the measurements where they did.
    measurements: Held-out measurements taken.
    largest_multiplier: The largest multiplier of the run.
    levelled_down: Constraint name → groups that lost against the dense model while its
      gap closed (performance gap only: the dense model's other gaps are not measured).
    would_select: With `restore=False`, the candidate the rule picked (not applied).
  """
  candidate: Candidate
  reason: str
  restored: bool
  final_step: int
  accuracy: float
  gaps: dict
  verdicts: dict
  intervals: dict
  resolution: dict
  collapsed: bool
  met: bool
  within_tolerance: bool
  bound: bool
  bound_at: list
  measurements: int
  largest_multiplier: float
  tolerances: dict
  index: int = None
  levelled_down: dict = dataclasses.field(default_factory=dict)
  would_select: Candidate = None

  def to_dict(self):
    """A JSON-ready dict: the fields above, with the returned candidate's epoch, step
    and multipliers (the dict `HeldOutFairness.selected` holds)."""
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
           if f.name not in ("candidate", "would_select")}
    c = self.candidate
    out.update(epoch=c.epoch if c else None, step=c.step if c else None,
               multipliers=c.multipliers if c else None,
               would_select=self.would_select.to_dict() if self.would_select else None)
    return out
