"""export_tflite: interpreter parity, sparse files, fallbacks, bad input, no broken files."""

import os
import warnings

import numpy as np
import tensorflow as tf
import pytest
import tf_keras as keras

import tf_fairprune


def _pruned(sparsity=0.9, k=keras, **kwargs):
  model = k.Sequential([k.Input((32,)), k.layers.Dense(128, activation="relu"),
                        k.layers.Dense(128, activation="relu"), k.layers.Dense(4)])
  return tf_fairprune.fair_prune_wrapper(model, target_sparsity=sparsity, **kwargs)


@pytest.fixture
def x():
  return np.random.default_rng(0).standard_normal((8, 32)).astype("float32")


def test_sparse_float_export_matches_keras_and_is_small(tmp_path, x, k):
  pruned = _pruned(k=k)
  dense = tf_fairprune.export_tflite(pruned, tmp_path / "dense.tflite", sparse=False,
                                     sample_inputs=x)
  sparse = tf_fairprune.export_tflite(pruned, tmp_path / "sparse.tflite", sample_inputs=x)
  assert sparse.sparse and not dense.sparse
  assert sparse.max_abs_diff < 1e-5 and dense.max_abs_diff < 1e-5
  assert sparse.size_bytes == os.path.getsize(tmp_path / "sparse.tflite")
  assert sparse.size_bytes < 0.25 * dense.size_bytes
  assert sparse.num_samples == 8
  assert sparse.interpreter in ("ai_edge_litert", "tf.lite")


def test_random_samples_when_none_are_given(tmp_path):
  result = tf_fairprune.export_tflite(_pruned(0.5), tmp_path / "m.tflite", num_samples=3)
  assert result.num_samples == 3 and result.max_abs_diff < 1e-5


def test_quantized_sparse_falls_back_to_a_working_dense_file(tmp_path, x):
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = tf_fairprune.export_tflite(_pruned(), tmp_path / "q.tflite", quantize="dynamic",
                                        sample_inputs=x)
  assert not result.sparse and "XNNPACK" in result.note
  assert any("XNNPACK" in str(w.message) for w in caught)
  assert result.max_abs_diff < 0.05  # int8 weights.


def test_int8_export(tmp_path, x):
  def representative():
    for row in x:
      yield [row[None]]
  result = tf_fairprune.export_tflite(_pruned(), tmp_path / "i8.tflite", quantize="int8",
                                      representative_dataset=representative, sample_inputs=x)
  assert result.quantize == "int8" and os.path.exists(result.path)
  assert result.max_abs_diff < 0.1


def test_bad_arguments_write_nothing(tmp_path, x):
  path = tmp_path / "never.tflite"
  with pytest.raises(ValueError, match="quantize"):
    tf_fairprune.export_tflite(_pruned(), path, quantize="fp16")
  with pytest.raises(ValueError, match="representative_dataset"):
    tf_fairprune.export_tflite(_pruned(), path, quantize="int8")
  with pytest.raises(ValueError, match="does not match"):
    tf_fairprune.export_tflite(_pruned(), path, sample_inputs=x[:, :5])
  with pytest.raises(ValueError, match="inputs"):
    tf_fairprune.export_tflite(_pruned(), path, sample_inputs=[x, x])
  with pytest.raises(TypeError):
    tf_fairprune.export_tflite("model", path)
  assert not path.exists()
  assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_existing_file_is_untouched_when_conversion_fails(tmp_path, x, monkeypatch):
  path = tmp_path / "keep.tflite"
  path.write_bytes(b"previous")
  from tf_fairprune.export import pipeline as export
  def broken(*args, **kwargs):
    raise RuntimeError("simulated interpreter failure")
  monkeypatch.setattr(export, "_run", broken)
  with pytest.raises(RuntimeError, match="Nothing was written"):
    tf_fairprune.export_tflite(_pruned(), path, sample_inputs=x)
  assert path.read_bytes() == b"previous"


def test_reports_densified_ops_and_native_block_sparsity(tmp_path, x, k):
  with warnings.catch_warnings():
    # DENSIFY is what unstructured sparsity is: said in the result, never warned.
    warnings.simplefilter("error")
    unstructured = tf_fairprune.export_tflite(_pruned(k=k), tmp_path / "u.tflite",
                                              sample_inputs=x)
  assert unstructured.densified_ops == 3 and unstructured.ops["FULLY_CONNECTED"] == 3
  assert unstructured.sparse_ops == {}
  block = _pruned(0.9, k=k, block_size=(4, 1))
  with warnings.catch_warnings():
    warnings.simplefilter("error", UserWarning)  # No densify warning.
    result = tf_fairprune.export_tflite(block, tmp_path / "b.tflite", sample_inputs=x)
  assert result.densified_ops == 0 and result.ops.get("FULLY_CONNECTED") == 3
  assert result.sparse_ops == {"FULLY_CONNECTED": 3}  # Native sparse kernels.
  assert result.max_abs_diff < 1e-4


def _qat(pruned, x):
  qat = tf_fairprune.quantize_preserving_sparsity(pruned)
  qat.compile(optimizer=keras.optimizers.Adam(1e-2),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  y = np.arange(len(x)) % 4
  qat.fit(np.tile(x, (8, 1)), np.tile(y, 8), epochs=2, batch_size=16, verbose=0)
  return qat


def test_prune_preserving_qat_keeps_the_sparsity(tmp_path, x):
  pruned = _pruned(0.8)
  stripped = tf_fairprune.strip_fair_pruning(pruned)
  qat = _qat(pruned, x)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # Quantized + unstructured: dense int8.
    result = tf_fairprune.export_tflite(qat, tmp_path / "qat.tflite", quantize="qat",
                                        sample_inputs=x)
  float_file = tf_fairprune.export_tflite(stripped, tmp_path / "f.tflite", sparse=False,
                                          sample_inputs=x)
  assert result.weight_sparsity == pytest.approx(float_file.weight_sparsity)
  assert result.weight_sparsity == pytest.approx(0.8, abs=0.01)
  assert result.size_bytes < 0.4 * float_file.size_bytes  # int8 weights.
  assert result.max_abs_diff < 0.05


def test_qat_export_refuses_refilled_weights_and_wrong_modes(tmp_path, x):
  qat = _qat(_pruned(0.8), x)
  with pytest.raises(ValueError, match="quantize='qat'"):
    tf_fairprune.export_tflite(qat, tmp_path / "a.tflite", sample_inputs=x)
  kernel = [w for w in qat.weights if w.name.endswith("/kernel:0")][0]
  value = kernel.numpy()
  value[value == 0] = 0.5  # What plain QAT without the prune-preserving scheme can do.
  kernel.assign(value)
  with pytest.raises(ValueError, match="refilled"):
    tf_fairprune.export_tflite(qat, tmp_path / "b.tflite", quantize="qat", sample_inputs=x)
  with pytest.raises(ValueError, match="quantize_preserving_sparsity"):
    tf_fairprune.export_tflite(tf_fairprune.strip_fair_pruning(_pruned()),
                               tmp_path / "c.tflite", quantize="qat", sample_inputs=x)
  assert not any(p.suffix == ".tflite" for p in tmp_path.iterdir())


def _mlp(sizes):
  layers = [keras.layers.Dense(n, activation="relu") for n in sizes[1:-1]]
  return keras.Sequential([keras.Input((sizes[0],))] + layers + [keras.layers.Dense(sizes[-1])])


@pytest.mark.parametrize("sizes,sparsity,block", [
    ((6, 8, 1), 0.5, (1, 1)),         # The converter stores 6-wide kernels in 1x4 blocks.
    ((6, 32, 16, 1), 0.9, (4, 1)),
    ((5, 7, 3), 0.7, (1, 1)),
    ((64, 64, 1), 0.9, (1, 1)),       # Aligned: stays sparse.
])
def test_written_file_matches_keras_for_small_and_odd_layers(tmp_path, sizes, sparsity, block):
  model = tf_fairprune.fair_prune_wrapper(_mlp(sizes), sparsity, block_size=block)
  stripped = tf_fairprune.strip_fair_pruning(model)
  x = np.random.default_rng(0).standard_normal((64, sizes[0])).astype("float32")
  path = str(tmp_path / "m.tflite")
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    result = tf_fairprune.export_tflite(stripped, path, sample_inputs=x)
  # Read the file back independently of the export's own check.
  interpreter = tf.lite.Interpreter(model_path=path)
  runner = interpreter.get_signature_runner()
  name = list(interpreter.get_signature_list()["serving_default"]["outputs"])[0]
  expected = stripped.predict(x, verbose=0)
  got = np.concatenate([runner(**{list(interpreter.get_signature_list()["serving_default"]
                                       ["inputs"])[0]: x[i:i + 1]})[name] for i in range(64)])
  np.testing.assert_allclose(got, expected, atol=1e-4)
  if sizes == (64, 64, 1):
    assert result.sparse and not result.note
  elif not result.sparse:
    assert "dense" in result.note


def test_a_file_that_does_not_match_is_never_written(tmp_path, monkeypatch):
  from tf_fairprune.export import pipeline as export_lib  # pylint: disable=g-import-not-at-top
  model = _mlp((8, 16, 1))
  real = export_lib._run  # pylint: disable=protected-access

  def off_by_five(*args):  # A file whose outputs are 5 away from Keras (and float64).
    found = real(*args)
    return found._replace(diff=found.diff + 5.0, outputs=[o + 5.0 for o in found.outputs])
  monkeypatch.setattr(export_lib, "_run", off_by_five)
  path = tmp_path / "bad.tflite"
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    with pytest.raises(RuntimeError, match="Nothing was written"):
      tf_fairprune.export_tflite(model, str(path))
  assert not path.exists() and not list(tmp_path.iterdir())


def test_gpu_target_keeps_fully_connected_weights_dense_and_reports_tfs_verdict(tmp_path):
  mlp = tf_fairprune.strip_fair_pruning(tf_fairprune.fair_prune_wrapper(_mlp((64, 64, 2)), 0.9))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    cpu = tf_fairprune.export_tflite(mlp, str(tmp_path / "cpu.tflite"))
    gpu = tf_fairprune.export_tflite(mlp, str(tmp_path / "gpu.tflite"), target="gpu")
  assert cpu.sparse and cpu.densified_ops == 2
  assert not gpu.sparse and gpu.densified_ops == 0 and "FULLY_CONNECTED" in gpu.note
  assert "GPU" in gpu.gpu_compatibility
  cnn = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(16, 3, activation="relu"),
                          keras.layers.DepthwiseConv2D(3), keras.layers.GlobalAveragePooling2D()])
  cnn = tf_fairprune.strip_fair_pruning(tf_fairprune.fair_prune_wrapper(cnn, 0.8))
  conv = tf_fairprune.export_tflite(cnn, str(tmp_path / "cnn.tflite"), target="gpu")
  assert conv.sparse and conv.densified_ops >= 1 and not conv.note  # Folded into convs.
  with pytest.raises(ValueError, match="target"):
    tf_fairprune.export_tflite(cnn, str(tmp_path / "x.tflite"), target="tpu")


def test_qat_on_a_keras3_model_names_what_to_use_instead(tmp_path, x):
  k3 = pytest.importorskip("tf_fairprune.flavour_keras3").keras
  pruned = _pruned(0.8, k=k3)
  with pytest.raises(TypeError, match="tf_keras models only.*quantize='dynamic'"):
    tf_fairprune.quantize_preserving_sparsity(pruned)
  # Post-training quantization works on Keras 3 and keeps the file checked.
  result = tf_fairprune.export_tflite(pruned, tmp_path / "q.tflite", quantize="dynamic",
                                      sample_inputs=x)
  assert result.quantize == "dynamic" and os.path.exists(tmp_path / "q.tflite")


def _read_back(path, x):
  """Outputs of the written file, read independently of the export's own check."""
  interpreter = tf.lite.Interpreter(model_path=str(path))
  runner = interpreter.get_signature_runner()
  signature = interpreter.get_signature_list()["serving_default"]
  feed, out = list(signature["inputs"])[0], list(signature["outputs"])[0]
  return np.concatenate([runner(**{feed: x[i:i + 1]})[out] for i in range(len(x))])


def test_a_narrow_first_layer_is_stored_dense_alone(tmp_path, k):
  # 3 features: the converter stores the first kernel in 1x4 blocks, which TFLite
  # misreads. Only that tensor is stored dense; the others stay sparse.
  model = k.Sequential([k.Input((3,)), k.layers.Dense(64, activation="relu"),
                        k.layers.Dense(64, activation="relu"), k.layers.Dense(1)])
  stripped = tf_fairprune.strip_fair_pruning(tf_fairprune.fair_prune_wrapper(model, 0.8))
  x = np.random.default_rng(0).standard_normal((32, 3)).astype("float32")
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # A correct, mostly sparse file: nothing to warn about.
    sparse = tf_fairprune.export_tflite(stripped, tmp_path / "s.tflite", sample_inputs=x)
  dense = tf_fairprune.export_tflite(stripped, tmp_path / "d.tflite", sparse=False,
                                     sample_inputs=x)
  assert sparse.sparse and "stored dense" in sparse.note and "stays sparse" in sparse.note
  assert sparse.size_bytes < 0.6 * dense.size_bytes
  np.testing.assert_allclose(_read_back(tmp_path / "s.tflite", x),
                             stripped.predict(x, verbose=0), atol=1e-5)


def test_gpu_target_keeps_convolution_sparsity_in_a_mixed_model(tmp_path):
  from tf_fairprune.export.flatbuffer_info import FlatbufferInfo  # pylint: disable=g-import-not-at-top
  cnn = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(32, 3, activation="relu"),
                          keras.layers.Conv2D(32, 3, activation="relu"),
                          keras.layers.Flatten(), keras.layers.Dense(16)])
  cnn = tf_fairprune.strip_fair_pruning(
      tf_fairprune.fair_prune_wrapper(cnn, 0.9, mask_scope="layer"))
  x = np.random.default_rng(0).standard_normal((8, 12, 12, 3)).astype("float32")
  gpu = tf_fairprune.export_tflite(cnn, tmp_path / "gpu.tflite", target="gpu", sample_inputs=x)
  dense = tf_fairprune.export_tflite(cnn, tmp_path / "d.tflite", sparse=False, sample_inputs=x)
  assert gpu.sparse and gpu.densified_ops == 2 and "FULLY_CONNECTED" in gpu.note
  flatbuffer = (tmp_path / "gpu.tflite").read_bytes()
  assert FlatbufferInfo(flatbuffer).gpu_unfoldable_ops == []
  # The convolutions' weights stay sparse (before: the whole file was written dense).
  interpreter = tf.lite.Interpreter(model_content=flatbuffer)
  sparse_shapes = [tuple(t["shape"]) for t in interpreter.get_tensor_details()
                   if t.get("sparsity_parameters")]
  assert len(sparse_shapes) == 2 and all(len(s) == 4 for s in sparse_shapes)
  assert gpu.size_bytes < dense.size_bytes
  np.testing.assert_allclose(_read_back(tmp_path / "gpu.tflite", x), cnn.predict(x, verbose=0),
                             atol=1e-4)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_the_file_gets_the_permissions_open_would_give(tmp_path, umask):
  previous = os.umask(umask)
  try:
    result = tf_fairprune.export_tflite(_mlp((8, 16, 1)), tmp_path / "m.tflite")
    with open(tmp_path / "other.json", "w") as f:
      f.write("{}")
  finally:
    os.umask(previous)
  mode = lambda p: os.stat(p).st_mode & 0o777
  assert mode(result.path) == mode(tmp_path / "other.json") == 0o666 & ~umask
