"""Each private name tf_fairprune uses still exists: fails loudly when one moves."""

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tf_fairprune import _private


def test_tf_keras_private_names_resolve():
  assert callable(_private.LossesContainer)
  assert issubclass(_private.Functional, keras.Model)
  assert callable(_private.reconstruct_from_config)
  assert callable(_private.connect_ancillary_layers)
  with _private.SharedObjectLoadingScope():
    pass


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
