"""Save, load and resume: .keras (other formats refused), config round trip, resumption."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tf_fairprune
from tf_fairprune._compat import tfmot
from conftest import compile_binary, make_data, make_mlp

HERE = os.path.dirname(os.path.abspath(__file__))


def test_h5_is_refused_before_anything_is_written(tmp_path):
  model = compile_binary(tf_fairprune.fair_prune_wrapper(make_mlp(), 0.5))
  for name, kwargs in (("m.h5", {}), ("m.hdf5", {}), ("m", {"save_format": "h5"}),
                       ("saved_model", {}), ("m", {"save_format": "tf"})):
    with pytest.raises(ValueError, match=r"saves as \.keras only"):
      model.save(str(tmp_path / name), **kwargs)
  assert not list(tmp_path.iterdir())
  # A stripped model is plain Keras: .h5 and SavedModel work for it.
  stripped = tf_fairprune.strip_fair_pruning(model)
  stripped.save(str(tmp_path / "plain.h5"))
  stripped.save(str(tmp_path / "plain_saved_model"))
  x = np.random.default_rng(0).standard_normal((4, 8)).astype("float32")
  for name in ("plain.h5", "plain_saved_model"):
    restored = keras.models.load_model(str(tmp_path / name))
    np.testing.assert_allclose(restored.predict(x, verbose=0), stripped.predict(x, verbose=0),
                               atol=1e-6)


@pytest.mark.parametrize("ext", ["keras"])
@pytest.mark.parametrize("sparsity", [0.6, "schedule"])
def test_save_load_round_trip(tmp_path, ext, sparsity, k):
  if sparsity == "schedule":
    sparsity = tfmot.sparsity.keras.PolynomialDecay(0.1, 0.6, begin_step=1, end_step=9)
  x, y = make_data()
  model = compile_binary(tf_fairprune.fair_prune_wrapper(
      make_mlp(k=k), sparsity, mask_scope="layer", implicit_gradient_scale=0.01,
      update_mode="alternating", mask_update_frequency=3))
  model.fit(x, y, batch_size=32, epochs=1, verbose=0)
  path = str(tmp_path / f"model.{ext}")
  model.save(path)
  restored = k.models.load_model(path)
  assert type(restored) is type(model) and isinstance(restored, k.Model)
  assert restored.mask_scope == "layer"
  assert restored.update_mode == "alternating"
  assert restored.implicit_gradient_scale == 0.01
  assert restored.mask_update_frequency == 3
  assert type(restored.target_sparsity) is type(model.target_sparsity)
  for a, b in zip(model.get_weights(), restored.get_weights()):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(model.predict(x, verbose=0), restored.predict(x, verbose=0))
  for a, b in zip(model.optimizer.variables, restored.optimizer.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  # The restored model trains on.
  restored.fit(x, y, batch_size=32, epochs=1, verbose=0)
  if ext == "keras":  # Only the .keras format stores the second optimizer.
    assert int(restored.mask_optimizer.iterations) > 0


def _run(keras_version, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_FAIRPRUNE_TEST_KERAS=keras_version)
  run = subprocess.run([sys.executable, os.path.join(HERE, "resume_helper.py"), *args],
                       env=env, timeout=600, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr[-3000:]


@pytest.mark.slow  # Three training processes per flavour.
@pytest.mark.parametrize("keras_version", ["2", "3"])
def test_resume_in_a_fresh_process_equals_uninterrupted_training(tmp_path, keras_version):
  if keras_version == "3":
    pytest.importorskip("tf_fairprune.keras3")
  full, resumed, saved = (str(tmp_path / n) for n in ("full.npz", "resumed.npz", "m.keras"))
  _run(keras_version, "full", full)
  _run(keras_version, "first", saved)
  _run(keras_version, "resume", saved, resumed)
  a, b = np.load(full), np.load(resumed)
  assert sorted(a.files) == sorted(b.files)
  assert any(k.startswith("mopt") for k in a.files)
  for key in a.files:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("how", ["export", "saved_model_save"])
def test_serving_exports_of_a_model_being_pruned_apply_the_masks(tmp_path, k, how):
  # model.export() / tf.saved_model.save write an inference graph: it must compute with
  # the masked weights (what strip_fair_pruning gives), not the dense ones.
  x = np.random.default_rng(0).standard_normal((16, 8)).astype("float32")
  dense = make_mlp(k=k)
  pruned = tf_fairprune.fair_prune_wrapper(dense, target_sparsity=0.8)
  expected = tf_fairprune.strip_fair_pruning(pruned).predict(x, verbose=0)
  unmasked = dense.predict(x, verbose=0)
  assert np.abs(expected - unmasked).max() > 1e-2  # The masks matter here.
  path = str(tmp_path / "served")
  if how == "export":
    pruned.export(path)
    loaded = tf.saved_model.load(path)
    got = loaded.serve([x] if k is not keras else x)
  else:
    tf.saved_model.save(pruned, path)
    got = list(tf.saved_model.load(path).signatures["serving_default"](
        tf.constant(x)).values())[0]
  np.testing.assert_allclose(np.asarray(got), expected, atol=1e-6)
