"""The scores' fused SGD-with-momentum step and the one-pass finite check."""

import numpy as np
import pytest
import tensorflow as tf

from tf_fairprune import fused_sgd
from tf_fairprune import replicas


def _variable(k, value):
  return k.Variable(value) if hasattr(k, "Variable") else tf.Variable(value)  # tf_keras: tf's


def _run(k, optimizer, fused, steps=4):
  """Scores and momenta after `steps` updates, through the fused op or Keras."""
  rng = np.random.default_rng(0)
  init = [rng.standard_normal(s).astype("float32") for s in [(7, 5), (5,)]]
  grads = [[tf.constant(rng.standard_normal(v.shape), tf.float32) for v in init]
           for _ in range(steps)]
  variables = [_variable(k, v) for v in init]
  optimizer.build(variables)

  @tf.function
  def step(g):
    if fused:
      assert fused_sgd.fusable(optimizer, g, variables)
      fused_sgd.apply(optimizer, g, variables)
    else:
      optimizer.apply_gradients(zip(g, variables))

  for g in grads:
    step(g)
  momenta = [np.asarray(optimizer.momentums[i]) for i in range(len(variables))]
  return [np.asarray(v) for v in variables] + momenta + [int(optimizer.iterations.numpy())]


@pytest.mark.parametrize("schedule", [False, True])
def test_fused_step_is_bit_for_bit_keras_sgd(k, schedule):
  def make():
    lr = k.optimizers.schedules.ExponentialDecay(0.3, 2, 0.5) if schedule else 0.3
    return k.optimizers.SGD(lr, momentum=0.9)
  for a, b in zip(_run(k, make(), True), _run(k, make(), False)):
    np.testing.assert_array_equal(a, b)


def test_only_what_the_kernel_reproduces_is_fused(k):
  variables = [_variable(k, np.ones((3, 2), "float32"))]
  grads = [tf.ones((3, 2))]
  def built(optimizer):
    optimizer.build(variables)
    return optimizer
  assert fused_sgd.fusable(built(k.optimizers.SGD(0.1, momentum=0.9)), grads, variables)
  for optimizer in (k.optimizers.SGD(0.1), k.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                    k.optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-4),
                    k.optimizers.SGD(0.1, momentum=0.9, clipnorm=1.0),
                    k.optimizers.Adam()):
    assert not fused_sgd.fusable(built(optimizer), grads, variables), optimizer.get_config()
  assert not fused_sgd.fusable(k.optimizers.SGD(0.1, momentum=0.9), grads, variables)  # Unbuilt.
  half = [tf.ones((3, 2), tf.float16)]
  assert not fused_sgd.fusable(built(k.optimizers.SGD(0.1, momentum=0.9)), half, variables)


def test_finite_check_is_exact_when_a_sum_overflows():
  big = tf.fill([4], 3e38)  # Every entry finite, the sum is not.
  assert bool(replicas.all_finite([big, tf.ones(3)]))
  assert not bool(replicas.all_finite([big, tf.constant([1.0, np.inf])]))
  assert not bool(replicas.all_finite([tf.ones(3), tf.constant([np.nan])]))
  assert not bool(replicas.all_finite([tf.constant([np.inf, -np.inf])]))  # Sum NaN.
  assert bool(replicas.all_finite([tf.constant(2.0), None]))
  assert bool(replicas.all_finite([]))
