"""The bi-level update rule on plain tensors, against independently computed values."""

import numpy as np
import pytest
import tensorflow as tf

from tf_fairprune import bilevel


def _problem(seed=0):
  rng = np.random.default_rng(seed)
  x = tf.constant(rng.standard_normal((16, 5)), tf.float32)
  y = tf.constant(rng.standard_normal((16, 3)), tf.float32)
  theta = tf.Variable(rng.standard_normal((5, 3)), dtype=tf.float32)
  mask = tf.constant((rng.uniform(size=(5, 3)) < 0.5).astype("float32"))
  return x, y, theta, mask


def test_implicit_gradient_is_the_papers_formula():
  x, y, theta, mask = _problem()
  # ∂L/∂z at z = m ⊙ θ, by autodiff with z as the independent variable.
  z = tf.Variable(mask * theta)
  with tf.GradientTape() as tape:
    loss_z = tf.reduce_sum(tf.square(x @ z - y))
  grad_z = tape.gradient(loss_z, z)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(tf.square(x @ (mask * theta) - y))
  grad_theta = tape.gradient(loss, theta)
  expected = -0.3 * grad_z.numpy() * grad_theta.numpy()  # −(1/γ)(∂L/∂z)⊙(∂L/∂θ).
  np.testing.assert_allclose(bilevel.implicit_gradient(grad_theta, 0.3).numpy(), expected,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(bilevel.implicit_gradient(grad_theta, 0.3, grad_z=grad_z).numpy(),
                             expected, rtol=1e-6)
  assert np.all(expected[mask.numpy() == 0] == 0)  # Pruned weights: no implicit term.


def test_score_gradients_add_the_term_and_split_it_over_replicas():
  g_s = [tf.constant([[1.0, -2.0]]), tf.constant([3.0])]
  g_theta = [tf.constant([[0.5, 1.0]]), None]
  np.testing.assert_allclose(bilevel.score_gradients(g_s, g_theta, 0.0)[0].numpy(), [[1.0, -2.0]])
  one = bilevel.score_gradients(g_s, g_theta, 2.0)
  np.testing.assert_allclose(one[0].numpy(), [[1.0 - 2.0 * 0.25, -2.0 - 2.0 * 1.0]])
  np.testing.assert_allclose(one[1].numpy(), [3.0])  # No θ gradient: no term.
  # Two replicas with the same half-batch gradient: the optimizer sums their shares,
  # which must give the one-device term of the summed gradient exactly once.
  two = bilevel.score_gradients(g_s, g_theta, 2.0, num_replicas=2, replica_sum=lambda t: 2 * t)
  summed = 2 * two[0].numpy()
  np.testing.assert_allclose(summed, 2 * g_s[0].numpy() - 2.0 * (2 * g_theta[0].numpy()) ** 2)


@pytest.mark.parametrize("shared", [True, False])
def test_level_routing_and_joint_gradients_match_separate_backward_passes(shared):
  x, y, theta, mask = _problem(1)
  w = tf.Variable(tf.ones([3]))
  score = tf.Variable(tf.abs(theta))
  def forward():
    z = mask * theta + (score - tf.stop_gradient(score))  # Straight-through stand-in.
    out = x @ z * w
    task = tf.reduce_mean(tf.square(out - y))
    reg = 0.01 * tf.reduce_sum(tf.square(w))
    fair = tf.reduce_mean(out[:, 0])
    return task, reg, fair, (fair if shared else 2.0 * fair)
  with tf.GradientTape(persistent=True) as tape:
    task, reg, fair_w, fair_m = forward()
    lower, upper, is_shared = bilevel.level_losses(task, reg, fair_w, fair_m)
  assert is_shared == shared
  g_w, g_s, g_theta = bilevel.joint_gradients(tape, lower, upper, reg, is_shared,
                                              [w], [score], [theta])
  # Independently: L_w = task + reg + F_w, L_m = task + F_m, one tape each.
  with tf.GradientTape() as t1:
    task, reg, fair_w, _ = forward()
    expected_w = t1.gradient(task + reg + fair_w, [w])
  with tf.GradientTape(persistent=True) as t2:
    task, _, _, fair_m = forward()
    upper2 = task + fair_m
  np.testing.assert_allclose(g_w[0].numpy(), expected_w[0].numpy(), rtol=1e-5)
  np.testing.assert_allclose(g_s[0].numpy(), t2.gradient(upper2, score).numpy(), rtol=1e-5)
  np.testing.assert_allclose(g_theta[0].numpy(), t2.gradient(upper2, theta).numpy(), rtol=1e-5)


def test_plus_skips_missing_terms():
  assert bilevel.plus(None, None) is None
  assert float(bilevel.plus(tf.constant(1.0), None, tf.constant(2.0))) == 3.0
