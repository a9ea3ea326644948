"""Save, load and resume: .keras (other formats refused), config round trip, resumption."""

import io
import json
import os
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tf_fairprune
from tf_fairprune._compat import tfmot
from tf_fairprune.fairness import EqualizedOdds, Lagrangian, Penalty, PerformanceFairness
from tf_fairprune.fairness.enforcement import LEGACY_ARGS
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


def _edit_keras_file(path, edit_config=None, edit_weights=None):
  """Edits a .keras file in place: its config dict and its weights' h5 file."""
  with zipfile.ZipFile(path) as z:
    files = {name: z.read(name) for name in z.namelist()}
  if edit_config:
    config = json.loads(files["config.json"])
    edit_config(config)
    files["config.json"] = json.dumps(config).encode()
  if edit_weights:
    buffer = io.BytesIO(files["model.weights.h5"])
    with h5py.File(buffer, "r+") as h5:
      edit_weights(h5)
    files["model.weights.h5"] = buffer.getvalue()
  with zipfile.ZipFile(path, "w") as z:
    for name, data in files.items():
      z.writestr(name, data)


def _as_pre_rule_file(path, model):
  """Rewrites a .keras file of `model` as saved before enforcement rules owned their
  state: each constraint's rule spelled as its settings (`mode=`, `weight=`, ...), and
  a zero multiplier for each Penalty constraint in the model's own weights (then: one
  multiplier per constraint, then the running rates). Returns those weights."""
  def spell_settings(config):
    for c in config["config"]["fair_pruning"]["fairness"]:
      rule = c["config"].pop("enforcement")
      c["config"].update(mode=rule["class_name"].lower(),  # Its settings of then.
                         **{k: v for k, v in rule["config"].items() if k in LEGACY_ARGS})
  old = []
  def add_zero_multipliers(h5):
    own = iter([h5["vars"][str(i)][()] for i in range(len(h5["vars"]))])
    old.extend(next(own) if c.enforcement.drives_multipliers else
               np.zeros(c.multiplier_shape(model.num_groups), np.float32)
               for c in model.fairness)
    old.extend(own)
    del h5["vars"]
    for i, value in enumerate(old):
      h5.create_dataset(f"vars/{i}", data=value)
  _edit_keras_file(path, spell_settings, add_zero_multipliers)
  return old


def test_a_file_of_the_pre_rule_spelling_and_layout_loads(tmp_path, k):
  model = tf_fairprune.fair_prune_wrapper(make_mlp(k=k), 0.5, num_groups=2, fairness=[
      PerformanceFairness(enforcement=Lagrangian(multiplier_lr=0.3), tolerance=0.0),
      EqualizedOdds(enforcement=Penalty(weight=0.5, squared=False), tolerance=0.02)])
  rng = np.random.default_rng(0)
  for v in model._objective.variables:  # pylint: disable=protected-access
    v.assign(rng.uniform(0.1, 1.0, v.shape).astype("float32"))
  path = str(tmp_path / "old.keras")
  model.save(path)
  old = _as_pre_rule_file(path, model)
  assert len(old) == len(model._objective.variables) + 1  # pylint: disable=protected-access
  restored = k.models.load_model(path)
  # Its Lagrangian trained without the options it predates: it resumes so.
  assert restored.fairness[0].enforcement == Lagrangian(multiplier_lr=0.3, per_row=False,
                                                        split_pressure=False)
  def settings(c):  # Everything but the rule.
    return type(c), {k: v for k, v in c.get_config().items() if k != "enforcement"}
  assert [settings(c) for c in restored.fairness] == [settings(c) for c in model.fairness]
  assert restored.fairness[1].enforcement == Penalty(weight=0.5, squared=False)
  for a, b in zip(model._objective.variables, restored._objective.variables):  # pylint: disable=protected-access
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  # Saved again, the file has the current layout.
  restored.save(str(tmp_path / "again.keras"))
  again = k.models.load_model(str(tmp_path / "again.keras"))
  np.testing.assert_array_equal(again.fairness_multipliers[0].numpy(),
                                model.fairness_multipliers[0].numpy())
  # An extra weight that is not a stateless rule's (zero) multiplier is refused.
  _edit_keras_file(path, edit_weights=lambda h5: h5["vars"]["1"].write_direct(
      np.ones(h5["vars"]["1"].shape, np.float32)))
  with pytest.raises(ValueError, match="variables"):
    k.models.load_model(path)


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
