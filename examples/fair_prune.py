r"""The main job: train (or load) a dense model, fair-prune it, strip, export, report.

  python examples/fair_prune.py                       # UCI Adult (sex), BiFP, 90 percent sparsity
  python examples/fair_prune.py --fairness=performance --epsilon=0.05   # accuracy gap <= 5 points
  python examples/fair_prune.py --method=gmp --sparsity=0.95 --output_dir=/tmp/gmp
  python examples/fair_prune.py --dataset=csv:data.csv --label=income --group=sex
  python examples/fair_prune.py --dataset=colored-fmnist --train_size=12000  # CNN; semi-synthetic groups
  python examples/fair_prune.py --dataset=compas-race --method=two_stage
  python examples/fair_prune.py --strategy=mirrored   # all local GPUs (or CPUs)

Writes into --output_dir: report.md (per-group table with sizes, gaps, sparsity, TFLite
size, time), results.json (with every flag) and tradeoff.png, once the run has finished;
an earlier run's output there made with other flags is kept unless --overwrite.

Methods (E = --epochs):
  bifp                 bi-level fair pruning, E epochs: the --fairness constraints on weights
                       and mask (default: excess, "do no harm", at --epsilon=0.01, Lagrangian)
  bip                  the same bi-level step with fairness off
  bifp_layer, bip_layer  the same, each layer pruned to the target (as TFMOT does) instead
                       of one global ranking
  bifp_no_mask_term    fairness on the weights only   (paper ablation)
  bifp_no_weight_term  fairness on the mask only      (paper ablation)
  gmp                  TFMOT prune_low_magnitude (per layer): polynomial ramp over E // 2
                       epochs, then E epochs of fine-tuning at the target
  magnitude_ft         one-shot global magnitude mask, then E epochs of fine-tuning
  ceag                 Balancing Act's CEAG: the magnitude mask, then E epochs of
                       fine-tuning under the --fairness constraints (Lagrangian)
  two_stage            gmp's ramp (E // 2 epochs), then fine-tuning with the --fairness
                       constraints and the mask fixed: E epochs in all
  dense                no pruning (the reference)
"""

import contextlib
import json
import os
import shutil
import sys
import warnings

from absl import app
from absl import flags
from absl import logging

# TensorFlow's own messages (C++ INFO/ERROR lines such as the CUDA probe, Python INFO)
# only with --verbose: the job's phase messages are what a user reads.
VERBOSE = any(a in ("--verbose", "--verbose=true", "--verbose=1") for a in sys.argv[1:])
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if VERBOSE else "3")
# The shared pipeline (data, the method zoo, the job flags) lives with the benchmarks.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _import_tensorflow_quietly():
  """Imports TensorFlow with its C++ start-up lines (written to stderr before its log
  level applies) hidden unless --verbose; an import error is still shown."""
  if VERBOSE:
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
    return
  sys.stderr.flush()
  saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import,redefined-outer-name
    import tf_keras  # pylint: disable=g-import-not-at-top,unused-import
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


import dense_model_file  # pylint: disable=g-import-not-at-top  (no TensorFlow)
import job_flags  # pylint: disable=g-import-not-at-top
import job_output  # pylint: disable=g-import-not-at-top

# Imported by `_import_libraries` once the flags are checked: a bad flag fails in a
# second, not after the TensorFlow import.
np = tf = keras = pipeline = tf_fairprune = datasets = None
audit_lib = job_report = tradeoff_plot = None


def _import_libraries():
  global np, tf, keras, pipeline, tf_fairprune, datasets  # pylint: disable=global-statement
  global audit_lib, job_report, tradeoff_plot  # pylint: disable=global-statement
  _import_tensorflow_quietly()
  import numpy  # pylint: disable=g-import-not-at-top
  import tensorflow  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top
  import pipeline as pipeline_module  # pylint: disable=g-import-not-at-top
  import tf_fairprune as library  # pylint: disable=g-import-not-at-top
  from tf_fairprune import datasets as datasets_module  # pylint: disable=g-import-not-at-top
  import job_report as job_report_module  # pylint: disable=g-import-not-at-top
  import tradeoff_plot as plot_module  # pylint: disable=g-import-not-at-top
  from tf_fairprune.fairness import audit as audit_module  # pylint: disable=g-import-not-at-top
  np, tf, keras, pipeline = numpy, tensorflow, tf_keras, pipeline_module
  tf_fairprune, datasets = library, datasets_module
  audit_lib, job_report, tradeoff_plot = audit_module, job_report_module, plot_module


FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "adult-sex",
                    f"{', '.join(job_flags.DATASETS)} (colored-fmnist: semi-synthetic "
                    "groups); adult, compas, german or colored-fmnist with --group; or "
                    "csv:PATH with --label and --group.")
flags.DEFINE_string("label", None, "CSV: the label column (binary; the second of its two "
                    "values, in numeric order if both are numbers, is the positive class).")
flags.DEFINE_string("group", None, "The sensitive attribute(s): CSV columns, or a built-in "
                    "dataset's (adult: sex, race; compas: race, sex; german: sex, age; "
                    "colored-fmnist: colour, class). Several, comma-separated "
                    "(--group=race,sex), form one group per combination that occurs, named "
                    "'race=Black, sex=Female' (missing CSV cells are a value of their own, "
                    "'missing').")
flags.DEFINE_enum("method", "bifp", job_flags.METHODS,
                  "Pruning method (each is described at the top of --help).")
flags.DEFINE_float("sparsity", 0.9, "Target sparsity: the fraction of the weights pruned "
                   "(0.9 = 90%).")
flags.DEFINE_integer("epochs", 5, "Pruning (or fine-tuning) epochs: E in the --method list.")
flags.DEFINE_enum("keras", None, ["3", "2"],
                  "Keras flavour: 3 (`import keras`) or 2 (tf_keras, TFMOT's). Default: the "
                  "one that saved --dense_model, else 3 where the method runs on it (all but "
                  "gmp and two_stage, which use TFMOT).")
flags.DEFINE_string("optimizer", job_flags.DEFAULT_OPTIMIZER,
                    "The weights' optimizer while pruning: sgd:LR (momentum 0.9) or adam:LR.")
flags.DEFINE_integer("dense_epochs", 5, "Dense training epochs (>= 1, unless --dense_model).")
flags.DEFINE_string("dense_model", None,
                    "Load the dense model from this .keras/.h5 file (model.save()) instead "
                    "of training it: one input of the dataset's features, one output of 1 "
                    "unit (binary) or one per class; logits, or sigmoid/softmax "
                    "probabilities (pruned as the logits under them).")
flags.DEFINE_enum("model", "auto", ["auto", "mlp", "cnn", "resnet10", "mobilenet_v2"],
                  "Architecture (auto: mlp for tabular data, cnn for images).")
flags.DEFINE_float("width", None, "Width of the image model (filters or multiplier).")
flags.DEFINE_integer("batch_size", 256, "Global batch size.")
flags.DEFINE_integer("seed", 0, "Seed of data split, init and order.")
job_flags.define_fairness_flags(flags)
for _name in job_flags.FAIRNESS_FLAGS:  # Listed by --help, not only --helpfull.
  flags.declare_key_flag(_name)
flags.DEFINE_bool("compare_fairness_off", True,
                  "Also run the same method with fairness off (bifp: bip; ceag: "
                  "magnitude_ft; two_stage: gmp) and report the fair model against it.")
flags.DEFINE_enum("target_metric", None, sorted(set(job_flags.AUDIT_GAP.values())),
                  "Gap that defines a fair model for the time to target (default: the gap "
                  "of the first --fairness constraint).")
flags.DEFINE_float("target_gap", None, "A model is fair when its validation gap is <= this "
                   "and its accuracy within --tolerance of the dense model; a fraction "
                   "(0.01 = 1 point). Default: --epsilon.")
flags.DEFINE_float("tolerance", 0.01, "Accuracy the fair model may lose against dense, a "
                   "fraction (0.01 = 1 point).")
flags.DEFINE_float("minority_fraction", 0.05, "colored-fmnist: share of the minority colour, "
                   "a fraction of the images (0.05 = 5%).")
flags.DEFINE_float("correlation", 0.0, "colored-fmnist: colour-label correlation in [0, 1].")
flags.DEFINE_integer("train_size", None, "colored-fmnist: use this many training images.")
flags.DEFINE_enum("strategy", "none", ["none", "mirrored", "multi_worker"],
                  "tf.distribute strategy (multi_worker reads TF_CONFIG).")
flags.DEFINE_bool("jit_compile", False, "Compile the train step with XLA.")
flags.DEFINE_string("output_dir", None, "Where to write results (default runs/DATASET-METHOD). "
                    "An earlier run's output there is replaced only if it was made with the "
                    "same flags, or with --overwrite.")
flags.DEFINE_bool("overwrite", False, "Replace an earlier run's output in --output_dir even "
                  "if it was made with other flags.")
flags.DEFINE_integer("min_group_size", 0, "Merge groups with fewer training rows than this "
                     "into one 'other' group (their gaps would be noise).")
flags.DEFINE_bool("verbose", False, "Show TensorFlow's own log messages too.")

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
  k = pipeline.keras_module(FLAGS.keras)
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
      dense = pipeline.train_dense(data, FLAGS.dense_epochs, FLAGS.batch_size, FLAGS.model,
                                   FLAGS.width, FLAGS.jit_compile, k=k)

  say("Phase 2/4: pruning with %s to %.0f%% sparsity", FLAGS.method,
               100 * FLAGS.sparsity)
  check_trained(dense, "The dense model")
  target_metric = FLAGS.target_metric or pipeline.AUDIT_GAP[FLAGS.fairness[0].strip()]
  target_gap = FLAGS.epsilon if FLAGS.target_gap is None else FLAGS.target_gap

  def prune(method):
    # The same seed for the fair and the fairness-off run: same data order and
    # initialisation, so what differs is what fairness did.
    keras.utils.set_random_seed(FLAGS.seed)
    k.utils.set_random_seed(FLAGS.seed)
    with strategy.scope(), collect_warnings(method):
      return pipeline.prune(method, dense, data, FLAGS.sparsity, FLAGS.epochs,
                            FLAGS.batch_size, fairness, target_metric, target_gap,
                            FLAGS.tolerance, jit_compile=FLAGS.jit_compile,
                            optimizer=FLAGS.optimizer, held_out=FLAGS.held_out,
                            max_accuracy_loss=FLAGS.max_accuracy_loss)

  outcome = prune(FLAGS.method)
  off = None
  if FLAGS.compare_fairness_off and FLAGS.method in pipeline.FAIRNESS_OFF:
    off_method = pipeline.FAIRNESS_OFF[FLAGS.method]
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
  report = pipeline.audit(final, dense, data.test, data)
  results = pipeline.result_row(data, FLAGS.method, FLAGS.seed, FLAGS.sparsity, outcome, report)
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
      **pipeline.fairness_settings(FLAGS),
      "gaps": dict(report.gaps), "gap_intervals": dict(report.intervals),
      "data_notes": list(data.notes), "dense_model_notes": list(DENSE_NOTES),
  })
  results = strict_json(results)
  with open(os.path.join(output_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=1, allow_nan=False)
  with open(os.path.join(output_dir, "report.md"), "w") as f:
    f.write(job_report.render(results, report, off_report))
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
  val = pipeline.audit(final, dense, data.validation, data)
  constrained = FLAGS.method in pipeline.CONSTRAINED
  names = [n.strip() for n in FLAGS.fairness if n.strip()] if constrained else []
  specs = [(n, pipeline.AUDIT_GAP[n], FLAGS.epsilon) for n in names]
  if constrained and FLAGS.max_group_loss is not None and "group_loss" not in names:
    specs.append(("group_loss", "max_group_loss", FLAGS.max_group_loss))
  off_test = off_val = None
  fairness_off = None
  identical = None
  if off is not None:
    off_method, off_outcome = off
    off_test = pipeline.audit(off_outcome["model"], dense, data.test, data)
    off_val = pipeline.audit(off_outcome["model"], dense, data.validation, data)
    fairness_off = {"method": off_method, "accuracy": off_test.accuracy,
                    "validation_accuracy": off_val.accuracy,
                    "gaps": dict(off_test.gaps), "validation_gaps": dict(off_val.gaps)}
    ours, theirs = final.get_weights(), off_outcome["model"].get_weights()
    identical = len(ours) == len(theirs) and all(
        a.shape == b.shape and np.array_equal(a, b) for a, b in zip(ours, theirs))
  constraints = job_report.constraint_verdicts(specs, val, report, FLAGS.harm_tolerance,
                                               off_val, off_test)
  share = pipeline.predicted_share(final, data.test)
  dense_share = pipeline.predicted_share(dense, data.test)
  collapsed = share >= 0.99 and dense_share < 0.99
  warnings_ = []
  if collapsed:
    warnings_.append(f"the {FLAGS.method} model predicts one class for {share:.1%} of the "
                     "test rows (the dense model did not): a constant predictor.")
  warnings_ += job_report.verdict_warnings(constraints)
  per_group = job_report.group_verdicts(report, specs, FLAGS.harm_tolerance,
                                        FLAGS.max_group_loss)
  harmed = [g for g in per_group["groups"] if g["verdict"] == "not met"
            or g.get("loss_verdict") == "not met"]
  if harmed:
    warnings_.append(
        f"{len(harmed)} group(s) lost clearly more than allowed on the test split: "
        + "; ".join(f"{g['name']} (n={g['size']}) lost {job_report.points(g['loss'])} points, "
                    f"{job_report.points(g['excess'])} beyond the average"
                    for g in harmed[:5]) + ("; …" if len(harmed) > 5 else "")
        + " (Groups table; bound them with --fairness=excess or --max_group_loss).")
  if off is not None:
    for split, ours, theirs in (("validation", val, off_val), ("test", report, off_test)):
      worse = [c["gap"] for c in constraints
               if (ours.gaps.get(c["gap"]) or 0) > (theirs.gaps.get(c["gap"]) or 0)]
      if worse and ours.accuracy < theirs.accuracy:
        warnings_.append(
            f"on the {split} split the {FLAGS.method} model is both less accurate "
            f"({job_report.points(ours.accuracy)} vs {job_report.points(theirs.accuracy)} "
            f"points) and less fair ({', '.join(worse)}) than {off[0]} (fairness off).")
        fairness_off[f"dominates_on_{split}"] = True
  selected = (outcome.get("held_out") or {}).get("selected")
  multipliers = ([float(np.max(m.numpy())) for m in outcome["pruned"].fairness_multipliers]
                 if "pruned" in outcome else [])
  off_verdicts = ([off_val.verdict(gap, eps, FLAGS.harm_tolerance).to_dict()
                   for _, gap, eps in specs] if off_val is not None else [])
  steered = any(c.enforcement.drives_multipliers for c in pipeline.fairness_from_flags(FLAGS))
  did = job_report.what_fairness_did(selected, multipliers, identical,
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
  tradeoff_plot.plot(results, report, os.path.join(output_dir, "tradeoff.png"), off_report)


def check_flags():
  """Checks every flag that can be checked without TensorFlow; returns the output
  directory.

  Raises:
    job_flags.FlagError: Naming the flag whose value is bad.
  """
  error = job_flags.FlagError
  if not 0.0 <= FLAGS.sparsity < 1.0:
    raise error(f"--sparsity must be in [0, 1), got {FLAGS.sparsity}.")
  if FLAGS.batch_size < 1:
    raise error(f"--batch_size must be a positive integer, got {FLAGS.batch_size}.")
  if FLAGS.epochs < (0 if FLAGS.method == "dense" else 1):
    raise error(f"--epochs must be >= 1 for --method={FLAGS.method} (it trains nothing "
                f"otherwise, and no report is written), got {FLAGS.epochs}.")
  for name, top in (("tolerance", 1.0), ("target_gap", 1.0)):
    value = FLAGS[name].value
    if value is not None and not 0.0 <= value <= top:
      raise error(f"--{name} must be a fraction in [0, 1] (0.01 = 1 point), got {value}.")
  if FLAGS.dense_model:
    # The file's own Keras (read from its metadata), or a one-line refusal.
    FLAGS.keras = dense_model_file.keras_for(FLAGS.dense_model, FLAGS.keras, FLAGS.method)
  elif FLAGS.dense_epochs < 1:
    raise error(f"--dense_epochs must be >= 1, got {FLAGS.dense_epochs}: the report compares "
                "against the dense model, which must be trained (or loaded with "
                "--dense_model=FILE).")
  if FLAGS.min_group_size < 0:
    raise error(f"--min_group_size must be >= 0, got {FLAGS.min_group_size}.")
  if FLAGS.train_size is not None and FLAGS.train_size < 1:
    raise error(f"--train_size must be a positive integer, got {FLAGS.train_size}.")
  if FLAGS.width is not None and not FLAGS.width > 0:
    raise error(f"--width must be positive, got {FLAGS.width}.")
  if FLAGS.method in job_flags.TF_KERAS_ONLY and FLAGS.keras == "3":
    raise error(f"--method={FLAGS.method} uses TFMOT, which works on tf_keras only: "
                "use --keras=2.")
  if FLAGS.keras == "3" and not job_flags.keras3_installed():
    raise error("--keras=3 needs Keras 3 (pip install 'keras>=3').")
  if FLAGS.keras is None:  # Resolved here so that results.json records the flavour run.
    FLAGS.keras = ("2" if FLAGS.method in job_flags.TF_KERAS_ONLY or
                   not job_flags.keras3_installed() else "3")
  try:
    job_flags.parse_optimizer(FLAGS.optimizer)
  except ValueError as err:
    raise error(f"--optimizer: {err}") from err
  job_flags.fairness_names(FLAGS)
  job_flags.check_dataset(FLAGS.dataset, FLAGS.label, FLAGS.group, FLAGS.seed)
  output_dir = FLAGS.output_dir or os.path.join(
      "runs", f"{FLAGS.dataset.replace(':', '_').replace('/', '_')}-{FLAGS.method}")
  job_flags.check_output_dir(output_dir)
  return output_dir


def fail(message):
  """Ends the run with one line, last and alone: what is wrong."""
  sys.stderr.flush()
  line = " ".join(str(message).split())  # One line, whatever the message holds.
  print(f"fair_prune.py: error: {line}", file=sys.stderr, flush=True)
  sys.exit(2)


def main(argv):
  if len(argv) > 1:
    fail(f"unexpected arguments {argv[1:]}: every option is a --flag (--help lists them).")
  try:
    output_dir = check_flags()
    names = [f.name for f in FLAGS.get_key_flags_for_module(
        FLAGS.find_module_defining_flag("dataset"))]
    recorded = job_output.recorded_flags(FLAGS, names)
    replacing = job_output.check_earlier_run(
        output_dir, recorded, {n: FLAGS[n].default for n in names}, FLAGS.overwrite)
  except job_flags.FlagError as err:
    fail(err)
  existed = os.path.exists(output_dir)
  staging = job_output.staging_dir(output_dir)  # Published whole at the end.
  try:
    _main(output_dir, staging, recorded, replacing)
  except app.UsageError as err:
    _cleanup(staging, output_dir, existed)
    fail(err)
  except BaseException:
    _cleanup(staging, output_dir, existed)
    raise
  _cleanup(staging, output_dir, existed)  # A worker that wrote nothing.


def _cleanup(staging, output_dir, existed):
  job_output.discard(staging)
  _remove_if_empty(output_dir, existed)


def _remove_if_empty(path, existed):
  """A failed run leaves no empty output directory behind (only one it made)."""
  if not existed and os.path.isdir(path) and not os.listdir(path):
    shutil.rmtree(path, ignore_errors=True)


def _main(output_dir, staging, recorded, replacing):
  _import_libraries()
  logging.set_verbosity(logging.INFO if FLAGS.verbose else logging.WARNING)
  tf.get_logger().setLevel("INFO" if FLAGS.verbose else "ERROR")
  fairness = pipeline.fairness_from_flags(FLAGS)
  if FLAGS.keras is None:
    FLAGS.keras = pipeline.default_keras(FLAGS.method)
  try:
    pipeline.keras_module(FLAGS.keras)
  except ValueError as err:
    raise app.UsageError(str(err)) from err
  say("Loading %s", FLAGS.dataset)
  try:
    data = pipeline.load_dataset(FLAGS.dataset, FLAGS.seed, FLAGS.label, FLAGS.group,
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
    job_output.publish(staging, output_dir, recorded)
    say("Wrote %s: accuracy %s, performance gap %s, degradation gap %s points; "
        "sparsity %s", output_dir, job_report.points(results["accuracy"]),
        job_report.points(results["performance_gap"]),
        job_report.points(results["degradation_gap"]), job_report.percent(results["sparsity"]))
    print(open(os.path.join(output_dir, "report.md")).read())


if __name__ == "__main__":
  app.run(main)
