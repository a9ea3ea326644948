r"""Pruning embedding tables or not: which default serves text models.

  python benchmarks/benchmark_embeddings.py            # the BENCHMARKS.md run
  python benchmarks/benchmark_embeddings.py --quick    # seconds-scale smoke run
  python benchmarks/benchmark_embeddings.py --render_only

TFLite stores an Embedding table dense whatever its zeros (its consumer, GATHER, reads
no sparse tensor), and global ranking put most of a 90% target into that very table
(1–3% of it kept). `fair_prune_wrapper(prune_embeddings=...)` chooses: `True` ranks the
table with every other tensor (the behaviour before), `"layer"` prunes it to the target
on its own, outside the global ranking, `False` leaves it dense and unwrapped (the other
tensors carry the target). This script measures the three, and TFMOT's
`prune_low_magnitude` (every layer at the target, the table too), on three text
classifiers — a token transformer (one attention block), an LSTM and a GRU, each
Embedding(vocab, 64) first — for test accuracy and the exported file's size against the
dense file.

Data (REAL text, no download): the one-line descriptions of the Debian packages this
machine's apt lists know (`apt-cache dumpavail`), labelled by their archive section
(games, science, sound, graphics, net, admin); duplicates dropped; lower-cased word
tokens, a vocabulary of the training split's most frequent words. Needs `apt-get update`
to have run once. Rows: benchmarks/results/embeddings.jsonl (resumable); section
"embeddings" of BENCHMARKS.md.
"""

import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings

from absl import app
from absl import flags
from absl import logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # pylint: disable=g-import-not-at-top
import tf_keras  # pylint: disable=g-import-not-at-top

import bench_utils  # pylint: disable=g-import-not-at-top
import pipeline  # pylint: disable=g-import-not-at-top
import tf_fairprune  # pylint: disable=g-import-not-at-top
from tf_fairprune._compat import tfmot  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["transformer", "lstm", "gru"], "Text classifiers.")
flags.DEFINE_list("options", ["true", "layer", "false", "tfmot"],
                  "prune_embeddings settings (true, layer, false) and/or tfmot.")
flags.DEFINE_float("sparsity", 0.9, "Target sparsity.")
flags.DEFINE_integer("seeds", 2, "Seeds first_seed..N-1.")
flags.DEFINE_integer("first_seed", 0, "The first seed.")
flags.DEFINE_integer("dense_epochs", 6, "Dense training epochs (Adam 1e-3).")
flags.DEFINE_integer("epochs", 3, "Pruning epochs (the mask at the target from step 1).")
flags.DEFINE_integer("vocab", 4000, "Vocabulary size (most frequent training words).")
flags.DEFINE_integer("length", 16, "Tokens per description (padded / truncated).")
flags.DEFINE_enum("keras", "2", ["2", "3"], "Keras flavour (TFMOT runs on 2 only).")
flags.DEFINE_bool("quick", False, "A smoke run, not written to BENCHMARKS.md.")
flags.DEFINE_bool("render_only", False, "Only re-render BENCHMARKS.md from the rows.")
flags.DEFINE_bool("write_docs", True, "Render into BENCHMARKS.md.")
flags.DEFINE_string("embeddings_output",
                    os.path.join(bench_utils.ROOT, "benchmarks", "results", "embeddings.jsonl"),
                    "Rows (JSON lines).")

SECTIONS = ("games", "science", "sound", "graphics", "net", "admin")
OPTIONS = {"true": True, "layer": "layer", "false": False}
LABELS = {"true": "prune_embeddings=True (ranked with the rest; before)",
          "layer": "prune_embeddings='layer'", "false": "prune_embeddings=False (default)",
          "tfmot": "TFMOT prune_low_magnitude"}


def load_descriptions(seed):
  """(train, test) of (token ids [n, length], labels [n]); 80/20 split by `seed`."""
  text = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True,
                        check=True).stdout
  rows = {}
  for block in text.split("\n\n"):
    fields = dict(re.findall(r"^(Description|Section): (.*)$", block, re.M))
    section = fields.get("Section", "").split("/")[-1]
    if section in SECTIONS and fields.get("Description"):
      rows.setdefault(fields["Description"].strip().lower(), SECTIONS.index(section))
  if not rows:
    raise RuntimeError("apt-cache dumpavail lists no package of the sections: run "
                       "`apt-get update` once.")
  texts, labels = list(rows), np.array(list(rows.values()))
  order = np.random.default_rng(seed).permutation(len(texts))
  cut = int(0.8 * len(order))
  words = [re.findall(r"[a-z0-9]+", t) for t in texts]
  counts = collections.Counter(w for i in order[:cut] for w in words[i])
  vocab = {w: i + 2 for i, (w, _) in enumerate(counts.most_common(FLAGS.vocab - 2))}
  ids = np.zeros((len(texts), FLAGS.length), "int32")  # 0: padding, 1: unknown word.
  for i, ws in enumerate(words):
    row = [vocab.get(w, 1) for w in ws][:FLAGS.length]
    ids[i, :len(row)] = row
  return (ids[order[:cut]], labels[order[:cut]]), (ids[order[cut:]], labels[order[cut:]])


def build(name, k):
  inp = k.Input((FLAGS.length,), dtype="int32")
  h = k.layers.Embedding(FLAGS.vocab, 64, name="embedding")(inp)
  if name == "transformer":
    a = k.layers.MultiHeadAttention(num_heads=2, key_dim=32, name="attention")(h, h)
    h = k.layers.LayerNormalization()(k.layers.Add()([h, a]))
    f = k.layers.Dense(64, name="ffn_out")(k.layers.Dense(128, activation="relu",
                                                          name="ffn_in")(h))
    h = k.layers.GlobalAveragePooling1D()(k.layers.LayerNormalization()(k.layers.Add()([h, f])))
  else:
    h = {"lstm": k.layers.LSTM, "gru": k.layers.GRU}[name](64, name=name)(h)
  return k.Model(inp, k.layers.Dense(len(SECTIONS), name="logits")(h))


def _loss(k):
  return k.losses.SparseCategoricalCrossentropy(from_logits=True)


def _accuracy(model, split):
  return float(np.mean(model.predict(split[0], batch_size=512, verbose=0).argmax(-1) == split[1]))


def _size(model, test, name, sparse, tmp):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    result = tf_fairprune.export_tflite(model, os.path.join(tmp, "m.tflite"), sparse=sparse,
                                        sample_inputs=test[0][:8],
                                        rnn="unroll" if name != "transformer" else None)
  return result


def prune(option, dense, train, k):
  if option == "tfmot":
    model = tf_keras.models.clone_model(dense)
    model.set_weights(dense.get_weights())
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        model, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(FLAGS.sparsity, 0, frequency=1))
    pruned.compile(tf_keras.optimizers.Adam(1e-3), _loss(tf_keras))
    pruned.fit(*train, batch_size=64, epochs=FLAGS.epochs, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    return tfmot.sparsity.keras.strip_pruning(pruned)
  pruned = tf_fairprune.fair_prune_wrapper(dense, FLAGS.sparsity,
                                           prune_embeddings=OPTIONS[option])
  pruned.compile(optimizer=k.optimizers.Adam(1e-3), loss=_loss(k))
  pruned.fit(*train, batch_size=64, epochs=FLAGS.epochs, verbose=0)
  return tf_fairprune.strip_fair_pruning(pruned)


def run(path):
  k = pipeline.keras_module(FLAGS.keras)
  done = set()
  if os.path.exists(path):
    done = {(r["model"], r["seed"], r["option"]) for r in map(json.loads, open(path))}
  for seed in range(FLAGS.first_seed, FLAGS.seeds):
    train, test = load_descriptions(seed)
    for name in FLAGS.models:
      todo = [o for o in FLAGS.options if (name, seed, o) not in done]
      if not todo:
        continue
      k.utils.set_random_seed(seed)
      dense = build(name, k)
      dense.compile(k.optimizers.Adam(1e-3), _loss(k))
      dense.fit(*train, batch_size=64, epochs=FLAGS.dense_epochs, verbose=0)
      with tempfile.TemporaryDirectory() as tmp:
        dense_file = _size(dense, test, name, False, tmp)
        common = dict(model=name, seed=seed, keras=FLAGS.keras, sparsity=FLAGS.sparsity,
                      train_rows=len(train[1]), test_rows=len(test[1]), vocab=FLAGS.vocab,
                      epochs=FLAGS.epochs, dense_epochs=FLAGS.dense_epochs,
                      dense_accuracy=_accuracy(dense, test), dense_bytes=dense_file.size_bytes)
        if (name, seed, "dense") not in done:
          _append(path, dict(common, option="dense", accuracy=common["dense_accuracy"],
                             bytes=dense_file.size_bytes))
        for option in todo:
          if option == "dense":
            continue
          if option == "tfmot" and FLAGS.keras != "2":
            continue
          start = time.perf_counter()
          k.utils.set_random_seed(seed)
          model = prune(option, dense, train, k)
          exported = _size(model, test, name, True, tmp)
          table = [t for t in exported.dense_stored if t["why"] == "consumer"]
          _append(path, dict(common, option=option, accuracy=_accuracy(model, test),
                             bytes=exported.size_bytes,
                             weight_sparsity=exported.weight_sparsity,
                             pruned_sparsity=exported.pruned_sparsity,
                             dense_stored_zero_fraction=(table[0]["zero_fraction"] if table
                                                         else 0.0),
                             seconds=time.perf_counter() - start))
          logging.info("%s seed %d %s: accuracy %.4f, file %.3fx dense", name, seed, option,
                       _accuracy(model, test), exported.size_bytes / dense_file.size_bytes)


def _append(path, row):
  with open(path, "a", encoding="utf-8") as f:
    f.write(json.dumps(row) + "\n")


def render(rows, command="python benchmarks/benchmark_embeddings.py"):
  unique = {(r["model"], r["seed"], r["option"], r["keras"]): r for r in rows}
  rows = list(unique.values())
  first = rows[0]
  out = ["## Embedding tables: pruned or not", "",
         f"Command: `{command}` (rows in `benchmarks/results/embeddings.jsonl`). Machine: "
         f"{bench_utils.machine()}, shared with other jobs. Data: **real text** — the "
         "one-line descriptions of Debian packages (`apt-cache dumpavail`), labelled by "
         f"archive section ({', '.join(SECTIONS)}); {first['train_rows']:,} training and "
         f"{first['test_rows']:,} test descriptions (80/20 by seed), vocabulary "
         f"{first['vocab']:,}, 16 tokens. Models: Embedding({first['vocab']}, 64) then one "
         "attention block (transformer), LSTM(64) or GRU(64), then the logits; dense "
         f"{first['dense_epochs']} epochs, then {first['epochs']} pruning epochs at "
         f"{first['sparsity']:.0%} (Adam 1e-3 on the weights; BiP, no fairness; TFMOT: "
         "every layer at the target, the table too, `ConstantSparsity(frequency=1)`: with its "
         "default frequency of 100 steps TFMOT had not pruned at all after a few dozen "
         "steps). *file*: the checked sparse TFLite "
         "file (`export_tflite`, RNNs unrolled) against the dense model's file; *table "
         "zeros*: the zero fraction of the embedding table, which the file stores dense; "
         "*pruned*: the zero fraction over the pruned tensors; *all kernels*: over every "
         "kernel, the table included. Test accuracy in points, mean ± std over seeds "
         f"{sorted({r['seed'] for r in rows})}; "
         f"{'tf_keras' if first['keras'] == '2' else 'Keras 3'}."]
  for model in FLAGS.models if FLAGS.models else sorted({r["model"] for r in rows}):
    model_rows = [r for r in rows if r["model"] == model]
    if not model_rows:
      continue
    dense = [r["accuracy"] for r in model_rows if r["option"] == "dense"]
    out += ["", f"### {model}", "", f"Dense: {bench_utils.fmt_mean_std(dense, 100)}.", ""]
    body = []
    for option in ("true", "layer", "false", "tfmot"):
      cell = [r for r in model_rows if r["option"] == option]
      if not cell:
        continue
      body.append([LABELS[option], bench_utils.fmt_mean_std([r["accuracy"] for r in cell], 100),
                   f"{np.mean([r['bytes'] / r['dense_bytes'] for r in cell]):.3f}x",
                   f"{np.mean([r['dense_stored_zero_fraction'] for r in cell]):.2f}",
                   f"{np.mean([r['pruned_sparsity'] or 0 for r in cell]):.3f}"
                   if option != "tfmot" else "—",
                   f"{np.mean([r['weight_sparsity'] for r in cell]):.3f}"])
    out.append(bench_utils.table(["pruning", "accuracy", "file", "table zeros", "pruned",
                                  "all kernels"], body))
  return "\n".join(out).rstrip()


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  path = FLAGS.embeddings_output
  if FLAGS.quick:
    FLAGS.models, FLAGS.seeds, FLAGS.dense_epochs, FLAGS.epochs = ["transformer"], 1, 1, 1
    FLAGS.write_docs = False
    if FLAGS["embeddings_output"].using_default_value:
      path = os.path.join(tempfile.mkdtemp(), "embeddings.jsonl")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if not FLAGS.render_only:
    run(path)
  rows = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
  text = render(rows)
  if FLAGS.write_docs:
    bench_utils.write_section("embeddings", text)
  print(text)


if __name__ == "__main__":
  app.run(main)
