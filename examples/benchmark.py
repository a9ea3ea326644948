r"""Every method × sparsity × seed × dataset, with the same training budget per method.

  python examples/benchmark.py                 # the full grid (about an hour on 2 cores)
  python examples/benchmark.py --quick         # smoke run, a few minutes
  python examples/benchmark.py --render_only   # re-render BENCHMARKS.md from results.jsonl

Each run appends one JSON row to --output_dir/results.jsonl (the fields of the main job's
results.json plus the time and steps to reach the target). Runs already in the file are
skipped, so an interrupted benchmark resumes where it stopped. The dense model is trained
once per (dataset, seed) and shared by every method; `two_stage` reuses the `gmp` run of
the same cell as its first stage and adds its fine-tuning time to GMP's.

Budget: every pruning method trains for --epochs epochs; two_stage fine-tunes for up to
--epochs more, stopping when the model is fair (its budget is thus up to twice the
others': the comparison is generous to it).

A model is "fair" (time to target) when, on the validation split at the end of an
epoch with the sparsity at its target, its degradation gap is <= --target_gap and its
accuracy is within --tolerance of the dense model's.

Renders the section "benchmark" of BENCHMARKS.md and the plots
benchmarks/results/benchmark_tradeoff_<dataset>.png and benchmark_time_to_fair.png.
"""

import collections
import json
import os
import sys
import tempfile
import warnings

from absl import app
from absl import flags
from absl import logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # pylint: disable=g-import-not-at-top
import tf_keras as keras  # pylint: disable=g-import-not-at-top

import bench_utils  # pylint: disable=g-import-not-at-top
import pipeline  # pylint: disable=g-import-not-at-top
import tf_fairprune  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_list("datasets", ["adult-sex", "compas-race", "colored-fmnist"], "Datasets.")
flags.DEFINE_list("methods", list(pipeline.METHODS), "Methods.")
flags.DEFINE_list("sparsities", ["0.5", "0.7", "0.9", "0.95", "0.98", "0.99"], "Sparsities.")
flags.DEFINE_integer("seeds", 3, "Seeds 0..N-1.")
flags.DEFINE_integer("first_seed", 0, "Start at this seed (to split the grid across processes).")
flags.DEFINE_integer("epochs", 5, "Pruning epochs of every method (two_stage: + up to as many).")
flags.DEFINE_integer("dense_epochs", 5, "Epochs of the shared dense model.")
flags.DEFINE_integer("batch_size", 256, "Batch size.")
flags.DEFINE_integer("image_train_size", 6000, "colored-fmnist: training images used.")
flags.DEFINE_float("minority_fraction", 0.05, "colored-fmnist: share of the minority colour.")
flags.DEFINE_float("target_gap", 0.01, "Fair: validation degradation gap <= this ...")
flags.DEFINE_float("tolerance", 0.01, "... and accuracy within this of the dense model.")
flags.DEFINE_bool("quick", False, "Smoke run: 1 seed, 90% only, 1 epoch, small image set.")
flags.DEFINE_bool("render_only", False, "Only re-render BENCHMARKS.md and the plots.")
flags.DEFINE_bool("write_docs", True, "Render into BENCHMARKS.md (off: only results.jsonl).")
flags.DEFINE_string("output_dir", os.path.join(bench_utils.ROOT, "benchmarks", "results"),
                    "Where results.jsonl and the plots go.")

PRETTY = {"bifp": "BiFP", "bip": "BiP", "bifp_no_mask_term": "BiFP w/o mask term",
          "bifp_no_weight_term": "BiFP w/o weight term", "gmp": "GMP (TFMOT)",
          "two_stage": "two-stage", "dense": "dense"}


def _jsonl_path():
  name = "benchmark_quick.jsonl" if FLAGS.quick else "results.jsonl"
  return os.path.join(FLAGS.output_dir, name)


def _load_rows(path):
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _key(row):
  return (row["dataset"], row["method"], row["seed"], round(row["target_sparsity"], 4))


def _append(path, row):
  # One write per line with O_APPEND: parallel benchmark processes can share the file.
  with open(path, "a", encoding="utf-8") as f:
    f.write(json.dumps(row) + "\n")


def run_grid(path):
  rows = _load_rows(path)
  done = {_key(r) for r in rows}
  # Rows hold the dataset's full name (colored-fmnist-p0.05-c0); flags hold the short one.
  name_of = {r["dataset_key"]: r["dataset"] for r in rows if "dataset_key" in r}
  sparsities = [float(s) for s in FLAGS.sparsities]
  for name in FLAGS.datasets:
    for seed in range(FLAGS.first_seed, FLAGS.seeds):
      data = None
      for sparsity in sparsities:
        todo = [m for m in FLAGS.methods
                if (name_of.get(name, name), m, seed,
                    round(0.0 if m == "dense" else sparsity, 4)) not in done]
        if not todo:
          continue
        if data is None:
          logging.info("%s seed %d: loading and training the dense model", name, seed)
          data = pipeline.load_dataset(name, seed, image_train_size=FLAGS.image_train_size,
                                       minority_fraction=FLAGS.minority_fraction)
          keras.utils.set_random_seed(seed)
          dense = pipeline.train_dense(data, FLAGS.dense_epochs, FLAGS.batch_size)
          dense_bytes = tflite_bytes(dense, data, sparse=False)  # Once per dense model.
        gmp_result = None
        # gmp before two_stage so that two_stage can reuse it.
        for method in sorted(todo, key=lambda m: (m == "two_stage", m)):
          logging.info("%s seed %d: %s at %.0f%%", data.name, seed, method, 100 * sparsity)
          keras.utils.set_random_seed(seed)
          outcome = pipeline.prune(method, dense, data, sparsity, FLAGS.epochs,
                                   FLAGS.batch_size, None,
                                   "degradation_gap", FLAGS.target_gap, FLAGS.tolerance,
                                   gmp_result=gmp_result, verbose=0)
          if method == "gmp":
            gmp_result = outcome
          row = pipeline.result_row(data, method, seed, 0.0 if method == "dense" else sparsity,
                                    outcome, pipeline.audit(outcome["model"], dense,
                                                            data.test, data))
          row.update(tflite_bytes=tflite_bytes(outcome["model"], data, method != "dense"),
                     dense_tflite_bytes=dense_bytes)
          row["dataset_key"] = name
          row["epochs"] = FLAGS.epochs
          row["validation_history"] = outcome["history"]
          _append(path, row)
          done.add(_key(row))
          name_of[name] = data.name
          logging.info("  accuracy %.4f, performance gap %.4f, degradation gap %.4f, "
                       "%.1f s, fair after %s s", row["accuracy"], row["performance_gap"],
                       row["degradation_gap"] or 0.0, row["train_seconds"],
                       row["seconds_to_target"])


def tflite_bytes(model, data, sparse):
  """Size of a model's float TFLite file (pruned weights stored sparse if `sparse`)."""
  with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # DENSIFY notices: sizes are what we want.
    return tf_fairprune.export_tflite(model, os.path.join(tmp, "m.tflite"), sparse=sparse,
                                      sample_inputs=data.test.x[:4]).size_bytes


# ----------------------------------------------------------------------------------
# Rendering.


def _cells(rows):
  cells = collections.defaultdict(list)
  for r in rows:
    cells[(r["dataset"], r["method"], round(r["target_sparsity"], 4))].append(r)
  return cells


def _ms(values, scale=100.0, digits=1):
  values = [v for v in values if v is not None]
  return bench_utils.fmt_mean_std(values, scale, digits) if values else "–"


def _size_ratio(cell):
  ratios = [r["tflite_bytes"] / r["dense_tflite_bytes"] for r in cell if r.get("tflite_bytes")]
  return f"{np.mean(ratios):.3f}" if ratios else "–"


def _mean(rows, field):
  values = [r[field] for r in rows if r[field] is not None]
  return float(np.mean(values)) if values else None


def _sizes(rows):
  names = rows[0]["group_names"]
  return ", ".join(f"{n} {int(np.mean([r['group_size'][n] for r in rows])):,}" for n in names)


def _dataset_title(rows):
  label = " — SEMI-SYNTHETIC colour groups on real images" if rows[0]["semi_synthetic"] else ""
  return f"{rows[0]['dataset']}{label}"


def _at_target(row):
  """The validation-history entries of a run taken with the sparsity at its target.

  GMP's schedule reaches the target at 70% of its epochs; two-stage's history is GMP's
  followed by its fine-tuning; the bi-level methods are at the target from step 1.
  """
  history = row.get("validation_history") or []
  if row["method"] in ("gmp", "two_stage"):
    first = int(np.ceil(0.7 * row["epochs"])) - 1
    return [(i + 1, h) for i, h in enumerate(history) if i >= first]
  return [(i + 1, h) for i, h in enumerate(history)]


def _first_reaching(row, accuracy, gap):
  for epochs, h in _at_target(row):
    if h["accuracy"] >= accuracy - 1e-12 and h["degradation_gap"] <= gap + 1e-12:
      return epochs, h["seconds"]
  return None


def _time_to_fair(cells, dataset, sparsity):
  """Per seed: time for BiFP to reach two-stage's final validation accuracy and gap.

  The target is what the two-stage baseline ends with (its last validation accuracy
  and degradation gap); two-stage's time is when it first got there, BiFP's when it
  first matched or beat both numbers. Returns a list of dicts, one per seed.
  """
  bifp = {r["seed"]: r for r in cells.get((dataset, "bifp", sparsity), [])}
  out = []
  for two in cells.get((dataset, "two_stage", sparsity), []):
    mine = bifp.get(two["seed"])
    final = _at_target(two)
    if mine is None or not final:
      continue
    accuracy, gap = final[-1][1]["accuracy"], final[-1][1]["degradation_gap"]
    theirs = _first_reaching(two, accuracy, gap)
    ours = _first_reaching(mine, accuracy, gap)
    out.append({"seed": two["seed"], "accuracy": accuracy, "gap": gap,
                "two_stage": theirs, "bifp": ours})
  return out


def _dominates(front, other):
  """Every point of `other` is weakly dominated (accuracy >=, gap <=) by one of `front`."""
  return all(any(a >= oa - 1e-12 and g <= og + 1e-12 for a, g in front) for oa, og in other)


def render(rows, quick):
  cells = _cells(rows)
  datasets = sorted({r["dataset"] for r in rows}, key=lambda d: [r["dataset"] for r in rows].index(d))
  command = "python examples/benchmark.py" + (" --quick" if quick else "")
  seeds = sorted({r["seed"] for r in rows})
  epochs = sorted({r.get("epochs") for r in rows if r.get("epochs")})
  out = [f"## Benchmark: every method × sparsity × seed{' (QUICK smoke run)' if quick else ''}",
         "", f"Produced by `{command}` (rows in `benchmarks/results/"
         f"{'benchmark_quick.jsonl' if quick else 'results.jsonl'}`; re-render with "
         f"`--render_only`). Machine: {bench_utils.machine()}. Seeds {seeds}; every pruning "
         f"method trains {epochs} epochs from the same dense model; two-stage fine-tunes up "
         "to as many again. Accuracy and gaps on the test split, in points, mean ± std over "
         "seeds. *Fair* = validation degradation gap ≤ "
         f"{FLAGS.target_gap * 100:g} pts with accuracy within {FLAGS.tolerance * 100:g} pt "
         "of dense; 'fair after' is the training time until then (median over seeds that "
         "got there, with their count). Models: a 2×256 MLP on the tabular data, the "
         f"small CNN (`models.cnn`) on colored Fashion-MNIST ({FLAGS.image_train_size:,} "
         f"training images, {FLAGS.minority_fraction:.0%} minority colour); SGD(0.01, "
         "momentum 0.9) for the weights, SGD(0.1, momentum 0.9) for the scores, batch "
         f"{FLAGS.batch_size}; GMP is TFMOT's `prune_low_magnitude` with polynomial decay "
         "reaching the target at 70% of its epochs; BiFP has λ = 1 on both fairness terms "
         "(performance and degradation).", ""]
  targets = []
  for dataset in datasets:
    drows = [r for r in rows if r["dataset"] == dataset]
    out += [f"### {_dataset_title(drows)}", "",
            f"Test group sizes (mean over seeds): {_sizes(drows)}.", ""]
    dense = cells.get((dataset, "dense", 0.0), [])
    if dense:
      out.append(f"Dense: accuracy {_ms([r['accuracy'] for r in dense])}, performance gap "
                 f"{_ms([r['performance_gap'] for r in dense])}.")
      out.append("")
    sparsities = sorted({round(r["target_sparsity"], 4) for r in drows if r["method"] != "dense"})
    methods = [m for m in pipeline.METHODS if m != "dense" and
               any((dataset, m, s) in cells for s in sparsities)]
    body = []
    for s in sparsities:
      for m in methods:
        cell = cells.get((dataset, m, s))
        if not cell:
          continue
        reached = [r["seconds_to_target"] for r in cell if r["seconds_to_target"] is not None]
        fair = (f"{np.median(reached):.1f} s ({len(reached)}/{len(cell)})" if reached
                else f"never (0/{len(cell)})")
        body.append([f"{s:.0%}", PRETTY[m], _ms([r["accuracy"] for r in cell]),
                     _ms([r["performance_gap"] for r in cell]),
                     _ms([r["degradation_gap"] for r in cell]),
                     _ms([r["max_excess_gap"] for r in cell]),
                     f"{np.median([r['train_seconds'] for r in cell]):.1f}", fair,
                     _size_ratio(cell)])
    out += [bench_utils.table(["sparsity", "method", "accuracy", "performance gap",
                               "degradation gap", "max excess gap", "train s (median)",
                               "fair after", "TFLite × dense"], body), "",
            f"Plot: [accuracy vs gaps](benchmarks/results/benchmark_tradeoff_{dataset}"
            f"{'_quick' if quick else ''}.png).", ""]
    targets += _targets(cells, dataset, sparsities)
  out += ["### Targets", "",
          "Time to a fair model per method (the absolute criterion above): "
          f"[plot](benchmarks/results/benchmark_time_to_fair{'_quick' if quick else ''}.png). "
          "The time-to-fair target below is judged against what two-stage reaches.", "", bench_utils.table(["dataset", "target", "measured", "met?"],
                                               targets) if targets else "No cells to judge.", ""]
  return "\n".join(out)


def _targets(cells, dataset, sparsities):
  rows = []
  for s in sparsities:
    gmp, bifp = cells.get((dataset, "gmp", s)), cells.get((dataset, "bifp", s))
    if gmp and bifp and _mean(gmp, "degradation_gap") >= 0.02:
      g, b = _mean(gmp, "degradation_gap"), _mean(bifp, "degradation_gap")
      da = _mean(gmp, "accuracy") - _mean(bifp, "accuracy")
      met = b <= 0.5 * g and da <= 0.01
      rows.append([dataset, f"{s:.0%}: GMP degradation gap {g * 100:.1f} ≥ 2 → BiFP cuts it "
                   "≥ 50% losing ≤ 1 pt vs GMP",
                   f"BiFP {b * 100:.1f} ({(1 - b / g) * 100:.0f}% cut), accuracy "
                   f"{-da * 100:+.1f} pts vs GMP", "yes" if met else "**no**"])
  for s in sparsities:
    pairs = _time_to_fair(cells, dataset, s)
    if not pairs:
      continue
    ratios = [p["bifp"][1] / p["two_stage"][1] for p in pairs if p["bifp"]]
    epochs = [f"{p['bifp'][0] if p['bifp'] else '–'} vs {p['two_stage'][0]}" for p in pairs]
    targets_text = ", ".join(f"{p['accuracy'] * 100:.1f}%/{p['gap'] * 100:.1f}" for p in pairs)
    if ratios:
      r = float(np.median(ratios))
      rows.append([dataset, f"{s:.0%}: BiFP reaches two-stage's final validation accuracy "
                   f"and degradation gap (per seed: {targets_text}) in ≤ 0.3× its time",
                   f"{r:.2f}× (median of {len(ratios)}/{len(pairs)} seeds that got there; "
                   f"epochs BiFP vs two-stage: {'; '.join(epochs)})",
                   "yes" if r <= 0.3 and len(ratios) == len(pairs) else "**no**"])
    else:
      rows.append([dataset, f"{s:.0%}: BiFP reaches two-stage's final validation accuracy "
                   f"and degradation gap ({targets_text}) in ≤ 0.3× its time",
                   f"BiFP never got there (0/{len(pairs)} seeds)", "**no**"])
  for s in (0.7, 0.9):
    ours = [m for m in ("bifp", "bip", "bifp_no_mask_term", "bifp_no_weight_term")
            if cells.get((dataset, m, s))]
    theirs = [m for m in ("gmp", "two_stage") if cells.get((dataset, m, s))]
    if not ours or not theirs:
      continue
    for gap in ("performance_gap", "degradation_gap"):
      front = [(_mean(cells[(dataset, m, s)], "accuracy"), _mean(cells[(dataset, m, s)], gap))
               for m in ours]
      other = [(_mean(cells[(dataset, m, s)], "accuracy"), _mean(cells[(dataset, m, s)], gap))
               for m in theirs]
      met = _dominates(front, other)
      rows.append([dataset, f"{s:.0%}: BiFP-family front (BiFP, BiP, ablations) dominates "
                   f"GMP and two-stage in accuracy vs {gap.replace('_', ' ')}",
                   "; ".join(f"{PRETTY[m]} {a * 100:.1f}/{g * 100:.1f}" for m, (a, g)
                             in zip(ours + theirs, front + other)),
                   "yes" if met else "**no**"])
  return rows


def readme_summary(rows, sparsities=(0.9, 0.98)):
  """The README's results table: accuracy and gaps per method and dataset at two sparsities."""
  cells = _cells(rows)
  body = []
  for dataset in dict.fromkeys(r["dataset"] for r in rows):
    first = next(r for r in rows if r["dataset"] == dataset)
    label = " (semi-synthetic)" if first["semi_synthetic"] else ""
    for m in ("dense", "gmp", "two_stage", "bip", "bifp"):
      row = [f"{dataset}{label}", PRETTY[m]]
      for s in sparsities:
        cell = cells.get((dataset, m, 0.0 if m == "dense" else s))
        row += ([_ms([r["accuracy"] for r in cell]), _ms([r["performance_gap"] for r in cell]),
                 _ms([r["degradation_gap"] for r in cell]) if m != "dense" else "–"]
                if cell else ["", "", ""])
      body.append(row)
  seeds = len({r["seed"] for r in rows})
  header = ["dataset", "method"]
  for s in sparsities:
    header += [f"accuracy {s:.0%}", f"perf. gap {s:.0%}", f"degr. gap {s:.0%}"]
  return ("Produced by `python examples/benchmark.py` (all sparsities, group sizes and the "
          "targets are in [BENCHMARKS.md](BENCHMARKS.md)). Mean ± std over "
          f"{seeds} seeds, test split, in points; the same dense model and epoch budget for "
          "every method (dense: the unpruned model).\n\n" + bench_utils.table(header, body))


def plot(rows, quick):
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  except ImportError:
    logging.warning("matplotlib is not installed: no plots (pip install matplotlib).")
    return []
  cells = _cells(rows)
  suffix = "_quick" if quick else ""
  written = []
  for dataset in sorted({r["dataset"] for r in rows}):
    drows = [r for r in rows if r["dataset"] == dataset]
    sparsities = sorted({round(r["target_sparsity"], 4) for r in drows if r["method"] != "dense"})
    fig, axes = plt.subplots(2, len(sparsities), squeeze=False,
                             figsize=(max(6.0, 3.0 * len(sparsities)), 6.0))
    for row, gap in enumerate(("performance_gap", "degradation_gap")):
      for ax, s in zip(axes[row], sparsities):
        for m in pipeline.METHODS:
          cell = cells.get((dataset, m, 0.0 if m == "dense" else s))
          if cell and cell[0][gap] is not None:
            ax.errorbar(np.mean([r[gap] for r in cell]) * 100,
                        np.mean([r["accuracy"] for r in cell]) * 100,
                        xerr=np.std([r[gap] for r in cell]) * 100,
                        yerr=np.std([r["accuracy"] for r in cell]) * 100, fmt="o",
                        label=PRETTY[m])
        ax.set_title(f"{s:.0%}", fontsize=9)
        ax.set_xlabel(f"{gap.replace('_', ' ')} (pts)", fontsize=8)
      axes[row][0].set_ylabel("accuracy (%)")
    axes[0][-1].legend(fontsize=6)
    fig.suptitle(_dataset_title(drows), fontsize=9)
    fig.tight_layout()
    path = os.path.join(FLAGS.output_dir, f"benchmark_tradeoff_{dataset}{suffix}.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(path)
  fig, ax = plt.subplots(figsize=(7, 3.5))
  methods = [m for m in pipeline.METHODS if m != "dense"]
  datasets = sorted({r["dataset"] for r in rows})
  for i, dataset in enumerate(datasets):
    values = []
    for m in methods:
      times = [r["seconds_to_target"] for r in rows if r["dataset"] == dataset and
               r["method"] == m and r["seconds_to_target"] is not None]
      values.append(np.median(times) if times else 0.0)
    ax.bar(np.arange(len(methods)) + i / (len(datasets) + 1), values, 1 / (len(datasets) + 1),
           label=dataset)
  ax.set_xticks(np.arange(len(methods)) + 0.3, [PRETTY[m] for m in methods], rotation=20,
                fontsize=7)
  ax.set_ylabel("median s to a fair model (0 = never)")
  ax.legend(fontsize=7)
  fig.tight_layout()
  path = os.path.join(FLAGS.output_dir, f"benchmark_time_to_fair{suffix}.png")
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return written + [path]


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  if FLAGS.quick:
    FLAGS.seeds, FLAGS.sparsities, FLAGS.epochs, FLAGS.dense_epochs = 1, ["0.9"], 1, 2
    FLAGS.image_train_size = min(FLAGS.image_train_size, 3000)
  for m in FLAGS.methods:
    if m not in pipeline.METHODS:
      raise app.UsageError(f"Unknown method {m!r}: one of {', '.join(pipeline.METHODS)}.")
  for s in FLAGS.sparsities:
    if not 0.0 < float(s) < 1.0:
      raise app.UsageError(f"Sparsities must be in (0, 1), got {s}.")
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  path = _jsonl_path()
  if not FLAGS.render_only:
    run_grid(path)
  rows = _load_rows(path)
  if not rows:
    raise app.UsageError(f"No results in {path}.")
  text = render(rows, FLAGS.quick)
  plots = plot(rows, FLAGS.quick)
  if FLAGS.write_docs and not FLAGS.quick:
    bench_utils.write_section("benchmark", text)
    bench_utils.write_section("results", readme_summary(rows), bench_utils.README_MD)
  print(text)
  logging.info("Rows: %s; plots: %s", path, ", ".join(plots))


if __name__ == "__main__":
  app.run(main)
