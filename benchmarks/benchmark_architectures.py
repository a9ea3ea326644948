"""Architecture sweep: which models go wrap → fit → strip → export → save/load, per flavour.

  python benchmarks/benchmark_architectures.py [--models=mlp,transformer,...] [--out=FILE.md]

For every model and Keras flavour (Keras 3, tf_keras) it records: the wrapped layer count,
one `fit` step, whether the stripped model's outputs equal the wrapped model's (max abs
difference), the checked TFLite export (max abs difference, file size relative to the
dense file), and whether a `.keras` file of the wrapped model loads with equal outputs.
TFMOT's column runs `prune_low_magnitude` → fit → `strip_pruning` on the tf_keras model.
Tiny inputs and widths (keras.applications with weights=None): it checks paths, not
accuracy. Not part of CI (a few minutes on 2 cores). Prints a Markdown table.
"""

import argparse
import os
import tempfile
import time
import traceback
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tf_keras  # pylint: disable=g-import-not-at-top

import tf_fairprune  # pylint: disable=g-import-not-at-top
from tf_fairprune import flavours  # pylint: disable=g-import-not-at-top
from tf_fairprune._compat import tfmot  # pylint: disable=g-import-not-at-top


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
  inp = k.Input((16,))
  h = k.layers.Dense(32, activation="relu")(inp)
  return k.Model(inp, [k.layers.Dense(4, name="cls")(h), k.layers.Dense(1, name="aux")(h)])


MODELS = {f.__name__: f for f in (mlp, cnn, mobilenet_v2, mobilenet_v3_small, transformer,
                                  lstm, token_ids, multi_output)}


def _inputs(model, n=8):
  rng = np.random.default_rng(0)
  t = model.inputs[0]
  shape = (n,) + tuple(t.shape[1:])
  if "int" in str(t.dtype):
    return rng.integers(0, 50, shape).astype("int32")
  return rng.standard_normal(shape).astype("float32")


def _targets(model, n=8):
  y = np.arange(n) % 4
  return [y, np.zeros((n, 1), "float32")] if len(model.outputs) > 1 else y


def _loss(k, model):
  ce = k.losses.SparseCategoricalCrossentropy(from_logits=True)
  return [ce, "mse"] if len(model.outputs) > 1 else ce


def _max_diff(a, b):
  a = a if isinstance(a, (list, tuple)) else [a]
  b = b if isinstance(b, (list, tuple)) else [b]
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b))


def _short(err):
  return f"fails: {type(err).__name__}: {str(err).splitlines()[0][:70]}"


def run_fairprune(name, k, tmp):
  """One row of tf_fairprune on flavour `k`; each stage's cell."""
  row = {}
  dense = MODELS[name](k)
  x = _inputs(dense)
  rnn = "unroll" if name == "lstm" else None
  try:
    pruned = tf_fairprune.fair_prune_wrapper(dense, target_sparsity=0.8)
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
    stripped = tf_fairprune.strip_fair_pruning(pruned)
    row["strip equal"] = f"{_max_diff(stripped.predict(x, verbose=0), pruned.predict(x, verbose=0)):.1e}"
  except Exception as err:  # pylint: disable=broad-except
    row["strip equal"] = _short(err)
    return row
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      sparse = tf_fairprune.export_tflite(stripped, os.path.join(tmp, "s.tflite"),
                                          sample_inputs=x, rnn=rnn)
      full = tf_fairprune.export_tflite(dense, os.path.join(tmp, "d.tflite"), sample_inputs=x,
                                        sparse=False, rnn=rnn)
    row["export diff / size"] = (f"{sparse.max_abs_diff:.1e} / "
                                 f"{sparse.size_bytes / full.size_bytes:.2f}x")
  except Exception as err:  # pylint: disable=broad-except
    row["export diff / size"] = _short(err)
  try:
    path = os.path.join(tmp, "m.keras")
    pruned.save(path)
    loaded = k.models.load_model(path)
    row["save-load"] = f"{_max_diff(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0)):.1e}"
  except Exception as err:  # pylint: disable=broad-except
    row["save-load"] = _short(err)
  return row


def run_tfmot(name):
  """TFMOT's prune_low_magnitude → fit → strip_pruning on the tf_keras model."""
  dense = MODELS[name](tf_keras)
  x = _inputs(dense)
  try:
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        dense, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.8, 0))
    pruned.compile(optimizer=tf_keras.optimizers.SGD(0.01), loss=_loss(tf_keras, dense))
    pruned.fit(x, _targets(dense), batch_size=8, epochs=1, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    return f"ok ({_max_diff(stripped.predict(x, verbose=0), pruned.predict(x, verbose=0)):.0e})"
  except Exception as err:  # pylint: disable=broad-except
    return _short(err)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default=",".join(MODELS))
  parser.add_argument("--out", default=None, help="Also write the table to this file.")
  parser.add_argument("--verbose", action="store_true", help="Print tracebacks.")
  args = parser.parse_args()
  keras3 = flavours.keras3()
  columns = ["wrap", "fit", "strip equal", "export diff / size", "save-load"]
  lines = ["| model | flavour | " + " | ".join(columns) + " | TFMOT (tf_keras) |",
           "|---" * (len(columns) + 3) + "|"]
  for name in args.models.split(","):
    tfmot_cell = run_tfmot(name)
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
      cells = [row.get(c, "—") for c in columns]
      lines.append(f"| {name} | {flavour} | " + " | ".join(cells) +
                   f" | {tfmot_cell if k is tf_keras else 'n/a (Keras 2 only)'} |")
      print(lines[-1], f"({time.time() - start:.0f} s)", flush=True)
  table = "\n".join(lines)
  print(table)
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      f.write(table + "\n")


if __name__ == "__main__":
  main()
