"""The progress-bar metrics of a fair-pruned model, accumulated over an epoch.

A gap reported for an epoch is the gap of the epoch's group rates, not an average of
per-batch gaps (which would overweight small batches and absent groups). The metric
classes are flavour-free logic; each flavour's module (`flavour_tf_keras.py`,
`flavour_keras3.py`) adds its `keras.metrics.Metric` base and its `_flavour` table.
"""

import tensorflow as tf

from tf_fairprune.fairness import outcomes


# Up to this many groups the logs hold each group's rate (accuracy_g0, ...); beyond it,
# the worst and best group's: a log key per group would flood the progress bar and
# History, and slicing K scalars out every step costs more than the group sums.
PER_GROUP_LOGS = 10


def _add_state(metric, name, shape):
  """A zero-initialised state variable of which one replica's copy is read."""
  return metric._flavour.add_state(metric, name, shape)  # pylint: disable=protected-access


class GroupRatesLogic:
  """Accumulates [T, K] sums and counts; reports per-group rates or their gap."""

  _flavour = None

  def __init__(self, num_groups, num_terms=1, report="rates", prefix="accuracy", name=None,
               measure=None, **kwargs):
    super().__init__(name=name or prefix, **kwargs)
    self.num_groups = num_groups
    # The gap of [T, K] sums and counts (a constraint's `measure`; default worst pair).
    self._measure = measure
    self.report = report
    self.prefix = prefix
    # Fed with sums already all-reduced over replicas: every replica holds the global
    # totals, so one replica's copy is read (a SUM would count them R times).
    self.sums = _add_state(self, "sums", (num_terms, num_groups))
    self.counts = _add_state(self, "counts", (num_terms, num_groups))

  def update_state(self, sums, counts):  # pylint: disable=arguments-differ
    self.sums.assign_add(tf.cast(sums, tf.float32))
    self.counts.assign_add(tf.cast(counts, tf.float32))

  def reset_state(self):
    for v in (self.sums, self.counts):
      v.assign(tf.zeros_like(v))

  def result(self):
    if self.report == "gap":
      if self._measure is not None:
        return self._measure(self.sums, self.counts)
      return tf.reduce_max(outcomes.worst_pair_gap(self.sums, self.counts))
    present = self.counts[0] > 0
    rates = tf.math.divide_no_nan(self.sums[0], self.counts[0])
    if self.num_groups <= PER_GROUP_LOGS:
      rates = tf.where(present, rates, float("nan"))
      return {f"{self.prefix}_g{k}": rates[k] for k in range(self.num_groups)}
    nan = tf.constant(float("nan"))
    some = tf.reduce_any(present)
    return {f"{self.prefix}_worst_group": tf.where(
                some, tf.reduce_min(tf.where(present, rates, float("inf"))), nan),
            f"{self.prefix}_best_group": tf.where(
                some, tf.reduce_max(tf.where(present, rates, -float("inf"))), nan)}


class LastValueLogic:
  """Reports the last value it was given (the current sparsity, a multiplier)."""

  _flavour = None

  def __init__(self, name, **kwargs):
    super().__init__(name=name, **kwargs)
    # Every replica holds the same value: read one, don't sum them.
    self.value = _add_state(self, "value", ())

  def update_state(self, value):  # pylint: disable=arguments-differ
    self.value.assign(tf.cast(value, self.dtype))

  def result(self):
    return tf.identity(self.value)


class ProgressMetrics:
  """The progress-bar metrics of one compile: the sparsity, the accuracy of each group,
  each constraint's gap and the largest multiplier of each constraint whose rule has
  multipliers (`Lagrangian`).

  The model keeps this object out of Keras attribute tracking (tracked, the metrics'
  state would be model weights: in `get_weights()` and saved files).

  Args:
    classes: The flavour's metric classes (its `Classes`).
    num_groups: K.
    constraints: The model's fairness constraints.
  """

  def __init__(self, classes, num_groups, constraints):
    self.num_groups = num_groups
    self.sparsity = classes.LastValue(name="sparsity")
    self.group_accuracy = classes.GroupRates(num_groups, prefix="accuracy",
                                             name="group_accuracy")
    self.gaps = [classes.GroupRates(num_groups, num_terms=c.num_terms, report="gap",
                                    name=c.name, measure=c.measure) for c in constraints]
    self._steered = [i for i, c in enumerate(constraints) if c.enforcement.drives_multipliers]
    self.multipliers = [classes.LastValue(name=f"{constraints[i].name}_multiplier")
                        for i in self._steered]

  def all(self):
    return [self.sparsity, self.group_accuracy] + self.gaps + self.multipliers

  def update_state(self, sparsity, stats, multipliers, labels=None, y_pred=None,
                   groups=None, sample_weight=None, from_logits=False):
    """One batch: `stats` are the constraints' (smooth, hard, counts); the per-group
    accuracy is formed when the batch carries `groups`."""
    self.sparsity.update_state(sparsity)
    if groups is not None:
      weights = outcomes.example_weights(sample_weight, groups)
      correct = outcomes.hard_correct(labels, y_pred, from_logits)
      self.group_accuracy.update_state(
          outcomes.group_sums(correct, groups, weights, self.num_groups)[None],
          outcomes.group_sums(tf.ones_like(weights), groups, weights, self.num_groups)[None])
    for (_, hard, counts), metric in zip(stats, self.gaps):
      metric.update_state(hard, counts)
    for metric, i in zip(self.multipliers, self._steered):
      metric.update_state(tf.reduce_max(multipliers[i]))  # The largest, in the progress bar.

  def logs(self, metrics, has_groups):
    """The logs of `metrics` (the model's, these included); no per-group columns for
    data without group ids."""
    logs = {}
    for m in metrics:
      if m is self.group_accuracy and not has_groups:
        continue
      result = m.result()
      if isinstance(result, dict):
        logs.update(result)
      else:
        logs[m.name] = result
    return logs
