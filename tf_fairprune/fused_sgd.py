"""The scores' optimizer step as one fused op when it is plain SGD with momentum.

Keras' SGD with momentum updates a variable in five element-wise passes
(m ← m·μ − g·η, then θ ← θ + m, each product, sum and assignment its own op). TF's
`ResourceApplyKerasMomentum` kernel does the same arithmetic in one pass:
accum ← accum·μ − grad·η, var ← var + accum. Each entry goes through the same IEEE
operations in the same order (−(g·η) + m·μ equals m·μ − g·η exactly), so the scores and
momenta come out bit for bit as Keras computes them (tests/test_fused_sgd.py checks it on
both flavours, with a constant rate and a schedule).

The scores are a second parameter-sized tensor updated at every step, so this is one
of the few places where the bi-level step can save whole passes over the model. Only
the exact configuration whose arithmetic the kernel reproduces is fused; anything else
(another optimizer, Nesterov, weight decay, clipping, EMA, gradient accumulation, loss
scaling, a distribution strategy, sparse gradients) goes through the optimizer's own
`apply_gradients` unchanged.
"""

import tensorflow as tf

from tf_fairprune import flavours
from tf_fairprune import replicas


def _off(optimizer, name):
  """True when the optimizer's option `name` is unset (None, 0 or False)."""
  return not getattr(optimizer, name, None)


def fusable(optimizer, grads, variables):
  """True when one `ResourceApplyKerasMomentum` per variable reproduces
  `optimizer.apply_gradients` exactly.

  Args:
    optimizer: The scores' optimizer (built).
    grads, variables: The gradients and the variables they update.
  """
  if type(optimizer) is not flavours.of(optimizer).keras.optimizers.SGD:  # Not a subclass.
    return False
  built = getattr(optimizer, "built", False) or getattr(optimizer, "_built", False)  # tf_keras
  if not built or optimizer.nesterov:
    return False
  if not isinstance(optimizer.momentum, (int, float)) or not optimizer.momentum:
    return False
  # jit_compile: tf_keras compiles its update with XLA on GPUs, which may contract
  # the products into fused multiply-adds.
  options = ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm", "use_ema",
             "gradient_accumulation_steps", "loss_scale_factor", "jit_compile", "_mesh",
             "_run_with_dtensor")
  if not all(_off(optimizer, name) for name in options):
    return False
  if replicas.under_strategy():
    return False  # The optimizer all-reduces the gradients itself.
  for g, v in zip(grads, variables):
    if g is None:
      continue
    if (not isinstance(g, tf.Tensor) or g.dtype != tf.float32 or v.dtype != tf.float32 or
        getattr(v, "constraint", None) is not None or
        getattr(v, "overwrite_with_gradient", False)):
      return False
  return True


def apply(optimizer, grads, variables):
  """What `optimizer.apply_gradients(zip(grads, variables))` does, fused (see `fusable`)."""
  flavour = flavours.of(optimizer)
  rate = flavour.current_learning_rate(optimizer)
  momentum = tf.constant(optimizer.momentum, tf.float32)
  for g, v in zip(grads, variables):
    if g is None:
      continue
    tf.raw_ops.ResourceApplyKerasMomentum(
        var=v.handle, accum=flavour.momentum_slot(optimizer, v).handle, lr=rate, grad=g,
        momentum=momentum, use_locking=False, use_nesterov=False)
  optimizer.iterations.assign_add(1)


def apply_if(ok, optimizer, grads, variables):
  """`replicas.apply_if` with the update fused where that gives the same result.

  Example:

  ```python
  fused_sgd.apply_if(ok, model.mask_optimizer, score_gradients, scores)
  ```
  """
  if not fusable(optimizer, grads, variables):
    replicas.apply_if(ok, optimizer, grads, variables)
    return
  if not any(g is not None for g in grads):
    return

  def update():
    apply(optimizer, grads, variables)
    return tf.constant(True)

  tf.cond(ok, update, lambda: tf.constant(False))
