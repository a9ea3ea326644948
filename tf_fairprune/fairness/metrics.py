"""Keras metrics accumulated over an epoch from group sums and counts.

A gap reported for an epoch is the gap of the epoch's group rates, not an average of
per-batch gaps (which would overweight small batches and absent groups).
"""

import tensorflow as tf

from tf_fairprune._compat import keras
from tf_fairprune.fairness import outcomes


class GroupRates(keras.metrics.Metric):
  """Accumulates [T, K] sums and counts; reports per-group rates or their gap."""

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
    first = tf.VariableAggregation.ONLY_FIRST_REPLICA
    self.sums = self.add_weight("sums", shape=(num_terms, num_groups), initializer="zeros",
                                aggregation=first)
    self.counts = self.add_weight("counts", shape=(num_terms, num_groups), initializer="zeros",
                                  aggregation=first)

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
    rates = tf.where(self.counts[0] > 0, tf.math.divide_no_nan(self.sums[0], self.counts[0]),
                     float("nan"))
    return {f"{self.prefix}_g{k}": rates[k] for k in range(self.num_groups)}


class LastValue(keras.metrics.Metric):
  """Reports the last value it was given (the current sparsity, a multiplier)."""

  def __init__(self, name, **kwargs):
    super().__init__(name=name, **kwargs)
    # Every replica holds the same value: read one, don't sum them.
    self.value = self.add_weight(name="value", initializer="zeros",
                                 aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

  def update_state(self, value):  # pylint: disable=arguments-differ
    self.value.assign(tf.cast(value, self.dtype))

  def result(self):
    return tf.identity(self.value)
