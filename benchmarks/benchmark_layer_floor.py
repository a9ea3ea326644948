r"""Layer floor vs pure global ranking (issue 19, item 8) on trained deep nets.

  python benchmarks/benchmark_layer_floor.py             # the BENCHMARKS.md run
  python benchmarks/benchmark_layer_floor.py --quick     # seconds-scale smoke run
  python benchmarks/benchmark_layer_floor.py --render_only

Global ranking of BiP's scores used to empty whole layers of deep networks ("layer
collapse"); `fair_prune_wrapper(layer_floor=0.1)` (the default) makes every wrapped
tensor keep at least max(1, ceil(0.1·(1−s)·n)) of its n weights. This script measures
what the floor does on TRAINED models: per seed it trains a dense ResNet-10 and a
MobileNetV2 (small widths, 28×28 inputs) on colored Fashion-MNIST (SEMI-SYNTHETIC
colour groups; a subsample of the training rows), then prunes each with BiP (no
fairness) and BiFP (its default constraint: excess degradation ≤ 1 pt per group,
Lagrangian, steered on the validation split) at each sparsity under three mask scopes:

  - "global, floor 0"   : pure global ranking (the behaviour before the floor),
  - "global, floor 0.1" : the default,
  - "layer"             : every wrapped tensor at the target sparsity (reference),

and variants of the first mask's rescale (floorF-norescale, -uncapped, -capmodel,
-captarget, -capfloor, -capboth: `mask_updater.RESCALE_CAPS`; the default leaves tensors
held at their floor unrescaled and rescales every other tensor as before).

Reports on the TEST split: accuracy, the per-group accuracy gap (performance gap), the
degradation gap and max excess degradation vs the dense model, the number of wrapped
layers whose mask is all zero ("emptied"), and a collapse flag (the most frequent
prediction covers ≥ 99% of the test rows).

Rows: benchmarks/results/layer_floor.jsonl (resumable: finished runs are skipped);
section "layer_floor" of BENCHMARKS.md.
"""

import collections
import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # pylint: disable=g-import-not-at-top

import bench_utils  # pylint: disable=g-import-not-at-top
import pipeline  # pylint: disable=g-import-not-at-top
from tf_fairprune import datasets  # pylint: disable=g-import-not-at-top
from tf_fairprune import mask_updater  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["resnet10", "mobilenet_v2"], "Architectures.")
flags.DEFINE_list("sparsities", ["0.9", "0.95", "0.99"], "Target sparsities.")
flags.DEFINE_list("scopes", ["floor0", "floor0.1"],
                  "Mask scopes: floorF (global ranking with layer_floor=F), floorF-norescale "
                  "(the same with rescale=False), floorF-CAP (the rescale's gain bounded "
                  "by CAP instead of the default: uncapped, capmodel, captarget, capfloor, "
                  "capboth; "
                  "see mask_updater.RESCALE_CAPS) or layer.")
flags.DEFINE_list("methods", ["bip"], "bip (no fairness) and/or bifp.")
flags.DEFINE_integer("seeds", 2, "Seeds first_seed..N-1 (one dense model per model and seed).")
flags.DEFINE_integer("first_seed", 0, "The first seed (to run seeds in separate processes).")
flags.DEFINE_integer("epochs", 2, "Pruning epochs (the mask at the target from step 1).")
flags.DEFINE_integer("dense_epochs", 4, "Dense training epochs (Adam 1e-3).")
flags.DEFINE_integer("batch_size", 64, "Pruning batch size.")
flags.DEFINE_integer("dense_batch_size", 64, "Dense training batch size.")
flags.DEFINE_float("bn_momentum", 0.9, "Batch-norm momentum of the dense models (Keras: "
                   "0.99, too slow for a few hundred steps).")
flags.DEFINE_integer("image_train_size", 3000,
                     "Training rows used (a random subset of the 54,000; validation gets a "
                     "tenth as many).")
flags.DEFINE_integer("test_size", None, "Test rows (default: all 10,000).")
flags.DEFINE_integer("resnet_width", 8, "ResNet-10 first-stage filters (paper: 64).")
flags.DEFINE_float("mobilenet_width", 0.35, "MobileNetV2 width multiplier.")
flags.DEFINE_enum("keras", "2", ["2", "3"], "Keras flavour: 2 (tf_keras) or 3.")
flags.DEFINE_bool("quick", False, "A seconds-scale smoke run (tiny data, one cell each); "
                  "writes to a temporary file and not into BENCHMARKS.md.")
flags.DEFINE_string("note", "", "A paragraph appended to the BENCHMARKS.md section (how the "
                    "run was split, what it left out).")
flags.DEFINE_bool("render_only", False, "Only re-render BENCHMARKS.md from the rows.")
flags.DEFINE_bool("write_docs", True, "Render into BENCHMARKS.md.")
flags.DEFINE_string("layer_floor_output",
                    os.path.join(bench_utils.ROOT, "benchmarks", "results", "layer_floor.jsonl"),
                    "Rows (JSON lines).")

COLLAPSE_SHARE = 0.99
SCOPE_LABELS = {"floor0": "global, floor 0 (pure)",
                "floor0-captarget": "global, floor 0, gain ≤ at target",
                "floor0-uncapped": "global, floor 0, gain uncapped (before)",
                "floor0.1": "global, floor 0.1 (default)",
                "floor0.1-uncapped": "global, floor 0.1, gain uncapped (before)",
                "floor0.1-captarget": "global, floor 0.1, gain ≤ at target",
                "floor0.1-capmodel": "global, floor 0.1, gain ≤ model-wide",
                "floor0.1-capfloor": "global, floor 0.1, floor-held gain 1, others uncapped",
                "floor0.1-capboth": "global, floor 0.1, floor-held gain 1, others ≤ at target",
                "floor0-norescale": "global, floor 0, rescale=False",
                "floor0.1-norescale": "global, floor 0.1, rescale=False", "layer": "layer"}
# Scope option -> mask_updater.RESCALE_CAPS entry (None: the library's default).
CAP_OPTIONS = {"": None, "norescale": None, "uncapped": "none", "capmodel": "model",
               "captarget": "target", "capfloor": "floor", "capboth": "both"}


def scope_args(scope):
  """(method suffix, fair_prune_wrapper kwargs) of a scope name.

  Raises:
    ValueError: For a name that is neither `layer` nor `floorF`.
  """
  if scope == "layer":
    return "_layer", {}
  if scope.startswith("floor"):
    value, _, option = scope[len("floor"):].partition("-")
    if option not in CAP_OPTIONS:
      raise ValueError(f"Unknown scope {scope!r}: floorF or floorF-OPTION, OPTION one of "
                       f"{sorted(o for o in CAP_OPTIONS if o)}.")
    return "", dict({"layer_floor": float(value)},
                    **({"rescale": False} if option == "norescale" else {}))
  raise ValueError(f"Unknown scope {scope!r}: layer or floorF (e.g. floor0.1).")


def scope_cap(scope):
  """The `mask_updater.RESCALE_CAPS` entry a scope prunes with (the default for most)."""
  option = scope.partition("-")[2] if scope.startswith("floor") else ""
  return CAP_OPTIONS[option] or mask_updater.DEFAULT_RESCALE_CAP


def emptied_layers(pruned):
  """Names of the wrapped layers whose masks are all zero, and each layer's density."""
  names, density = [], {}
  for w in pruned.fair_prune_wrappers:
    masks = [np.asarray(m.numpy()) for m in w.mask_variables]
    kept = sum(float(m.sum()) for m in masks)
    density[w.layer.name] = kept / sum(m.size for m in masks)
    if kept == 0:
      names.append(w.layer.name)
  return names, density


def train_dense(data, model_name, k):
  """`pipeline.train_dense`'s model and optimizer (Adam 1e-3), with the batch-norm
  momentum set to --bn_momentum: a few hundred steps are too few for Keras' default
  0.99 moving statistics (the test accuracy of such a model is near chance)."""
  model = pipeline.build_model(data, model_name, _width(model_name), k)
  for layer in model.layers:
    if isinstance(layer, k.layers.BatchNormalization):
      layer.momentum = FLAGS.bn_momentum
  model.compile(k.optimizers.Adam(1e-3), pipeline.loss_for(data, k))
  model.fit(data.train.x, data.train.y, batch_size=FLAGS.dense_batch_size,
            epochs=FLAGS.dense_epochs, verbose=0)
  return model


def _width(model):
  return FLAGS.resnet_width if model == "resnet10" else FLAGS.mobilenet_width


def _apply_quick():
  FLAGS.models, FLAGS.sparsities = ["resnet10"], ["0.99"]
  FLAGS.scopes, FLAGS.methods = ["floor0", "floor0.1"], ["bip"]
  FLAGS.seeds, FLAGS.epochs, FLAGS.dense_epochs = 1, 1, 1
  FLAGS.image_train_size, FLAGS.test_size, FLAGS.resnet_width = 256, 256, 4
  FLAGS.write_docs = False


def run(path):
  k = pipeline.keras_module(FLAGS.keras)
  done = set()
  if os.path.exists(path):
    done = {(r["model"], r["seed"], r["method"], r["scope"], r["target_sparsity"])
            for r in map(json.loads, open(path, encoding="utf-8")) if r["method"] != "dense"}
  for seed in range(FLAGS.first_seed, FLAGS.seeds):
    data = None
    for model_name in FLAGS.models:
      todo = [(m, sc, float(s)) for s in FLAGS.sparsities for sc in FLAGS.scopes
              for m in FLAGS.methods if (model_name, seed, m, sc, float(s)) not in done]
      if not todo:
        continue
      if data is None:
        data = datasets.load_colored_fashion_mnist(
            minority_fraction=0.05, correlation=0.0, train_size=FLAGS.image_train_size,
            test_size=FLAGS.test_size, seed=seed)
      k.utils.set_random_seed(seed)
      start = time.perf_counter()
      dense = train_dense(data, model_name, k)
      dense_seconds = time.perf_counter() - start
      report = pipeline.audit(dense, None, data.test, data)
      share = pipeline.predicted_share(dense, data.test)
      _append(path, dict(_common(data, model_name, seed), method="dense", scope="dense",
                         target_sparsity=0.0, accuracy=report.accuracy,
                         performance_gap=report.gaps["performance_gap"],
                         group_accuracy={g["name"]: g["accuracy"] for g in report.groups},
                         group_size={g["name"]: g["size"] for g in report.groups},
                         top_prediction_share=share, train_seconds=dense_seconds))
      logging.info("%s seed %d dense: accuracy %.4f (%.0f s)", model_name, seed,
                   report.accuracy, dense_seconds)
      for method, scope, sparsity in todo:
        suffix, kwargs = scope_args(scope)
        k.utils.set_random_seed(seed)
        cap = scope_cap(scope)
        # fair_prune_wrapper(rescale=CAP) rescales the first masks under that rule.
        structure = kwargs if kwargs.get("rescale") is False else dict(kwargs, rescale=cap)
        outcome = pipeline.prune(method + suffix, dense, data, sparsity, FLAGS.epochs,
                                 FLAGS.batch_size, verbose=0, structure=structure)
        report = pipeline.audit(outcome["model"], dense, data.test, data)
        row = pipeline.result_row(data, method, seed, sparsity, outcome, report)
        empty, density = emptied_layers(outcome["pruned"])
        share = pipeline.predicted_share(outcome["model"], data.test)
        row.update(_common(data, model_name, seed), scope=scope,
                   layer_floor=kwargs.get("layer_floor"),
                   rescale_cap=None if kwargs.get("rescale") is False else cap, emptied_layers=empty,
                   wrapped_layers=len(density), min_layer_density=min(density.values()),
                   layer_density=density, top_prediction_share=share,
                   collapsed=share >= COLLAPSE_SHARE)
        _append(path, row)
        logging.info("  %s %s %.0f%%: accuracy %.4f, perf gap %.4f, degr gap %.4f, emptied %d, "
                     "top share %.2f (%.0f s)", method, scope, 100 * sparsity, row["accuracy"],
                     row["performance_gap"], row["degradation_gap"], len(empty), share,
                     outcome["train_seconds"])


def _common(data, model_name, seed):
  return {"model": model_name, "width": _width(model_name), "seed": seed,
          "dataset": data.name, "semi_synthetic": data.semi_synthetic,
          "train_rows": len(data.train), "keras": FLAGS.keras,
          "epochs": FLAGS.epochs, "dense_epochs": FLAGS.dense_epochs}


def _append(path, row):
  with open(path, "a", encoding="utf-8") as f:
    f.write(json.dumps(row) + "\n")


def _pts(values):
  return bench_utils.fmt_mean_std(values, 100)


def render(rows, command="python benchmarks/benchmark_layer_floor.py"):
  """The BENCHMARKS.md section from result rows (dense rows and pruned rows)."""
  dense = collections.defaultdict(list)
  cells = collections.defaultdict(list)
  unique = {}  # A run appended twice (two processes) counts once.
  for r in rows:
    unique.setdefault((r["model"], r["seed"], r["method"], r["scope"], r["target_sparsity"]), r)
  rows = list(unique.values())
  for r in rows:
    if r["method"] == "dense":
      dense[r["model"]].append(r)
    else:
      cells[(r["model"], r["method"], r["target_sparsity"], r["scope"])].append(r)
  seeds = sorted({r["seed"] for r in rows})
  first = rows[0]
  out = ["## Layer floor vs pure global ranking", "",
         f"Command: `{command}` (rows in `benchmarks/results/layer_floor.jsonl`). "
         f"Machine: {bench_utils.machine()}, shared with other jobs. Data: colored "
         "Fashion-MNIST (semi-synthetic): minority colour 5% of images, colour "
         f"independent of the label; {first['train_rows']:,} training rows (a random "
         "subset, for the CPU budget), the full test split. Per seed one dense model per "
         f"architecture ({first['dense_epochs']} epochs, Adam 1e-3), then "
         f"{first['epochs']} epochs of BiP (no fairness) or BiFP (default constraint: "
         "excess degradation ≤ 1 pt per group, Lagrangian, steered on the validation "
         "split), the mask at the target from the first step, SGD 0.01 on the weights. "
         f"Seeds {seeds}; {'tf_keras' if first['keras'] == '2' else 'Keras 3'}. Test "
         "split, points, mean ± std over seeds. *emptied*: wrapped layers whose mask is "
         "all zero (mean over seeds; of *wrapped*); *sparsest layer kept*: the smallest "
         "fraction of its weights any wrapped layer keeps (mean over seeds); *collapsed*: runs whose most frequent "
         f"prediction covers ≥ {COLLAPSE_SHARE:.0%} of the test rows. Scopes: "
         "*global, floor 0* = pure global ranking (the behaviour before `layer_floor`; "
         "the default rescale is then every tensor's ‖θ‖/‖m⊙θ‖, as before); "
         "*floor 0.1* = the default; *layer* = every tensor at the target sparsity. "
         "Rescale variants (the first mask's gain ‖θ‖/‖m⊙θ‖ per tensor): the default "
         "leaves a tensor held at its floor unrescaled (gain 1) and every other tensor "
         "as before; *gain uncapped* = every tensor rescaled (the behaviour before); "
         "*floor-held gain 1, others ≤ at target* = the default plus a cap on the "
         "others at the gain of their own magnitude mask at the target sparsity; "
         "*gain ≤ at target* = that cap on every tensor, floor-held ones too; "
         "*gain ≤ model-wide* = at most ‖Θ‖/‖M⊙Θ‖ over all wrapped tensors; "
         "*rescale=False* = no rescale.", ""]
  for model in dict.fromkeys(r["model"] for r in rows):
    d = dense.get(model, [])
    mrows = [r for r in rows if r["model"] == model]
    names = mrows[0]["group_names"] if "group_names" in mrows[0] else None
    sized = [r for r in mrows if r.get("group_size")]
    sizes = ", ".join(f"{n} {int(np.mean([r['group_size'][n] for r in sized])):,}"
                      for n in sized[0]["group_size"]) if sized else "n/a"
    out += [f"### {model} (width {mrows[0]['width']})", ""]
    if d:
      out.append(f"Dense: accuracy {_pts([r['accuracy'] for r in d])}, performance gap "
                 f"{_pts([r['performance_gap'] for r in d])}. Test group sizes: {sizes}.")
      out.append("")
    del names
    body = []
    keys = sorted({key[1:] for key in cells if key[0] == model},
                  key=lambda t: (t[0] != "bip", t[1], list(SCOPE_LABELS).index(t[2])
                                 if t[2] in SCOPE_LABELS else 99))
    for method, sparsity, scope in keys:
      cell = cells[(model, method, sparsity, scope)]
      body.append([
          "BiP" if method == "bip" else "BiFP", f"{sparsity:.0%}",
          SCOPE_LABELS.get(scope, scope), _pts([r["accuracy"] for r in cell]),
          _pts([r["performance_gap"] for r in cell]),
          _pts([r["degradation_gap"] for r in cell]),
          _pts([r["max_excess_gap"] for r in cell]),
          (f"{100 * np.mean([r['min_layer_density'] for r in cell]):.2f}%"
           if all("min_layer_density" in r for r in cell) else "n/a"),
          f"{np.mean([len(r['emptied_layers']) for r in cell]):.1f} / "
          f"{cell[0]['wrapped_layers']}",
          f"{sum(r['collapsed'] for r in cell)}/{len(cell)}"])
    out += [bench_utils.table(["method", "sparsity", "scope", "accuracy", "perf. gap",
                               "degr. gap", "max excess", "sparsest layer kept",
                               "emptied / wrapped", "collapsed"],
                              body), ""]
  return "\n".join(out).rstrip()


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  path = FLAGS.layer_floor_output
  if FLAGS.quick:
    _apply_quick()
    import tempfile  # pylint: disable=g-import-not-at-top
    if FLAGS["layer_floor_output"].using_default_value:
      path = os.path.join(tempfile.mkdtemp(), "layer_floor.jsonl")
  for scope in FLAGS.scopes:
    scope_args(scope)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if not FLAGS.render_only:
    run(path)
  rows = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
  text = render(rows)
  if FLAGS.note:
    text += "\n\n" + FLAGS.note.strip()
  if FLAGS.write_docs:
    bench_utils.write_section("layer_floor", text)
  print(text)


if __name__ == "__main__":
  app.run(main)
