"""Keras metrics accumulated over an epoch from group sums and counts.

A gap reported for an epoch is the gap of the epoch's group rates, not an average of
per-batch gaps (which would overweight small batches and absent groups).
"""

import types

import tensorflow as tf

from tf_fairprune import flavours
from tf_fairprune._compat import keras
from tf_fairprune.fairness import outcomes


def _add_state(metric, name, shape):
  """A zero-initialised state variable of which one replica's copy is read."""
  add = metric.add_weight if metric._flavour is flavours.TF_KERAS else metric.add_variable  # pylint: disable=protected-access
  return add(name=name, shape=shape, initializer="zeros",
             aggregation=metric._flavour.first_replica())  # pylint: disable=protected-access


class _GroupRatesLogic:
  """Accumulates [T, K] sums and counts; reports per-group rates or their gap."""

  _flavour = flavours.TF_KERAS

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
    rates = tf.where(self.counts[0] > 0, tf.math.divide_no_nan(self.sums[0], self.counts[0]),
                     float("nan"))
    return {f"{self.prefix}_g{k}": rates[k] for k in range(self.num_groups)}


class _LastValueLogic:
  """Reports the last value it was given (the current sparsity, a multiplier)."""

  _flavour = flavours.TF_KERAS

  def __init__(self, name, **kwargs):
    super().__init__(name=name, **kwargs)
    # Every replica holds the same value: read one, don't sum them.
    self.value = _add_state(self, "value", ())

  def update_state(self, value):  # pylint: disable=arguments-differ
    self.value.assign(tf.cast(value, self.dtype))

  def result(self):
    return tf.identity(self.value)


class GroupRates(_GroupRatesLogic, keras.metrics.Metric):
  __doc__ = _GroupRatesLogic.__doc__


class LastValue(_LastValueLogic, keras.metrics.Metric):
  __doc__ = _LastValueLogic.__doc__


def classes(flavour):
  """The metric classes of a Keras flavour (GroupRates, LastValue)."""
  if flavour is flavours.TF_KERAS:
    return types.SimpleNamespace(GroupRates=GroupRates, LastValue=LastValue)
  base = flavour.keras.metrics.Metric
  return types.SimpleNamespace(
      GroupRates=flavours.derive(_GroupRatesLogic, base, "GroupRates"),
      LastValue=flavours.derive(_LastValueLogic, base, "LastValue"))
