"""When and how the masks follow the scores (TFMOT's `pruning_impl` counterpart).

`masking.py` holds the math (exact top-k, structured units); this module holds the
policy a model applies after each step: the sparsity schedule, the ranking scope, the
update frequency, and the method that suits the compiler (bisection under XLA).
"""

import warnings

import numpy as np
import tensorflow as tf

from tf_fairprune import masking
from tf_fairprune import pruning_schedule
from tf_fairprune import replicas
from tf_fairprune import wrapper as wrapper_lib


class MaskUpdater:
  """Re-ranks the masks of a set of `FairPruneWrapper` layers from their scores.

  Args:
    target_sparsity: A float or a TFMOT `PruningSchedule` (validated).
    scope: `"global"` or `"layer"` ranking.
    frequency: Re-rank every this many steps (1 = every step).
    layer_floor: Under global ranking every tensor keeps at least
      max(1, ⌈layer_floor·(1−s)·n⌉) weights (`masking.layer_floors`); 0 lets global
      ranking empty whole layers.
  """

  def __init__(self, target_sparsity, scope, frequency, layer_floor=masking.LAYER_FLOOR):
    self.target_sparsity = target_sparsity
    self.scope = scope
    self.frequency = frequency
    self.layer_floor = layer_floor

  def sparsity_at(self, step):
    return pruning_schedule.sparsity_at(self.target_sparsity, step)

  def _hint(self, part, rows):
    """The variable holding where the last ranking of `part` found its thresholds (the
    warm start of `masking.ranked_masks`), made on first use outside any traced function.

    It only saves work (any value gives the same masks), so it is neither saved nor
    synchronised: each replica keeps its own copy (identical scores give them the same
    values anyway) and a model read from a file starts without one.
    """
    hints = self.__dict__.setdefault("_hint_variables", {})
    hint = hints.get(part)
    if hint is None or hint.shape[0] != rows:
      with tf.init_scope():
        hint = tf.Variable(masking.initial_hint(rows), trainable=False,
                           name=f"mask_threshold_hint_{part}",
                           synchronization=tf.VariableSynchronization.ON_READ,
                           aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      hints[part] = hint
    return hint

  def _parts(self, wrappers):
    """[(name, wrappers, scope)]: the rankings `ranked` makes. Wrappers ranked on their own
    (`FairPruneWrapper(mask_scope="layer")`, e.g. the embedding tables TFLite stores
    dense) stay out of a global ranking: each tensor at the step's sparsity, the others
    ranked globally among themselves."""
    alone = [ranked_alone(w) for w in wrappers]
    if self.scope == "global" and any(alone) and not all(alone):
      return [("alone", [w for w, a in zip(wrappers, alone) if a], "layer"),
              ("joint", [w for w, a in zip(wrappers, alone) if not a], self.scope)]
    return [("joint", wrappers, self.scope)]

  def ranked(self, wrappers, step, jit_compile=False):
    """The top-k masks of the scores at `step`'s sparsity and the warm starts to keep.

    Args:
      wrappers: The built `FairPruneWrapper` layers, in model order.
      step: The training step whose sparsity applies.
      jit_compile: Rank by bisection (XLA compiles the histogram's scatters poorly;
        both give the same mask).

    Returns:
      (masks, hints): one mask tensor per mask variable in model order, and one
      (hint variable, its next value) per ranking that searched a threshold, in the
      order of `hint_variables`.
    """
    parts = self._parts(wrappers)
    results = {name: self._ranked(part, step, jit_compile, scope, name)
               for name, part, scope in parts}
    if len(parts) == 1:
      masks = results["joint"][0]
    else:
      ordered = {name: iter(results[name][0]) for name in results}
      masks = [next(ordered["alone" if ranked_alone(w) else "joint"])
               for w in wrappers for _ in w.score_variables]
    hints = [(results[name][1], results[name][2]) for name, _, _ in parts
             if results[name][1] is not None]
    return masks, hints

  def _ranked(self, wrappers, step, jit_compile, scope, part):
    """(masks, hint variable, next hint) of `wrappers` ranked under one `scope`; no hint
    (None, None) when nothing is ranked by top-k."""
    scores = [s for w in wrappers for s in w.score_variables]
    structures = [w.structure for w in wrappers for _ in w.score_variables]
    method = "bisect" if jit_compile else "histogram"
    rows = masking.hint_size(scope, structures)
    if not rows:  # N:M everywhere: no threshold to search.
      return masking.structured_masks(scores, self.sparsity_at(step), structures, scope=scope,
                                      method=method, layer_floor=self.layer_floor), None, None
    hint = self._hint(part, rows)
    masks, next_hint = masking.ranked_masks(scores, self.sparsity_at(step), hint, structures,
                                            scope, method, self.layer_floor)
    return masks, hint, next_hint

  def hint_variables(self, wrappers):
    """The hint variables `ranked` warm-starts from for these wrappers, in its order."""
    variables = []
    for name, part, scope in self._parts(wrappers):
      rows = masking.hint_size(scope, [w.structure for w in part for _ in w.score_variables])
      if rows:
        variables.append(self._hint(name, rows))
    return variables

  def assign(self, wrappers, step, jit_compile=False):
    """Sets the masks to the top-k of the scores at `step`'s sparsity (`ranked`)."""
    masks = [m for w in wrappers for m in w.mask_variables]
    if not masks:
      return
    values, hints = self.ranked(wrappers, step, jit_compile)
    for var, value in zip(masks, values):
      var.assign(value)
    for hint, next_hint in hints:
      hint.assign(next_hint)

  def after_step(self, wrappers, step, ok, jit_compile=False):
    """After a training step: re-rank if it was applied (`ok`) and the frequency is due.
    The top-k runs only on those steps, with or without a distribution strategy."""
    refresh = ok
    if self.frequency > 1:
      refresh = tf.logical_and(ok, tf.equal(step % self.frequency, 0))
    masks = [m for w in wrappers for m in w.mask_variables]
    if not masks:
      return
    if replicas.under_strategy():
      # A mirrored assign may not sit inside a cond: the cond picks the values (the
      # new ranking or the masks as they are), the assign follows outside it.
      hints = self.hint_variables(wrappers)
      def rerank():
        values, next_hints = self.ranked(wrappers, step, jit_compile)
        return values + [n for _, n in next_hints]
      kept = [tf.identity(v) for v in masks + hints]
      values = tf.cond(refresh, rerank, lambda: kept)
      for var, value in zip(masks + hints, values):
        var.assign(value)
    else:
      def update():
        self.assign(wrappers, step, jit_compile=jit_compile)
        return tf.constant(True)
      tf.cond(refresh, update, lambda: tf.constant(False))

  @staticmethod
  def measured_sparsity(wrappers):
    """Fraction of prunable weights whose mask is 0, as a float32 tensor."""
    masks = [m for w in wrappers for m in w.mask_variables]
    if not masks:
      return tf.constant(0.0)
    kept = tf.add_n([tf.reduce_sum(m) for m in masks])
    return 1.0 - kept / float(sum(int(np.prod(m.shape)) for m in masks))


def ranked_alone(wrapper):
  """True for a wrapper whose tensors are ranked on their own, outside a global ranking
  (`FairPruneWrapper(..., mask_scope="layer")`)."""
  return getattr(wrapper, "mask_scope", None) == "layer"


# ---------------------------------------------------------------- pruning-state queries
# What a model's wrappers hold, read by the training step, the callbacks and the
# export path. Functions of the model, not methods: they need only its layers.
def built_wrappers(model):
  """The wrappers whose scores exist (built)."""
  return [w for w in wrapper_lib.wrappers_of(model) if w.score_variables]


def level_variables(model):
  """(lower-level trainables, scores, the θ aligned with the scores) of `model`."""
  wrappers = built_wrappers(model)
  scores = [s for w in wrappers for s in w.score_variables]
  thetas = [v for w in wrappers for v in w.prunable_weights]
  score_ids = {id(s) for s in scores}
  weights = [v for v in model.trainable_variables if id(v) not in score_ids]
  return weights, scores, thetas


# How `rescale_to_masks` bounds each tensor's gain (see `FairPruneModel.rescale_to_masks`;
# `fair_prune_wrapper(rescale=NAME)` picks one):
#   "floor":  gain 1 for the tensors that the layer floor holds (they keep just their
#             floor), every other tensor ‖θ‖ / ‖m ⊙ θ‖ as before (the default; with no
#             floor, as with layer_floor=0, nothing changes),
#   "both":   as "floor", and every other tensor at most the gain of its own magnitude
#             mask at the target sparsity,
#   "target": every tensor at most its gain at the target sparsity (floor-held too),
#   "model":  at most the model-wide gain ‖Θ‖ / ‖M ⊙ Θ‖ over all wrapped tensors,
#   "none":   no bound (the behaviour before; ResNet-10's floor-held convs at 99% got
#             gains of an order of magnitude and the benchmark runs collapsed).
# The alternatives stay for benchmarks/benchmark_layer_floor.py, which measured them
# (BENCHMARKS.md "Layer floor vs pure global ranking"): "floor" and "both" were the only
# rules with no collapsed run there, tied on mean accuracy. "floor" is the default because it changes
# only the floor-held tensors: every model where the floor holds nothing (the MLPs and
# CNNs of the other benchmarks) is rescaled exactly as before, so their rows stay valid.
RESCALE_CAPS = ("both", "floor", "target", "model", "none")
DEFAULT_RESCALE_CAP = "floor"


def rescale_gains(thetas, masks, sparsity, scope="global", layer_floor=0.0, cap=None):
  """Each tensor's rescale gain ‖θ‖ / ‖m ⊙ θ‖, bounded by `cap`.

  Args:
    thetas, masks: The prunable tensors and their masks, aligned.
    sparsity: The sparsity the masks were ranked at.
    scope: The ranking scope; under `"layer"` ranking the masks are at the target
      sparsity and the "target", "floor" and "both" caps never bind.
    layer_floor: The floor fraction the masks were ranked with ("floor" and "both" caps: a
      tensor is floor-held when its mask keeps at most its `masking.layer_floors`
      entry of weights; with no floor, as with 0, no tensor is. Structured masks count
      their floors in blocks or channels, so their tensors are rescaled as before).
    cap: One of `RESCALE_CAPS`; None means `DEFAULT_RESCALE_CAP`.

  Returns:
    A list of float32 scalar gains; 1 for a tensor whose mask keeps nothing.

  Raises:
    ValueError: For an unknown `cap`.
  """
  cap = DEFAULT_RESCALE_CAP if cap is None else cap
  if cap not in RESCALE_CAPS:
    raise ValueError(f"cap must be one of {RESCALE_CAPS}, got {cap!r}.")
  full = [tf.norm(tf.cast(t, tf.float32)) for t in thetas]
  kept = [tf.norm(tf.cast(t, tf.float32) * m) for t, m in zip(thetas, masks)]
  gains = [tf.where(k > 0, tf.math.divide_no_nan(f, k), 1.0) for f, k in zip(full, kept)]
  if cap == "model" and gains:
    bound = tf.math.divide_no_nan(tf.norm(tf.stack(full)), tf.norm(tf.stack(kept)))
    gains = [tf.minimum(g, tf.maximum(bound, 1.0)) for g in gains]
  if cap in ("target", "both") and scope == "global":
    bounded = []
    for t, f, g in zip(thetas, full, gains):
      flat = tf.abs(tf.reshape(tf.cast(t, tf.float32), [-1]))
      k = tf.maximum(masking.keep_count(sparsity, int(flat.shape[0])), 1)
      top = tf.norm(tf.math.top_k(flat, k).values)
      bounded.append(tf.minimum(g, tf.where(top > 0, tf.math.divide_no_nan(f, top), 1.0)))
    gains = bounded
  if cap in ("floor", "both") and scope == "global":
    sizes = [int(np.prod(m.shape)) for m in masks]
    floors = masking.layer_floors(sizes, sparsity, layer_floor)
    if floors is not None:
      gains = [tf.where(tf.reduce_sum(m) <= tf.cast(n, tf.float32), 1.0, g)
               for m, n, g in zip(masks, floors, gains)]
  return gains


def rescale_to_masks(wrappers, sparsity, scope="global", layer_floor=0.0, cap=None):
  """Multiplies each prunable tensor θ by its `rescale_gains` gain under its current
  mask (see `FairPruneModel.rescale_to_masks`)."""
  thetas = [t for w in wrappers for t in w.prunable_weights]
  masks = [m for w in wrappers for m in w.mask_variables]
  for theta, gain in zip(thetas, rescale_gains(thetas, masks, sparsity, scope, layer_floor,
                                               cap)):
    theta.assign(theta * tf.cast(gain, theta.dtype))


def warn_if_too_sparse(model, stacklevel=1):
  """Warns when a wrapped tensor of `model` keeps no weight or the masks' sparsity
  misses the schedule's (by more than 0.02).

  Args:
    model: A `FairPruneModel`.
    stacklevel: The frame the warnings name, counted from this function's caller (1:
      the caller, 2: the caller's caller).
  """
  wrappers = built_wrappers(model)
  empty = empty_tensors(wrappers)
  if empty:
    warnings.warn(f"tf_fairprune: {', '.join(empty)} kept no weight at all: the model's "
                  "output may no longer depend on its input (a constant predictor). "
                  "Lower the sparsity, or use mask_scope='layer'.", UserWarning,
                  stacklevel=stacklevel + 1)
  if not wrappers:
    return
  target = float(model.sparsity_at())
  measured = float(model.measured_sparsity())
  if abs(measured - target) > 0.02:
    warnings.warn(f"tf_fairprune: the masks remove {measured:.3f} of the prunable weights, "
                  f"not the target {target:.3f} (blocks or channels larger than the "
                  "layers allow?).", UserWarning, stacklevel=stacklevel + 1)


def empty_tensors(wrappers):
  """Names ('layer/weight') of the wrapped tensors whose mask keeps no weight."""
  return [f"{w.layer.name}/{v.name.split('/')[-1].split(':')[0]}"
          for w in wrappers for v, m in zip(w.prunable_weights, w.mask_variables)
          if float(tf.reduce_sum(m)) == 0.0]
