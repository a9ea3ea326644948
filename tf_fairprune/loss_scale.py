"""Loss scaling of the bi-level step under a `mixed_float16` policy.

Both Kerases wrap the weights' optimizer in a `LossScaleOptimizer` when a model is
compiled under `mixed_float16`. The step then differentiates the scaled losses (so that
float16 gradients do not underflow), unscales the scores' and θ's gradients itself (the
scores' optimizer is a plain one: scores and masks stay float32), and lets the weights'
`LossScaleOptimizer` skip a step whose scaled gradients overflowed and lower its scale
— an overflow is then an expected, skipped step, not a non-finite loss.
"""

import tensorflow as tf

from tf_fairprune import flavours
from tf_fairprune import replicas


def of(optimizer):
  """The current loss scale (a float32 tensor) of a LossScaleOptimizer, else None."""
  if optimizer is None:
    return None
  return flavours.of(optimizer).loss_scale(optimizer)


def scale(value, factor):
  """`value * factor` in `value`'s dtype (None stays None; no factor: unchanged)."""
  if value is None or factor is None:
    return value
  return value * tf.cast(factor, value.dtype)


def unscale(grads, factor):
  """Gradients of a scaled loss divided by the scale (None entries stay None)."""
  if factor is None:
    return list(grads)
  return [None if g is None else g / tf.cast(factor, g.dtype) for g in grads]


def weight_gradients(optimizer, grads, factor):
  """The weights' gradients as their optimizer wants them: tf_keras' LossScaleOptimizer
  takes unscaled ones, Keras 3's unscales inside `apply`."""
  if factor is None:
    return list(grads)
  return flavours.of(optimizer).weight_gradients(optimizer, grads)


def joint_step_flags(factor, losses, g_w, g_s, running):
  """Whether a joint step may update, judged on every replica alike.

  Args:
    factor: The loss scale (`of`), or None.
    losses: The levels' losses (unscaled).
    g_w: The weights' gradients as their optimizer takes them (`weight_gradients`).
    g_s: The scores' gradients (unscaled).
    running: No earlier bad step and valid ids (a boolean tensor).

  Returns:
    (finite, ok_w, ok): the step is finite; the weights' optimizer may step; the
    scores' may. Without loss scaling every loss and gradient counts for all three.
    With it, an overflow of the scaled weight gradients is an expected step that the
    LossScaleOptimizer skips (lowering its scale): `finite` and `ok_w` read the losses
    only, and the scores skip that step too (`ok`).
  """
  if factor is None:
    finite = replicas.all_finite(list(losses) + list(g_w) + list(g_s))
    ok = tf.logical_and(finite, running)
    return finite, ok, ok
  finite = replicas.all_finite(list(losses))
  ok_w = tf.logical_and(finite, running)
  ok = tf.logical_and(ok_w, replicas.all_finite(unscale(g_w, factor) + list(g_s)))
  return finite, ok_w, ok
