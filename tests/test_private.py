"""Each private name tf_fairprune uses still exists: fails loudly when one moves."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tf_fairprune import _private


def test_tf_keras_private_names_resolve():
  assert callable(_private.LossesContainer)
  assert issubclass(_private.Functional, keras.Model)
  assert callable(_private.reconstruct_from_config)
  assert callable(_private.connect_ancillary_layers)
  from tf_keras.src.saving.legacy import serialization  # pylint: disable=g-import-not-at-top
  with _private.SharedObjectLoadingScope() as scope:  # What flavour_tf_keras.py's loading enters.
    assert serialization._shared_object_loading_scope() is scope  # pylint: disable=protected-access
  assert isinstance(serialization._shared_object_loading_scope(),  # pylint: disable=protected-access
                    serialization.NoopLoadingScope)


def test_tfmot_registry_tables_resolve():
  assert keras.layers.Dense in _private.TfmotRegistry.layers_weights
  assert _private.TfmotRegistry.rnn_layers
  assert _private.TfmotRegistry.rnn_cells_weights


def test_interpreter_ops_lists_operators():
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  flat = tf.lite.TFLiteConverter.from_keras_model(model).convert()
  ops = _private.interpreter_ops(tf.lite.Interpreter(model_content=flat))
  assert ops is not None and [o["op_name"] for o in ops] == ["FULLY_CONNECTED"]
  assert np.all([isinstance(o["inputs"], np.ndarray) or o["inputs"] is not None for o in ops])


# ---------------------------------------------------------------- both flavours
# The private names behind `_private` and the flavour tables (flavour_*.py),
# exercised on a compiled model of each flavour: a move fails here, not in a step.
from conftest import make_mlp  # pylint: disable=g-import-not-at-top,wrong-import-position

import tf_fairprune  # pylint: disable=g-import-not-at-top,wrong-import-position
from tf_fairprune import flavours  # pylint: disable=g-import-not-at-top,wrong-import-position


def _compiled(k):
  model = make_mlp(k=k)
  model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
  return model


def test_layer_graph_private_names_resolve_on_both_flavours(k):
  model = _compiled(k)
  hidden = model.get_layer("hidden")
  names = [l.name for l in _private.flatten_layers(model, include_self=False)]
  assert names[-2:] == ["hidden", "logits"] and model.name not in names
  assert _private.flatten_layers(hidden)[0] is hidden
  functional = k.Model(model.inputs, model.outputs)
  assert _private.output_layer(functional.outputs[0]).name == "logits"
  assert _private.is_graph_network(functional) or k is not keras  # tf_keras' flag.
  assert flavours.of(model).is_graph_model(model) and flavours.of(model).is_graph_model(functional)
  nodes = flavours.of(model).inbound_nodes(functional, functional.get_layer("logits"))
  assert len(nodes) == 1 and len(nodes[0][1]) == 1
  # A compile argument recorded through the flavour table lands where Keras reads the
  # compile arguments of a saved model back.
  assert "probe_argument" not in _private.compile_config(model)
  flavours.of(model).record_compile_argument(model, "probe_argument", "sgd")
  assert _private.compile_config(model)["probe_argument"] == "sgd"
  assert model.get_compile_config()["probe_argument"] == "sgd"


def test_compile_private_calls_of_each_flavour_table(k):
  model = tf_fairprune.fair_prune_wrapper(make_mlp(k=k), 0.5)
  model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
  flavour = flavours.of(model)
  assert flavour.is_compiled(model) and not flavour.jit_compile(model)
  x = tf.ones((4, 8))
  y = tf.ones((4, 1))
  y_pred = model(x)
  for loss in (flavour.task_loss(model, y, y_pred, None),
               flavour.second_task_loss(model, y, y_pred, None),
               flavour.test_loss(model, x, y, y_pred, None)):
    assert np.isfinite(float(loss))
  task_loss = flavour.task_loss(model, y, y_pred, None)
  flavour.track_loss(model, x, task_loss)
  flavour.update_compiled_metrics(model, y, y_pred, None)
  logs = model.get_metrics_result()
  # The reported loss is the task loss (tf_keras tracks it inside compiled_loss, Keras 3
  # through track_loss); y is all ones, so accuracy is the share of outputs above 0.5.
  assert float(logs["loss"]) == pytest.approx(float(task_loss), rel=1e-5)
  assert float(logs["accuracy"]) == pytest.approx(float(np.mean(y_pred.numpy() > 0.5)))


def test_replica_private_names_resolve():
  assert callable(_private.strategy_supports_no_merge_call)
  hit = []
  _private.smart_cond(tf.constant(True), lambda: hit.append(1), lambda: None)
  assert hit == [1]


def test_keras3_private_names_resolve():
  keras3 = pytest.importorskip("tf_fairprune.flavour_keras3")
  assert issubclass(keras3._Functional, keras3.keras.Model)  # pylint: disable=protected-access
  for name in ("_symbolic_build", "_maybe_symbolic_build"):
    assert hasattr(keras3.keras.Model, name), name


def test_every_flavour_table_is_complete():
  for flavour in flavours.registered():
    assert flavour.classes is not None and all(flavour.classes), flavour.name
    assert flavours.of(flavour.classes.FairPruneWrapper) is flavour
    wrapped = tf_fairprune.fair_prune_wrapper(make_mlp(k=flavour.keras), 0.5)
    assert isinstance(wrapped, flavour.classes.FairPruneModel)
  # Every entry the base table leaves to the flavours is implemented by each of them.
  entries = [n for n, f in vars(flavours.Flavour).items()
             if callable(f) and "NotImplementedError" in f.__code__.co_names]
  assert "loss_scale" in entries and "depthwise_kernel" in entries
  for flavour in flavours.registered():
    missing = [n for n in entries if getattr(type(flavour), n) is getattr(flavours.Flavour, n)]
    assert not missing, (flavour.name, missing)


def test_untracked_state_stays_out_of_keras_tracking(k):
  outer = k.layers.Dense(2)
  hidden, tracked = k.layers.Dense(1, name="hidden"), k.layers.Dense(1, name="tracked")
  _private.untracked(outer, "hidden_helper", hidden)
  outer.tracked_helper = tracked  # The contrast: an ordinary assignment is tracked.
  sublayers = _private.flatten_layers(outer, include_self=False)
  assert outer.hidden_helper is hidden
  assert any(l is tracked for l in sublayers)
  assert not any(l is hidden for l in sublayers)


def test_tflite_converter_private_flag_exists():
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  converter = tf.lite.TFLiteConverter.from_keras_model(model)
  assert hasattr(converter, "_experimental_lower_tensor_list_ops")
  _private.keep_tensor_list_ops(converter)
  assert converter._experimental_lower_tensor_list_ops is False  # pylint: disable=protected-access


def test_dtype_policy_and_state_unlocking_on_both_flavours(k):
  layer = k.layers.Dense(2)
  layer.build((None, 3))
  assert _private.dtype_policy(layer).name == "float32"
  flavour = flavours.of(layer)
  with flavour.state_unlocked(layer):  # A built layer may still create a variable.
    extra = layer.add_weight(name="extra", shape=(1,), initializer="zeros")
  assert extra.shape == (1,) and any(w is extra for w in layer.weights)
