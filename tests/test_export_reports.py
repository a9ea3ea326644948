"""What export_tflite reports: the model's float32 noise, what the file stores dense, and
which weights each sparsity counts."""

import warnings

import numpy as np
import pytest

import tf_fairprune
from tf_fairprune.export import pipeline as export_lib


def _ill_conditioned(k, scale=1e5):
  """Outputs of order 1 formed by cancelling terms of order 1e5: float32 rounding alone
  moves them by ~1e-2 (as batch norm does in untrained nets)."""
  rng = np.random.default_rng(0)
  model = k.Sequential([k.Input((4,)), k.layers.Dense(8, name="big"),
                        k.layers.Dense(1, name="out")])
  kernel = rng.standard_normal((4, 8)).astype("float32")
  model.get_layer("big").set_weights([kernel * scale, -scale * kernel.sum(0)])
  model.get_layer("out").set_weights([rng.standard_normal((8, 1)).astype("float32"),
                                      np.zeros(1, "float32")])
  return model, (1 + 1e-5 * rng.standard_normal((16, 4))).astype("float32")


def test_ill_conditioned_model_is_judged_against_float64(k, tmp_path, monkeypatch):
  model, x = _ill_conditioned(k)
  result = tf_fairprune.export_tflite(model, str(tmp_path / "m.tflite"), sample_inputs=x,
                                      sparse=False)
  found = result.conditioning
  assert result.max_abs_diff > 1e-3 * max(1.0, float(np.abs(model.predict(x, verbose=0)).max()))
  assert found.judged_by == "float64" and found.ill_conditioned
  assert found.float32_noise > 1e-2  # A few-ulp input change moves the outputs that much.
  assert found.tflite_vs_float64 <= 1e-2 + 2 * max(found.float32_noise, found.keras_vs_float64)
  assert "ill-conditioned" in result.note
  # A file that is wrong beyond the model's own noise is still refused.
  real = export_lib._run  # pylint: disable=protected-access

  def off(*args):
    got = real(*args)
    return got._replace(diff=got.diff + 50.0, outputs=[o + 50.0 for o in got.outputs])
  monkeypatch.setattr(export_lib, "_run", off)
  with pytest.raises(RuntimeError, match="float64.*Nothing was written"):
    tf_fairprune.export_tflite(model, str(tmp_path / "n.tflite"), sample_inputs=x,
                               sparse=False)
  assert not (tmp_path / "n.tflite").exists()


def test_well_conditioned_model_is_judged_against_keras(k, tmp_path):
  model = k.Sequential([k.Input((4,)), k.layers.Dense(8, activation="relu"), k.layers.Dense(2)])
  result = tf_fairprune.export_tflite(model, str(tmp_path / "m.tflite"), num_samples=4)
  assert result.conditioning.judged_by == "keras"
  assert result.conditioning.float32_noise < 1e-4 and not result.conditioning.ill_conditioned
  assert result.conditioning.keras_vs_float64 is None  # Not needed, not run.


def _token_model(k):
  inp = k.Input((6,), dtype="int32")
  h = k.layers.GlobalAveragePooling1D()(k.layers.Embedding(64, 16, name="emb")(inp))
  return k.Model(inp, k.layers.Dense(2, name="out")(k.layers.Dense(32, name="hid")(h)))


def test_an_embedding_table_is_said_to_be_stored_dense(k, tmp_path):
  ids = np.random.default_rng(0).integers(0, 64, (8, 6))
  ranked = tf_fairprune.fair_prune_wrapper(_token_model(k), 0.8, prune_embeddings=True)
  with pytest.warns(UserWarning, match="buys no file size"):
    result = tf_fairprune.export_tflite(ranked, str(tmp_path / "a.tflite"), sample_inputs=ids)
  table = [t for t in result.dense_stored if t["why"] == "consumer"]
  assert len(table) == 1 and table[0]["read_by"] == ["GATHER"]
  assert table[0]["shape"] == [64, 16] and table[0]["zero_fraction"] > 0.5
  assert "GATHER" in result.note
  # The default leaves the table dense and unwrapped: nothing to warn about, and the
  # pruned tensors (not the table) are at the target.
  default = tf_fairprune.fair_prune_wrapper(_token_model(k), 0.8)
  assert [w.layer.name for w in default.fair_prune_wrappers] == ["hid", "out"]
  with warnings.catch_warnings():
    warnings.simplefilter("error", UserWarning)
    plain = tf_fairprune.export_tflite(default, str(tmp_path / "b.tflite"), sample_inputs=ids)
  assert not [t for t in plain.dense_stored if t["why"] == "consumer"]
  assert plain.pruned_sparsity == pytest.approx(0.8, abs=0.01)
  assert plain.weight_sparsity < 0.5  # Every kernel, the unpruned table included.


def test_pruned_sparsity_counts_the_wrapped_tensors_weight_sparsity_every_kernel(k, tmp_path):
  model = k.Sequential([k.Input((8, 8, 4)), k.layers.DepthwiseConv2D(3, name="dw"),
                        k.layers.Conv2D(16, 1, name="pw"), k.layers.GlobalAveragePooling2D(),
                        k.layers.Dense(4, name="out")])
  pruned = tf_fairprune.fair_prune_wrapper(model, 0.9)
  stripped = tf_fairprune.strip_fair_pruning(pruned)
  x = np.random.default_rng(0).standard_normal((4, 8, 8, 4)).astype("float32")
  for source in (pruned, stripped):
    result = tf_fairprune.export_tflite(source, str(tmp_path / "m.tflite"), sample_inputs=x)
    assert result.pruned_sparsity == pytest.approx(0.9, abs=0.01)
    assert result.weight_sparsity < result.pruned_sparsity  # The depthwise kernel counts.
  assert tf_fairprune.export_tflite(model, str(tmp_path / "d.tflite"),
                                    sample_inputs=x).pruned_sparsity is None
