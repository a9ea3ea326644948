r"""Do no harm on intersectional groups: BiFP against CEAG (Balancing Act) and BiP.

Harm from pruning concentrates where groups intersect and are small. Each dataset here
has one group per combination of two attributes: Adult race × sex (10 groups), COMPAS
race × sex (8), colored Fashion-MNIST class × colour (20; SEMI-SYNTHETIC colour). Every
method prunes the same dense model of a seed to 90%:

* `bip`: fairness off;
* `bifp`: BiFP's default, "do no harm" — no group loses more than ε beyond the average
  (`ExcessDegradation`, one multiplier per group), steered on the validation split;
* `ceag`: Balancing Act's method (CEAG) — the same constraint on a fixed global
  magnitude mask, the weights fine-tuned with it, steered the same way.

Each run's test split is judged per group (`FairnessReport.group_verdicts`, intervals
simultaneous over the groups): how many groups it can judge, how many of those lost
clearly more than ε beyond the average ("not met"), and the largest ψ_g. The targets:
no judged group "not met", at accuracy within 1 point of BiP's; never dominated by CEAG
(less accurate *and* with a larger max ψ_g on the same seed).

  python benchmarks/benchmark_intersections.py             # 3 seeds, writes BENCHMARKS.md
  python benchmarks/benchmark_intersections.py --render_only
"""

import contextlib
import io
import json
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tf_keras as keras  # pylint: disable=g-import-not-at-top

import bench_utils  # pylint: disable=g-import-not-at-top
import pipeline  # pylint: disable=g-import-not-at-top
from tf_fairprune.fairness import constraints as C  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_list("datasets", ["compas:race+sex", "adult:race+sex",
                               "colored-fmnist:class+colour"],
                  "Datasets as name:attribute+attribute.")
flags.DEFINE_list("methods", ["bip", "bifp", "ceag"], "Methods.")
flags.DEFINE_integer("seeds", 3, "Seeds 0..seeds-1.")
flags.DEFINE_float("sparsity", 0.9, "Sparsity.")
flags.DEFINE_float("epsilon", 0.01, "ε of do no harm (a fraction: 0.01 = 1 point).")
flags.DEFINE_integer("epochs", 5, "Pruning (or fine-tuning) epochs, every method.")
flags.DEFINE_integer("dense_epochs", 5, "Dense training epochs.")
flags.DEFINE_integer("batch_size", 256, "Largest batch size (pipeline.default_batch_size).")
flags.DEFINE_integer("image_train_size", 12000, "colored-fmnist: training images.")
flags.DEFINE_float("minority_fraction", 0.2, "colored-fmnist: share of the minority colour.")
flags.DEFINE_integer("image_validation_size", 6000, "colored-fmnist: validation images (all "
                     "6,000 held out of the training set: steering acts only where the "
                     "validation split resolves ε).")
flags.DEFINE_bool("detach_average", True, "ExcessDegradation's `detach_average`.")
bench_utils.define_rule_flags()
flags.DEFINE_string("rows_suffix", "", "Write the rows to <dataset>.jsonl<suffix>: the "
                    "earlier settings' rows (`EARLIER`) are rerun with their flags and suffix.")
flags.DEFINE_bool("render_only", False, "Only render BENCHMARKS.md from the rows.")
flags.DEFINE_bool("write_markdown", True, "Update BENCHMARKS.md.")

RESULTS = os.path.join(bench_utils.ROOT, "benchmarks", "results", "intersections")
COLLAPSED = 0.95  # Test predictions this much one class: a collapsed model.


def _load(spec, seed):
  name, _, group = spec.partition(":")
  return pipeline.load_dataset(name, seed, group=group.replace("+", ",") or None,
                               image_train_size=FLAGS.image_train_size,
                               image_validation_size=FLAGS.image_validation_size,
                               minority_fraction=FLAGS.minority_fraction)


def _row(data, seed, method, outcome, dense):
  model = outcome["model"]
  test = pipeline.audit(model, dense, data.test, data)
  groups = test.group_verdicts(FLAGS.epsilon)
  judged = [g for g in groups if g.judged]
  logits = model.predict(data.test.x, batch_size=1024, verbose=0)
  labels = (logits.reshape(-1) > 0) if logits.shape[-1] == 1 else logits.argmax(-1)
  share = float(np.bincount(labels.astype(int)).max() / len(labels))
  return {
      "dataset": data.name, "semi_synthetic": data.semi_synthetic, "seed": seed,
      "method": method, "sparsity": FLAGS.sparsity, "epsilon": FLAGS.epsilon,
      "accuracy": test.accuracy, "dense_accuracy": test.dense_accuracy,
      "groups": len(groups), "judged": len(judged),
      "not_met": [g.name for g in groups if g.verdict == "not met"],
      "max_excess": max(g.excess for g in groups),
      "max_excess_judged": max((g.excess for g in judged), default=None),
      "group_verdicts": [g.to_dict() for g in groups],
      "collapsed": share >= COLLAPSED, "largest_class_share": share,
      "train_seconds": outcome["train_seconds"],
      "bound": ((outcome.get("held_out") or {}).get("selected") or {}).get("bound"),
  }


def run_dataset(spec, done, out):
  for seed in range(FLAGS.seeds):
    todo = [m for m in FLAGS.methods if (spec, seed, m) not in done]
    if not todo:
      continue
    data = _load(spec, seed)
    batch_size = pipeline.default_batch_size(data, FLAGS.batch_size)
    keras.utils.set_random_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):
      dense = pipeline.train_dense(data, FLAGS.dense_epochs, batch_size)
    for method in todo:
      keras.utils.set_random_seed(seed)
      start = time.perf_counter()
      fairness = [C.ExcessDegradation(tolerance=FLAGS.epsilon,
                                      detach_average=FLAGS.detach_average,
                                      enforcement=bench_utils.lagrangian())]
      with contextlib.redirect_stdout(io.StringIO()):
        outcome = pipeline.prune(method, dense, data, FLAGS.sparsity, FLAGS.epochs, batch_size,
                                 fairness=fairness, verbose=0)
      row = dict(_row(data, seed, method, outcome, dense), spec=spec,
                 detach_average=FLAGS.detach_average, **bench_utils.rule_settings(),
                 validation_rows=len(data.validation.y))
      out.write(json.dumps(row) + "\n")
      out.flush()
      done[(spec, seed, method)] = row
      print(f"{data.name} seed {seed} {method}: acc {row['accuracy']:.4f} judged "
            f"{row['judged']}/{row['groups']} not met {len(row['not_met'])} max ψ "
            f"{row['max_excess']:.4f} {time.perf_counter() - start:.0f}s", flush=True)


# Rows of earlier settings, for the before/after: (file suffix, what differed, the flags
# that rerun them). Each file holds its own BiP rows.
EARLIER = (
    (".per_group_multipliers",
     "each multiplier weighing its group's rows by 1/(the group's share) and pushing on "
     "its own however many others push (`Lagrangian(per_row=False, "
     "split_pressure=False)`, the defaults before) and, on colored Fashion-MNIST, a "
     "validation split of 1,200 images (a tenth of the training subset)",
     "--noper_row --nosplit_pressure --image_validation_size=1200 "
     "--rows_suffix=.per_group_multipliers"),
    (".attached_average",
     "as the previous and with the average inside ψ_g's gradient "
     "(`ExcessDegradation(detach_average=False)`): lowering ψ_g = R_g − R then also "
     "pushes every other row's loss up",
     "--noper_row --nosplit_pressure --nodetach_average --image_validation_size=1200 "
     "--rows_suffix=.attached_average"),
)


def load_rows(suffix=""):
  return bench_utils.read_row_files(RESULTS, ".jsonl" + suffix)


def _ms(values, scale=100):
  return bench_utils.fmt_mean_std(values, scale)


def render(rows, earlier=()):
  out = [
      "Command: `python benchmarks/benchmark_intersections.py` "
      f"({bench_utils.machine()}). One group per combination of two attributes; every "
      f"method prunes the seed's dense model to {FLAGS.sparsity:.0%} in "
      f"{FLAGS.epochs} epochs with held-out steering on the validation split (BiFP and "
      f"CEAG: do no harm, ε = {100 * FLAGS.epsilon:g} point). Test split, per group "
      "(intervals 95% simultaneous over the groups): *judged* = groups whose verdict on "
      "\"loss beyond the average ≤ ε\" is not \"cannot tell\"; *not met* = judged groups "
      "that lost clearly more; max ψ = the largest loss beyond the average over all groups "
      "(points), *max ψ judged* over the judged groups (the seeds that judged any). Accuracy and max ψ: mean ± std over the seeds. *Dominated by CEAG*: seeds "
      "where CEAG is more accurate and has a smaller max ψ. *= BiP*: seeds whose per-group test "
      "figures are BiP's exactly (the constraint never bound: where the validation split "
      "cannot tell a group's loss from noise, held-out steering does not act on it). "
      f"*Collapsed*: ≥ {COLLAPSED:.0%} of the test predictions one class.", "",
      _table(rows)]
  for (suffix, what, flags_), before in zip(EARLIER, earlier):
    if before:
      out += ["", f"Earlier settings: {what} (rows in "
              f"`benchmarks/results/intersections/*.jsonl{suffix}`; rerun: "
              f"`python benchmarks/benchmark_intersections.py {flags_}`).", "", _table(before)]
  return "\n".join(out) + "\n"


def _table(rows):
  table = []
  for spec in dict.fromkeys(r["spec"] for r in rows):
    mine = [r for r in rows if r["spec"] == spec]
    name = mine[0]["dataset"] + (" (SEMI-SYNTHETIC)" if mine[0]["semi_synthetic"] else "")
    by = {m: {r["seed"]: r for r in mine if r["method"] == m} for m in FLAGS.methods}
    for method in FLAGS.methods:
      rs = list(by[method].values())
      if not rs:
        continue
      bip, ceag = by.get("bip", {}), by.get("ceag", {})
      within = sum(r["seed"] in bip and r["accuracy"] >= bip[r["seed"]]["accuracy"] - 0.01
                   for r in rs)
      # The constraint never bound: every group's test figures are BiP's.
      same = sum(r["seed"] in bip and r["group_verdicts"] == bip[r["seed"]]["group_verdicts"]
                 for r in rs)
      dominated = sum(r["seed"] in ceag and ceag[r["seed"]]["accuracy"] > r["accuracy"] and
                      ceag[r["seed"]]["max_excess"] < r["max_excess"] for r in rs)
      table.append([
          name, method, str(len(rs)), f"{rs[0]['groups']}",
          _ms([r["accuracy"] for r in rs]),
          f"{np.mean([r['judged'] for r in rs]):.1f}",
          f"{sum(len(r['not_met']) for r in rs)} in {sum(bool(r['not_met']) for r in rs)} seeds",
          _ms([r["max_excess"] for r in rs]),
          _ms(judged) if (judged := [r["max_excess_judged"] for r in rs
                                     if r["max_excess_judged"] is not None]) else "–",
          "–" if method == "bip" else f"{within}/{len(rs)}",
          "–" if method == "ceag" else f"{dominated}/{len(rs)}",
          "–" if method == "bip" else f"{same}/{len(rs)}",
          str(sum(r["largest_class_share"] >= COLLAPSED for r in rs))])
  return bench_utils.table(
      ["dataset", "method", "seeds", "groups", "accuracy", "judged (mean)", "not met",
       "max ψ", "max ψ judged", "within 1 pt of BiP", "dominated by CEAG", "= BiP", "collapsed"], table)


def main(argv):
  del argv
  if not FLAGS.render_only:
    os.makedirs(RESULTS, exist_ok=True)
    done = {(r["spec"], r["seed"], r["method"]): r for r in load_rows(FLAGS.rows_suffix)}
    for spec in FLAGS.datasets:
      path = os.path.join(RESULTS, spec.split(":")[0] + ".jsonl" + FLAGS.rows_suffix)
      with open(path, "a", encoding="utf-8") as out:
        run_dataset(spec, done, out)
  rows = load_rows()
  if not rows:
    raise app.UsageError(f"No results in {RESULTS}: run without --render_only first.")
  text = render(rows, [load_rows(suffix) for suffix, _, _ in EARLIER])
  if FLAGS.write_markdown:
    bench_utils.write_section("intersections", text)
  print(text)


if __name__ == "__main__":
  app.run(main)
