"""Per-example outcomes of a classifier, hard (0/1) and smooth (differentiable).

Binary outputs: shape [B] or [B, 1], logits or probabilities of the positive class.
Multi-class outputs: shape [B, C], logits or probabilities; labels sparse ([B] or
[B, 1]) or one-hot ([B, C]). The smooth counterpart of "correct" is the probability of
the true class; of "predicted positive", the probability of the positive class.
"""

import tensorflow as tf


def loss_from_logits(loss):
  """A Keras loss object's `from_logits`, or None when it does not say (e.g. strings)."""
  if hasattr(loss, "get_config") and "from_logits" in loss.get_config():
    return bool(loss.get_config()["from_logits"])
  return None


def is_multiclass(y_pred):
  return y_pred.shape.rank is not None and y_pred.shape.rank >= 2 and (y_pred.shape[-1] or 1) > 1


def probabilities(y_pred, from_logits):
  """[B] positive-class probabilities (binary) or [B, C] class probabilities."""
  y_pred = tf.cast(y_pred, tf.float32)
  if is_multiclass(y_pred):
    return tf.nn.softmax(y_pred, axis=-1) if from_logits else y_pred
  flat = tf.reshape(y_pred, [-1])
  return tf.sigmoid(flat) if from_logits else flat


def sparse_labels(y_true, y_pred):
  """[B] integer labels (binary labels as 0/1)."""
  y_true = tf.convert_to_tensor(y_true)
  if is_multiclass(y_pred) and y_true.shape.rank == 2 and y_true.shape[-1] == y_pred.shape[-1]:
    return tf.argmax(y_true, axis=-1, output_type=tf.int32)
  return tf.cast(tf.round(tf.reshape(tf.cast(y_true, tf.float32), [-1])), tf.int32)


def smooth_correct(y_true, y_pred, from_logits):
  """Probability the model gives the true class: a differentiable accuracy."""
  probs = probabilities(y_pred, from_logits)
  labels = sparse_labels(y_true, y_pred)
  if is_multiclass(y_pred):
    return tf.gather(probs, labels, axis=1, batch_dims=1)
  y = tf.cast(labels, tf.float32)
  return y * probs + (1.0 - y) * (1.0 - probs)


def hard_correct(y_true, y_pred, from_logits):
  probs = probabilities(y_pred, from_logits)
  labels = sparse_labels(y_true, y_pred)
  if is_multiclass(y_pred):
    return tf.cast(tf.equal(tf.argmax(probs, axis=-1, output_type=tf.int32), labels), tf.float32)
  return tf.cast(tf.equal(tf.cast(probs > 0.5, tf.int32), labels), tf.float32)


def smooth_positive(y_pred, from_logits, positive_class=1):
  probs = probabilities(y_pred, from_logits)
  return probs[:, positive_class] if is_multiclass(y_pred) else probs


def hard_positive(y_pred, from_logits, positive_class=1):
  probs = probabilities(y_pred, from_logits)
  if is_multiclass(y_pred):
    return tf.cast(tf.equal(tf.argmax(probs, axis=-1, output_type=tf.int32), positive_class),
                   tf.float32)
  return tf.cast(probs > 0.5, tf.float32)


def label_positive(y_true, y_pred, positive_class=1):
  labels = sparse_labels(y_true, y_pred)
  target = positive_class if is_multiclass(y_pred) else 1
  return tf.cast(tf.equal(labels, target), tf.float32)


def all_reduce_sum(value):
  """Sums over replicas inside a distribution strategy; identity on one device."""
  ctx = tf.distribute.get_replica_context()
  if ctx is not None and ctx.num_replicas_in_sync > 1:
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)
  return value


def group_sums(values, groups, weights, num_groups):
  """[K] sums of `values * weights` by group, summed over replicas."""
  return all_reduce_sum(tf.math.unsorted_segment_sum(
      tf.cast(values, tf.float32) * weights, groups, num_groups))


def worst_pair_gap(sums, counts):
  """max - min of sums/counts over the groups with a positive count (0 if fewer than 2).

  Works on the last axis; absent groups are skipped, never divided by zero.
  """
  present = counts > 0
  rates = tf.math.divide_no_nan(sums, counts)
  big = tf.constant(3.0e38, rates.dtype)
  hi = tf.reduce_max(tf.where(present, rates, -big), axis=-1)
  lo = tf.reduce_min(tf.where(present, rates, big), axis=-1)
  enough = tf.reduce_sum(tf.cast(present, tf.int32), axis=-1) >= 2
  return tf.where(enough, hi - lo, tf.zeros_like(hi))
