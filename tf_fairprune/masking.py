"""Scores -> binary masks: exact top-k with a straight-through gradient.

The masks are hard 0/1 tensors in the forward pass; in the backward pass the gradient
of the mask with respect to its scores is the identity (straight-through estimator).
Top-k is computed by a stable sort, so exactly k entries survive and ties are broken
deterministically (the entry that comes first in flattened order wins; for a global
mask the wrapped layers are concatenated in model order). Everything here has static
shapes and no host round-trips, so it compiles under XLA.
"""

import tensorflow as tf


@tf.custom_gradient
def straight_through(scores, mask):
  """Returns `mask` in the forward pass; passes the gradient to `scores` unchanged."""
  def grad(upstream):
    return upstream, tf.zeros_like(mask)
  return tf.identity(mask), grad


def keep_count(sparsity, size):
  """Number of entries kept at `sparsity` out of `size`: round((1 - sparsity) * size).

  Computed in float64 so that large layers are counted exactly. Rounds half to even.
  """
  if isinstance(sparsity, (int, float)):
    sparsity = tf.constant(sparsity, tf.float64)  # Not via float32: 0.9f != 0.9.
  sparsity = tf.cast(sparsity, tf.float64)
  return tf.cast(tf.round((1.0 - sparsity) * float(size)), tf.int32)


def _rank_mask(flat_scores, k):
  """1.0 for the k largest entries of a 1-D tensor, 0.0 elsewhere."""
  n = flat_scores.shape[0]
  order = tf.argsort(flat_scores, direction="DESCENDING", stable=True)
  ranks = tf.scatter_nd(order[:, None], tf.range(n, dtype=order.dtype), [n])
  return tf.cast(ranks < tf.cast(k, order.dtype), tf.float32)


def topk_masks(scores, sparsity, scope="global"):
  """Computes exact top-k masks of |scores|.

  Args:
    scores: List of score tensors (any shapes).
    sparsity: Scalar (Python float or tensor) in [0, 1): the fraction to remove.
    scope: `"global"` ranks all scores together; `"layer"` keeps the same fraction
      of every tensor.

  Returns:
    A list of float32 masks with the shapes of `scores`.

  Raises:
    ValueError: For an unknown `scope` or an empty `scores` list.
  """
  if not scores:
    raise ValueError("topk_masks needs at least one score tensor.")
  flats = [tf.reshape(tf.abs(tf.cast(s, tf.float32)), [-1]) for s in scores]
  if scope == "layer":
    masks = [_rank_mask(f, keep_count(sparsity, f.shape[0])) for f in flats]
  elif scope == "global":
    sizes = [f.shape[0] for f in flats]
    joined = _rank_mask(tf.concat(flats, axis=0), keep_count(sparsity, sum(sizes)))
    masks = tf.split(joined, sizes)
  else:
    raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}.")
  return [tf.reshape(m, s.shape) for m, s in zip(masks, scores)]
