"""The bi-level (BiP / BiFP) update rule, as functions of losses and gradients.

Lower level (weights θ): L_w = task loss + regularisers + the fairness terms placed at
the weight level, masks fixed. Upper level (scores s): L_m = task loss + the fairness
terms placed at the mask level; the scores move along the straight-through gradient
∂L_m/∂s plus BiP's implicit-gradient term IG = −(1/γ) (∂L_m/∂z) ⊙ (∂L_m/∂θ), z = m ⊙ θ.
Nothing here touches a model: `training.py` runs the forward passes and applies what
these functions return.
"""

import tensorflow as tf


def plus(*terms):
  """The sum of the terms that are not None (None if all are)."""
  terms = [t for t in terms if t is not None]
  if not terms:
    return None
  if len({t.dtype for t in terms}) > 1:  # mixed_float16: a float16 task loss, float32 terms.
    terms = [tf.cast(t, tf.float32) for t in terms]
  return tf.add_n(terms) if len(terms) > 1 else terms[0]


def level_losses(task, regularization, fairness_weights, fairness_mask, shared=None):
  """Routes the terms to the two levels.

  Args:
    task: The task loss.
    regularization: The regularisers (weights only), or None.
    fairness_weights: The fairness loss of the weight level, or None.
    fairness_mask: The fairness loss of the mask level, or None.
    shared: Whether both levels get the same fairness term (the objective says so:
      `FairnessObjective.level_losses`); None infers it from the two being the same
      object.

  Returns:
    `(lower, upper, shared)`: L_w, L_m, and whether they differ only by the
    regularisers (then one backward pass of L_m serves both levels).
  """
  if shared is None:
    shared = fairness_weights is fairness_mask
  upper = plus(task, fairness_mask)
  lower = plus(upper, regularization) if shared else plus(task, regularization, fairness_weights)
  return lower, upper, shared


def joint_gradients(tape, lower, upper, regularization, shared, weights, scores, thetas):
  """(∂L_w/∂weights, ∂L_m/∂scores, ∂L_m/∂θ) from one forward pass.

  `tape` must be persistent and have recorded the forward pass. When the levels share
  their objective, one backward pass of L_m gives all three (the regularisers' gradient
  is added to the weights' alone).
  """
  nw, ns = len(weights), len(scores)
  if shared:
    grads = tape.gradient(upper, weights + scores + thetas)
    g_w, g_s, g_theta = grads[:nw], grads[nw:nw + ns], grads[nw + ns:]
    if regularization is not None:
      # Unconnected entries stay None (tape's "zero" option fails on Keras 3 variables,
      # whose dtype is a string); those weights have no regulariser to add.
      g_reg = tape.gradient(regularization, weights)
      g_w = [g if r is None else (r if g is None else g + r) for g, r in zip(g_w, g_reg)]
    return g_w, g_s, g_theta
  g_w = tape.gradient(lower, weights)
  grads = tape.gradient(upper, scores + thetas)
  return g_w, grads[:ns], grads[ns:]


def implicit_gradient(grad_theta, scale, grad_z=None):
  """BiP's implicit-gradient term IG = −(1/γ) (∂L/∂z) ⊙ (∂L/∂θ), `scale` = 1/γ.

  With z = m ⊙ θ and a 0/1 mask, ∂L/∂θ = m ⊙ ∂L/∂z, so (∂L/∂z) ⊙ (∂L/∂θ) = (∂L/∂θ)²:
  without `grad_z` the term needs no extra backward pass. (BiP's public code multiplies
  the score gradient by itself instead: OPTML-Group/BiP issue #3.)
  """
  if grad_z is None:
    return -scale * tf.square(grad_theta)
  return -scale * grad_z * grad_theta


def score_gradients(g_s, g_theta, scale, num_replicas=1, replica_sum=None):
  """The scores' gradient: straight-through ∂L_m/∂s plus the implicit-gradient term.

  Args:
    g_s: ∂L_m/∂s per score tensor (this replica's).
    g_theta: ∂L_m/∂θ per score tensor (None where a score has none).
    scale: 1/γ; 0 turns the term off.
    num_replicas: Replicas whose gradients the optimizer will sum.
    replica_sum: Sums a tensor over the replicas (needed when `num_replicas > 1`).

  Returns:
    One gradient per score tensor. IG is quadratic in ∂L/∂θ, so under R replicas it is
    formed from the gradient summed over them and shared out as IG/R, which the
    optimizer's sum gives back once: the same update as on one device.
  """
  if scale == 0.0:
    return list(g_s)
  out = []
  for gs, gt in zip(g_s, g_theta):
    if gt is None:
      out.append(gs)
      continue
    gt = tf.cast(gt, gs.dtype)
    if num_replicas == 1:  # Not `/ 1`: that is one more pass over the scores.
      out.append(gs + implicit_gradient(gt, scale))
      continue
    out.append(gs + implicit_gradient(replica_sum(gt), scale) / num_replicas)
  return out
