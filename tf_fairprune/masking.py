"""Scores -> binary masks: exact top-k with a straight-through gradient.

The masks are hard 0/1 tensors in the forward pass; in the backward pass the gradient
of the mask with respect to its scores is the identity (straight-through estimator).
Exactly k entries survive and ties are broken deterministically: among equal scores
the entry that comes first in flattened order wins (for a global mask the wrapped
layers are concatenated in model order). Three selection methods give identical masks:

* `"histogram"` (default): a two-pass radix select of the k-th largest |score| on its
  float bits (two `bincount`s), then one comparison. Many times faster than a sort
  on CPU (BENCHMARKS.md, "Pruning engine").
* `"bisect"`: a 31-step bisection on the float bits (one compare-and-count pass per
  step). No scatter and no sort, so it is the one to use under XLA
  (`jit_compile=True`), where histograms compile poorly and sorts run slowly on CPU.
* `"sort"`: a stable full sort; the reference the others are tested against.

During training the masks are re-ranked at every step from scores that moved a little
since the last ranking: `ranked_masks` starts the threshold search from where the last
one found it (a band of bit patterns around the last threshold; the radix select or the
full bisection when the threshold left the band), with the same masks as a full top-k.
"""

import numbers

import numpy as np
import tensorflow as tf


@tf.custom_gradient
def straight_through(scores, mask):
  """Returns `mask` in the forward pass; passes the gradient to `scores` unchanged."""
  def grad(upstream):
    return upstream, tf.zeros_like(mask)
  return tf.identity(mask), grad


def _is_number(value, kind=numbers.Real):
  """A Python or NumPy scalar of `kind` (NumPy's register as `numbers`), not a bool."""
  return isinstance(value, kind) and not isinstance(value, (bool, np.bool_))


def keep_count(sparsity, size):
  """Number of entries kept at `sparsity` out of `size`: round((1 - sparsity) * size).

  Computed in float64 so that large layers are counted exactly. Rounds half to even.

  Raises:
    TypeError: For a bool `sparsity`.
  """
  if isinstance(sparsity, (bool, np.bool_)):
    raise TypeError(f"sparsity must be a number in [0, 1) or a tensor, got {sparsity!r}.")
  if _is_number(sparsity):  # Python or NumPy scalar.
    sparsity = tf.constant(float(sparsity), tf.float64)  # Not via float32: 0.9f != 0.9.
  sparsity = tf.cast(sparsity, tf.float64)
  return tf.cast(tf.round((1.0 - sparsity) * float(size)), tf.int32)


METHODS = ("histogram", "bisect", "sort")
_INT32_MAX = 2**31 - 1
_INF_BITS = 0x7F800000  # Bits of +inf: above every finite |score|.


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


# ---------------------------------------------------------------- thresholds
# Every selection below works on the int32 bit patterns of |score|: for non-negative
# IEEE floats they order like the values. The "threshold" of a selection of k entries
# is the bits of its k-th largest value (`_INT32_MAX` when k is 0, so that nothing is
# above it); `_masks_at` turns a threshold into exactly k kept entries.
def _abs_bits(scores):
  """Per tensor, the flat int32 bits of |score| (float32)."""
  return [tf.bitcast(tf.reshape(tf.abs(tf.cast(s, tf.float32)), [-1]), tf.int32)
          for s in scores]


def _count(bits, predicate):
  return tf.reduce_sum(tf.cast(predicate(bits), tf.int32))


def _histogram_threshold(bits, k):
  """Threshold of the k largest entries of 1-D `bits`: a two-pass radix select (two
  `bincount`s on the high and the low 16 bits)."""
  k = tf.cast(k, tf.int32)
  empty = tf.zeros([0], tf.int32)
  hist = tf.raw_ops.Bincount(arr=tf.bitwise.right_shift(bits, 16), size=32768, weights=empty)
  high, above_high = _suffix_select(hist, k)
  # Bincount ignores values >= size and rejects negative ones: clearing the sign bit
  # maps entries below bucket `high` to >= 65536, so only bucket `high` is counted.
  offset = tf.bitwise.bitwise_and(bits - high * 65536, 0x7FFFFFFF)
  hist2 = tf.raw_ops.Bincount(arr=offset, size=65536, weights=empty)
  low, _ = _suffix_select(hist2, k - above_high)
  return tf.where(k > 0, high * 65536 + low, _INT32_MAX)


def _bisect_threshold(bits_list, k, lo=0, hi=_INT32_MAX):
  """Threshold of the k largest entries of all `bits_list`, known to lie in [lo, hi]:
  a bisection on the bits (one compare-and-count pass per step, no scatter or sort: the
  form XLA compiles well)."""
  k = tf.cast(k, tf.int32)
  def body(lo, hi):
    mid = lo + (hi - lo + 1) // 2
    t = tf.cast(mid, tf.int32)
    enough = tf.add_n([_count(b, lambda b: b >= t) for b in bits_list]) >= k
    return tf.where(enough, mid, lo), tf.where(enough, hi, mid - 1)
  lo, _ = tf.while_loop(lambda lo, hi: lo < hi, body,
                        (tf.cast(lo, tf.int64), tf.cast(hi, tf.int64)), maximum_iterations=32)
  return tf.cast(lo, tf.int32)  # Largest t with count(bits >= t) >= k.


def _counts_at(bits_list, threshold):
  """Per tensor: (entries above `threshold`, entries equal to it)."""
  return ([_count(b, lambda b: b > threshold) for b in bits_list],
          [_count(b, lambda b: tf.equal(b, threshold)) for b in bits_list])


def _kept_counts(greater, equal, k):
  """Entries each tensor keeps: all above the threshold, then the tied ones in flattened
  order across the list until k are kept. Returns (kept per tensor, tied kept per tensor)."""
  room = tf.cast(k, tf.int32) - tf.add_n(greater)
  ties, before = [], tf.constant(0, tf.int32)
  for e in equal:
    ties.append(tf.clip_by_value(room - before, 0, e))
    before += e
  return [g + t for g, t in zip(greater, ties)], ties


def _masks_at(bits_list, threshold, equal, ties, static_shapes):
  """Float masks: the entries above `threshold` and, of the entries equal to it, the
  first `ties[i]` of tensor i (flattened order). Without partially kept ties this is
  one comparison per tensor."""
  def plain():
    return [tf.cast(b >= threshold, tf.float32) for b in bits_list]

  def cut():
    masks = []
    for b, t in zip(bits_list, ties):
      tied = tf.equal(b, threshold)
      if static_shapes:  # XLA: no data-dependent shapes.
        first = tf.cumsum(tf.cast(tied, tf.int32)) <= t
      else:  # The position of the first tied entry left out (or past the end).
        where = tf.concat([tf.where(tied)[:, 0], [tf.size(b, out_type=tf.int64)]], 0)
        first = tf.range(tf.size(b, out_type=tf.int64)) < where[t]
      masks.append(tf.cast(tf.logical_or(b > threshold, tf.logical_and(tied, first)),
                           tf.float32))
    return masks

  all_tied_kept = tf.reduce_all(tf.stack([tf.equal(t, e) for t, e in zip(ties, equal)]))
  return tf.cond(all_tied_kept, plain, cut)


# ---------------------------------------------------------------- warm start
# Between two re-ranks the scores move a little, and so does the threshold (on the
# engine benchmark's MLP and CNN, well inside the narrowest band below). A warm start
# looks for the new threshold only in a band of bit patterns around the last one: a
# compare per entry finds the few entries inside the band and a count those above it;
# the k-th largest is then picked among the band's entries. When the threshold is not
# inside the band (a jump, a first step) the full radix select runs instead, so the
# masks are exactly those of a full top-k either way; the hint only decides how much
# work that takes.
HINT_MIN_HALF_WIDTH = 2**11  # Bit patterns either side: about ±2.4e-4 of the value.
HINT_MAX_HALF_WIDTH = 2**22


def initial_hint(selections=1):
  """A hint that knows nothing: [[threshold bits, half-width]] per selection."""
  return tf.zeros([selections, 2], tf.int32)


def _band(hint):
  """[lo, hi) of a hint, clipped to the non-negative int32 range."""
  centre = tf.cast(hint[0], tf.int64)
  half = tf.cast(tf.maximum(hint[1], HINT_MIN_HALF_WIDTH), tf.int64)
  lo = tf.maximum(centre - half, 0)
  hi = tf.minimum(centre + half, _INT32_MAX)
  return tf.cast(lo, tf.int32), tf.cast(hi, tf.int32)


def _next_hint(hint, threshold):
  """The next re-rank's band: centred on `threshold`, four times the last move wide."""
  move = tf.abs(tf.cast(threshold, tf.int64) - tf.cast(hint[0], tf.int64))
  half = tf.clip_by_value(4 * move, HINT_MIN_HALF_WIDTH, HINT_MAX_HALF_WIDTH)
  return tf.stack([threshold, tf.cast(half, tf.int32)])


def _count_of_mask(mask):
  """Entries of a 0/1 float mask that are 1, as int32. A float sum of ones is exact while
  every partial sum stays below 2**24; a larger tensor is counted in int32."""
  if mask.shape[0] < 2**24:
    return tf.cast(tf.reduce_sum(mask), tf.int32)
  return tf.reduce_sum(tf.cast(mask, tf.int32))


def _banded_masks(bits_list, k, hint):
  """(masks, threshold, kept per tensor) of the k largest entries of all `bits_list`,
  searched first in the hint's band (the form without XLA).

  Per tensor: the mask at the hint's centre (a compare), its count (a sum), and the
  entries inside the band (an unsigned compare finds them). The entries at or above the
  band's top are the count minus the band's entries at or above the centre, so the
  k-th largest is a known rank inside the band when the band holds it; and the final
  masks differ from the masks at the centre only inside the band, where the band's own
  entries are written back. Otherwise the full radix select ranks everything.
  """
  k = tf.cast(k, tf.int32)
  lo, hi = _band(hint)
  centre = tf.clip_by_value(hint[0], lo, tf.maximum(hi - 1, lo))
  width = tf.bitcast(hi - lo, tf.uint32)
  at_centre, places, bands, above = [], [], [], []
  for b in bits_list:
    at_centre.append(tf.cast(b >= centre, tf.float32))
    # One unsigned compare: entries below lo wrap around to large values.
    places.append(tf.where(tf.bitcast(b - lo, tf.uint32) < width))
    bands.append(tf.gather(b, places[-1][:, 0]))
    above.append(_count_of_mask(at_centre[-1]) - _count(bands[-1], lambda d: d >= centre))
  band = tf.concat(bands, 0)
  rank = k - tf.add_n(above)  # The k-th largest is the rank-th largest of the band.
  found = tf.logical_and(rank >= 1, rank <= tf.size(band))

  def in_band():
    threshold = tf.math.top_k(band, rank, sorted=True).values[rank - 1]
    greater = [a + _count(d, lambda d: d > threshold) for a, d in zip(above, bands)]
    equal = [_count(d, lambda d: tf.equal(d, threshold)) for d in bands]
    kept, ties = _kept_counts(greater, equal, k)
    masks = []
    for mask, place, d, t in zip(at_centre, places, bands, ties):
      tied = tf.equal(d, threshold)
      keep = tf.logical_or(d > threshold,
                           tf.logical_and(tied, tf.cumsum(tf.cast(tied, tf.int32)) <= t))
      masks.append(tf.tensor_scatter_nd_update(mask, place, tf.cast(keep, tf.float32)))
    return masks, threshold, kept

  def everywhere():
    threshold = _histogram_threshold(tf.concat(bits_list, 0), k)
    greater, equal = _counts_at(bits_list, threshold)
    kept, ties = _kept_counts(greater, equal, k)
    return _masks_at(bits_list, threshold, equal, ties, False), threshold, kept

  return tf.cond(found, in_band, everywhere)


GROUP_SIZE = 2**18


def _groups(sizes, limit=None):
  """Runs of consecutive tensors, each run joined until it holds `limit` entries (a
  tensor that large stays alone): fewer ops for models of many small tensors, at the
  cost of one copy of the small ones."""
  limit = GROUP_SIZE if limit is None else limit
  groups, size = [], limit
  for i, n in enumerate(sizes):
    if n >= limit or size + n > limit:
      groups.append([])
      size = 0
    groups[-1].append(i)
    size += n
  return groups


def _grouped(bits_list, k, hint, counted):
  """`_banded_masks` on the tensors joined into `_groups`; per tensor the masks and, when
  `counted`, the kept counts (else the groups' counts where a group holds one tensor)."""
  sizes = [int(b.shape[0]) for b in bits_list]
  groups = _groups(sizes)
  joined = [bits_list[g[0]] if len(g) == 1 else tf.concat([bits_list[i] for i in g], 0)
            for g in groups]
  group_masks, threshold, group_kept = _banded_masks(joined, k, hint)
  masks, kept = [], []
  for g, mask, count in zip(groups, group_masks, group_kept):
    if len(g) == 1:
      masks.append(mask)
      kept.append(count)
      continue
    parts = tf.split(mask, [sizes[i] for i in g])
    masks += parts
    kept += [_count_of_mask(p) for p in parts] if counted else [None] * len(g)
  return masks, threshold, kept


def _bisected_threshold(bits_list, k, hint):
  """The threshold as `_banded_masks` finds it, for XLA: the bisection starts from the hint's band when the
  threshold is inside it (two counts tell), from the whole range otherwise."""
  k = tf.cast(k, tf.int32)
  lo, hi = _band(hint)
  inside = tf.logical_and(tf.add_n([_count(b, lambda b: b >= lo) for b in bits_list]) >= k,
                          tf.add_n([_count(b, lambda b: b >= hi) for b in bits_list]) < k)
  threshold = _bisect_threshold(bits_list, k, tf.where(inside, lo, 0),
                                tf.where(inside, hi - 1, _INT32_MAX))
  return (threshold,) + _counts_at(bits_list, threshold)


def _threshold(bits_list, k, method, hint):
  """(threshold, greater, equal) of the k largest entries of all `bits_list`."""
  if hint is not None:
    return _bisected_threshold(bits_list, k, hint)
  if method == "bisect":
    threshold = _bisect_threshold(bits_list, k)
  else:
    threshold = _histogram_threshold(tf.concat(bits_list, 0) if len(bits_list) > 1
                                     else bits_list[0], k)
  return (threshold,) + _counts_at(bits_list, threshold)


LAYER_FLOOR = 0.1


def layer_floors(sizes, sparsity, layer_floor):
  """Entries each tensor keeps at least under global ranking: max(1, ⌈ρ·(1−s)·n⌉), a
  fraction ρ = `layer_floor` of its share at the average density; none when ρ is 0 or
  the floors would not fit in the k kept entries."""
  if not layer_floor:
    return None
  density = 1.0 - tf.cast(sparsity, tf.float64)
  floors = [tf.maximum(tf.cast(tf.math.ceil(float(layer_floor) * density * float(n)),
                              tf.int32), 1) for n in sizes]
  fits = tf.add_n(floors) <= keep_count(sparsity, sum(sizes))
  return [tf.where(fits, f, 0) for f in floors]


def _select(bits_list, k, method, hint, floors=None):
  """Masks of the k largest entries of all `bits_list` (ties by flattened position),
  every tensor keeping at least its floor; and the threshold of the plain ranking.

  With floors, each tensor's own largest `floor` entries rank above everything (+inf),
  so the one global top-k keeps them and fills the rest by magnitude: k stays exact.
  When the plain ranking already keeps at least its floor in every tensor, that is the
  answer (and the floored ranking is not computed): a tensor's entries in the global
  top-k are its own top entries (the same order: magnitude, then position), so its
  floor entries are among them, and raising entries that are already kept to +inf
  changes no selection.
  """
  static = method == "bisect"
  if hint is not None and not static:
    masks, threshold, kept = _grouped(bits_list, k, hint, counted=floors is not None)
    plain = lambda: masks
  else:
    threshold, greater, equal = _threshold(bits_list, k, method, hint)
    kept, ties = _kept_counts(greater, equal, k)
    plain = lambda: _masks_at(bits_list, threshold, equal, ties, static)
  if floors is None:
    return plain(), threshold

  def floored():
    raised = []
    for b, f in zip(bits_list, floors):
      own, own_greater, own_equal = _threshold([b], f, method, None)
      own_ties = _kept_counts(own_greater, own_equal, f)[1]
      top = _masks_at([b], own, own_equal, own_ties, static)[0]
      raised.append(tf.where(top > 0, _INF_BITS, b))
    t, g, e = _threshold(raised, k, method, None)
    return _masks_at(raised, t, e, _kept_counts(g, e, k)[1], static)

  met = tf.reduce_all(tf.stack([c >= f for c, f in zip(kept, floors)]))
  return tf.cond(met, plain, floored), threshold


def _sort_masks(flats, sizes, k, floors):
  """The reference ranking: a stable sort (with the floors raised to +inf)."""
  if floors is not None:
    flats = [tf.where(_sort_mask(f, n) > 0, tf.constant(float("inf")), f)
             for f, n in zip(flats, floors)]
  return tf.split(_sort_mask(tf.concat(flats, axis=0), k), sizes)


def _topk(scores, sparsity, scope, method, layer_floor, hint):
  """Flat masks and the next hint (None without one); see `topk_masks`."""
  if not scores:
    raise ValueError("topk_masks needs at least one score tensor.")
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
  if scope not in ("global", "layer"):
    raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}.")
  sizes = [int(np.prod(s.shape)) for s in scores]
  if method == "sort":
    flats = [tf.reshape(tf.abs(tf.cast(s, tf.float32)), [-1]) for s in scores]
    if scope == "layer":
      return [_sort_mask(f, keep_count(sparsity, n)) for f, n in zip(flats, sizes)], hint
    floors = layer_floors(sizes, sparsity, layer_floor)
    return _sort_masks(flats, sizes, keep_count(sparsity, sum(sizes)), floors), hint
  bits = _abs_bits(scores)
  hints = [None] * len(scores) if hint is None else tf.unstack(hint)
  if scope == "layer":
    masks, thresholds = [], []
    for b, n, h in zip(bits, sizes, hints):
      (m,), t = _select([b], keep_count(sparsity, n), method, h)
      masks.append(m)
      thresholds.append(t)
  else:
    masks, threshold = _select(bits, keep_count(sparsity, sum(sizes)), method, hints[0],
                               layer_floors(sizes, sparsity, layer_floor))
    thresholds = [threshold]
  if hint is None:
    return masks, None
  return masks, tf.stack([_next_hint(h, t) for h, t in zip(hints, thresholds)])


def topk_masks(scores, sparsity, scope="global", method="histogram", layer_floor=0.0):
  """Computes exact top-k masks of |scores|.

  Args:
    scores: List of score tensors (any shapes).
    sparsity: Scalar (Python float or tensor) in [0, 1): the fraction to remove.
    scope: `"global"` ranks all scores together; `"layer"` keeps the same fraction
      of every tensor.
    method: `"histogram"` (fast on CPU), `"bisect"` (for XLA) or `"sort"`; all
      give the same masks.
    layer_floor: For `"global"`: every tensor keeps at least its `layer_floors` entries
      (its own largest), the rest is ranked globally, and exactly k entries are kept
      in total. Global magnitude ranking alone empties whole layers of deep networks
      (layers of large fan-in have small weights: "layer collapse", Tanaka et al.
      2020); 0 ranks purely globally.

  Returns:
    A list of float32 masks with the shapes of `scores`.

  Raises:
    ValueError: For an unknown `scope` or `method`, or an empty `scores` list.

  Example:

  ```python
  masks = topk_masks([kernel_scores, bias_scores], 0.9)  # 10% of all entries kept
  ```
  """
  masks, _ = _topk(scores, sparsity, scope, method, layer_floor, None)
  return [tf.reshape(m, s.shape) for m, s in zip(masks, scores)]


# ---------------------------------------------------------------- structured masks
GRANULARITIES = ("weight", "channel")


def check_structure_args(block_size=(1, 1), sparsity_m_by_n=None, granularity="weight"):
  """Raises a ValueError for a malformed or contradictory structure."""
  if granularity not in GRANULARITIES:
    raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}.")
  if not isinstance(block_size, (tuple, list, np.ndarray)) or not all(
      _is_number(b, numbers.Integral) for b in block_size):
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


def _structured(scores, sparsity, structures, scope, method, layer_floor, hint):
  """Masks (shapes of `scores`) and the next hint (None without one)."""
  masks = [None] * len(scores)
  ranked, units = [], []
  for i, (score, (block_size, m_by_n, granularity)) in enumerate(zip(scores, structures)):
    if m_by_n is not None:
      masks[i] = _m_by_n_mask(score, *m_by_n)
    else:
      ranked.append(i)
      units.append(_unit_scores(score, tuple(block_size), granularity))
  if units:
    unit_masks, hint = _topk(units, sparsity, scope, method, layer_floor, hint)
    for i, unit_mask, unit in zip(ranked, unit_masks, units):
      block_size, _, granularity = structures[i]
      masks[i] = _expand_units(tf.reshape(unit_mask, unit.shape), scores[i].shape,
                               tuple(block_size), granularity)
  return masks, hint


def structured_masks(scores, sparsity, structures, scope="global", method="histogram",
                     layer_floor=0.0):
  """Top-k masks whose units are weights, blocks, channels or N:M groups.

  Args:
    scores: List of score tensors.
    sparsity: Fraction of units to remove (blocks and channels are ranked by their mean
      |score|; N:M groups ignore it — their sparsity is 1 - N/M by construction).
    structures: One `(block_size, sparsity_m_by_n, granularity)` per score.
    scope: `"global"` or `"layer"`, as in `topk_masks`.
    method: Selection method, as in `topk_masks`.
    layer_floor: The layer floor, as in `topk_masks`.

  Returns:
    A list of float32 masks with the shapes of `scores`.

  Example:

  ```python
  masks = structured_masks([kernel_scores], 0.75, [((4, 1), None, "weight")])
  ```
  """
  return _structured(scores, sparsity, structures, scope, method, layer_floor, None)[0]


_PLAIN = ((1, 1), None, "weight")


def hint_size(scope, structures):
  """Rows of the hint that `ranked_masks` takes for these structures: one per top-k
  selection (one under global ranking; one per ranked tensor under layer ranking)."""
  ranked = sum(1 for _, m_by_n, _ in structures if m_by_n is None)
  return ranked if scope == "layer" else min(ranked, 1)


def ranked_masks(scores, sparsity, hint, structures=None, scope="global", method="histogram",
                 layer_floor=0.0):
  """`structured_masks` (or `topk_masks` when `structures` is None), with each threshold
  search started from where the previous call found it: the same masks, less work when
  the scores moved little (the warm start above).

  Args:
    scores, sparsity, scope, method, layer_floor: As in `topk_masks` (`"sort"` ignores the
      hint).
    hint: int32 [hint_size(scope, structures), 2]: what the previous call returned, or
      `initial_hint(...)`. Any value gives the same masks; a good one saves the work.
    structures: As in `structured_masks`; None for single weights everywhere.

  Returns:
    (masks with the shapes of `scores`, the next hint).

  Example:

  ```python
  hint = tf.Variable(initial_hint())
  masks, next_hint = ranked_masks(scores, 0.9, hint)
  hint.assign(next_hint)
  ```
  """
  structures = structures or [_PLAIN] * len(scores)
  hint = tf.convert_to_tensor(hint, tf.int32)
  if not hint_size(scope, structures):
    return _structured(scores, sparsity, structures, scope, method, layer_floor, None)[0], hint
  return _structured(scores, sparsity, structures, scope, method, layer_floor, hint)
