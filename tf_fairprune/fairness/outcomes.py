"""Per-example outcomes of a classifier, hard (0/1) and smooth (differentiable).

Binary outputs: shape [B] or [B, 1], logits or probabilities of the positive class.
Multi-class outputs: shape [B, C], logits or probabilities; labels sparse ([B] or
[B, 1]) or one-hot ([B, C]). The smooth counterpart of "correct" is the probability of
the true class; of "predicted positive", the probability of the positive class.
"""

import numpy as np
import tensorflow as tf

from tf_fairprune import replicas


def loss_from_logits(loss):
  """A Keras loss object's `from_logits`, or None when it does not say (e.g. strings)."""
  if hasattr(loss, "get_config") and "from_logits" in loss.get_config():
    return bool(loss.get_config()["from_logits"])
  return None


# Keras' margin losses of a binary classifier: labels -1/1 (0/1 are converted), one
# output whose decision is at 0 — read like logits.
HINGE_LOSSES = ("hinge", "squared_hinge")


def _loss_name(loss):
  if isinstance(loss, str):
    return loss.lower()
  config = loss.get_config() if hasattr(loss, "get_config") else {}
  candidates = [type(loss).__name__, getattr(loss, "__name__", None),
                getattr(getattr(loss, "fn", None), "__name__", None), config.get("fn")]
  for name in candidates:
    if not name:
      continue
    name = "".join("_" + ch.lower() if ch.isupper() and i else ch.lower()
                   for i, ch in enumerate(str(name)))
    if name in HINGE_LOSSES:
      return name
  return None


def is_hinge_loss(loss):
  """True for Keras' `Hinge` / `SquaredHinge` (objects, functions or their strings):
  labels -1/1 (or 0/1), decision at 0."""
  return _loss_name(loss) in HINGE_LOSSES


def decision_labels(y_true, signed):
  """The labels the outcomes read: as given, or, for a hinge loss (`signed`), 1 where
  the label is positive and 0 where it is -1 (or 0)."""
  if y_true is None or not signed:
    return y_true
  y_true = tf.convert_to_tensor(y_true)
  return tf.cast(y_true > 0, tf.float32)


def labels_outside(y_true, y_pred, signed=False):
  """A scalar bool: some label cannot be read as a class of this output.

  Binary outputs need labels in [0, 1] (0 and 1; soft labels round), or [-1, 1] with a
  hinge loss (`signed`); sparse multi-class labels need integers in [0, C).
  """
  y = tf.cast(tf.convert_to_tensor(y_true), tf.float32)
  if is_multiclass(y_pred):
    if y.shape.rank == 2 and y.shape[-1] == y_pred.shape[-1]:
      return tf.constant(False)  # One-hot.
    flat = tf.reshape(y, [-1])
    classes = tf.cast(tf.shape(y_pred)[-1], tf.float32)
    return tf.reduce_any((flat < 0) | (flat >= classes) | (flat != tf.round(flat)))
  return tf.reduce_any((y < (-1.0 if signed else 0.0)) | (y > 1.0))


def labels_outside_rows(y_true, y_pred, signed=False):
  """[B] bools: the row's label cannot be read as a class of this output, or is NaN/inf
  (the per-row form of `labels_outside`, for measurements outside training)."""
  y = tf.cast(tf.convert_to_tensor(y_true), tf.float32)
  rows = tf.reshape(y, [tf.shape(y)[0], -1])
  finite = tf.reduce_all(tf.math.is_finite(rows), axis=-1)
  if is_multiclass(y_pred):
    if y.shape.rank == 2 and y.shape[-1] == y_pred.shape[-1]:
      return tf.logical_not(finite)  # One-hot.
    classes = tf.cast(tf.shape(y_pred)[-1], tf.float32)
    bad = (rows < 0) | (rows >= classes) | (rows != tf.round(rows))
  else:
    bad = (rows < (-1.0 if signed else 0.0)) | (rows > 1.0)
  return tf.logical_or(tf.reduce_any(bad, axis=-1), tf.logical_not(finite))


def check_label_array(y, units, signed=False):
  """The numpy side of `labels_outside`, with the values found: for arrays at `fit`.

  Raises:
    ValueError: Saying what the labels must be.
  """
  y = np.asarray(y)
  if y.size == 0 or y.dtype == bool:
    return
  if not np.issubdtype(y.dtype, np.number):
    raise ValueError(f"Labels must be numbers (0/1, or class ids), got dtype {y.dtype} "
                     f"(e.g. {y.reshape(-1)[0]!r}): map them first, e.g. "
                     "y = (y == 'yes').astype('float32').")
  if units == 1:
    low = -1.0 if signed else 0.0
    bad = (y < low) | (y > 1.0)
    if bad.any():
      found = np.unique(y[bad])[:5].tolist()
      raise ValueError(f"Labels {found} cannot be read by a binary classifier (one output): "
                       + label_expectation(signed) + " Map them to 0/1 first, e.g. "
                       "y = (y == positive_value).astype('float32').")
  elif units and units > 1 and not (y.ndim == 2 and y.shape[-1] == units):
    flat = y.reshape(-1)
    bad = (flat < 0) | (flat >= units) | (flat != np.round(flat))
    if bad.any():
      found = np.unique(flat[bad])[:5].tolist()
      raise ValueError(f"Labels {found} are not class ids of a {units}-class model: sparse "
                       f"labels must be integers in [0, {units}) (or one-hot rows).")


def label_expectation(signed=False):
  return ("with a hinge loss, labels are -1 and 1 (or 0 and 1), decision at 0."
          if signed else "labels must be 0 and 1 (1 the positive class; probabilities in "
          "[0, 1] are rounded).")


def from_logits_of(loss):
  """Whether a compiled loss takes logits, with Keras' semantics: a loss that does not
  say (a string, None) takes probabilities."""
  return bool(loss_from_logits(loss))


def example_weights(sample_weight, groups):
  """[B] float32 weights: the sample weights flattened, or ones (one per group id)."""
  if sample_weight is None:
    return tf.ones(tf.shape(tf.reshape(groups, [-1])), tf.float32)
  return tf.reshape(tf.cast(sample_weight, tf.float32), [-1])


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


def logits(y_pred, from_logits):
  """[B] binary logits or [B, C] class log-probabilities (up to a constant)."""
  y_pred = tf.cast(y_pred, tf.float32)
  if is_multiclass(y_pred):
    return y_pred if from_logits else tf.math.log(tf.clip_by_value(y_pred, 1e-7, 1.0))
  flat = tf.reshape(y_pred, [-1])
  if from_logits:
    return flat
  p = tf.clip_by_value(flat, 1e-7, 1.0 - 1e-7)
  return tf.math.log(p) - tf.math.log1p(-p)


def _margin_of(z, cls):
  """z[cls] - max over the other classes of z, per row ([B, C] z, [B] cls)."""
  own = tf.gather(z, cls, axis=1, batch_dims=1)
  others = tf.where(tf.one_hot(cls, tf.shape(z)[-1]) > 0, tf.fill(tf.shape(z), -1e30), z)
  return own - tf.reduce_max(others, axis=-1)


def correct_margin(y_true, y_pred, from_logits):
  """Logit margin of the true class: > 0 exactly where the prediction is correct."""
  z = logits(y_pred, from_logits)
  labels = sparse_labels(y_true, y_pred)
  if is_multiclass(y_pred):
    return _margin_of(z, labels)
  return (2.0 * tf.cast(labels, tf.float32) - 1.0) * z


def positive_margin(y_pred, from_logits, positive_class=1):
  """Logit margin of the positive class: > 0 exactly where it is predicted."""
  z = logits(y_pred, from_logits)
  if is_multiclass(y_pred):
    return _margin_of(z, tf.fill(tf.shape(z)[:1], positive_class))
  return z


def soft_step(margin, temperature):
  """sigmoid(margin / (temperature * mean |margin|)): a step function that follows the
  decision (0.5 at the boundary) and cannot be lowered by shrinking every logit.

  The scale (mean |margin| over the batch, summed over replicas) is held constant in
  the gradient: scaling all logits down leaves the value unchanged, so a penalty on it
  can only be reduced by moving examples across the decision boundary, and its
  gradient is largest for the examples nearest to it.
  """
  margin = tf.cast(margin, tf.float32)
  total = all_reduce_sum(tf.stack([tf.reduce_sum(tf.abs(margin)),
                                   tf.cast(tf.size(margin), tf.float32)]))
  scale = tf.stop_gradient(tf.maximum(tf.math.divide_no_nan(total[0], total[1]), 1e-3))
  return tf.sigmoid(margin / (temperature * scale))


all_reduce_sum = replicas.replica_sum  # Sums over replicas; identity on one device.


def group_sums(values, groups, weights, num_groups, dtype=tf.float32):
  """[K] sums of `values * weights` by group, summed over replicas (in `dtype`: the
  held-out measurement sums in float64, so that squared weights cannot overflow)."""
  return all_reduce_sum(tf.math.unsorted_segment_sum(
      tf.cast(values, dtype) * tf.cast(weights, dtype), groups, num_groups))


def pairwise_differences(sums, counts):
  """([T, K, K] rate_i - rate_j, [T, K, K] valid) from [T, K] sums and counts.

  Valid where both groups are present and i != j: one one-sided constraint each.
  """
  rates = tf.math.divide_no_nan(sums, counts)
  present = counts > 0
  k = tf.shape(counts)[-1]
  valid = tf.logical_and(tf.logical_and(present[..., :, None], present[..., None, :]),
                         tf.logical_not(tf.eye(k, dtype=tf.bool)))
  return rates[..., :, None] - rates[..., None, :], valid


def excesses(sums, counts, detach_average=False):
  """([T, K] rate_g - overall rate, [T, K] valid): Balancing Act's ψ_g per group.

  Valid for the groups present when at least two are. With `detach_average` the overall
  rate is a reference the gradient does not flow into (Balancing Act's
  `detach_model_constraint_contribution`): ψ_g is lowered by helping group g only, not
  by raising everyone else's loss.
  """
  rates = tf.math.divide_no_nan(sums, counts)
  present = counts > 0
  overall = tf.math.divide_no_nan(tf.reduce_sum(sums, -1), tf.reduce_sum(counts, -1))
  if detach_average:
    overall = tf.stop_gradient(overall)
  enough = tf.reduce_sum(tf.cast(present, tf.int32), axis=-1, keepdims=True) >= 2
  return rates - overall[..., None], tf.logical_and(present, enough)


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
