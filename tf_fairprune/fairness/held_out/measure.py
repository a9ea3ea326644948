"""The measurer: one traced pass over a held-out set, and what it found.

The pass adds up, over every batch in order and in float64, each constraint's hard group
sums (what the multipliers read) with the sufficient statistics of their intervals, the
groups' accuracy and accuracy lost against the dense model, and the class counts that
show a collapse. One call, one transfer to the host. `Measurement` turns the totals into
gaps with simultaneous 95% intervals (`intervals.py`), each constraint's verdict and the
per-contrast tolerances the steering uses.
"""

import collections
import dataclasses
import math

import numpy as np
import tensorflow as tf

from tf_fairprune import groups as groups_lib
from tf_fairprune.fairness import intervals as intervals_lib
from tf_fairprune.fairness import outcomes

COLLAPSE_SHARE = 0.99  # One class for this share of rows: a constant predictor.
NO_STEER = 1e6  # A tolerance no gap reaches (finite: 0 · inf would be NaN in the step).

# One batch's (or, summed, one pass's) statistics, float64. `sums`: per constraint the 5
# [T, K] tensors of `GroupSums` (their first and third are the hard sums and counts the
# multipliers read); `accuracy` / `loss`: the same 5 for each group's accuracy and for
# the accuracy lost against the dense model (empty when the dense model is unknown);
# class counts [C]; `invalid` [4]: batches with an id outside [0, num_groups), rows with
# NaN/inf outputs, rows whose label the output cannot read, rows with a NaN/inf/negative
# sample weight.
BatchStatistics = collections.namedtuple(
    "BatchStatistics", "sums accuracy loss classes dense_classes labels invalid")
INVALID = ("batch(es) with group ids outside [0, num_groups)",
           "row(s) with NaN or inf outputs (NaN/inf in the inputs?)",
           "row(s) whose label the output cannot read (e.g. 2 for a binary output)",
           "row(s) with a NaN, inf or negative sample weight")


def _class_counts(y_pred, from_logits):
  """[C] counts of the predicted classes (binary outputs: C = 2)."""
  if outcomes.is_multiclass(y_pred):
    num = y_pred.shape[-1]
    cls = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
  else:
    num = 2
    cls = tf.cast(outcomes.hard_positive(y_pred, from_logits), tf.int32)
  return tf.math.bincount(tf.reshape(cls, [-1]), minlength=num, maxlength=num,
                          dtype=tf.float32)


def _label_counts(y, y_pred):
  num = y_pred.shape[-1] if outcomes.is_multiclass(y_pred) else 2
  labels = tf.clip_by_value(outcomes.sparse_labels(y, y_pred), 0, num - 1)
  return tf.math.bincount(labels, minlength=num, maxlength=num, dtype=tf.float32)


def _sums(values, groups, weights, num_groups):
  """The 5 `GroupSums` tensors ([1, K] each, float64) of per-row `values`."""
  values, weights = tf.cast(values, tf.float64), tf.cast(weights, tf.float64)
  ones = tf.ones_like(weights)
  return tuple(outcomes.group_sums(v, groups, w, num_groups, tf.float64)[None]
               for v, w in ((values, weights), (tf.square(values), weights), (ones, weights),
                            (weights, weights), (ones, ones)))


def _invalid(batch, y_pred, labels, sample_weight, signed):
  """[4] counts of what makes a held-out batch unusable (see `INVALID`)."""
  rows = tf.reshape(tf.cast(y_pred, tf.float32), [tf.shape(y_pred)[0], -1])
  bad_outputs = tf.reduce_sum(tf.cast(tf.logical_not(tf.reduce_all(
      tf.math.is_finite(rows), axis=-1)), tf.float32))
  bad_labels = tf.reduce_sum(tf.cast(outcomes.labels_outside_rows(labels, y_pred, signed),
                                     tf.float32))
  bad_weights = tf.zeros([])
  if sample_weight is not None:
    w = tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
    bad_weights = tf.reduce_sum(tf.cast(tf.logical_or(tf.logical_not(tf.math.is_finite(w)),
                                                      w < 0), tf.float32))
  return tf.stack([tf.cast(batch.bad_ids, tf.float32), bad_outputs, bad_labels, bad_weights])


def batch_statistics(model, batch, objective, judged, reference_model, signed=False):
  """`BatchStatistics` of one unpacked batch (`model._unpack`) in inference mode.

  Args:
    model: The fair-pruned model (called with `training=False`).
    batch: The unpacked batch (x, y, sample_weight, groups, dense, bad_ids, labels).
    objective: The model's `FairnessObjective`.
    judged: The model's function picking the judged output of a multi-output structure.
    reference_model: The dense reference model, or None.
  """
  outputs = model(batch.x, training=False)
  y_pred, labels = judged(outputs), batch.labels
  sample_weight = judged(batch.sample_weight)
  dense = batch.dense
  if dense is None and reference_model is not None:
    dense = groups_lib.DenseReference(outputs=judged(reference_model(batch.x, training=False)))
  num_groups = objective.num_groups
  sums = [c.hard_statistics(labels, y_pred, batch.groups, sample_weight, num_groups,
                            dense=dense if c.needs_dense else None, from_logits=logits)
          for c, logits in zip(objective.constraints, objective.from_logits)]
  from_logits = objective.metric_from_logits
  weights = outcomes.example_weights(sample_weight, batch.groups)
  correct = outcomes.hard_correct(labels, y_pred, from_logits)
  accuracy = _sums(correct, batch.groups, weights, num_groups)
  loss, dense_classes = (), tf.zeros([0])
  if dense is not None:
    if dense.outputs is not None:
      dense_correct = outcomes.hard_correct(labels, dense.outputs, from_logits)
      dense_classes = _class_counts(dense.outputs, from_logits)
    else:
      dense_correct = tf.reshape(tf.cast(dense.correct_values, tf.float32), [-1])
    loss = _sums(dense_correct - correct, batch.groups, weights, num_groups)
  return BatchStatistics(sums, accuracy, loss, _class_counts(y_pred, from_logits),
                         dense_classes, _label_counts(labels, y_pred),
                         _invalid(batch, y_pred, judged(batch.y), sample_weight, signed))


def reduction_function(model, dataset):
  """A traced function: `model.held_out_statistics` summed over the batches of
  `dataset`, in float64, in order — what a numpy loop over the batches adds up — and
  the number of batches.

  The loop runs inside the function (an iterator, not a `tf.data` function, so the
  model's variables are read as in any other traced call, mirrored ones included).

  Raises:
    ValueError: If `dataset` is empty.
  """
  first = next(iter(dataset), None)
  if first is None:
    raise ValueError("HeldOutFairness data is empty.")
  function = tf.function(model.held_out_statistics, reduce_retracing=True)
  # Static shapes of the outputs (bincount's length is dynamic when traced).
  shapes = tf.nest.map_structure(lambda t: t.shape, function(first))

  @tf.function
  def reduce_dataset():
    totals = tf.nest.map_structure(lambda shape: tf.zeros(shape, tf.float64), shapes)
    batches = tf.constant(0.0, tf.float64)
    for data in iter(dataset):
      out = function(data)
      totals = tf.nest.map_structure(
          lambda total, value, shape: total + tf.reshape(tf.cast(value, tf.float64), shape),
          totals, out, shapes)
      batches += 1.0
    return totals, batches

  return reduce_dataset


def _group_sums(totals, paired=False):
  return intervals_lib.GroupSums(*totals, paired=paired) if len(totals) else None


@dataclasses.dataclass
class Measurement:
  """What one pass over the held-out set found (numpy values).

  Attributes:
    constraints: The model's constraints, in order.
    sums: Per constraint, the `intervals.GroupSums` of its hard outcomes.
    accuracy_sums: `GroupSums` of each group's correctness.
    loss_sums: `GroupSums` of each group's accuracy lost against the dense model
      (paired), or None when the dense model is unknown.
    class_shares: [C] shares of the predicted classes.
    dense_class_shares: [C] of the dense model (None when unknown).
    label_shares: [C] shares of the labels.
  """
  constraints: list
  sums: list
  accuracy_sums: intervals_lib.GroupSums
  loss_sums: intervals_lib.GroupSums
  class_shares: np.ndarray
  dense_class_shares: np.ndarray
  label_shares: np.ndarray

  def __post_init__(self):
    self._intervals = None

  @property
  def intervals(self):
    """Constraint name → its `intervals.GapInterval` (95%, simultaneous)."""
    if self._intervals is None:
      self._intervals = {c.name: intervals_lib.gap_interval(c.kind, s)
                         for c, s in zip(self.constraints, self.sums)}
    return self._intervals

  @property
  def stats(self):
    """Per constraint, the (hard sums, counts) [T, K] (float32) the multipliers read."""
    return [(s.sums.astype(np.float32), s.weights.astype(np.float32)) for s in self.sums]

  @property
  def gaps(self):
    """Constraint name → its hard gap (None where no comparison is defined, e.g. fewer
    than two groups)."""
    return {name: i.value for name, i in self.intervals.items()}

  @property
  def group_counts(self):
    """[K] weighted row counts of the groups (sample weights summed)."""
    return self.accuracy_sums.weights[0]

  @property
  def group_rows(self):
    """[K] rows of each group, unweighted."""
    return self.accuracy_sums.rows[0]

  @property
  def accuracy(self):
    total = self.accuracy_sums.weights.sum()
    return float(self.accuracy_sums.sums.sum() / total) if total > 0 else float("nan")

  @property
  def group_accuracy(self):
    counts = self.group_counts
    return np.divide(self.accuracy_sums.sums[0], counts,
                     out=np.full_like(counts, np.nan), where=counts > 0)

  @property
  def collapsed(self):
    """One predicted class for ≥ 99% of rows where the dense model (else the labels)
    did not have one."""
    if float(np.max(self.class_shares)) < COLLAPSE_SHARE:
      return False
    reference = (self.dense_class_shares if self.dense_class_shares is not None
                 else self.label_shares)
    return float(np.max(reference)) < COLLAPSE_SHARE

  def tolerances(self):
    """Per constraint, the tolerance of each one-sided constraint (`multiplier_shape`):
    ε where this set resolves ε, else the half-width of the contrast's interval — a
    violation counts only where the set can tell it from sampling noise."""
    out = []
    for c in self.constraints:
      interval = self.intervals[c.name]
      # Undefined where the groups are absent (ε: counted as met in the step); a
      # comparison without an interval (no effective size) never drives the multipliers.
      widths = np.where(interval.valid, np.nan_to_num(interval.half_widths, nan=NO_STEER),
                        0.0)
      out.append(np.minimum(np.maximum(c.tolerance, widths), NO_STEER).astype(np.float32))
    return out

  def violations(self, scale=1.0):
    """Constraint name → its largest contrast minus `scale` × that contrast's tolerance
    (≤ 0: met as far as this set can tell; `tolerances`)."""
    out = {}
    for c, tol in zip(self.constraints, self.tolerances()):
      interval = self.intervals[c.name]
      excess = np.where(interval.valid, np.nan_to_num(interval.contrasts) - scale * tol,
                        -np.inf)
      out[c.name] = float(excess.max()) if excess.size and np.isfinite(excess.max()) else (
          -scale * float(c.tolerance))
    return out

  def violation(self, scale=1.0):
    """The largest of `violations` (≤ 0: every constraint met as far as the set tells)."""
    return max(self.violations(scale).values(), default=-math.inf)

  def verdicts(self):
    """Constraint name → "met", "not met" or "cannot tell" (its interval against ε)."""
    return {c.name: self.intervals[c.name].verdict(c.tolerance) for c in self.constraints}

  @property
  def met(self):
    """Every constraint's verdict is "met" (its whole interval within ε)."""
    return all(v == intervals_lib.MET for v in self.verdicts().values())

  def resolution(self):
    """Constraint name → the smallest ε this set could show to be met
    (`GapInterval.resolution`)."""
    return {c.name: self.intervals[c.name].resolution for c in self.constraints}


def measure(model, dataset, reduction=None):
  """One pass of `model` (inference mode) over `dataset`: a `Measurement`.

  Args:
    model: The fair-pruned model.
    dataset: A `tf.data.Dataset` of held-out batches.
    reduction: Its `reduction_function` (default: the model's cached
      `held_out_pass(dataset)`).

  Raises:
    ValueError: For an empty set, or group ids outside [0, num_groups).
  """
  reduction = reduction or model.held_out_pass(dataset)
  totals, batches = tf.nest.map_structure(lambda t: t.numpy(), reduction())
  if batches == 0:
    raise ValueError("HeldOutFairness data is empty.")
  if totals.invalid[0] > 0:
    raise ValueError(f"HeldOutFairness data holds group ids outside [0, num_groups="
                     f"{model.num_groups}) in {int(totals.invalid[0])} batch(es): they would be "
                     "merged into a real group. Check the held-out ids.")
  for count, what in list(zip(totals.invalid, INVALID))[1:]:
    if count > 0:
      raise ValueError(f"HeldOutFairness data has {int(count)} {what}: its gaps would be "
                       "measured on them. Fix or drop those rows.")
  classes, dense_classes, labels = totals.classes, totals.dense_classes, totals.labels
  return Measurement(
      constraints=list(model.fairness),
      sums=[_group_sums(s, paired=c.needs_dense) for c, s in zip(model.fairness, totals.sums)],
      accuracy_sums=_group_sums(totals.accuracy), loss_sums=_group_sums(totals.loss, True),
      class_shares=classes / max(classes.sum(), 1e-12),
      dense_class_shares=(dense_classes / dense_classes.sum() if dense_classes.size and
                          dense_classes.sum() > 0 else None),
      label_shares=labels / max(labels.sum(), 1e-12))


def resolvable_gap(group_counts, z=1.96):
  """The smallest gap between two groups' rates a set tells from zero (95%, rates near
  0.5, its two smallest groups); inf with fewer than two groups. A quick bound from sizes
  alone; `Measurement.resolution` uses the rates measured and every comparison."""
  sizes = sorted(float(n) for n in group_counts if n > 0)
  if len(sizes) < 2:
    return math.inf
  return z * math.sqrt(0.25 / sizes[0] + 0.25 / sizes[1])
