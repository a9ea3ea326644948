"""Loss scaling of the bi-level step under a `mixed_float16` policy.

Both Kerases wrap the weights' optimizer in a `LossScaleOptimizer` when a model is
compiled under `mixed_float16`. The step then differentiates the scaled losses (so that
float16 gradients do not underflow), unscales the scores' and θ's gradients itself (the
scores' optimizer is a plain one: scores and masks stay float32), and lets the weights'
`LossScaleOptimizer` skip a step whose scaled gradients overflowed and lower its scale
— an overflow is then an expected, skipped step, not a non-finite loss.
"""

import tensorflow as tf


def of(optimizer):
  """The current loss scale (a float32 tensor) of a LossScaleOptimizer, else None."""
  if optimizer is None:
    return None
  if hasattr(optimizer, "get_unscaled_gradients"):  # tf_keras' LossScaleOptimizer.
    # The scale of a unit loss (this also records that the loss was scaled).
    return tf.cast(optimizer.get_scaled_loss(tf.constant(1.0)), tf.float32)
  if type(optimizer).__name__ == "LossScaleOptimizer" and hasattr(optimizer, "scale_loss"):
    return tf.cast(tf.convert_to_tensor(optimizer.dynamic_scale), tf.float32)  # Keras 3.
  return None


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
  if factor is not None and hasattr(optimizer, "get_unscaled_gradients"):
    return optimizer.get_unscaled_gradients(grads)
  return list(grads)
