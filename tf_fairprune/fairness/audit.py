"""The fairness audit: per-group accuracy, rates and every gap of DESIGN.md §2.

`fairness_report` works on predicted labels (and is checked against fairlearn);
`evaluate_fairness` runs a model (and optionally the dense model) over data first.
Names follow fairlearn: `demographic_parity_difference`, `equalized_odds_difference`,
`equal_opportunity_difference`.
"""

import dataclasses
import json

import numpy as np
import tensorflow as tf

from tf_fairprune import groups as groups_lib
from tf_fairprune.fairness import group_verdicts as group_verdicts_lib
from tf_fairprune.fairness import intervals as intervals_lib
from tf_fairprune.fairness import outcomes
from tf_fairprune.fairness import verdict as verdict_lib

# How each audited gap is formed from per-group outcomes (`intervals.gap_interval`).
GAP_KINDS = {"performance_gap": "pairwise", "demographic_parity_difference": "pairwise",
             "equalized_odds_difference": "pairwise", "equal_opportunity_difference": "pairwise",
             "degradation_gap": "pairwise", "max_excess_gap": "excess",
             "max_group_loss": "group"}


def strict_json(value):
  """`value` with every NaN/inf float as None, NumPy scalars as Python ones and
  dataclasses as dicts, recursively: what strict JSON can hold."""
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return strict_json(dataclasses.asdict(value))
  if isinstance(value, np.bool_):
    return bool(value)
  if isinstance(value, float) and not np.isfinite(value):
    return None
  if isinstance(value, (np.floating,)):
    return strict_json(float(value))
  if isinstance(value, np.integer):
    return int(value)
  if isinstance(value, np.ndarray):
    return strict_json(value.tolist())
  if isinstance(value, dict):
    return {k: strict_json(x) for k, x in value.items()}
  if isinstance(value, (list, tuple)):
    return [strict_json(x) for x in value]
  return value


def _rate(mask, values):
  return float(values[mask].mean()) if mask.any() else float("nan")


def _spread(values):
  """max - min over the defined values; None with fewer than two (nothing to compare)."""
  values = [v for v in values if not np.isnan(v)]
  return float(max(values) - min(values)) if len(values) >= 2 else None


@dataclasses.dataclass
class FairnessReport:
  """Per-group results and gaps with their intervals. Print it for a table; `to_dict()` /
  `to_json()` to store; `verdict(gap, epsilon)` to judge a constraint.

  Attributes:
    num_examples: Examples audited.
    accuracy: Overall accuracy.
    groups: One dict per group: name, size, accuracy, accuracy_interval (Wilson 95%),
      selection_rate, tpr, fpr (rates are NaN where undefined, e.g. TPR of a group
      without positives), and with a dense model: dense_accuracy, degradation (R_g,
      the accuracy lost to pruning), degradation_interval (95%, simultaneous over the
      groups) and excess_degradation (ψ_g).
    gaps: performance_gap, demographic_parity_difference, equalized_odds_difference,
      equal_opportunity_difference; with a dense model also degradation_gap,
      degradation (overall R), max_excess_gap (max ψ_g) and max_group_loss (max R_g).
      Rate-based gaps are None for multi-class labels, and every gap is None when fewer
      than two groups are present (nothing to compare).
    intervals: Gap name → [lower, upper], 95% simultaneous over the gap's comparisons
      (Newcombe/MOVER for rates, paired MOVER–Wilson for losses; `intervals.py`).
    resolution: Gap name → the smallest ε this data could show to be met (the largest
      half-width of the gap's comparisons).
    dense_gaps, dense_intervals: The dense model's gaps on the same rows (with a dense
      model), the reference of the levelling-down check.
    absent_groups: Names of the groups with no example in the data (left out of the
      gaps, listed as absent).
    binary: Whether labels are binary (rates are defined for binary labels only).
  """
  num_examples: int
  accuracy: float
  groups: list
  gaps: dict
  binary: bool
  dense_accuracy: float = None
  absent_groups: list = dataclasses.field(default_factory=list)
  intervals: dict = dataclasses.field(default_factory=dict)
  resolution: dict = dataclasses.field(default_factory=dict)
  dense_gaps: dict = dataclasses.field(default_factory=dict)
  dense_intervals: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self._losses = None  # `GroupLoss`es against the dense model (simultaneous).
    self._rows = None  # (y_true, y_pred, groups, num_groups): to compare with another model.
    self._dense_pred = None

  def to_dict(self):
    return dataclasses.asdict(self)

  def to_json(self, **kwargs):
    return json.dumps(strict_json(self.to_dict()), allow_nan=False, **kwargs)

  def group_losses(self, reference=None):
    """`verdict.GroupLoss` of every group present against the dense model, or against
    the model of `reference` (a `FairnessReport` on the same rows); None without one."""
    if reference is None:
      return self._losses
    y, pred, groups, k = self._rows
    ref_y, ref_pred, ref_groups, _ = reference._rows  # pylint: disable=protected-access
    if len(ref_y) != len(y) or not (np.array_equal(ref_y, y) and np.array_equal(ref_groups, groups)):
      raise ValueError("The reference report was not made on the same rows (labels and "
                       "groups differ): a paired comparison needs the same data.")
    loss = intervals_lib.GroupSums.of_values(
        (y == ref_pred).astype(float) - (y == pred).astype(float), np.ones(len(y)), groups, k,
        paired=True)
    return verdict_lib.group_losses(loss, [g["name"] for g in self.groups])

  def group_verdicts(self, epsilon, max_loss=None):
    """Each group's verdict on "its loss beyond the average ≤ ε" (and "its loss against
    the dense model ≤ `max_loss`"), with intervals simultaneous over the groups
    (`group_verdicts.GroupVerdict`): the groups this data can judge, worst-off first,
    then those it cannot.

    Args:
      epsilon: ε (a fraction: 0.01 = 1 point).
      max_loss: δ (a fraction), or None.

    Raises:
      ValueError: Without a dense model (nothing to lose against).
    """
    if self._dense_pred is None:
      raise ValueError("group_verdicts needs the dense model's predictions "
                       "(fairness_report(..., dense_pred=...)).")
    y, pred, groups, k = self._rows
    sums = _gap_sums(y, pred, groups, k, False, self._dense_pred)
    return group_verdicts_lib.judge_groups(sums["performance_gap"], sums["max_excess_gap"],
                                           [g["name"] for g in self.groups], epsilon, max_loss)

  def verdict(self, gap, epsilon, harm_tolerance=verdict_lib.HARM_TOLERANCE, reference=None):
    """The verdict on "gap ≤ ε" on this data (`verdict.Verdict`): met, not met, cannot
    tell, or met by levelling down.

    Levelling down is judged against `reference` (the fairness-off model's report on the
    same rows) when given, else against the dense model (rate gaps only: the dense model
    has no degradation or excess gap of its own).

    Args:
      gap: A name of `gaps` (e.g. "performance_gap").
      epsilon: ε, a fraction (0.03 = 3 points).
      harm_tolerance: A group losing more than this against the reference, beyond its
        interval and clearly more than average, while the gap closed beyond noise, makes
        "met" "met by levelling down".
      reference: A `FairnessReport` of another model on the same rows, or None.

    Raises:
      KeyError: For a gap the report does not hold.
      ValueError: For a reference made on other rows.
    """
    if gap not in self.gaps:
      raise KeyError(f"The report has no gap {gap!r}; it has {sorted(self.gaps)}.")
    if reference is not None:
      ref_gaps, ref_intervals, name = reference.gaps, reference.intervals, "fairness off"
    else:
      ref_gaps, ref_intervals, name = self.dense_gaps, self.dense_intervals, "the dense model"
    others = {n: (self.gaps[n], self.intervals.get(n), ref_gaps.get(n), ref_intervals.get(n))
              for n in ref_gaps if n in self.gaps and n != "degradation"}
    return verdict_lib.decide(
        gap, epsilon, self.gaps[gap], self.intervals.get(gap), self.resolution.get(gap),
        reference=ref_gaps.get(gap), reference_interval=ref_intervals.get(gap),
        losses=self.group_losses(reference), other_gaps=others,
        harm_tolerance=harm_tolerance, reference_name=name)

  def __str__(self):
    """A table in points (1 point = 0.01): each group's accuracy with its 95% interval,
    rates, and with a dense model its accuracy and loss; then every gap with its
    interval."""
    cols = ["group", "size", "accuracy", "95% interval"]
    if self.binary:
      cols += ["selection", "TPR", "FPR"]
    if self.dense_accuracy is not None:
      cols += ["dense acc.", "degradation", "excess ψ"]
    keys = {"group": "name", "size": "size", "accuracy": "accuracy",
            "95% interval": "accuracy_interval", "selection": "selection_rate",
            "TPR": "tpr", "FPR": "fpr", "dense acc.": "dense_accuracy",
            "degradation": "degradation", "excess ψ": "excess_degradation"}
    def cell(v):
      if isinstance(v, float):
        return "n/a" if np.isnan(v) else verdict_lib.points(v)
      if isinstance(v, list):
        return verdict_lib.interval_text(*v)
      return "n/a" if v is None else str(v)
    rows = [[cell(g.get(keys[c])) for c in cols] for g in self.groups]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    line = lambda r: "  ".join(str(v).rjust(w) for v, w in zip(r, widths))
    out = [f"Fairness report: {self.num_examples} examples, accuracy "
           f"{verdict_lib.points(self.accuracy)} points (rates and gaps in points)",
           line(cols)] + [line(r) for r in rows]
    for k, v in self.gaps.items():
      interval = self.intervals.get(k)
      out.append(f"{k}: {verdict_lib.points(v) if v is not None else 'n/a'}"
                 + (f" (95% interval {verdict_lib.interval_text(*interval)})" if interval
                    else ""))
    if self.absent_groups:
      out.append(f"absent (no examples, not in the gaps): {', '.join(self.absent_groups)}")
    return "\n".join(out)


def fairness_report(y_true, y_pred, groups, dense_pred=None, group_names=None, num_groups=None):
  """Builds a `FairnessReport` from predicted labels.

  Args:
    y_true: [n] true labels (0/1 for binary, class ids for multi-class).
    y_pred: [n] predicted labels of the (pruned) model.
    groups: [n] integer group ids.
    dense_pred: Optional [n] predicted labels of the dense model (for degradation).
    group_names: Optional names, one per group id.
    num_groups: Number of groups (default: max id + 1). Groups with no examples are
      listed with size 0 and left out of the gaps.

  Returns:
    A `FairnessReport`.

  Raises:
    ValueError: If lengths differ or ids are invalid.
  """
  y_true = np.asarray(y_true).reshape(-1)
  y_pred = np.asarray(y_pred).reshape(-1)
  groups = groups_lib.check_ids(groups, num_groups)
  if not len(y_true) == len(y_pred) == len(groups):
    raise ValueError(f"Lengths differ: y_true {len(y_true)}, y_pred {len(y_pred)}, "
                     f"groups {len(groups)}.")
  if dense_pred is not None:
    dense_pred = np.asarray(dense_pred).reshape(-1)
    if len(dense_pred) != len(y_true):
      raise ValueError(f"dense_pred has {len(dense_pred)} labels, y_true {len(y_true)}.")
  k = num_groups or (int(groups.max()) + 1 if len(groups) else 0)
  binary = set(np.unique(y_true)) | set(np.unique(y_pred)) <= {0, 1}
  correct = (y_true == y_pred).astype(float)
  rows = []
  for g in range(k):
    m = groups == g
    row = {"name": str(group_names[g]) if group_names and g < len(group_names) else str(g),
           "size": int(m.sum()),
           "accuracy": _rate(m, correct)}
    if binary:
      row["selection_rate"] = _rate(m, (y_pred == 1).astype(float))
      row["tpr"] = _rate(m & (y_true == 1), (y_pred == 1).astype(float))
      row["fpr"] = _rate(m & (y_true == 0), (y_pred == 1).astype(float))
    if dense_pred is not None:
      row["dense_accuracy"] = _rate(m, (y_true == dense_pred).astype(float))
      row["degradation"] = row["dense_accuracy"] - row["accuracy"]
    rows.append(row)
  accuracy = float(correct.mean()) if len(correct) else float("nan")
  gaps = {"performance_gap": _spread([r["accuracy"] for r in rows])}
  if binary:
    tpr = _spread([r["tpr"] for r in rows])
    fpr = _spread([r["fpr"] for r in rows])
    gaps.update(demographic_parity_difference=_spread([r["selection_rate"] for r in rows]),
                equalized_odds_difference=max((v for v in (tpr, fpr) if v is not None),
                                              default=None),
                equal_opportunity_difference=tpr)
  else:
    gaps.update(demographic_parity_difference=None, equalized_odds_difference=None,
                equal_opportunity_difference=None)
  dense_accuracy = None
  if dense_pred is not None:
    dense_accuracy = float((y_true == dense_pred).mean())
    overall = dense_accuracy - accuracy
    for r in rows:
      r["excess_degradation"] = r["degradation"] - overall
    gaps.update(degradation_gap=_spread([r["degradation"] for r in rows]), degradation=overall,
                max_excess_gap=max((r["excess_degradation"] for r in rows
                                    if not np.isnan(r["excess_degradation"])), default=None))
  absent = [r["name"] for r in rows if r["size"] == 0]
  if dense_pred is not None:
    gaps["max_group_loss"] = max((r["degradation"] for r in rows if r["size"]), default=None)
    if sum(r["size"] > 0 for r in rows) < 2:
      gaps["max_group_loss"] = None
  names = [r["name"] for r in rows]
  sums = _gap_sums(y_true, y_pred, groups, k, binary, dense_pred)
  found = {name: intervals_lib.gap_interval(GAP_KINDS[name], stat) for name, stat in sums.items()}
  z95 = intervals_lib.z_value()
  for r, (lo, hi) in zip(rows, zip(*intervals_lib.wilson(
      [r["accuracy"] if r["size"] else 0.0 for r in rows], [r["size"] for r in rows], z95))):
    r["accuracy_interval"] = [float(lo), float(hi)] if r["size"] else None
  report = FairnessReport(
      num_examples=len(y_true), accuracy=accuracy, groups=rows, gaps=gaps,
      binary=bool(binary), dense_accuracy=dense_accuracy, absent_groups=absent,
      intervals={n: [i.lower, i.upper] if i.lower is not None else None
                 for n, i in found.items() if gaps.get(n) is not None},
      resolution={n: i.resolution for n, i in found.items() if gaps.get(n) is not None})
  report._rows = (y_true, y_pred, groups, k)  # pylint: disable=protected-access
  report._dense_pred = dense_pred  # pylint: disable=protected-access
  if dense_pred is not None:
    losses = verdict_lib.group_losses(sums["max_group_loss"], names)
    by_name = {g.name: g for g in losses}
    for r in rows:
      g = by_name.get(r["name"])
      r["degradation_interval"] = [g.lower, g.upper] if g else None
    dense_sums = _gap_sums(y_true, dense_pred, groups, k, binary, None)
    dense_found = {n: intervals_lib.gap_interval(GAP_KINDS[n], st)
                   for n, st in dense_sums.items()}
    report.dense_gaps = {n: i.value for n, i in dense_found.items()}
    report.dense_intervals = {n: [i.lower, i.upper] if i.lower is not None else None
                              for n, i in dense_found.items()}
    report._losses = losses  # pylint: disable=protected-access
  return report


def _gap_sums(y_true, y_pred, groups, num_groups, binary, dense_pred=None):
  """Gap name → `intervals.GroupSums` of the per-row outcomes it is formed from."""
  correct = (y_true == y_pred).astype(float)
  all_rows = np.ones_like(correct)
  out = {"performance_gap": intervals_lib.GroupSums.of_values(correct, all_rows, groups,
                                                              num_groups)}
  if binary:
    positive = (y_pred == 1).astype(float)
    label_pos = (y_true == 1).astype(float)
    out["demographic_parity_difference"] = intervals_lib.GroupSums.of_values(
        positive, all_rows, groups, num_groups)
    out["equal_opportunity_difference"] = intervals_lib.GroupSums.of_values(
        positive, label_pos, groups, num_groups)
    out["equalized_odds_difference"] = intervals_lib.GroupSums.of_values(
        [positive, positive], [label_pos, 1.0 - label_pos], groups, num_groups)
  if dense_pred is not None:
    loss = intervals_lib.GroupSums.of_values(
        (y_true == dense_pred).astype(float) - correct, all_rows, groups, num_groups,
        paired=True)
    out.update(degradation_gap=loss, max_excess_gap=loss, max_group_loss=loss)
  return out


def _compiled_loss(model):
  spec = getattr(model, "_loss_spec", None)
  return spec[0] if spec else getattr(model, "loss", None)


def _infer_from_logits(model):
  """From the model, never from the values: its compiled loss (a string loss takes
  probabilities, as in Keras), else its last layer's activation.

  Raises:
    ValueError: If neither says.
  """
  loss = _compiled_loss(model)
  if outcomes.is_hinge_loss(loss):
    return True  # Decision at 0.
  from_logits = outcomes.loss_from_logits(loss)
  if from_logits is not None:
    return from_logits
  if isinstance(loss, str):
    return False
  layer = model.layers[-1] if getattr(model, "layers", None) else None
  layer = getattr(layer, "layer", layer)  # A FairPruneWrapper's wrapped layer.
  activation = getattr(getattr(layer, "activation", None), "__name__", None)
  if activation in ("sigmoid", "softmax"):
    return False
  if activation == "linear":
    return True
  raise ValueError(
      f"Cannot tell whether '{getattr(model, 'name', model)}' outputs logits or "
      "probabilities (it is not compiled and its last layer's activation does not say): "
      "pass from_logits=True or False.")


def predict_labels(model, x, from_logits=None, batch_size=256):
  """Hard labels of a classifier: argmax for multi-class, threshold 0.5 (prob) for binary."""
  outputs = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
  if outputs.ndim >= 2 and outputs.shape[-1] > 1:
    return outputs.argmax(axis=-1)
  outputs = outputs.reshape(-1)
  if from_logits is None:
    from_logits = _infer_from_logits(model)
  return (outputs > (0.0 if from_logits else 0.5)).astype(np.int64)


def dense_correctness(dense_model, x, y, from_logits=None, batch_size=256):
  """0/1 per example: whether `dense_model` classifies it correctly.

  Pack the result with `pack_group_data(x, groups, dense_correct=...)` so that
  `DegradationFairness` need not run the dense model at every step.
  """
  labels = predict_labels(dense_model, x, from_logits, batch_size)
  y = np.asarray(y)
  y = y.argmax(-1) if y.ndim == 2 and y.shape[-1] > 1 else y.reshape(-1)
  if outcomes.is_hinge_loss(_compiled_loss(dense_model)):
    y = (y > 0).astype(np.int64)  # Hinge labels -1/1 (or 0/1): 1 is positive.
  return (labels == y).astype(np.float32)


def _collect(data):
  """(x, y, groups) as numpy from a tuple or a dataset of packed inputs."""
  if isinstance(data, tf.data.Dataset):
    xs, ys, gs = [], [], []
    for element in data.as_numpy_iterator():
      x, groups, _ = groups_lib.unpack_group_data(element[0])
      xs.append(x)
      ys.append(element[1])
      gs.append(groups)
    if any(g is None for g in gs):
      raise ValueError("The dataset carries no group ids: pack them with pack_group_data.")
    return (tf.nest.map_structure(lambda *a: np.concatenate(a), *xs),
            np.concatenate(ys), np.concatenate(gs))
  if len(data) == 3:
    return data
  if len(data) == 2:
    x, groups, _ = groups_lib.unpack_group_data(data[0])
    if groups is None:
      raise ValueError("Pass (x, y, groups) or (pack_group_data(x, groups), y).")
    return x, data[1], groups
  raise ValueError("data must be (x, y, groups), (packed_x, y) or a tf.data.Dataset.")


def evaluate_fairness(model, data, dense_model=None, from_logits=None, group_names=None,
                      num_groups=None, batch_size=256):
  """Audits a classifier's fairness across groups.

  Args:
    model: A `tf_keras` classifier (pruned, stripped or dense).
    data: `(x, y, groups)`, `(pack_group_data(x, groups), y)`, or a `tf.data.Dataset`
      of packed inputs.
    dense_model: Optional dense model: adds degradation, its gap and max ψ.
    from_logits: Whether binary outputs are logits; inferred from the compiled loss
      or the output range when None.
    group_names: Optional names of the groups.
    num_groups: Number of groups (default: from the model, else max id + 1).
    batch_size: Prediction batch size.

  Returns:
    A `FairnessReport`.

  Example:

  ```python
  report = tf_fairprune.fairness.evaluate_fairness(pruned, (x, y, sex), dense_model=dense)
  print(report)
  report.to_json()
  ```
  """
  x, y, groups = _collect(data)
  y = np.asarray(y)
  y_true = y.argmax(-1) if y.ndim == 2 and y.shape[-1] > 1 else y.reshape(-1)
  if outcomes.is_hinge_loss(_compiled_loss(model)):
    y_true = (y_true > 0).astype(np.int64)  # Hinge labels -1/1 (or 0/1): 1 is positive.
  y_pred = predict_labels(model, x, from_logits, batch_size)
  dense_pred = None
  if dense_model is not None:
    dense_pred = predict_labels(dense_model, x, from_logits, batch_size)
  num_groups = num_groups or getattr(model, "num_groups", None)
  return fairness_report(y_true, y_pred, groups, dense_pred, group_names, num_groups)
