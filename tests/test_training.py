"""The bi-level train_step: exact update rule, sparsity, schedules, errors, callbacks."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tf_fairprune
from tf_fairprune import masking
from conftest import MaskAudit, compile_binary, make_data, make_mlp

LR_W, LR_S, SCALE = 0.1, 0.5, 0.3


def _linear_two_layer(k=keras):
  return k.Sequential([k.Input((2,)), k.layers.Dense(3, name="a"), k.layers.Dense(1, name="b")])


def _expected_step(pruned, x, y, update_mode, scale):
  """Recomputes one bi-level step by hand, from DESIGN.md §2."""
  wa, wb = pruned.fair_prune_wrappers
  const = lambda v: tf.identity(tf.convert_to_tensor(v))
  theta = [const(wa.layer.kernel), const(wb.layer.kernel)]
  bias = [const(wa.layer.bias), const(wb.layer.bias)]
  scores = [const(w.score_variables[0]) for w in (wa, wb)]
  masks = [const(w.mask_variables[0]) for w in (wa, wb)]
  bce = keras.losses.BinaryCrossentropy(from_logits=True)

  def grads(theta, bias):
    with tf.GradientTape() as tape:
      tape.watch(theta + bias)
      z = [t * m for t, m in zip(theta, masks)]
      logits = (x @ z[0] + bias[0]) @ z[1] + bias[1]
      loss = bce(y[:, None], logits)
      g = tape.gradient(loss, z + bias)
    return g[:2], g[2:]

  g_z, g_b = grads(theta, bias)
  new_theta = [t - LR_W * gz * m for t, gz, m in zip(theta, g_z, masks)]
  new_bias = [b - LR_W * gb for b, gb in zip(bias, g_b)]
  if update_mode == "alternating":
    g_z, _ = grads(new_theta, new_bias)
    at = new_theta
  else:
    at = theta
  new_scores = [s - LR_S * (gz * t - scale * tf.square(gz * m))
                for s, gz, t, m in zip(scores, g_z, at, masks)]
  return new_theta, new_bias, new_scores


@pytest.mark.parametrize("update_mode", ["joint", "alternating"])
@pytest.mark.parametrize("scale", [0.0, SCALE])
def test_one_step_follows_the_bilevel_update_rule(update_mode, scale, k):
  x, y = make_data(n=8, inputs=2)
  pruned = tf_fairprune.fair_prune_wrapper(
      _linear_two_layer(k), target_sparsity=0.5, implicit_gradient_scale=scale,
      update_mode=update_mode)
  pruned.compile(optimizer=k.optimizers.SGD(LR_W), mask_optimizer=k.optimizers.SGD(LR_S),
                 loss=k.losses.BinaryCrossentropy(from_logits=True))
  new_theta, new_bias, new_scores = _expected_step(pruned, x, y, update_mode, scale)
  pruned.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
  wrappers = pruned.fair_prune_wrappers
  for w, t, b, s in zip(wrappers, new_theta, new_bias, new_scores):
    np.testing.assert_allclose(w.layer.kernel.numpy(), t.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(w.layer.bias.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(w.score_variables[0].numpy(), s.numpy(), rtol=1e-5, atol=1e-7)
  # Masks were re-ranked from the new scores.
  expected_masks = masking.topk_masks(new_scores, 0.5)
  for w, m in zip(wrappers, expected_masks):
    np.testing.assert_array_equal(w.mask_variables[0].numpy(), m.numpy())


def test_implicit_gradient_term_changes_the_scores():
  x, y = make_data()
  finals = []
  for scale in (0.0, 10.0):
    keras.utils.set_random_seed(0)
    pruned = compile_binary(tf_fairprune.fair_prune_wrapper(
        make_mlp(), 0.8, implicit_gradient_scale=scale))
    pruned.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    finals.append(np.concatenate([s.numpy().ravel() for w in pruned.fair_prune_wrappers
                                  for s in w.score_variables]))
  assert np.max(np.abs(finals[0] - finals[1])) > 1e-4


def test_fit_moves_weights_and_scores_and_holds_exact_sparsity(data, k):
  x, y = data
  pruned = compile_binary(tf_fairprune.fair_prune_wrapper(make_mlp(k=k), target_sparsity=0.9))
  theta0 = [v.numpy().copy() for w in pruned.fair_prune_wrappers for v in w.prunable_weights]
  score0 = [v.numpy().copy() for w in pruned.fair_prune_wrappers for v in w.score_variables]
  history = pruned.fit(x, y, batch_size=32, epochs=10, verbose=0)
  theta1 = [v.numpy() for w in pruned.fair_prune_wrappers for v in w.prunable_weights]
  score1 = [v.numpy() for w in pruned.fair_prune_wrappers for v in w.score_variables]
  assert any(np.abs(a - b).max() > 1e-3 for a, b in zip(theta0, theta1))
  assert any(np.abs(a - b).max() > 1e-4 for a, b in zip(score0, score1))
  n = 8 * 16 + 16 * 1
  expected = 1 - round(0.1 * n) / n
  assert history.history["sparsity"] == pytest.approx([expected] * 10, abs=1e-6)
  assert float(pruned.measured_sparsity()) == pytest.approx(expected, abs=1e-6)
  assert history.history["accuracy"][-1] > 0.8  # 14 of 145 weights learn the task.
  logs = pruned.evaluate(x, y, verbose=0, return_dict=True)
  assert set(logs) == {"loss", "accuracy", "sparsity"}
  assert pruned.predict(x, verbose=0).shape == (len(x), 1)


def test_layer_scope_prunes_every_layer_equally(data, k):
  x, y = data
  pruned = compile_binary(tf_fairprune.fair_prune_wrapper(make_mlp(k=k), 0.75,
                                                          mask_scope="layer"))
  pruned.fit(x, y, batch_size=64, epochs=1, verbose=0)
  for w in pruned.fair_prune_wrappers:
    m = w.mask_variables[0].numpy()
    assert m.sum() == round(0.25 * m.size)


def test_mask_update_frequency(data):
  x, y = data
  pruned = compile_binary(tf_fairprune.fair_prune_wrapper(make_mlp(), 0.8, mask_update_frequency=4),
                          mask_optimizer=keras.optimizers.SGD(20.0))  # Big steps: ranks change.
  masks = lambda: np.concatenate([m.numpy().ravel() for w in pruned.fair_prune_wrappers
                                  for m in w.mask_variables])
  expected = lambda: np.concatenate([m.numpy().ravel() for m in masking.topk_masks(
      [s for w in pruned.fair_prune_wrappers for s in w.score_variables], 0.8)])
  pruned.fit(x[:96], y[:96], batch_size=32, epochs=1, shuffle=False, verbose=0)  # 3 steps
  before = masks()
  assert not np.array_equal(before, expected())  # Scores moved, masks not re-ranked yet.
  pruned.fit(x[:32], y[:32], batch_size=32, epochs=1, shuffle=False, verbose=0)  # step 4
  np.testing.assert_array_equal(masks(), expected())
  with pytest.raises(ValueError, match="mask_update_frequency"):
    tf_fairprune.fair_prune_wrapper(make_mlp(), 0.5, mask_update_frequency=0)


def test_polynomial_decay_schedule_reaches_final_sparsity(data):
  x, y = data
  schedule = tf_fairprune._compat.tfmot.sparsity.keras.PolynomialDecay(
      initial_sparsity=0.0, final_sparsity=0.8, begin_step=2, end_step=12)
  pruned = compile_binary(tf_fairprune.fair_prune_wrapper(make_mlp(), schedule))
  assert float(pruned.measured_sparsity()) == 0.0  # Step 0 < begin_step.
  history = pruned.fit(x, y, batch_size=32, epochs=2, verbose=0)  # 16 steps.
  sparsities = history.history["sparsity"]
  assert sparsities[0] < sparsities[1]
  assert sparsities[1] == pytest.approx(0.8, abs=0.01)


def test_fit_before_compile_and_optimizer_errors(data):
  x, y = data
  pruned = tf_fairprune.fair_prune_wrapper(make_mlp(), 0.5)
  with pytest.raises(RuntimeError, match="compile"):
    pruned.fit(x, y, verbose=0)
  opt = keras.optimizers.SGD(0.1)
  with pytest.raises(ValueError, match="different optimizer"):
    pruned.compile(optimizer=opt, mask_optimizer=opt, loss="mse")
  pruned.compile(optimizer="adam", loss="mse")
  assert isinstance(pruned.mask_optimizer, keras.optimizers.SGD)
  assert float(pruned.mask_optimizer.learning_rate) == pytest.approx(0.1)
  with pytest.raises(ValueError, match="update_mode"):
    tf_fairprune.fair_prune_wrapper(make_mlp(), 0.5, update_mode="both")
  with pytest.raises(ValueError, match="mask_scope"):
    tf_fairprune.fair_prune_wrapper(make_mlp(), 0.5, mask_scope="channel")
  with pytest.raises(ValueError, match="implicit_gradient_scale"):
    tf_fairprune.fair_prune_wrapper(make_mlp(), 0.5, implicit_gradient_scale=-1)


@pytest.mark.parametrize("where", ["label", "feature"])
def test_nan_loss_stops_training_and_keeps_last_good_weights(data, where, k):
  x, y = data
  x, y = x.copy(), y.copy()
  # In the third batch of 32: a NaN label makes the loss NaN; a NaN feature is hidden
  # from the loss by the ReLU but makes the gradients NaN.
  (y if where == "label" else x)[70] = np.nan
  pruned = compile_binary(tf_fairprune.fair_prune_wrapper(make_mlp(k=k), 0.5))
  reference = compile_binary(tf_fairprune.fair_prune_wrapper(make_mlp(k=k), 0.5))
  reference.set_weights(pruned.get_weights())
  pruned.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
  assert pruned.stopped_on_non_finite_loss
  assert int(pruned.optimizer.iterations) == 2
  assert len(pruned.history.history["loss"]) == 1
  reference.fit(x[:64], y[:64], batch_size=32, epochs=1, shuffle=False, verbose=0)
  for a, b in zip(pruned.get_weights(), reference.get_weights()):
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def _bn_mlp(k=keras):
  return k.Sequential([k.Input((8,)), k.layers.Dense(16, name="hidden"),
                       k.layers.BatchNormalization(name="bn"),
                       k.layers.ReLU(), k.layers.Dense(1, name="logits")])


@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_nan_batch_leaves_all_state_as_after_the_last_good_step(data, steps_per_execution,
                                                                 caplog, k):
  x, y = data
  x = x.copy()
  x[70] = np.nan  # Batch 2 (of 32): its statistics would reach BatchNormalization.
  k.utils.set_random_seed(0)
  dense = _bn_mlp(k)
  pruned = compile_binary(tf_fairprune.fair_prune_wrapper(dense, 0.5),
                          steps_per_execution=steps_per_execution)
  reference = compile_binary(tf_fairprune.fair_prune_wrapper(dense, 0.5))
  reference.set_weights(pruned.get_weights())
  pruned.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
  reference.fit(x[:64], y[:64], batch_size=32, epochs=1, shuffle=False, verbose=0)
  assert pruned.stopped_on_non_finite_loss
  assert int(pruned.optimizer.iterations) == 2  # Later steps of the execution: skipped.
  for a, b in zip(pruned.get_weights(), reference.get_weights()):  # BN statistics included.
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert np.all(np.isfinite(pruned.predict(np.nan_to_num(x), verbose=0)))
  assert "at batch 2 of epoch 0" in caplog.text


def test_keras_callbacks_work(tmp_path, data, k):
  x, y = data
  pruned = compile_binary(tf_fairprune.fair_prune_wrapper(make_mlp(k=k), 0.5))
  ckpt = str(tmp_path / "ckpt.keras")
  history = pruned.fit(
      x, y, batch_size=32, epochs=20, validation_split=0.25, verbose=0,
      callbacks=[k.callbacks.ModelCheckpoint(ckpt, save_best_only=True),
                 k.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0),
                 k.callbacks.TensorBoard(str(tmp_path / "tb")),
                 k.callbacks.TerminateOnNaN()])
  assert len(history.history["loss"]) == 2  # EarlyStopping stopped it.
  assert "val_sparsity" in history.history
  assert os.path.exists(ckpt)
  assert os.listdir(tmp_path / "tb")
  restored = k.models.load_model(ckpt)
  assert isinstance(restored, tf_fairprune.training.BiLevelTrainingMixin)
  assert isinstance(restored, k.Model)


def test_jit_compiled_step_matches_the_eager_graph_step(data, k):
  x, y = data
  results = []
  for jit in (False, True):
    k.utils.set_random_seed(0)
    pruned = compile_binary(tf_fairprune.fair_prune_wrapper(make_mlp(k=k), 0.8),
                            jit_compile=jit)
    assert pruned._flavour.jit_compile(pruned) is jit  # pylint: disable=protected-access
    audit = MaskAudit(pruned)  # Every re-rank (the bisection under XLA) is the full top-k.
    pruned.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0,
               callbacks=[audit.callback()])
    assert audit.checked == 8 and not audit.wrong, (jit, audit.wrong)
    results.append(pruned.get_weights())
  for a, b in zip(*results):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


class SubclassedNet(tf_fairprune.FairPruneModel):

  def __init__(self, **kwargs):
    super().__init__(target_sparsity=0.7, **kwargs)
    self.hidden = tf_fairprune.FairPruneWrapper(keras.layers.Dense(16, activation="relu"))
    self.out = tf_fairprune.FairPruneWrapper(keras.layers.Dense(1))

  def call(self, inputs):
    return self.out(self.hidden(inputs))


def test_subclassed_fair_prune_model(data):
  x, y = data
  model = SubclassedNet()
  model(x[:1])  # Build before fit so that the first step is already pruned.
  assert not isinstance(model, tf_fairprune.FunctionalFairPruneModel)
  compile_binary(model)
  history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
  n = 8 * 16 + 16
  assert history.history["sparsity"][-1] == pytest.approx(1 - round(0.3 * n) / n, abs=1e-6)
  assert history.history["loss"][-1] < history.history["loss"][0]
  # The functional form of the same class stays usable side by side.
  inp = keras.Input((8,))
  out = tf_fairprune.FairPruneWrapper(keras.layers.Dense(1))(inp)
  functional = tf_fairprune.FairPruneModel(inp, out, target_sparsity=0.5)
  assert isinstance(functional, tf_fairprune.FunctionalFairPruneModel)
  assert isinstance(SubclassedNet(), tf_fairprune.FairPruneModel)
