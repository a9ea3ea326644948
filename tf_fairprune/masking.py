"""Scores -> binary masks: exact top-k with a straight-through gradient.

The masks are hard 0/1 tensors in the forward pass; in the backward pass the gradient
of the mask with respect to its scores is the identity (straight-through estimator).
Exactly k entries survive and ties are broken deterministically: among equal scores
the entry that comes first in flattened order wins (for a global mask the wrapped
layers are concatenated in model order). Two selection methods give identical masks:

* `"histogram"` (default): a two-pass radix select of the k-th largest |score| on its
  float bits (two `bincount`s), then one comparison. About 15x faster than a sort on
  CPU (14.9x on 314k scores, BENCHMARKS.md).
* `"bisect"`: a 31-step bisection on the float bits (one compare-and-count pass per
  step). No scatter and no sort, so it is the one to use under XLA
  (`jit_compile=True`), where histograms compile poorly and sorts run slowly on CPU.
* `"sort"`: a stable full sort; the reference the others are tested against.
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


METHODS = ("histogram", "bisect", "sort")


def _sort_mask(flat_scores, k):
  """1.0 for the k largest entries of a 1-D tensor, 0.0 elsewhere (stable sort)."""
  n = flat_scores.shape[0]
  order = tf.argsort(flat_scores, direction="DESCENDING", stable=True)
  ranks = tf.scatter_nd(order[:, None], tf.range(n, dtype=order.dtype), [n])
  return tf.cast(ranks < tf.cast(k, order.dtype), tf.float32)


def _suffix_select(hist, k):
  """Largest bin b with sum(hist[b:]) >= k; returns (b, sum(hist[b+1:])).

  Two levels of 256-bin suffix sums: TF's cumsum is slow on long vectors on CPU.
  """
  rows = tf.reshape(hist, [256, -1])
  row_above = tf.cumsum(tf.reduce_sum(rows, axis=1), reverse=True)
  r = tf.maximum(tf.reduce_max(tf.where(row_above >= k, tf.range(256), -1)), 0)
  row = rows[r]
  within = tf.cumsum(row, reverse=True) + (row_above[r] - tf.reduce_sum(row))
  c = tf.maximum(tf.reduce_max(tf.where(within >= k, tf.range(tf.size(row)), -1)), 0)
  b = r * tf.size(row) + c
  return b, within[c] - row[c]


def _histogram_mask(flat_scores, k):
  """Same mask as `_sort_mask`, by radix select on the bits of non-negative floats."""
  k = tf.cast(k, tf.int32)
  # For non-negative IEEE floats the int32 bit pattern orders like the value.
  bits = tf.bitcast(flat_scores, tf.int32)
  empty = tf.zeros([0], tf.int32)
  hist = tf.raw_ops.Bincount(arr=tf.bitwise.right_shift(bits, 16), size=32768, weights=empty)
  high, above_high = _suffix_select(hist, k)
  # Bincount ignores values >= size and rejects negative ones: clearing the sign bit
  # maps entries below bucket `high` to >= 65536, so only bucket `high` is counted.
  offset = tf.bitwise.bitwise_and(bits - high * 65536, 0x7FFFFFFF)
  hist2 = tf.raw_ops.Bincount(arr=offset, size=65536, weights=empty)
  low, above = _suffix_select(hist2, k - above_high)
  threshold = high * 65536 + low  # Bits of the k-th largest value.
  at_least = above_high + above + hist2[low]  # Entries >= threshold.
  return _keep_at_threshold(bits, threshold, k, at_least)


def _keep_at_threshold(bits, threshold, k, at_least):
  """Entries >= threshold, dropping the last tied ones if more than k qualify."""
  def with_ties():
    equal = tf.equal(bits, threshold)
    room = k - tf.reduce_sum(tf.cast(bits > threshold, tf.int32))
    return tf.logical_or(bits > threshold,
                         tf.logical_and(equal, tf.cumsum(tf.cast(equal, tf.int32)) <= room))
  keep = tf.cond(at_least == k, lambda: bits >= threshold, with_ties)
  return tf.cast(tf.logical_and(keep, k > 0), tf.float32)


def _bisect_mask(flat_scores, k):
  """Same mask as `_sort_mask`: bisection for the bits of the k-th largest value."""
  k = tf.cast(k, tf.int32)
  bits = tf.bitcast(flat_scores, tf.int32)
  def body(lo, hi):
    mid = lo + (hi - lo + 1) // 2
    enough = tf.reduce_sum(tf.cast(tf.cast(bits, tf.int64) >= mid, tf.int32)) >= k
    return tf.where(enough, mid, lo), tf.where(enough, hi, mid - 1)
  lo, _ = tf.while_loop(lambda lo, hi: lo < hi, body,
                        (tf.constant(0, tf.int64), tf.constant(2**31 - 1, tf.int64)),
                        maximum_iterations=32)
  threshold = tf.cast(lo, tf.int32)  # Largest t with count(bits >= t) >= k.
  at_least = tf.reduce_sum(tf.cast(bits >= threshold, tf.int32))
  return _keep_at_threshold(bits, threshold, k, at_least)


LAYER_FLOOR = 0.1


def layer_floors(sizes, sparsity, floor):
  """Entries each tensor keeps at least under global ranking: max(1, ⌈floor·(1−s)·n⌉),
  a fraction `floor` of its share at the average density; none when `floor` is 0 or
  the floors would not fit in the k kept entries."""
  if not floor:
    return None
  density = 1.0 - tf.cast(sparsity, tf.float64)
  floors = [tf.maximum(tf.cast(tf.math.ceil(float(floor) * density * float(n)), tf.int32), 1)
            for n in sizes]
  fits = tf.add_n(floors) <= keep_count(sparsity, sum(sizes))
  return [tf.where(fits, f, 0) for f in floors]


def _with_floors(joined, flats, sizes, floors, k, select):
  """The global top-k mask with every tensor keeping at least its floor.

  Each tensor's own largest `floor` entries rank above everything (+inf), so the one
  global top-k keeps them and fills the rest by magnitude: k stays exact. When the
  plain global mask `joined` already keeps at least its floor in every tensor, that is
  the answer (and the floored ranking is not computed): a tensor's entries in the
  global top-k are its own top entries (the same order: magnitude, then position), so
  its floor entries are among them, and raising entries that are already kept to +inf
  changes no selection.
  """
  kept = [tf.reduce_sum(tf.cast(part, tf.int32)) for part in tf.split(joined, sizes)]
  met = tf.reduce_all(tf.stack([c >= f for c, f in zip(kept, floors)]))

  def floored():
    raised = [tf.where(select(f, n) > 0, tf.constant(float("inf")), f)
              for f, n in zip(flats, floors)]
    return select(tf.concat(raised, axis=0), k)

  return tf.cond(met, lambda: joined, floored)


def topk_masks(scores, sparsity, scope="global", method="histogram", floor=0.0):
  """Computes exact top-k masks of |scores|.

  Args:
    scores: List of score tensors (any shapes).
    sparsity: Scalar (Python float or tensor) in [0, 1): the fraction to remove.
    scope: `"global"` ranks all scores together; `"layer"` keeps the same fraction
      of every tensor.
    method: `"histogram"` (fast on CPU), `"bisect"` (for XLA) or `"sort"`; all
      give the same masks.
    floor: For `"global"`: every tensor keeps at least its `layer_floors` entries
      (its own largest), the rest is ranked globally, and exactly k entries are kept
      in total. Global magnitude ranking alone empties whole layers of deep networks
      (layers of large fan-in have small weights: "layer collapse", Tanaka et al.
      2020); 0 ranks purely globally.

  Returns:
    A list of float32 masks with the shapes of `scores`.

  Raises:
    ValueError: For an unknown `scope` or `method`, or an empty `scores` list.
  """
  if not scores:
    raise ValueError("topk_masks needs at least one score tensor.")
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
  select = {"histogram": _histogram_mask, "bisect": _bisect_mask, "sort": _sort_mask}[method]
  flats = [tf.reshape(tf.abs(tf.cast(s, tf.float32)), [-1]) for s in scores]
  if scope == "layer":
    masks = [select(f, keep_count(sparsity, f.shape[0])) for f in flats]
  elif scope == "global":
    sizes = [f.shape[0] for f in flats]
    k = keep_count(sparsity, sum(sizes))
    joined = select(tf.concat(flats, axis=0), k)
    floors = layer_floors(sizes, sparsity, floor)
    if floors is not None:
      joined = _with_floors(joined, flats, sizes, floors, k, select)
    masks = tf.split(joined, sizes)
  else:
    raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}.")
  return [tf.reshape(m, s.shape) for m, s in zip(masks, scores)]


# ---------------------------------------------------------------- structured masks
GRANULARITIES = ("weight", "channel")


def check_structure_args(block_size=(1, 1), sparsity_m_by_n=None, granularity="weight"):
  """Raises a ValueError for a malformed or contradictory structure."""
  if granularity not in GRANULARITIES:
    raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}.")
  if not isinstance(block_size, (tuple, list)) or not all(
      isinstance(b, int) and not isinstance(b, bool) for b in block_size):
    raise ValueError("block_size must be two positive integers (rows, cols) of the kernel "
                     f"in Keras layout, e.g. (4, 1); got {block_size!r}.")
  block_size = tuple(block_size)
  structured = [block_size != (1, 1), sparsity_m_by_n is not None, granularity == "channel"]
  if sum(structured) > 1:
    raise ValueError("Use one of block_size, sparsity_m_by_n and granularity='channel'.")
  if len(block_size) != 2 or min(block_size) < 1:
    raise ValueError(f"block_size must be two positive integers, got {block_size!r}.")
  if sparsity_m_by_n is not None:
    n, m = sparsity_m_by_n
    if not 0 < n < m:
      raise ValueError(f"sparsity_m_by_n must be (N, M) with 0 < N < M, got {sparsity_m_by_n!r}.")


def check_structure(shape, block_size=(1, 1), sparsity_m_by_n=None, granularity="weight",
                    where="weight"):
  """Raises a ValueError naming `where` if the structure does not fit `shape`."""
  check_structure_args(block_size, sparsity_m_by_n, granularity)
  shape = tuple(shape)
  block_size = tuple(block_size)
  if block_size != (1, 1):
    if len(shape) != 2:
      raise ValueError(f"block_size applies to 2-D kernels (in, out); {where} has shape "
                       f"{shape}. Use granularity='channel' for convolutions.")
  if sparsity_m_by_n is not None:
    n, m = sparsity_m_by_n
    if len(shape) < 2 or shape[-2] % m:
      raise ValueError(f"{where} of shape {shape}: its input dimension must be divisible "
                       f"by M={m} for {n}:{m} sparsity.")


def _unit_scores(score, block_size, granularity):
  """|score| averaged over each pruning unit, as a 1-D tensor."""
  magnitude = tf.abs(tf.cast(score, tf.float32))
  if granularity == "channel":
    return tf.reduce_mean(tf.reshape(magnitude, [-1, magnitude.shape[-1]]), axis=0)
  bh, bw = block_size
  if (bh, bw) == (1, 1):
    return tf.reshape(magnitude, [-1])
  rows, cols = magnitude.shape
  # Edge blocks of a kernel that does not divide evenly are smaller: pad with zeros
  # and average over the real entries only.
  pad = [[0, -rows % bh], [0, -cols % bw]]
  padded_rows, padded_cols = rows + pad[0][1], cols + pad[1][1]
  sums = tf.reduce_sum(tf.reshape(tf.pad(magnitude, pad),
                                  [padded_rows // bh, bh, padded_cols // bw, bw]), axis=[1, 3])
  counts = tf.reduce_sum(tf.reshape(tf.pad(tf.ones_like(magnitude), pad),
                                    [padded_rows // bh, bh, padded_cols // bw, bw]), axis=[1, 3])
  return tf.reshape(sums / counts, [-1])


def _expand_units(unit_mask, shape, block_size, granularity):
  if granularity == "channel":
    return tf.broadcast_to(unit_mask, shape)
  bh, bw = block_size
  if (bh, bw) == (1, 1):
    return tf.reshape(unit_mask, shape)
  rows, cols = shape
  blocks = tf.reshape(unit_mask, [-(-rows // bh), 1, -(-cols // bw), 1])
  full = tf.reshape(tf.tile(blocks, [1, bh, 1, bw]), [-(-rows // bh) * bh, -(-cols // bw) * bw])
  return full[:rows, :cols]


def _m_by_n_mask(score, n, m):
  """Keeps the N largest |score| of every M consecutive inputs (axis -2); stable ties."""
  magnitude = tf.abs(tf.cast(score, tf.float32))
  shape = magnitude.shape
  moved = tf.experimental.numpy.moveaxis(magnitude, -2, -1)  # [..., out, in]
  groups = tf.reshape(moved, [-1, m])
  order = tf.argsort(groups, axis=-1, direction="DESCENDING", stable=True)
  ranks = tf.argsort(order, axis=-1, stable=True)  # Inverse permutation: rank of each entry.
  keep = tf.cast(ranks < n, tf.float32)
  return tf.experimental.numpy.moveaxis(tf.reshape(keep, moved.shape), -1, -2) * tf.ones(shape)


def structured_masks(scores, sparsity, structures, scope="global", method="histogram",
                     floor=0.0):
  """Top-k masks whose units are weights, blocks, channels or N:M groups.

  Args:
    scores: List of score tensors.
    sparsity: Fraction of units to remove (blocks and channels are ranked by their mean
      |score|; N:M groups ignore it — their sparsity is 1 - N/M by construction).
    structures: One `(block_size, sparsity_m_by_n, granularity)` per score.
    scope: `"global"` or `"layer"`, as in `topk_masks`.
    method: Selection method, as in `topk_masks`.

  Returns:
    A list of float32 masks with the shapes of `scores`.
  """
  masks = [None] * len(scores)
  ranked, units = [], []
  for i, (score, (block_size, m_by_n, granularity)) in enumerate(zip(scores, structures)):
    if m_by_n is not None:
      masks[i] = _m_by_n_mask(score, *m_by_n)
    else:
      ranked.append(i)
      units.append(_unit_scores(score, tuple(block_size), granularity))
  if units:
    for i, unit_mask in zip(ranked, topk_masks(units, sparsity, scope=scope, method=method,
                                               floor=floor)):
      block_size, _, granularity = structures[i]
      masks[i] = _expand_units(unit_mask, scores[i].shape, tuple(block_size), granularity)
  return masks
