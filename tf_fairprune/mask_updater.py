"""When and how the masks follow the scores (TFMOT's `pruning_impl` counterpart).

`masking.py` holds the math (exact top-k, structured units); this module holds the
policy a model applies after each step: the sparsity schedule, the ranking scope, the
update frequency, and the method that suits the compiler (bisection under XLA).
"""

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

  def ranked(self, wrappers, step, jit_compile=False):
    """The top-k masks of the scores at `step`'s sparsity, one tensor per mask variable.

    Args:
      wrappers: The built `FairPruneWrapper` layers, in model order.
      step: The training step whose sparsity applies.
      jit_compile: Rank by bisection (XLA compiles the histogram's scatters poorly;
        both give the same mask).
    """
    scores = [s for w in wrappers for s in w.score_variables]
    method = "bisect" if jit_compile else "histogram"
    if any(w.is_structured for w in wrappers):
      structures = [w.structure for w in wrappers for _ in w.score_variables]
      return masking.structured_masks(scores, self.sparsity_at(step), structures,
                                      scope=self.scope, method=method, floor=self.layer_floor)
    return masking.topk_masks(scores, self.sparsity_at(step), scope=self.scope, method=method,
                              floor=self.layer_floor)

  def assign(self, wrappers, step, jit_compile=False):
    """Sets the masks to the top-k of the scores at `step`'s sparsity (`ranked`)."""
    masks = [m for w in wrappers for m in w.mask_variables]
    if not masks:
      return
    for var, value in zip(masks, self.ranked(wrappers, step, jit_compile)):
      var.assign(value)

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
      values = tf.cond(refresh, lambda: self.ranked(wrappers, step, jit_compile),
                       lambda: [tf.identity(m) for m in masks])
      for var, value in zip(masks, values):
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


def rescale_to_masks(wrappers):
  """Multiplies each prunable tensor θ by ‖θ‖ / ‖m ⊙ θ‖ under its current mask
  (see `FairPruneModel.rescale_to_masks`)."""
  for w in wrappers:
    for theta, mask in zip(w.prunable_weights, w.mask_variables):
      kept = tf.norm(tf.cast(theta, tf.float32) * mask)
      gain = tf.math.divide_no_nan(tf.norm(tf.cast(theta, tf.float32)), kept)
      theta.assign(theta * tf.cast(tf.where(kept > 0, gain, 1.0), theta.dtype))


def empty_tensors(wrappers):
  """Names ('layer/weight') of the wrapped tensors whose mask keeps no weight."""
  return [f"{w.layer.name}/{v.name.split('/')[-1].split(':')[0]}"
          for w in wrappers for v, m in zip(w.prunable_weights, w.mask_variables)
          if float(tf.reduce_sum(m)) == 0.0]
