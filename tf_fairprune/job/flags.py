"""The main job's flags (absl) and their checks, without TensorFlow.

Importing this module defines the flags (`--dataset`, `--method`, ... and the fairness
flags of `flag_checks.define_fairness_flags`); `check_flags` checks every value that can
be checked before TensorFlow is imported, so that a bad flag fails in about a second.

Example:

```python
from absl import flags
flags.FLAGS(["job", "--sparsity=0.95"])
output_dir = check_flags()  # raises flag_checks.FlagError naming the flag if bad
```
"""

import os

from absl import flags

from . import dense_model_file
from . import flag_checks

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "adult-sex",
                    f"{', '.join(flag_checks.DATASETS)} (colored-fmnist: semi-synthetic "
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
flags.DEFINE_enum("method", "bifp", flag_checks.METHODS,
                  "Pruning method (each is described at the top of --help).")
flags.DEFINE_float("sparsity", 0.9, "Target sparsity: the fraction of the weights pruned "
                   "(0.9 = 90%).")
flags.DEFINE_integer("epochs", 5, "Pruning (or fine-tuning) epochs: E in the --method list.")
flags.DEFINE_enum("keras", None, ["3", "2"],
                  "Keras flavour: 3 (`import keras`) or 2 (tf_keras, TFMOT's). Default: the "
                  "one that saved --dense_model, else 3 where the method runs on it (all but "
                  "gmp and two_stage, which use TFMOT).")
flags.DEFINE_string("optimizer", flag_checks.DEFAULT_OPTIMIZER,
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
flag_checks.define_fairness_flags(flags)
for _name in flag_checks.FAIRNESS_FLAGS:  # Listed by --help, not only --helpfull.
  flags.declare_key_flag(_name)
flags.DEFINE_bool("compare_fairness_off", True,
                  "Also run the same method with fairness off (bifp: bip; ceag: "
                  "magnitude_ft; two_stage: gmp) and report the fair model against it.")
flags.DEFINE_enum("target_metric", None, sorted(set(flag_checks.AUDIT_GAP.values())),
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


def check_flags():
  """Checks every flag that can be checked without TensorFlow; returns the output
  directory.

  Raises:
    flag_checks.FlagError: Naming the flag whose value is bad.
  """
  error = flag_checks.FlagError
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
  if FLAGS.method in flag_checks.TF_KERAS_ONLY and FLAGS.keras == "3":
    raise error(f"--method={FLAGS.method} uses TFMOT, which works on tf_keras only: "
                "use --keras=2.")
  if FLAGS.keras == "3" and not flag_checks.keras3_installed():
    raise error("--keras=3 needs Keras 3 (pip install 'keras>=3').")
  if FLAGS.keras is None:  # Resolved here so that results.json records the flavour run.
    FLAGS.keras = ("2" if FLAGS.method in flag_checks.TF_KERAS_ONLY or
                   not flag_checks.keras3_installed() else "3")
  try:
    flag_checks.parse_optimizer(FLAGS.optimizer)
  except ValueError as err:
    raise error(f"--optimizer: {err}") from err
  flag_checks.fairness_names(FLAGS)
  flag_checks.check_dataset(FLAGS.dataset, FLAGS.label, FLAGS.group, FLAGS.seed)
  output_dir = FLAGS.output_dir or os.path.join(
      "runs", f"{FLAGS.dataset.replace(':', '_').replace('/', '_')}-{FLAGS.method}")
  flag_checks.check_output_dir(output_dir)
  return output_dir
