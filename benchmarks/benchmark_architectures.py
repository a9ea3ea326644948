"""Architecture sweep: which models go wrap → fit → strip → export → save/load, per flavour.

  python benchmarks/benchmark_architectures.py            # the BENCHMARKS.md run
  python benchmarks/benchmark_architectures.py --models=vit,token_transformer --out=FILE.md

For every model and Keras flavour (Keras 3, tf_keras) it records: the wrapped layer count,
one `fit` epoch (two steps), whether the stripped model's outputs equal the wrapped
model's (max abs difference), the checked TFLite export (max abs difference; file size
against the dense file — the same model exported with `sparse=False`), the zero
fractions the export reports (over the pruned tensors and over every kernel), the pruned
tensors the file stores dense (an Embedding table, read by GATHER), and whether a
`.keras` file of the wrapped model loads with equal outputs. TFMOT's column runs
`prune_low_magnitude` (every layer at the target, `ConstantSparsity(frequency=1)`: with
the default frequency of 100 steps TFMOT prunes nothing in a short run) → fit →
`strip_pruning` on the tf_keras model and exports it the same way: its file against the
dense file, and ours against TFMOT's. Tiny inputs and widths (keras.applications with
weights=None), default arguments (global ranking, `prune_embeddings=False`): it checks
paths and file sizes, not accuracy. Not part of CI (about half an hour on 2 cores).
Writes the section "architectures" of BENCHMARKS.md.
"""

import argparse
import os
import sys
import tempfile
import time
import traceback
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tf_keras  # pylint: disable=g-import-not-at-top

import bench_utils  # pylint: disable=g-import-not-at-top
import tf_fairprune  # pylint: disable=g-import-not-at-top
from tf_fairprune import flavours  # pylint: disable=g-import-not-at-top
from tf_fairprune._compat import tfmot  # pylint: disable=g-import-not-at-top

SPARSITY = 0.9


def mlp(k):
  return k.Sequential([k.Input((16,)), k.layers.Dense(32, activation="relu"), k.layers.Dense(4)])


def cnn(k):
  return k.Sequential([k.Input((32, 32, 3)), k.layers.Conv2D(8, 3, activation="relu"),
                       k.layers.MaxPooling2D(), k.layers.Conv2D(16, 3, activation="relu"),
                       k.layers.GlobalAveragePooling2D(), k.layers.Dense(4)])


def mobilenet_v2(k):
  return k.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35,
                                    classes=4)


def mobilenet_v3_small(k):
  return k.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3), alpha=0.75,
                                         minimalistic=False, classes=4,
                                         include_preprocessing=False)


def transformer(k):
  inp = k.Input((6, 16))
  a = k.layers.MultiHeadAttention(num_heads=2, key_dim=8)(inp, inp)
  h = k.layers.LayerNormalization()(k.layers.Add()([inp, a]))
  f = k.layers.Dense(16)(k.layers.Dense(32, activation="relu")(h))
  h = k.layers.LayerNormalization()(k.layers.Add()([h, f]))
  return k.Model(inp, k.layers.Dense(4)(k.layers.GlobalAveragePooling1D()(h)))


def lstm(k):
  return k.Sequential([k.Input((6, 16)), k.layers.LSTM(16), k.layers.Dense(4)])


def token_ids(k):
  inp = k.Input((6,), dtype="int32")
  h = k.layers.GlobalAveragePooling1D()(k.layers.Embedding(50, 16)(inp))
  return k.Model(inp, k.layers.Dense(4)(h))


def multi_output(k):
  """Two heads of different shapes (4 logits, 1 regression value)."""
  inp = k.Input((16,))
  h = k.layers.Dense(32, activation="relu")(inp)
  return k.Model(inp, [k.layers.Dense(4, name="cls")(h), k.layers.Dense(1, name="aux")(h)])


_POSITION_CLASSES = {}


def _position_embedding(k):
  """A ViT's learned position embedding: one weight, registered with nothing to prune
  (the remedy the library's error names)."""
  if k not in _POSITION_CLASSES:
    @k.saving.register_keras_serializable(package=f"benchmark_architectures_{k.__name__}")
    class PositionEmbedding(k.layers.Layer):

      def build(self, input_shape):
        self.position = self.add_weight(name="position", shape=(1,) + tuple(input_shape[1:]),
                                        initializer="random_normal")

      def call(self, x):
        return x + self.position
    tf_fairprune.register_prunable_layer(PositionEmbedding, [])
    _POSITION_CLASSES[k] = PositionEmbedding
  return _POSITION_CLASSES[k]


def vit(k):
  """A small vision transformer: 4×4 patches of a 16×16 image, a position embedding, two
  attention blocks."""
  inp = k.Input((16, 16, 3))
  h = k.layers.Reshape((16, 32))(k.layers.Conv2D(32, 4, strides=4, name="patches")(inp))
  h = _position_embedding(k)(name="position")(h)
  for i in range(2):
    a = k.layers.MultiHeadAttention(num_heads=2, key_dim=16, name=f"attention{i}")(h, h)
    h = k.layers.LayerNormalization()(k.layers.Add()([h, a]))
    f = k.layers.Dense(32, name=f"mlp_out{i}")(
        k.layers.Dense(64, activation="gelu", name=f"mlp_in{i}")(h))
    h = k.layers.LayerNormalization()(k.layers.Add()([h, f]))
  return k.Model(inp, k.layers.Dense(4)(k.layers.GlobalAveragePooling1D()(h)))


VOCAB = 500


def token_transformer(k):
  """Token ids → Embedding(500, 32) → one attention block → logits."""
  inp = k.Input((12,), dtype="int32")
  h = k.layers.Embedding(VOCAB, 32, name="embedding")(inp)
  a = k.layers.MultiHeadAttention(num_heads=2, key_dim=16, name="attention")(h, h)
  h = k.layers.LayerNormalization()(k.layers.Add()([h, a]))
  f = k.layers.Dense(32, name="ffn_out")(k.layers.Dense(64, activation="relu", name="ffn_in")(h))
  h = k.layers.LayerNormalization()(k.layers.Add()([h, f]))
  return k.Model(inp, k.layers.Dense(4)(k.layers.GlobalAveragePooling1D()(h)))


def lstm_classifier(k):
  inp = k.Input((12,), dtype="int32")
  h = k.layers.LSTM(32)(k.layers.Embedding(VOCAB, 32, name="embedding")(inp))
  return k.Model(inp, k.layers.Dense(4)(h))


def gru_classifier(k):
  inp = k.Input((12,), dtype="int32")
  h = k.layers.GRU(32)(k.layers.Embedding(VOCAB, 32, name="embedding")(inp))
  return k.Model(inp, k.layers.Dense(4)(h))


def keyword_spotter(k):
  """Conv1D over 49 frames of 10 MFCCs (a keyword-spotting shape)."""
  layers = [k.Input((49, 10))]
  for filters, stride in ((32, 1), (32, 2), (64, 2)):
    layers += [k.layers.Conv1D(filters, 3, strides=stride, padding="same"),
               k.layers.BatchNormalization(), k.layers.ReLU()]
  return k.Sequential(layers + [k.layers.GlobalAveragePooling1D(), k.layers.Dense(4)])


def subclassed(k):
  """A subclass of the library's FairPruneModel with wrapped layers (README recipe);
  TFMOT cannot prune a subclassed model."""
  base = (tf_fairprune.keras3.FairPruneModel if k is flavours.keras3() else
          tf_fairprune.FairPruneModel)

  class Net(base):

    def __init__(self):
      super().__init__(target_sparsity=SPARSITY)
      self.hidden = tf_fairprune.FairPruneWrapper(k.layers.Dense(64, activation="relu"))
      self.out = tf_fairprune.FairPruneWrapper(k.layers.Dense(4))

    def call(self, x):
      return self.out(self.hidden(x))
  model = Net()
  model(np.zeros((1, 16), "float32"))
  return model


MODELS = {f.__name__: f for f in (mlp, cnn, mobilenet_v2, mobilenet_v3_small, transformer,
                                  lstm, token_ids, multi_output, vit, token_transformer,
                                  lstm_classifier, gru_classifier, keyword_spotter, subclassed)}
RNN_MODELS = ("lstm", "lstm_classifier", "gru_classifier")


def _inputs(name, k, n=16):
  rng = np.random.default_rng(0)
  if name == "subclassed":
    return rng.standard_normal((n, 16)).astype("float32")
  t = MODELS[name](k).inputs[0] if name != "subclassed" else None
  shape = (n,) + tuple(t.shape[1:])
  if "int" in str(t.dtype):
    return rng.integers(0, 50, shape).astype("int32")
  return rng.standard_normal(shape).astype("float32")


def _targets(model, n=16):
  y = np.arange(n) % 4
  return [y, np.zeros((n, 1), "float32")] if len(getattr(model, "outputs", None) or [0]) > 1 \
      else y


def _loss(k, model):
  ce = k.losses.SparseCategoricalCrossentropy(from_logits=True)
  return [ce, "mse"] if len(getattr(model, "outputs", None) or [0]) > 1 else ce


def _max_diff(a, b):
  a = a if isinstance(a, (list, tuple)) else [a]
  b = b if isinstance(b, (list, tuple)) else [b]
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b))


def _short(err):
  return f"fails: {type(err).__name__}: {str(err).splitlines()[0][:70]}"


def _export(model, path, x, rnn, sparse=True):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return tf_fairprune.export_tflite(model, path, sample_inputs=x, rnn=rnn, sparse=sparse)


def run_fairprune(name, k, tmp):
  """One row of tf_fairprune on flavour `k`: each stage's cell, and the file sizes."""
  row = {}
  x = _inputs(name, k)
  rnn = "unroll" if name in RNN_MODELS else None
  try:
    if name == "subclassed":
      dense = pruned = MODELS[name](k)
    else:
      dense = MODELS[name](k)
      pruned = tf_fairprune.fair_prune_wrapper(dense, target_sparsity=SPARSITY)
    row["wrap"] = f"{len(pruned.fair_prune_wrappers)} layers"
  except Exception as err:  # pylint: disable=broad-except
    row["wrap"] = _short(err)
    return row
  try:
    pruned.compile(optimizer=k.optimizers.SGD(0.01), loss=_loss(k, dense))
    pruned.fit(x, _targets(dense), batch_size=8, epochs=1, verbose=0)
    row["fit"] = "ok"
  except Exception as err:  # pylint: disable=broad-except
    row["fit"] = _short(err)
  try:
    expected = pruned.predict(x, verbose=0)
    stripped = tf_fairprune.strip_fair_pruning(pruned)
    row["strip equal"] = f"{_max_diff(stripped.predict(x, verbose=0), expected):.1e}"
  except Exception as err:  # pylint: disable=broad-except
    row["strip equal"] = _short(err)
    return row
  try:
    sparse = _export(stripped, os.path.join(tmp, "s.tflite"), x, rnn)
    full = _export(stripped, os.path.join(tmp, "d.tflite"), x, rnn, sparse=False)
    row["export diff"] = f"{sparse.max_abs_diff:.1e}"
    row["bytes"], row["dense bytes"] = sparse.size_bytes, full.size_bytes
    row["file / dense"] = f"{sparse.size_bytes / full.size_bytes:.2f}x"
    row["pruned / all kernels"] = (f"{sparse.pruned_sparsity:.3f} / {sparse.weight_sparsity:.3f}"
                                   if sparse.pruned_sparsity is not None else
                                   f"— / {sparse.weight_sparsity:.3f}")
    table = [t for t in sparse.dense_stored if t["why"] == "consumer"]
    row["stored dense although pruned"] = ", ".join(
        f"{t['shape']} ({', '.join(t['read_by'])}, {t['zero_fraction']:.0%} zeros)"
        for t in table) or "none"
  except Exception as err:  # pylint: disable=broad-except
    row["export diff"] = _short(err)
  try:
    if name == "subclassed":
      row["save-load"] = "n/a (subclassed)"
    else:
      path = os.path.join(tmp, "m.keras")
      pruned.save(path)
      loaded = k.models.load_model(path)
      row["save-load"] = f"{_max_diff(loaded.predict(x, verbose=0), expected):.1e}"
  except Exception as err:  # pylint: disable=broad-except
    row["save-load"] = _short(err)
  return row


def run_tfmot(name, tmp):
  """TFMOT's prune_low_magnitude → fit → strip_pruning on the tf_keras model, exported:
  (cell, file bytes or None)."""
  if name == "subclassed":
    return "n/a (cannot prune a subclassed model)", None
  dense = MODELS[name](tf_keras)
  x = _inputs(name, tf_keras)
  try:
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        dense, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(SPARSITY, 0,
                                                                      frequency=1))
    pruned.compile(optimizer=tf_keras.optimizers.SGD(0.01), loss=_loss(tf_keras, dense))
    pruned.fit(x, _targets(dense), batch_size=8, epochs=1, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
  except Exception as err:  # pylint: disable=broad-except
    return _short(err), None
  try:
    rnn = "unroll" if name in RNN_MODELS else None
    sparse = _export(stripped, os.path.join(tmp, "t.tflite"), x, rnn)
    full = _export(stripped, os.path.join(tmp, "td.tflite"), x, rnn, sparse=False)
    return (f"{sparse.size_bytes / full.size_bytes:.2f}x dense, all kernels "
            f"{sparse.weight_sparsity:.3f}"), sparse.size_bytes
  except Exception as err:  # pylint: disable=broad-except
    return "pruned; export " + _short(err), None


COLUMNS = ["wrap", "fit", "strip equal", "export diff", "file / dense", "pruned / all kernels",
           "stored dense although pruned", "save-load"]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default=",".join(MODELS))
  parser.add_argument("--out", default=None, help="Write the table to this file instead "
                      "of BENCHMARKS.md.")
  parser.add_argument("--verbose", action="store_true", help="Print tracebacks.")
  args = parser.parse_args()
  keras3 = flavours.keras3()
  lines = ["| model | flavour | " + " | ".join(COLUMNS) +
           " | TFMOT (tf_keras) | ours / TFMOT file |",
           "|---" * (len(COLUMNS) + 4) + "|"]
  start_all = time.time()
  for name in args.models.split(","):
    with tempfile.TemporaryDirectory() as tmp:
      tf_keras.backend.clear_session()
      tfmot_cell, tfmot_bytes = run_tfmot(name, tmp)
    for k in ([keras3] if keras3 is not None else []) + [tf_keras]:
      start = time.time()
      tf_keras.backend.clear_session()
      with tempfile.TemporaryDirectory() as tmp:
        try:
          row = run_fairprune(name, k, tmp)
        except Exception:  # pylint: disable=broad-except
          row = {"wrap": "crashed"}
          if args.verbose:
            traceback.print_exc()
      flavour = "Keras 3" if k is keras3 else "tf_keras"
      cells = [str(row.get(c, "—")) for c in COLUMNS]
      if k is tf_keras:
        versus = (f"{row['bytes'] / tfmot_bytes:.2f}x" if tfmot_bytes and "bytes" in row
                  else "—")
        tail = f" | {tfmot_cell} | {versus} |"
      else:
        tail = " | n/a (Keras 2 only) | — |"
      lines.append(f"| {name} | {flavour} | " + " | ".join(cells) + tail)
      print(lines[-1], f"({time.time() - start:.0f} s)", flush=True)
  table = "\n".join(lines)
  text = "\n".join([
      "## Architecture sweep", "",
      "Command: `python benchmarks/benchmark_architectures.py` "
      f"({time.time() - start_all:.0f} s). Machine: {bench_utils.machine()}, shared with "
      f"other jobs. Every model at {SPARSITY:.0%} target sparsity with the defaults "
      "(global ranking, layer floor 0.1, `prune_embeddings=False`), one epoch of two steps "
      "on random inputs (paths and file sizes, not accuracy). *file / dense*: the checked "
      "sparse TFLite file against the same model exported dense; *pruned / all kernels*: "
      "the zero fraction over the pruned (wrapped) tensors and over every kernel of the "
      "model (depthwise kernels and embedding tables are not pruned by default); *stored "
      "dense although pruned*: tensors with zeros that the file cannot hold sparse. TFMOT: "
      "`prune_low_magnitude` (every layer, embedding tables included, at the target) on "
      "the tf_keras model, exported the same way; *ours / TFMOT file*: the tf_keras "
      "row's file against TFMOT's. RNNs are exported with `rnn='unroll'`; the ViT's "
      "position embedding is registered with nothing to prune "
      "(`register_prunable_layer(cls, [])`).", "", table])
  print(table)
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      f.write(text + "\n")
  else:
    bench_utils.write_section("architectures", text)


if __name__ == "__main__":
  main()
