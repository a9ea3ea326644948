"""Replica plumbing of the bi-level step: sums, agreement and guarded updates.

Everything here is the same on one device and under a `tf.distribute` strategy: a
quantity all replicas must agree on (is this step finite? are these ids valid?) is
agreed through an all-reduce, and an optimizer update that may be skipped is applied
without putting the strategy's merge call inside a cond (which raises).
"""

import tensorflow as tf

from tf_fairprune import _private
from tf_fairprune import flavours


def num_replicas():
  """Replicas in sync in the current replica context (1 outside a strategy)."""
  ctx = tf.distribute.get_replica_context()
  return ctx.num_replicas_in_sync if ctx is not None else 1


def under_strategy():
  """True inside a tf.distribute strategy, even one with a single replica: its
  mirrored variables synchronise through merge calls, which may not sit in a cond."""
  return tf.distribute.has_strategy() and tf.distribute.get_replica_context() is not None


def replica_sum(value):
  """Sum over replicas inside a distribution strategy (identity on one device)."""
  ctx = tf.distribute.get_replica_context()
  if ctx is not None and ctx.num_replicas_in_sync > 1:
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)
  return value


def all_true(local):
  """True when the boolean `local` is True on every replica (the same answer on all)."""
  if num_replicas() > 1:
    return tf.equal(replica_sum(1.0 - tf.cast(local, tf.float32)), 0.0)
  return local


def _each_finite(tensors):
  return tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(t)) for t in tensors]))


def all_finite(tensors):
  """True when every tensor is finite on every replica (the same answer on all).

  One pass per tensor in the common case: a sum is finite only when every entry is (an
  inf or a NaN makes it inf or NaN), so a finite total answers at once; otherwise (a
  non-finite entry, or finite ones whose sum overflows) every entry is checked, so the
  answer is exact either way.
  """
  tensors = [t for t in tensors if t is not None]
  if not tensors:
    return all_true(tf.constant(True))
  total = tf.add_n([tf.cast(tf.reduce_sum(t), tf.float32) for t in tensors])
  local = tf.cond(tf.math.is_finite(total), lambda: tf.constant(True),
                  lambda: _each_finite(tensors))
  return all_true(local)


class _UnwrapPreventer:
  """Keeps a strategy from unwrapping mirrored variables passed through merge_call."""

  __slots__ = ["value"]

  def __init__(self, value):
    self.value = value


def apply_if(ok, optimizer, grads, variables):
  """Applies the gradients only when `ok` (a boolean identical on every replica)."""
  pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
  if not pairs:
    return
  if not under_strategy():
    def apply():
      optimizer.apply_gradients(pairs)
      return tf.constant(True)
    tf.cond(ok, apply, lambda: tf.constant(False))
    return
  # Under a strategy a cond may not contain the optimizer's cross-replica merge: the
  # cond runs in cross-replica context around a per-replica apply, as Keras' own
  # LossScaleOptimizers do.
  pairs, kwargs = flavours.of(optimizer).aggregated_for_apply(optimizer, pairs)
  grads_only = [g for g, _ in pairs]
  wrapped = _UnwrapPreventer([v for _, v in pairs])

  def apply_fn(grads=grads_only):
    optimizer.apply_gradients(list(zip(grads, wrapped.value)), **kwargs)

  if _private.strategy_supports_no_merge_call():
    _private.smart_cond(ok, apply_fn, lambda: None)
  else:
    def cross_replica(distribution, ok, grads):
      # `ok` was agreed on by all replicas; any replica's copy will do.
      ok = distribution.experimental_local_results(ok)[0]
      _private.smart_cond(
          ok, lambda: distribution.extended.call_for_each_replica(apply_fn, args=(grads,)),
          lambda: None)
    tf.distribute.get_replica_context().merge_call(cross_replica, args=(ok, grads_only))
