"""One implementation, two Keras flavours: tf_keras and Keras 3 give the same training."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tf_fairprune
from tf_fairprune import flavours
from tf_fairprune.fairness import ExcessDegradation, Lagrangian, Penalty, PerformanceFairness
from conftest import KERAS3, make_data, make_mlp

pytestmark = pytest.mark.skipif(KERAS3 is None, reason="Keras 3 is not installed")


def _named(model):
  """{(wrapper or "", variable): value}: the flavours name and order weights differently."""
  out = {}
  for v in model.weights:
    parts = (getattr(v, "path", None) or v.name).split(":")[0].split("/")
    wrapper = next((p for p in parts if p.startswith("fair_prune_")), "")
    out[(wrapper, parts[-1])] = v.numpy()
  return out


def _fit(k, weights, x, groups, y, update_mode):
  dense = make_mlp(k=k)
  dense.set_weights(weights)
  pruned = tf_fairprune.fair_prune_wrapper(
      dense, 0.7, update_mode=update_mode, implicit_gradient_scale=0.1, num_groups=2,
      fairness=[ExcessDegradation(tolerance=0.0,
                                  enforcement=Lagrangian(multiplier_lr=1.0, noise_margin=0.0)),
                PerformanceFairness(enforcement=Penalty(weight=2.0))])
  pruned.compile(optimizer=k.optimizers.SGD(0.1, momentum=0.9),
                 mask_optimizer=k.optimizers.SGD(2.0, momentum=0.9),
                 loss=k.losses.BinaryCrossentropy(from_logits=True))
  history = pruned.fit(tf_fairprune.pack_group_data(x, groups), y, batch_size=32, epochs=2,
                       shuffle=False, verbose=0)
  return pruned, history.history


@pytest.mark.parametrize("update_mode", ["joint", "alternating"])
def test_both_flavours_train_to_the_same_model(update_mode):
  x, y = make_data(n=192)
  groups = (x[:, 3] > 0.5).astype("int32")
  weights = make_mlp().get_weights()
  a, history_a = _fit(keras, weights, x, groups, y, update_mode)
  b, history_b = _fit(KERAS3, weights, x, groups, y, update_mode)
  assert flavours.of(a) is flavours.TF_KERAS and flavours.of(b) is not flavours.TF_KERAS
  # Weights, scores, masks and the multipliers: the same numbers.
  named_a, named_b = _named(a), _named(b)
  # 13: a Penalty rule has no multiplier (one weight fewer than when every constraint had one).
  assert sorted(named_a) == sorted(named_b) and len(named_a) == 13
  assert ("", "performance_gap_multiplier") not in named_a
  assert ("", "max_excess_gap_multiplier") in named_a
  for key, value in named_a.items():
    np.testing.assert_allclose(value, named_b[key], rtol=1e-4, atol=1e-5, err_msg=str(key))
  assert float(tf.reduce_max(a.fairness_multipliers[0])) > 0  # The constraint acted.
  assert set(history_a) == set(history_b)  # The same progress-bar metrics ...
  for key in history_a:
    np.testing.assert_allclose(history_a[key], history_b[key], rtol=1e-4, atol=1e-5,
                               err_msg=key)  # ... with the same values.
  x_test = x[:64]
  np.testing.assert_allclose(tf_fairprune.strip_fair_pruning(a).predict(x_test, verbose=0),
                             tf_fairprune.strip_fair_pruning(b).predict(x_test, verbose=0),
                             rtol=1e-4, atol=1e-5)


def test_flavour_follows_the_objects_passed():
  assert flavours.of(make_mlp()) is flavours.TF_KERAS
  k3_model = make_mlp(k=KERAS3)
  assert flavours.of(k3_model).keras is KERAS3
  assert flavours.of([KERAS3.layers.Dense(2)]).keras is KERAS3
  pruned = tf_fairprune.fair_prune_wrapper(k3_model, 0.5)
  assert isinstance(pruned, KERAS3.Model)
  assert all(isinstance(w, KERAS3.layers.Layer) for w in pruned.fair_prune_wrappers)
  stripped = tf_fairprune.strip_fair_pruning(pruned)
  assert isinstance(stripped, KERAS3.Sequential)


def test_custom_keras3_layers_with_prunable_weights():
  from tf_fairprune._compat import tfmot  # pylint: disable=g-import-not-at-top

  class Scale(KERAS3.layers.Layer):
    """A custom layer that says which weight to prune (TFMOT's duck-typed protocol)."""

    def build(self, input_shape):
      self.kernel = self.add_weight(shape=(input_shape[-1], 4), initializer="ones")

    def call(self, x):
      return x @ self.kernel

    def get_prunable_weights(self):
      return [self.kernel]

  class TfmotScale(Scale, tfmot.sparsity.keras.PrunableLayer):
    pass

  x, y = make_data(n=64)
  for cls in (Scale, TfmotScale):
    model = KERAS3.Sequential([KERAS3.Input((8,)), cls(), KERAS3.layers.Dense(1)])
    pruned = tf_fairprune.fair_prune_wrapper(model, 0.5)
    assert len(pruned.fair_prune_wrappers) == 2
    pruned.compile(optimizer="sgd", loss="mse")
    pruned.fit(x, y, epochs=1, verbose=0)
    kernel = tf_fairprune.strip_fair_pruning(pruned).layers[0].get_weights()[0]
    assert (kernel == 0).mean() > 0.2


def test_functional_fair_prune_model_follows_its_tensors():
  inputs = KERAS3.Input((8,))
  outputs = tf_fairprune.FairPruneWrapper(KERAS3.layers.Dense(1))(inputs)
  model = tf_fairprune.FairPruneModel(inputs, outputs, target_sparsity=0.5)
  assert isinstance(model, KERAS3.Model) and model.target_sparsity == 0.5
  x, y = make_data(n=64)
  model.compile(optimizer="sgd", loss="mse")
  model.fit(x, y, epochs=1, verbose=0)
  assert float(model.measured_sparsity()) == pytest.approx(0.5, abs=0.07)


@pytest.mark.skipif(KERAS3 is None, reason="Keras 3 is not installed")
@pytest.mark.parametrize("model_flavour", ["tf_keras", "keras3"])
@pytest.mark.parametrize("argument", ["optimizer", "mask_optimizer"])
def test_an_optimizer_of_the_other_flavour_is_named(model_flavour, argument):
  k, other = (keras, KERAS3) if model_flavour == "tf_keras" else (KERAS3, keras)
  model = tf_fairprune.fair_prune_wrapper(make_mlp(k=k), target_sparsity=0.5)
  kwargs = {"optimizer": "sgd", argument: other.optimizers.SGD(0.1)}
  other_name = "keras3" if model_flavour == "tf_keras" else "tf_keras"
  with pytest.raises(TypeError, match=f"`{argument}` is a {other_name} object.*"
                     f"the model is a {model_flavour} model"):
    model.compile(loss="binary_crossentropy", **kwargs)
  own = k.optimizers.SGD(0.1)  # The model's own flavour is accepted.
  model.compile(loss="binary_crossentropy", **{**kwargs, argument: own})
  assert getattr(model, argument) is own


def test_callbacks_are_one_class_on_both_flavours():
  """callback_base.py's policy: every callback subclasses tf_keras' Callback (the only
  base both fits accept), and no flavour table carries a callback class."""
  from tf_fairprune import callback_base  # pylint: disable=g-import-not-at-top
  from tf_fairprune import step_guard  # pylint: disable=g-import-not-at-top
  for cls in (step_guard.GuardCallback, tf_fairprune.HeldOutFairness,
              tf_fairprune.FairPruningSummaries):
    assert issubclass(cls, callback_base.Callback), cls
  assert not any("Callback" in field for field in flavours.Classes._fields)
