r"""Every method × sparsity × seed × dataset, each baseline at its best honest setup.

  python benchmarks/benchmark.py                 # the full grid (hours on 2 cores; split it:)
  python benchmarks/benchmark.py --datasets=colored-fmnist & \
  python benchmarks/benchmark.py --datasets=adult-sex,compas-race,german-sex
  python benchmarks/benchmark.py --quick         # smoke run, a few minutes
  python benchmarks/benchmark.py --render_only   # re-render BENCHMARKS.md from the rows

Setup (the same for every method unless said):
- Dense: trained to convergence, Adam(1e-3), early stopping on the validation loss
  (patience --patience, best weights kept); every method starts from that model.
- Budgets (E = --epochs; see `pipeline.prune`): the bi-level methods train E epochs at
  the target; magnitude+FT and CEAG fine-tune a one-shot global magnitude mask for E
  epochs; GMP (TFMOT, per layer) ramps over E // 2 epochs, then fine-tunes E epochs at
  the target; two-stage ramps like GMP, then fine-tunes under the constraint, E epochs
  in all.
- Tuning: each method's weight optimizer is chosen on the validation split of seed 0
  at 90% sparsity from a grid of the same size for every method (--optimizer_grid;
  GMP: --gmp_optimizer_grid, Adam as TFMOT's guide fine-tunes). Rule: the highest
  validation accuracy among non-collapsed runs; for constrained methods among those
  whose validation max excess degradation is <= ε, else the smallest excess.
- Fair methods (BiFP, CEAG, two-stage) use BiFP's default constraint: excess
  degradation ψ_g <= ε = --epsilon for every group, Lagrangian.
- Seeds: 5 for datasets with fewer than 10,000 test rows, else 3 (--seeds overrides).
- Collapse: a model whose most frequent test prediction covers >= --collapse_share of
  the test rows is flagged and never counts for or against a target.
- Uncertainty: mean ± std over seeds; for seed 0 a bootstrap 95% interval over test
  examples; a target is met only when a paired one-sided 95% t-bound over seeds says so.
- Time to fair: training time (and steps) until, at the end of an epoch with the
  sparsity at its target, the validation max excess degradation is <= ε and the
  validation accuracy within --tolerance of dense.

Rows go to --output_dir/results.jsonl (tuning runs to tuning.jsonl); runs already there
are skipped, so an interrupted benchmark resumes, and processes may share the files.
Renders the sections "benchmark" and "results" (the summary table) of BENCHMARKS.md and the
plots benchmarks/results/benchmark_tradeoff_<dataset>.png and benchmark_time_to_fair.png.
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
from tf_fairprune.fairness import audit as audit_lib  # pylint: disable=g-import-not-at-top

BASELINES = ("gmp", "magnitude_ft", "ceag", "two_stage")
OURS = ("bip", "bip_layer", "bifp", "bifp_layer")
GRID_METHODS = ("dense",) + BASELINES + OURS
TIMED = ("bifp", "two_stage", "ceag")  # Methods with a time to fair.

FLAGS = flags.FLAGS
flags.DEFINE_list("datasets", ["adult-sex", "compas-race", "german-sex", "colored-fmnist"],
                  "Datasets.")
flags.DEFINE_list("methods", list(GRID_METHODS), "Methods (any of pipeline.METHODS).")
flags.DEFINE_list("sparsities", ["0.5", "0.7", "0.9", "0.95", "0.98", "0.99"], "Sparsities.")
flags.DEFINE_integer("seeds", 0, "Seeds 0..N-1 (0: 5 below 10,000 test rows, else 3).")
flags.DEFINE_integer("first_seed", 0, "Start at this seed (to split the grid across processes).")
flags.DEFINE_integer("last_seed", None, "Stop before this seed (to split the grid across processes).")
flags.DEFINE_integer("epochs", 5, "E: epochs at the target sparsity (see the budgets above).")
flags.DEFINE_integer("dense_epochs", 100, "Most epochs of the dense model.")
flags.DEFINE_integer("patience", 5, "Early stopping patience of the dense model.")
flags.DEFINE_integer("batch_size", 0, "Batch size (0: min(256, max(32, train rows / 50))).")
flags.DEFINE_list("optimizer_grid", ["sgd:0.003", "sgd:0.01", "sgd:0.03"],
                  "Weight optimizers tried per method (one: no tuning).")
flags.DEFINE_list("gmp_optimizer_grid", ["adam:0.0003", "adam:0.001", "sgd:0.01"],
                  "GMP's grid (TFMOT's guide fine-tunes with Adam); same size as the other.")
flags.DEFINE_float("tune_sparsity", 0.9, "Sparsity at which the optimizers are chosen.")
flags.DEFINE_enum("keras", None, ["3", "2"],
                  "Keras flavour of the dense model and the bi-level methods. TFMOT's methods "
                  "(gmp, two_stage) always run on a tf_keras copy of the dense model. Default: "
                  "2 when the methods include a TFMOT one (the whole run on one flavour), "
                  "else 3.")
flags.DEFINE_integer("image_train_size", 6000, "colored-fmnist: training images used.")
flags.DEFINE_float("minority_fraction", 0.05, "colored-fmnist: share of the minority colour.")
flags.DEFINE_float("epsilon", pipeline.DEFAULT_EPSILON, "ε of the fair methods' constraint.")
flags.DEFINE_float("tolerance", 0.01, "Fair: validation accuracy within this of dense.")
flags.DEFINE_bool("held_out", True, "Constrained methods steer their multipliers on the "
                  "validation split and return the iterate selected there (HeldOutFairness); "
                  "the rows in BENCHMARKS.md's main section predate it (--noheld_out).")
flags.DEFINE_bool("detach_average", True, "ExcessDegradation's `detach_average` (the library "
                  "default): the overall loss R in ψ_g = R_g − R is a fixed reference for the "
                  "gradient; the rows in BENCHMARKS.md's main section predate it "
                  "(--nodetach_average).")
bench_utils.define_rule_flags()
flags.DEFINE_float("collapse_share", 0.99, "Collapsed: one prediction covers this share.")
flags.DEFINE_integer("bootstrap", 1000, "Bootstrap resamples for seed 0's intervals.")
flags.DEFINE_bool("quick", False, "Smoke run: 1 seed, 90% only, 1 epoch, no tuning.")
flags.DEFINE_bool("render_only", False, "Only re-render BENCHMARKS.md and the plots.")
flags.DEFINE_bool("write_docs", True, "Render into BENCHMARKS.md (off: only results.jsonl).")
flags.DEFINE_string("output_dir", os.path.join(bench_utils.ROOT, "benchmarks", "results"),
                    "Where results.jsonl and the plots go.")

PRETTY = {"bifp": "BiFP", "bip": "BiP", "bifp_layer": "BiFP (per layer)",
          "bip_layer": "BiP (per layer)", "bifp_no_mask_term": "BiFP w/o mask term",
          "bifp_no_weight_term": "BiFP w/o weight term", "gmp": "GMP (TFMOT, per layer)",
          "magnitude_ft": "magnitude + FT", "ceag": "CEAG", "two_stage": "two-stage",
          "dense": "dense"}
GAPS = ("performance_gap", "degradation_gap", "max_excess_gap")


def _path(name):
  stem, ext = os.path.splitext(name)
  return os.path.join(FLAGS.output_dir, f"{stem}_quick{ext}" if FLAGS.quick else name)


def _load_rows(path):
  return bench_utils.read_rows(path)


def _unique(rows):
  """The first row of each run (parallel processes may repeat one)."""
  seen, out = set(), []
  for r in rows:
    if _key(r) not in seen:
      seen.add(_key(r))
      out.append(r)
  return out


def _append(path, row):
  # One write per line with O_APPEND: parallel benchmark processes can share the file.
  with open(path, "a", encoding="utf-8") as f:
    f.write(json.dumps(row) + "\n")


def _key(row):
  return (row["dataset_key"], row["method"], row["seed"], round(row["target_sparsity"], 4))


def _batch_size(data):
  return FLAGS.batch_size or pipeline.default_batch_size(data)


# ----------------------------------------------------------------------------------
# Running.


class _Cell:
  """One dataset and seed: the data, the converged dense model and its test predictions."""

  def __init__(self, name, seed):
    self.name, self.seed = name, seed
    self.data = pipeline.load_dataset(name, seed, image_train_size=FLAGS.image_train_size,
                                      minority_fraction=FLAGS.minority_fraction)
    self.batch_size = _batch_size(self.data)
    self.k = pipeline.keras_module(FLAGS.keras)
    keras.utils.set_random_seed(seed)
    self.k.utils.set_random_seed(seed)
    self.dense = pipeline.train_dense(self.data, FLAGS.dense_epochs, self.batch_size,
                                      patience=FLAGS.patience, verbose=0, k=self.k)
    # TFMOT's methods need tf_keras: the same dense model, copied.
    self.tf_keras_dense = (self.dense if self.k is keras else
                           pipeline.copy_to(self.dense, self.data, keras))
    self.dense_pred = audit_lib.predict_labels(self.dense, self.data.test.x, True, 1024)
    self._dense_bytes = None
    logging.info("%s seed %d: dense best epoch %d of %d run", self.data.name, seed,
                 *self.dense.dense_epochs)

  def dense_bytes(self):
    if self._dense_bytes is None:
      self._dense_bytes = tflite_export(self.dense, self.data, sparse=False).size_bytes
    return self._dense_bytes

  def run(self, method, sparsity, optimizer, full=True):
    """Trains one method and returns its row (with a test audit and collapse flag)."""
    data = self.data
    keras.utils.set_random_seed(self.seed)
    dense = self.tf_keras_dense if method in pipeline.TF_KERAS_ONLY else self.dense
    self.k.utils.set_random_seed(self.seed)
    constraints = pipeline.make_constraints(epsilon=FLAGS.epsilon)
    for c in constraints:  # BiFP's default: ExcessDegradation.
      c.detach_average = FLAGS.detach_average
      if c.enforcement.drives_multipliers:  # make_constraints' Lagrangian(): defaults.
        c.enforcement = bench_utils.lagrangian()
    outcome = pipeline.prune(
        method, dense, data, sparsity, FLAGS.epochs, self.batch_size,
        constraints, "max_excess_gap", FLAGS.epsilon,
        FLAGS.tolerance, verbose=0, optimizer=optimizer, held_out=FLAGS.held_out)
    model = outcome["model"]
    pred = audit_lib.predict_labels(model, data.test.x, True, 1024)
    report = audit_lib.fairness_report(_labels(data.test.y), pred, data.test.groups,
                                       self.dense_pred, data.group_names, data.num_groups)
    row = pipeline.result_row(data, method, self.seed, 0.0 if method == "dense" else sparsity,
                              outcome, report)
    share = float(np.bincount(pred).max() / len(pred))
    row.update(dataset_key=self.name, optimizer=optimizer, epochs=FLAGS.epochs,
               keras="2" if tf_fairprune.flavours.of(dense) is tf_fairprune.flavours.TF_KERAS
               else "3",
               batch_size=self.batch_size, dense_epochs=list(self.dense.dense_epochs),
               majority_prediction_share=share, collapsed=share >= FLAGS.collapse_share,
               epsilon=FLAGS.epsilon, validation_history=outcome["history"],
               held_out=FLAGS.held_out, detach_average=FLAGS.detach_average,
               **bench_utils.rule_settings())
    if full and self.seed == 0:
      row["bootstrap_95"] = bootstrap_intervals(data, pred, self.dense_pred)
      export = tflite_export(model, data, method != "dense")
      row["tflite_bytes"], row["tflite_note"] = export.size_bytes, export.note
      row["dense_tflite_bytes"] = self.dense_bytes()
    return row


def _steering_note(rows):
  """How the constrained methods' multipliers were steered in these rows."""
  held = sum(bool(r.get("held_out")) for r in rows)
  if held == len(rows):
    note = ("Constrained methods (BiFP, CEAG, two-stage) steer their multipliers on the "
            "validation split and return the iterate selected there (`HeldOutFairness`).")
  elif held == 0:
    note = ("These rows predate `HeldOutFairness`: the constrained methods' multipliers read "
            "the training batches (rerun them so with `--noheld_out`).")
  else:
    note = f"{held} of {len(rows)} rows steer the multipliers on the validation split."
  return note + _detach_note(rows) + bench_utils.predates_note(
      rows, "per_row", f" The rows {bench_utils.RULE_PREDATES}).")


def _detach_note(rows):
  """Whether ψ_g's gradient flowed into the average in these rows."""
  return bench_utils.predates_note(
      rows, "detach_average",
      " The rows predate `ExcessDegradation(detach_average=True)`: the gradient of "
      "ψ_g = R_g − R reached the average R (rerun them so with `--nodetach_average`; "
      "section \"intersections\" measures the change).",
      some=" {done} of {total} rows detach the average from ψ_g's gradient.")


def _labels(y):
  y = np.asarray(y)
  return y.argmax(-1) if y.ndim == 2 and y.shape[-1] > 1 else y.reshape(-1)


def bootstrap_intervals(data, pred, dense_pred):
  """95% percentile intervals over test examples (resampled with replacement)."""
  y, groups = _labels(data.test.y), data.test.groups
  rng = np.random.default_rng(0)
  values = collections.defaultdict(list)
  for _ in range(FLAGS.bootstrap):
    i = rng.integers(0, len(y), len(y))
    report = audit_lib.fairness_report(y[i], pred[i], groups[i], dense_pred[i],
                                       num_groups=data.num_groups)
    values["accuracy"].append(report.accuracy)
    for gap in GAPS:
      if report.gaps.get(gap) is not None:
        values[gap].append(report.gaps[gap])
  return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
          for k, v in values.items()}


def tflite_export(model, data, sparse):
  """A model's float TFLite export (pruned weights stored sparse if `sparse`)."""
  with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # DENSIFY notices: sizes are what we want.
    return tf_fairprune.export_tflite(model, os.path.join(tmp, "m.tflite"), sparse=sparse,
                                      sample_inputs=data.test.x[:4])


def _grid(method):
  return FLAGS.gmp_optimizer_grid if method == "gmp" else FLAGS.optimizer_grid


def choose(rows, method, epsilon):
  """The tuning rule (module docstring) over one method's validation results."""
  ok = [r for r in rows if not r["collapsed"]] or rows
  last = [(r, r["validation_history"][-1]) for r in ok]
  if method in pipeline.CONSTRAINED:
    feasible = [(r, h) for r, h in last if h["max_excess_gap"] <= epsilon + 1e-12]
    if not feasible:
      return min(last, key=lambda rh: rh[1]["max_excess_gap"])[0]["optimizer"]
    last = feasible
  return max(last, key=lambda rh: rh[1]["accuracy"])[0]["optimizer"]


def tune(name, methods, tuning_path, cell=None):
  """The chosen optimizer per method for dataset `name` (runs what tuning.jsonl lacks)."""
  rows = [r for r in _load_rows(tuning_path) if r["dataset_key"] == name]
  chosen = {}
  for method in methods:
    if method == "dense":
      continue
    grid = _grid(method)
    if len(grid) == 1:
      chosen[method] = grid[0]
      continue
    have = {r["optimizer"]: r for r in rows if r["method"] == method}
    for optimizer in grid:
      if optimizer in have:
        continue
      cell = cell or _Cell(name, 0)
      logging.info("%s tuning %s with %s", name, method, optimizer)
      row = cell.run(method, FLAGS.tune_sparsity, optimizer, full=False)
      _append(tuning_path, row)
      have[optimizer] = row
    chosen[method] = choose([have[o] for o in grid], method, FLAGS.epsilon)
  return chosen, cell


def run_grid(path, tuning_path):
  done = {_key(r) for r in _load_rows(path)}
  sparsities = [float(s) for s in FLAGS.sparsities]
  for name in FLAGS.datasets:
    chosen, cell = tune(name, FLAGS.methods, tuning_path)
    logging.info("%s: chosen optimizers %s", name, chosen)
    num_test = len((cell.data if cell else pipeline.load_dataset(
        name, 0, image_train_size=FLAGS.image_train_size,
        minority_fraction=FLAGS.minority_fraction)).test)
    seeds = FLAGS.seeds or (5 if num_test < 10_000 else 3)
    for seed in range(FLAGS.first_seed, min(seeds, FLAGS.last_seed or seeds)):
      todo = [(m, 0.0 if m == "dense" else s) for s in sparsities for m in FLAGS.methods]
      todo = [ms for ms in dict.fromkeys(todo) if (name, ms[0], seed, round(ms[1], 4)) not in done]
      if not todo:
        continue
      if cell is None or cell.seed != seed:
        cell = _Cell(name, seed)
      for method, sparsity in todo:
        logging.info("%s seed %d: %s at %.0f%%", name, seed, method, 100 * sparsity)
        row = cell.run(method, sparsity, chosen.get(method, pipeline.DEFAULT_OPTIMIZER))
        _append(path, row)
        done.add(_key(row))
        logging.info("  accuracy %.4f, gaps %.4f / %.4f / %.4f, %.1f s, fair after %s s%s",
                     row["accuracy"], row["performance_gap"], row["degradation_gap"],
                     row["max_excess_gap"], row["train_seconds"], row["seconds_to_target"],
                     " COLLAPSED" if row["collapsed"] else "")


# ----------------------------------------------------------------------------------
# Statistics.

def _collapsed(cell):
  return sum(bool(r.get("collapsed")) for r in cell)


def _mean(rows, field):
  values = [r[field] for r in rows if r.get(field) is not None]
  return float(np.mean(values)) if values else None


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


def _ci(cell, field):
  boot = next((r.get("bootstrap_95") for r in cell if r["seed"] == 0 and r.get("bootstrap_95")),
              None)
  if not boot or field not in boot:
    return "–"
  lo, hi = boot[field]
  return f"[{lo * 100:.1f}, {hi * 100:.1f}]"


def _size_ratio(cell):
  ratios = [r["tflite_bytes"] / r["dense_tflite_bytes"] for r in cell if r.get("tflite_bytes")]
  return f"{np.mean(ratios):.3f}" if ratios else "–"


def _sizes(rows):
  names = rows[0]["group_names"]
  return ", ".join(f"{n} {int(np.mean([r['group_size'][n] for r in rows])):,}" for n in names)


def _dataset_title(rows):
  label = " — SEMI-SYNTHETIC colour groups on real images" if rows[0]["semi_synthetic"] else ""
  return f"{rows[0]['dataset']}{label}"


def _name(method, cell):
  n = _collapsed(cell)
  return PRETTY[method] + (f" **(collapsed {n}/{len(cell)})**" if n else "")


def _fair_after(cell):
  reached = [(r["seconds_to_target"], r["steps_to_target"]) for r in cell
             if r["seconds_to_target"] is not None]
  if not reached:
    return f"never (0/{len(cell)})"
  return (f"{np.median([s for s, _ in reached]):.1f} s / {int(np.median([n for _, n in reached]))}"
          f" steps ({len(reached)}/{len(cell)})")


def _optimizers_table(tuning, dataset):
  rows = [r for r in tuning if r["dataset"] == dataset]
  if not rows:
    return []
  body = []
  for method in dict.fromkeys(r["method"] for r in rows):
    mine = [r for r in rows if r["method"] == method]
    grid = [(r["optimizer"], r["validation_history"][-1]) for r in mine]
    body.append([PRETTY.get(method, method), choose(mine, method, mine[0]["epsilon"]), "; ".join(
        f"{o}: {h['accuracy'] * 100:.1f}% / ψ {h['max_excess_gap'] * 100:.1f}"
        + (" (collapsed)" if r["collapsed"] else "") for (o, h), r in zip(grid, mine))])
  return ["Optimizer chosen on validation (seed 0, "
          f"{rows[0]['target_sparsity']:.0%}; validation accuracy / max excess ψ per config):",
          "", bench_utils.table(["method", "chosen", "grid"], body), ""]


def render(rows, tuning, quick):
  cells = _cells(rows)
  datasets = _datasets(rows)
  command = "python benchmarks/benchmark.py" + (" --quick" if quick else "")
  epochs = sorted({r["epochs"] for r in rows})
  eps = sorted({r["epsilon"] for r in rows})
  out = [f"## Benchmark: baselines at their best, every sparsity and seed"
         f"{' (QUICK smoke run)' if quick else ''}", "",
         f"Produced by `{command}` (rows in `benchmarks/results/"
         f"{os.path.basename(_path('results.jsonl'))}`, tuning runs in "
         f"`{os.path.basename(_path('tuning.jsonl'))}`; re-render with `--render_only`). "
         f"Machine: {bench_utils.machine()}.", "",
         "**Setup.** Every method starts from the same dense model, trained to convergence "
         "(Adam, early stopping on validation loss; its best epoch is given per dataset). "
         f"E = {epochs} epoch(s) at the target sparsity for every method:",
         "- **GMP (TFMOT, per layer)**: `prune_low_magnitude`, every layer to the target, "
         "polynomial ramp over E // 2 epochs (pruning every min(100, ramp steps / 10) steps), "
         "then E epochs of fine-tuning at the target — more steps in all than any other method.",
         "- **magnitude + FT**: one-shot *global* magnitude mask from the dense model "
         "(rescaled like BiP's first mask), then E epochs of weight training, mask fixed.",
         "- **CEAG** (Balancing Act): the same mask and fine-tuning under the per-group "
         f"excess constraint ψ_g ≤ ε = {', '.join(f'{e * 100:g}' for e in eps)} pt(s), "
         "Lagrangian.",
         "- **two-stage**: GMP's ramp (E // 2 epochs), then fine-tuning under the same "
         "constraint with the mask fixed: E epochs in all, as BiFP.",
         "- **BiP / BiFP**: the bi-level step, mask learned, global ranking (default) or per "
         "layer; BiFP with its default constraint (the same as CEAG's).",
         "- **Tuning**: each method's weight optimizer chosen on validation at seed 0 from "
         "three configs (SGD 0.003/0.01/0.03 with momentum; GMP: Adam 3e-4/1e-3 and SGD 0.01, "
         "Adam as TFMOT's guide fine-tunes); highest validation accuracy, for the "
         "constrained methods among configs meeting ψ ≤ ε on validation.",
         "",
         "Test split, in points: mean ± std over seeds; `[lo, hi]` is seed 0's bootstrap 95% "
         "interval over test examples. **collapsed k/n** marks seeds whose model predicts one "
         "class for ≥ 99% of the test rows: such cells never count for or against a target. "
         f"*Fair after* = training time and steps until the validation ψ ≤ ε with accuracy "
         f"within {FLAGS.tolerance * 100:g} pt of dense, at the target sparsity (median over "
         "the seeds that got there; their count). *TFLite × dense* is seed 0's sparse float "
         "file over the dense one; 1.000 means `export_tflite` wrote it dense. In the case "
         "traced (Adult, BiFP, 99%) the converter had encoded the 107-input first layer "
         "block-sparse, which TFLite's block-sparse kernel misreads when the width is not "
         "a multiple of the block; the export's check caught it (docs/export.md, 'Export "
         "targets'). Rows now record the export's note (`tflite_note`). "
         f"{_steering_note(rows)}", ""]
  targets = []
  for dataset in datasets:
    drows = [r for r in rows if r["dataset"] == dataset]
    seeds = sorted({r["seed"] for r in drows})
    out += [f"### {_dataset_title(drows)}", "",
            f"Seeds {seeds}; batch {drows[0]['batch_size']}; test group sizes: "
            f"{_sizes(drows)}.", ""]
    dense = cells.get((dataset, "dense", 0.0), [])
    if dense:
      best = [r["dense_epochs"][0] for r in dense]
      out += [f"Dense: accuracy {_ms([r['accuracy'] for r in dense])}, performance gap "
              f"{_ms([r['performance_gap'] for r in dense])}; best epoch "
              f"{min(best)}–{max(best)} (early stopping).", ""]
    out += _optimizers_table(tuning, dataset)
    sparsities = sorted({round(r["target_sparsity"], 4) for r in drows if r["method"] != "dense"})
    methods = [m for m in pipeline.METHODS if m != "dense" and
               any((dataset, m, s) in cells for s in sparsities)]
    body = []
    for s in sparsities:
      for m in methods:
        cell = cells.get((dataset, m, s))
        if not cell:
          continue
        body.append([f"{s:.0%}", _name(m, cell), _ms([r["accuracy"] for r in cell]),
                     _ms([r["performance_gap"] for r in cell]), _ci(cell, "performance_gap"),
                     _ms([r["degradation_gap"] for r in cell]), _ci(cell, "degradation_gap"),
                     _ms([r["max_excess_gap"] for r in cell]),
                     f"{np.median([r['train_seconds'] for r in cell]):.1f}", _fair_after(cell),
                     _size_ratio(cell)])
    out += [bench_utils.table(["sparsity", "method", "accuracy", "perf. gap", "seed 0 CI",
                               "degr. gap", "seed 0 CI", "max ψ", "train s (median)",
                               "fair after", "TFLite × dense"], body), "",
            f"Plot: [accuracy vs gaps](benchmarks/results/benchmark_tradeoff_{dataset}"
            f"{'_quick' if quick else ''}.png).", ""]
    targets += _targets(cells, dataset, sparsities)
  out += ["### Targets", "",
          "Each judged per dataset and sparsity with paired per-seed differences and a "
          "one-sided 95% t-bound (met only if the bound clears the target); a comparison "
          "with a collapsed cell is *n/a*. Time to fair: "
          f"[plot](benchmarks/results/benchmark_time_to_fair{'_quick' if quick else ''}.png).",
          "", bench_utils.table(["dataset", "sparsity", "target", "measured", "met?"], targets)
          if targets else "No cells to judge.", ""]
  return "\n".join(out)


def _datasets(rows):
  """Dataset names in the order of --datasets' default (others after, as they come)."""
  order = {k: i for i, k in enumerate(FLAGS["datasets"].default)}
  first = {}
  for r in rows:
    first.setdefault(r["dataset"], order.get(r.get("dataset_key"), len(order)))
  return sorted(first, key=lambda d: (first[d], list(first).index(d)))


def _best_baseline(cells, dataset, s):
  """The non-collapsed baseline cell with the smallest mean degradation gap."""
  options = [(m, cells[(dataset, m, s)]) for m in BASELINES
             if cells.get((dataset, m, s)) and not _collapsed(cells[(dataset, m, s)])]
  if not options:
    return None, None
  return min(options, key=lambda mc: _mean(mc[1], "degradation_gap"))


def _halving_target(cells, dataset, s):
  bifp = cells.get((dataset, "bifp", s))
  method, base = _best_baseline(cells, dataset, s)
  if not bifp or not base:
    return None
  g = _mean(base, "degradation_gap")
  if g < 0.02:
    return [dataset, f"{s:.0%}", "best baseline's degradation gap ≥ 2 pts → BiFP halves it, "
            "≤ 1 pt accuracy below it", f"best baseline {PRETTY[method]} {g * 100:.2f} < 2 pts",
            "n/a"]
  pairs = bench_utils.paired(bifp, base)
  b, cost = _mean(bifp, "degradation_gap"), float(np.mean(
      [t["accuracy"] - o["accuracy"] for o, t in pairs]))
  bound = bench_utils.lower_bound(
      [0.5 * t["degradation_gap"] - o["degradation_gap"] for o, t in pairs])
  measured = (f"{PRETTY[method]} {g * 100:.1f} → BiFP {b * 100:.1f} ({(1 - b / g) * 100:.0f}% "
              f"cut; bound on ½·base − BiFP {bound * 100:+.1f}); accuracy {-cost * 100:+.1f} "
              "pts vs it")
  if _collapsed(bifp):
    return [dataset, f"{s:.0%}", "BiFP halves the best baseline's degradation gap",
            measured + f"; BiFP collapsed {_collapsed(bifp)}/{len(bifp)}", "n/a (collapsed)"]
  met = bound > 0 and cost <= 0.01
  return [dataset, f"{s:.0%}", "best baseline's degradation gap ≥ 2 pts → BiFP halves it, "
          "≤ 1 pt accuracy below it", measured, "yes" if met else "**no**"]


def _front_target(cells, dataset, s, gap):
  ours = [cells[(dataset, m, s)] for m in OURS
          if cells.get((dataset, m, s)) and not _collapsed(cells[(dataset, m, s)])]
  theirs = [(m, cells[(dataset, m, s)]) for m in BASELINES if cells.get((dataset, m, s))]
  if not ours or not theirs:
    return None
  verdicts, skipped = [], []
  for m, cell in theirs:
    if _collapsed(cell):
      skipped.append(PRETTY[m])
      continue
    verdicts.append((m, any(bench_utils.dominates(o, cell, gap) for o in ours)))
  parts = [f"{PRETTY[m]}: {'dominated' if v else 'not dominated'}" for m, v in verdicts]
  if skipped:
    parts.append(f"n/a (collapsed): {', '.join(skipped)}")
  text = "; ".join(parts)
  met = bool(verdicts) and all(v for _, v in verdicts)
  return [dataset, f"{s:.0%}", f"BiFP-family front (BiP/BiFP, global/per layer) dominates "
          f"every baseline in accuracy vs {gap.replace('_', ' ')}", text,
          ("yes" if met else "**no**") if verdicts else "n/a (collapsed)"]


def _time_target(cells, dataset, s):
  bifp = {r["seed"]: r for r in cells.get((dataset, "bifp", s), [])}
  others = [cells.get((dataset, m, s), []) for m in TIMED[1:]]
  if not bifp or not any(others):
    return None
  ratios, missed, parts = [], 0, []
  for seed, mine in sorted(bifp.items()):
    times = {m: r["seconds_to_target"] for m, cell in zip(TIMED[1:], others) for r in cell
             if r["seed"] == seed and r["seconds_to_target"] is not None}
    if not times:
      continue
    best = min(times.values())
    if mine["seconds_to_target"] is None:
      missed += 1
      parts.append(f"s{seed}: BiFP never, best other {best:.1f} s")
    else:
      ratios.append(mine["seconds_to_target"] / best)
      parts.append(f"s{seed}: {mine['seconds_to_target']:.1f} vs {best:.1f} s")
  target = "BiFP reaches the validation constraint in ≤ 0.3× the best of two-stage/CEAG"
  if not parts:
    reached = sum(r["seconds_to_target"] is not None for r in bifp.values())
    return [dataset, f"{s:.0%}", target, f"neither two-stage nor CEAG gets there (BiFP: "
            f"{reached}/{len(bifp)} seeds)", "n/a"]
  median = float(np.median(ratios)) if ratios else float("inf")
  met = not missed and median <= 0.3
  return [dataset, f"{s:.0%}", target, f"median {median:.2f}× ({'; '.join(parts)})",
          "yes" if met else "**no**"]


def _targets(cells, dataset, sparsities):
  rows = [_halving_target(cells, dataset, s) for s in sparsities]
  rows += [_front_target(cells, dataset, s, gap) for s in sparsities if s >= 0.9
           for gap in ("performance_gap", "degradation_gap")]
  rows += [_time_target(cells, dataset, s) for s in sparsities]
  return [r for r in rows if r]


def readme_summary(rows, sparsities=(0.9, 0.98)):
  """BENCHMARKS.md's summary table: accuracy and gaps per method and dataset at two sparsities."""
  cells = _cells(rows)
  body = []
  for dataset in _datasets(rows):
    first = next(r for r in rows if r["dataset"] == dataset)
    label = " (semi-synthetic)" if first["semi_synthetic"] else ""
    for m in GRID_METHODS:
      row = [f"{dataset}{label}", PRETTY[m]]
      for s in sparsities:
        cell = cells.get((dataset, m, 0.0 if m == "dense" else s))
        flag = f" (collapsed {_collapsed(cell)}/{len(cell)})" if cell and _collapsed(cell) else ""
        row += ([_ms([r["accuracy"] for r in cell]) + flag,
                 _ms([r["degradation_gap"] for r in cell]) if m != "dense" else "–"]
                if cell else ["", ""])
      if any(row[2:]):
        body.append(row)
  header = ["dataset", "method"]
  for s in sparsities:
    header += [f"accuracy {s:.0%}", f"degr. gap {s:.0%}"]
  seeds = sorted({len({r["seed"] for r in rows if r["dataset"] == d})
                  for d in {r["dataset"] for r in rows}})
  return ("## Benchmark in brief: every method at 90% and 98% sparsity\n\n"
          "Produced by `python benchmarks/benchmark.py` from the rows of the section above "
          "(every sparsity, the performance gaps, group sizes, intervals and the targets are "
          f"there). Mean ± std over {'/'.join(map(str, seeds))} seeds, test split, in points; every "
          "method starts from the same converged dense model and has its optimizer tuned on "
          "validation (setup: the section above).\n\n" + bench_utils.table(header, body))


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
  methods = [m for m in pipeline.METHODS if any(r["method"] == m for r in rows)]
  colours = dict(zip(methods, plt.cm.tab10(np.linspace(0, 1, 10))))
  for dataset in dict.fromkeys(r["dataset"] for r in rows):
    drows = [r for r in rows if r["dataset"] == dataset]
    sparsities = sorted({round(r["target_sparsity"], 4) for r in drows if r["method"] != "dense"})
    fig, axes = plt.subplots(2, len(sparsities), squeeze=False,
                             figsize=(max(6.0, 3.0 * len(sparsities)), 6.0))
    for row, gap in enumerate(("performance_gap", "degradation_gap")):
      for ax, s in zip(axes[row], sparsities):
        for m in methods:
          cell = cells.get((dataset, m, 0.0 if m == "dense" else s))
          if cell and cell[0][gap] is not None:
            ax.errorbar(np.mean([r[gap] for r in cell]) * 100,
                        np.mean([r["accuracy"] for r in cell]) * 100,
                        xerr=np.std([r[gap] for r in cell]) * 100,
                        yerr=np.std([r["accuracy"] for r in cell]) * 100, fmt="o",
                        color=colours[m], mfc="none" if _collapsed(cell) else colours[m],
                        label=PRETTY[m] + (" (collapsed)" if _collapsed(cell) else ""))
        ax.set_title(f"{s:.0%}", fontsize=9)
        ax.set_xlabel(f"{gap.replace('_', ' ')} (pts)", fontsize=8)
      axes[row][0].set_ylabel("accuracy (%)")
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_legend_handles_labels()[0]}
    fig.legend(list(handles.values()), list(handles), fontsize=6, loc="lower center",
               ncol=min(6, len(handles)))
    fig.suptitle(_dataset_title(drows) + " (hollow: collapsed)", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path = os.path.join(FLAGS.output_dir, f"benchmark_tradeoff_{dataset}{suffix}.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(path)
  fig, ax = plt.subplots(figsize=(7, 3.5))
  datasets = list(dict.fromkeys(r["dataset"] for r in rows))
  timed = [m for m in TIMED if m in methods]
  for i, m in enumerate(timed):
    values = []
    for dataset in datasets:
      times = [r["seconds_to_target"] for r in rows if r["dataset"] == dataset and
               r["method"] == m and r["seconds_to_target"] is not None
               and r["target_sparsity"] >= 0.9]
      values.append(np.median(times) if times else 0.0)
    ax.bar(np.arange(len(datasets)) + i / (len(timed) + 1), values, 1 / (len(timed) + 1),
           label=PRETTY[m], color=colours[m])
  ax.set_xticks(np.arange(len(datasets)) + 0.3, datasets, rotation=10, fontsize=7)
  ax.set_ylabel("median s to ψ ≤ ε at ≥ 90% (0 = never)", fontsize=8)
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
    FLAGS.seeds, FLAGS.sparsities, FLAGS.epochs = 1, ["0.9"], 1
    FLAGS.dense_epochs, FLAGS.bootstrap = 3, 100
    FLAGS.optimizer_grid, FLAGS.gmp_optimizer_grid = ["sgd:0.01"], ["adam:0.001"]
    FLAGS.image_train_size = min(FLAGS.image_train_size, 3000)
  for m in FLAGS.methods:
    if m not in pipeline.METHODS:
      raise app.UsageError(f"Unknown method {m!r}: one of {', '.join(pipeline.METHODS)}.")
  for s in FLAGS.sparsities:
    if not 0.0 < float(s) < 1.0:
      raise app.UsageError(f"Sparsities must be in (0, 1), got {s}.")
  for o in FLAGS.optimizer_grid + FLAGS.gmp_optimizer_grid:
    try:
      pipeline.make_optimizer(o)
    except ValueError as err:
      raise app.UsageError(f"--optimizer_grid: {err}") from err
  if FLAGS.keras is None:
    FLAGS.keras = "2" if set(FLAGS.methods) & set(pipeline.TF_KERAS_ONLY) else "3"
  try:
    pipeline.keras_module(FLAGS.keras)
  except ValueError as err:
    raise app.UsageError(str(err)) from err
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  path, tuning_path = _path("results.jsonl"), _path("tuning.jsonl")
  if not FLAGS.render_only:
    run_grid(path, tuning_path)
  rows = _unique(_load_rows(path))
  if not rows:
    raise app.UsageError(f"No results in {path}.")
  text = render(rows, _load_rows(tuning_path), FLAGS.quick)
  plots = plot(rows, FLAGS.quick)
  if FLAGS.write_docs and not FLAGS.quick:
    bench_utils.write_section("benchmark", text)
    bench_utils.write_section("results", readme_summary(rows))
  print(text)
  logging.info("Rows: %s; plots: %s", path, ", ".join(plots))


if __name__ == "__main__":
  app.run(main)
