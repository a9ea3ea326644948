"""The main job after its flags are checked: train (or load) the dense model, prune,
export, audit, and write report.md, results.json and tradeoff.png.

`main.main` imports this module once the flags are checked (it imports TensorFlow).

Example:

```python
job(output_dir, output.staging_dir(output_dir), recorded, None)  # flags parsed, checked
```
"""

import contextlib
import json
import os
import sys
import warnings

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras as keras

import tf_fairprune
from tf_fairprune import baselines
from tf_fairprune import datasets
from tf_fairprune.fairness import audit as audit_lib

from . import dense_model_file
from . import fairness_flags
from . import inputs
from . import output
from . import plot as plot_lib
from . import report as report_lib

FLAGS = flags.FLAGS
SMALL_GROUP = 30  # Test rows below which a group's accuracy is mostly noise.
WARNINGS = []  # Every warning the run gave: printed, and written to report.md and results.json.
DENSE_NOTES = []  # What was done to a --dense_model file (e.g. a sigmoid taken off).


def say(message, *args):
  """A phase message of the job (to stderr, whatever TensorFlow's log level)."""
  print("fair_prune: " + (message % args if args else message), file=sys.stderr, flush=True)


def make_strategy():
  if FLAGS.strategy == "mirrored":
    return tf.distribute.MirroredStrategy()
  if FLAGS.strategy == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  return tf.distribute.get_strategy()


def run(data, strategy, output_dir, fairness):
  is_chief = (FLAGS.strategy != "multi_worker" or
              strategy.cluster_resolver.task_id == 0)
  k = inputs.keras_module(FLAGS.keras)
  keras.utils.set_random_seed(FLAGS.seed)
  k.utils.set_random_seed(FLAGS.seed)
  with strategy.scope():
    if FLAGS.dense_model:
      say("Loading the dense model from %s (%s)", FLAGS.dense_model,
          dense_model_file.KERAS_NAME[FLAGS.keras])
      try:
        dense, notes = dense_model_file.load(FLAGS.dense_model, k, data)
      except ValueError as err:
        raise app.UsageError(str(err)) from err
      for note in notes:
        say("Dense model: %s.", note)
      DENSE_NOTES.extend(notes)
    else:
      say("Phase 1/4: training the dense model (%d epochs, %s)", FLAGS.dense_epochs,
          "Keras 3" if FLAGS.keras == "3" else "tf_keras")
      dense = inputs.train_dense(data, FLAGS.dense_epochs, FLAGS.batch_size, FLAGS.model,
                                   FLAGS.width, FLAGS.jit_compile, k=k)

  say("Phase 2/4: pruning with %s to %.0f%% sparsity", FLAGS.method,
               100 * FLAGS.sparsity)
  check_trained(dense, "The dense model")
  target_metric = FLAGS.target_metric or baselines.AUDIT_GAP[FLAGS.fairness[0].strip()]
  target_gap = FLAGS.epsilon if FLAGS.target_gap is None else FLAGS.target_gap

  def prune(method):
    # The same seed for the fair and the fairness-off run: same data order and
    # initialisation, so what differs is what fairness did.
    keras.utils.set_random_seed(FLAGS.seed)
    k.utils.set_random_seed(FLAGS.seed)
    with strategy.scope(), collect_warnings(method):
      return baselines.prune(method, dense, data, FLAGS.sparsity, FLAGS.epochs,
                            FLAGS.batch_size, fairness, target_metric, target_gap,
                            FLAGS.tolerance, jit_compile=FLAGS.jit_compile,
                            optimizer=FLAGS.optimizer, held_out=FLAGS.held_out,
                            max_accuracy_loss=FLAGS.max_accuracy_loss)

  outcome = prune(FLAGS.method)
  off = None
  if FLAGS.compare_fairness_off and FLAGS.method in baselines.FAIRNESS_OFF:
    off_method = baselines.FAIRNESS_OFF[FLAGS.method]
    say("Phase 2b/4: the same with fairness off (%s), to measure what fairness costs",
        off_method)
    off = (off_method, prune(off_method))
  if not is_chief:
    return None
  final = outcome["model"]
  if FLAGS.method != "dense" and (not outcome["train_steps"] or outcome.get("stopped_on_non_finite")):
    raise SystemExit(
        f"error: {FLAGS.method} did not train ({outcome['train_steps']} steps"
        f"{', stopped on a NaN/inf loss' if outcome.get('stopped_on_non_finite') else ''}): "
        "no report is written. Check the data for NaN/inf values and the learning rates.")
  check_trained(final, f"The {FLAGS.method} model")

  say("Phase 3/4: exporting to TFLite")
  sample = data.test.x[:32]
  os.makedirs(output_dir, exist_ok=True)
  with collect_warnings("export"):
    exported = tf_fairprune.export_tflite(final, os.path.join(output_dir, "model.tflite"),
                                          sparse=FLAGS.method != "dense", sample_inputs=sample)
    dense_export = tf_fairprune.export_tflite(dense, os.path.join(output_dir, "dense.tflite"),
                                              sparse=False, sample_inputs=sample)

  say("Phase 4/4: auditing fairness on the validation and test splits")
  report = baselines.audit(final, dense, data.test, data)
  results = baselines.result_row(data, FLAGS.method, FLAGS.seed, FLAGS.sparsity, outcome, report)
  with collect_warnings("audit"):
    verdict, off_report = fairness_verdict(data, dense, final, report, outcome, off)
  results.update(verdict)
  for warning in verdict["warnings"]:
    warn(warning)
  results["warnings"] = list(WARNINGS)  # Every warning of the run, in the order given.
  results.update({
      "units": "accuracies, gaps and epsilon are fractions (0.01 = 1 point); report.md "
               "shows points",
      "tflite_bytes": exported.size_bytes, "dense_tflite_bytes": dense_export.size_bytes,
      "tflite_max_abs_diff": exported.max_abs_diff, "strategy": FLAGS.strategy,
      "keras": FLAGS.keras,
      "target": {"metric": target_metric, "gap": target_gap, "tolerance": FLAGS.tolerance},
      "time_to_target": {"metric": target_metric, "gap": target_gap},
      "validation_history": outcome["history"],
      **fairness_flags.fairness_settings(FLAGS),
      "gaps": dict(report.gaps), "gap_intervals": dict(report.intervals),
      "data_notes": list(data.notes), "dense_model_notes": list(DENSE_NOTES),
  })
  results = strict_json(results)
  with open(os.path.join(output_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=1, allow_nan=False)
  with open(os.path.join(output_dir, "report.md"), "w") as f:
    f.write(report_lib.render(results, report, off_report))
  plot(results, report, output_dir, off_report)
  return results


def warn(message):
  """A warning of the run: printed now, listed in report.md and results.json."""
  if message not in WARNINGS:
    WARNINGS.append(message)
    say("WARNING: %s", message)


@contextlib.contextmanager
def collect_warnings(phase):
  """Routes the library's warnings (UserWarning, RuntimeWarning) raised in `phase` to
  `warn`."""
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    yield
  for w in caught:
    if issubclass(w.category, (UserWarning, RuntimeWarning)):
      warn(f"({phase}) {w.message}")


def fairness_verdict(data, dense, final, report, outcome, off):
  """What results.json and report.md say about ε — each constraint's verdict (met, not
  met, cannot tell, met by levelling down) on validation and test with its interval,
  the dense and fairness-off models beside, what fairness did, collapse and
  domination — and the fairness-off model's test report (None without one)."""
  val = baselines.audit(final, dense, data.validation, data)
  constrained = FLAGS.method in baselines.CONSTRAINED
  names = [n.strip() for n in FLAGS.fairness if n.strip()] if constrained else []
  specs = [(n, baselines.AUDIT_GAP[n], FLAGS.epsilon) for n in names]
  if constrained and FLAGS.max_group_loss is not None and "group_loss" not in names:
    specs.append(("group_loss", "max_group_loss", FLAGS.max_group_loss))
  off_test = off_val = None
  fairness_off = None
  identical = None
  if off is not None:
    off_method, off_outcome = off
    off_test = baselines.audit(off_outcome["model"], dense, data.test, data)
    off_val = baselines.audit(off_outcome["model"], dense, data.validation, data)
    fairness_off = {"method": off_method, "accuracy": off_test.accuracy,
                    "validation_accuracy": off_val.accuracy,
                    "gaps": dict(off_test.gaps), "validation_gaps": dict(off_val.gaps)}
    ours, theirs = final.get_weights(), off_outcome["model"].get_weights()
    identical = len(ours) == len(theirs) and all(
        a.shape == b.shape and np.array_equal(a, b) for a, b in zip(ours, theirs))
  constraints = report_lib.constraint_verdicts(specs, val, report, FLAGS.harm_tolerance,
                                               off_val, off_test)
  share = baselines.predicted_share(final, data.test)
  dense_share = baselines.predicted_share(dense, data.test)
  collapsed = share >= 0.99 and dense_share < 0.99
  warnings_ = []
  if collapsed:
    warnings_.append(f"the {FLAGS.method} model predicts one class for {share:.1%} of the "
                     "test rows (the dense model did not): a constant predictor.")
  warnings_ += report_lib.verdict_warnings(constraints)
  per_group = report_lib.group_verdicts(report, specs, FLAGS.harm_tolerance,
                                        FLAGS.max_group_loss)
  harmed = [g for g in per_group["groups"] if g["verdict"] == "not met"
            or g.get("loss_verdict") == "not met"]
  if harmed:
    warnings_.append(
        f"{len(harmed)} group(s) lost clearly more than allowed on the test split: "
        + "; ".join(f"{g['name']} (n={g['size']}) lost {report_lib.points(g['loss'])} points, "
                    f"{report_lib.points(g['excess'])} beyond the average"
                    for g in harmed[:5]) + ("; …" if len(harmed) > 5 else "")
        + " (Groups table; bound them with --fairness=excess or --max_group_loss).")
  if off is not None:
    for split, ours, theirs in (("validation", val, off_val), ("test", report, off_test)):
      worse = [c["gap"] for c in constraints
               if (ours.gaps.get(c["gap"]) or 0) > (theirs.gaps.get(c["gap"]) or 0)]
      if worse and ours.accuracy < theirs.accuracy:
        warnings_.append(
            f"on the {split} split the {FLAGS.method} model is both less accurate "
            f"({report_lib.points(ours.accuracy)} vs {report_lib.points(theirs.accuracy)} "
            f"points) and less fair ({', '.join(worse)}) than {off[0]} (fairness off).")
        fairness_off[f"dominates_on_{split}"] = True
  selected = (outcome.get("held_out") or {}).get("selected")
  multipliers = ([float(np.max(m.numpy())) for m in outcome["pruned"].fairness_multipliers]
                 if "pruned" in outcome else [])
  off_verdicts = ([off_val.verdict(gap, eps, FLAGS.harm_tolerance).to_dict()
                   for _, gap, eps in specs] if off_val is not None else [])
  steered = any(c.enforcement.drives_multipliers
                for c in fairness_flags.fairness_from_flags(FLAGS))
  did = report_lib.what_fairness_did(selected, multipliers, identical,
                                     off[0] if off else None, steered, off_verdicts)
  return {
      "constraints": constraints,
      "validation_accuracy": val.accuracy, "validation_gaps": dict(val.gaps),
      "dense_gaps": {"validation": dict(val.dense_gaps), "test": dict(report.dense_gaps)},
      "group_accuracy_ci95": {g["name"]: g["accuracy_interval"] for g in report.groups},
      "group_verdicts": per_group,
      "resolution": dict(report.resolution),
      "largest_class_share": share, "collapsed": collapsed,
      "fairness_off": fairness_off, "fairness_did": did if constrained else None,
      "held_out_selection": selected,
      "warnings": warnings_,
  }, off_test


def strict_json(value):
  """`value` with NaN/inf as null and NumPy scalars as Python numbers (strict JSON)."""
  return audit_lib.strict_json(value)


def check_trained(model, what):
  """Exits with an error (no report) when a model's weights are not finite."""
  if not all(np.all(np.isfinite(w)) for w in model.get_weights()):
    raise SystemExit(f"error: {what} has NaN/inf weights (NaN/inf in the data?): no report "
                     "is written.")


def plot(results, report, output_dir, off_report=None):
  """tradeoff.png: each group's accuracy (dense, fairness off, pruned) and every gap, with
  ε and the fairness-off model's gaps."""
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    logging.warning("matplotlib is not installed: no tradeoff.png (pip install matplotlib).")
    return
  plot_lib.plot(results, report, os.path.join(output_dir, "tradeoff.png"), off_report)


def job(output_dir, staging, recorded, replacing):
  """Loads the data, runs the job into `staging` and publishes it to `output_dir`.

  Args:
    output_dir: The checked --output_dir.
    staging: `output.staging_dir(output_dir)`.
    recorded: The run's `output.recorded_flags`.
    replacing: `output.check_earlier_run`'s message, or None.

  Raises:
    app.UsageError: For a flag value found bad only now (with TensorFlow).
  """
  logging.set_verbosity(logging.INFO if FLAGS.verbose else logging.WARNING)
  tf.get_logger().setLevel("INFO" if FLAGS.verbose else "ERROR")
  fairness = fairness_flags.fairness_from_flags(FLAGS)
  if FLAGS.keras is None:
    FLAGS.keras = inputs.default_keras(FLAGS.method)
  try:
    inputs.keras_module(FLAGS.keras)
  except ValueError as err:
    raise app.UsageError(str(err)) from err
  say("Loading %s", FLAGS.dataset)
  try:
    data = inputs.load_dataset(FLAGS.dataset, FLAGS.seed, FLAGS.label, FLAGS.group,
                                 FLAGS.train_size, FLAGS.minority_fraction, FLAGS.correlation)
  except (ValueError, OSError) as err:
    raise app.UsageError(str(err)) from err
  if FLAGS.min_group_size:
    try:
      data = datasets.merge_small_groups(data, FLAGS.min_group_size)
    except ValueError as err:
      raise app.UsageError(f"--min_group_size={FLAGS.min_group_size}: {err}") from err
  for note in data.notes:
    say("Data: %s.", note)
  if data.semi_synthetic:
    say("%s is SEMI-SYNTHETIC: the group attribute is made up.", data.name)
  small = [f"{n} ({s})" for n, s in zip(data.group_names, data.test.group_sizes(data.num_groups))
           if s < SMALL_GROUP]
  if small:
    warn(f"{len(small)} group(s) have fewer than {SMALL_GROUP} test rows: "
         f"{', '.join(small[:10])}. Their accuracy is mostly noise and sets the worst-pair "
         "gaps; merge them with --min_group_size=N.")
  try:
    datasets.check_training_rows(data)
  except ValueError as err:
    raise app.UsageError(str(err)) from err
  say("%s: %d train / %d validation / %d test rows; groups %s (train sizes %s)",
               data.name, len(data.train), len(data.validation), len(data.test),
               data.group_names, data.train.group_sizes(data.num_groups))
  if replacing:
    say("%s.", replacing[0].upper() + replacing[1:])
  results = run(data, make_strategy(), staging, fairness)
  if results:
    output.publish(staging, output_dir, recorded)
    say("Wrote %s: accuracy %s, performance gap %s, degradation gap %s points; "
        "sparsity %s", output_dir, report_lib.points(results["accuracy"]),
        report_lib.points(results["performance_gap"]),
        report_lib.points(results["degradation_gap"]), report_lib.percent(results["sparsity"]))
    print(open(os.path.join(output_dir, "report.md")).read())
