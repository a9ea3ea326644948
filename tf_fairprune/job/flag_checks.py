"""What the jobs know before TensorFlow is imported: method, dataset and constraint
names, the fairness flags, and the checks of the flag values.

A bad flag or a missing CSV file is reported in about a second, without the 10-15 s
TensorFlow import. This module imports only the standard library: the two library
modules it needs (`baselines/names.py`, `datasets/csv_table.py`, both free of
TensorFlow) are loaded from their files, since importing them as submodules would run
`tf_fairprune/__init__.py`, which imports TensorFlow.

Example:

```python
check_dataset("adult", group="race,sex")  # raises FlagError naming the flag if bad
```
"""

import importlib.util
import os

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _source_file(relpath):
  """The tf_fairprune module at `relpath` (e.g. "datasets/csv_table.py"), loaded from its
  file without importing the package (and with it TensorFlow)."""
  spec = importlib.util.spec_from_file_location(
      "_tf_fairprune_" + relpath[:-len(".py")].replace("/", "_"),
      os.path.join(_PACKAGE_DIR, relpath))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


_names = _source_file("baselines/names.py")
METHODS = _names.METHODS
TF_KERAS_ONLY = _names.TF_KERAS_ONLY
CONSTRAINT_NAMES = _names.CONSTRAINT_NAMES
AUDIT_GAP = _names.AUDIT_GAP
DEFAULT_FAIRNESS = _names.DEFAULT_FAIRNESS
DEFAULT_EPSILON = _names.DEFAULT_EPSILON
DEFAULT_OPTIMIZER = _names.DEFAULT_OPTIMIZER
parse_optimizer = _names.parse_optimizer
DATASETS = ("adult-sex", "adult-race", "compas-race", "compas-sex", "german-sex",
            "colored-fmnist")
# The rules of --fairness_mode (tf_fairprune.fairness.enforcement.RULES; the job checks
# at its start that they agree).
MODES = ("lagrangian", "penalty")
FAIRNESS_FLAGS = ("fairness", "fairness_mode", "epsilon", "fairness_weight", "held_out",
                  "max_accuracy_loss", "max_group_loss", "harm_tolerance")


class FlagError(ValueError):
  """A bad flag value; the message names the flag."""


def define_fairness_flags(flags):
  """The fairness flags shared by the main job and the CelebA job."""
  flags.DEFINE_list("fairness", list(DEFAULT_FAIRNESS),
                    "Constraints of the fair methods, a comma list of: "
                    f"{', '.join(CONSTRAINT_NAMES)}. Default: excess ('do no harm': no group "
                    "loses more than --epsilon beyond the average loss).")
  flags.DEFINE_enum("fairness_mode", "lagrangian", list(MODES),
                    "lagrangian: keep each gap <= --epsilon (multipliers found in training); "
                    "penalty: a fixed weight --fairness_weight.")
  flags.DEFINE_float("epsilon", DEFAULT_EPSILON,
                     "The gap accepted, as a fraction like the gaps in results.json "
                     "(0.01 = 1 point).")
  flags.DEFINE_float("fairness_weight", 1.0, "Weight of the penalty mode.")
  flags.DEFINE_bool("held_out", True,
                    "Steer the Lagrangian multipliers on the validation split (a violation "
                    "counts only beyond what the split can tell from noise) and return the "
                    "most accurate iterate that meets --epsilon there, or the final iterate "
                    "when nothing bound (HeldOutFairness); --noheld_out steers on the "
                    "training batches (a gap closed there often stays open on new data).")
  flags.DEFINE_float("max_group_loss", None,
                     "Also bound every group's accuracy loss against the dense model by this "
                     "fraction (0.02 = 2 points; the group_loss constraint): a parity "
                     "constraint then cannot be met by making a group worse off. Default: "
                     "no bound.")
  flags.DEFINE_float("harm_tolerance", 0.01,
                     "The report names a gap closed while a group lost more than this "
                     "fraction of accuracy against the dense model (beyond its interval) "
                     "as 'met by levelling down' (0.01 = 1 point); without an excess "
                     "constraint it is also the ε of each group's 'do no harm' verdict "
                     "in the Groups table.")
  flags.DEFINE_float("max_accuracy_loss", None,
                     "Validation accuracy the fair model may give up against the run's "
                     "most accurate iterate, a fraction (0.02 = 2 points); below it the "
                     "multipliers back off and no iterate is returned. Default: no budget.")


def fairness_names(f):
  """The constraint names of the fairness flags, checked.

  Raises:
    FlagError: Naming the flag whose value is bad.
  """
  names = [n.strip() for n in f.fairness if n.strip()]
  if not names:
    raise FlagError("--fairness is empty: name at least one constraint "
                    "(or use --method=bip for pruning without fairness).")
  unknown = [n for n in names if n not in CONSTRAINT_NAMES]
  if unknown:
    raise FlagError(f"--fairness: unknown constraint(s) {unknown}; use "
                    f"{', '.join(CONSTRAINT_NAMES)}.")
  if len(set(names)) != len(names):
    raise FlagError(f"--fairness: a constraint is named twice in {names}.")
  if not 0.0 <= f.epsilon < 1.0:
    raise FlagError(f"--epsilon must be a fraction in [0, 1) (0.01 = 1 point), got "
                    f"{f.epsilon}.")
  if not 0.0 <= f.fairness_weight < float("inf"):
    raise FlagError(f"--fairness_weight must be a finite number >= 0, got "
                    f"{f.fairness_weight}.")
  if f.max_group_loss is not None and not 0.0 <= f.max_group_loss <= 1.0:
    raise FlagError("--max_group_loss must be a fraction in [0, 1] (0.02 = 2 points), "
                    f"got {f.max_group_loss}.")
  if not 0.0 <= f.harm_tolerance <= 1.0:
    raise FlagError("--harm_tolerance must be a fraction in [0, 1] (0.01 = 1 point), "
                    f"got {f.harm_tolerance}.")
  if f.max_accuracy_loss is not None and not 0.0 <= f.max_accuracy_loss <= 1.0:
    raise FlagError("--max_accuracy_loss must be a fraction in [0, 1] (0.02 = 2 points), "
                    f"got {f.max_accuracy_loss}.")
  return names


def check_csv(spec, label, group, seed=0):
  """For --dataset=csv:PATH: the file exists and the job can train on it (read and
  checked as `datasets.load_csv` reads it, without importing TensorFlow).

  Raises:
    FlagError: One line naming the problem (see `csv_table.inspect_csv`).
  """
  path = spec[len("csv:"):]
  if not label or not group:
    raise FlagError("--dataset=csv:PATH needs --label=COL and --group=COL.")
  if not os.path.isfile(path):
    what = "is a directory, not a file" if os.path.isdir(path) else "does not exist"
    raise FlagError(f"--dataset=csv:{path}: the file {what}.")
  try:
    _source_file("datasets/csv_table.py").inspect_csv(path, label, group, seed)
  except OSError as err:
    raise FlagError(f"--dataset=csv:{path} cannot be read: {err}") from err
  except ValueError as err:
    raise FlagError(str(err)) from err


# The sensitive attributes of each built-in dataset, the first its default.
BUILTIN_GROUPS = {"adult": ("sex", "race"), "compas": ("race", "sex"),
                  "german": ("sex", "age"), "colored-fmnist": ("colour", "class")}


def builtin_group(name, group=None):
  """`(base, sensitive)` of a built-in dataset: "adult-sex" -> ("adult", "sex");
  "adult" with --group=race,sex -> ("adult", "race,sex").

  Raises:
    FlagError: For an unknown name or attribute, or a --group beside a name that fixes one.
  """
  if name == "colored-fmnist" or name in BUILTIN_GROUPS:
    base, fixed = name, None
  else:
    base, _, fixed = name.partition("-")
    if base not in BUILTIN_GROUPS or fixed not in BUILTIN_GROUPS[base]:
      raise FlagError(f"--dataset: unknown dataset {name!r}: use one of {', '.join(DATASETS)}, "
                      f"{', '.join(b for b in BUILTIN_GROUPS if b != 'colored-fmnist')} with "
                      "--group, or csv:PATH.")
  if group and fixed:
    raise FlagError(f"--dataset={name} fixes the group ({fixed!r}); for other or several "
                    f"attributes name the dataset alone: --dataset={base} --group={group}.")
  columns = [c.strip() for c in (group or fixed or BUILTIN_GROUPS[base][0]).split(",")]
  unknown = [c for c in columns if c not in BUILTIN_GROUPS[base]]
  if unknown or len(set(columns)) != len(columns) or not all(columns):
    raise FlagError(f"--group={group}: {base} has the sensitive attributes "
                    f"{', '.join(BUILTIN_GROUPS[base])} (each at most once, comma-separated).")
  if base == "colored-fmnist" and "colour" not in columns:
    raise FlagError(f"--group={group}: colored-fmnist's groups are its colours ('colour' or "
                    "'class,colour').")
  return base, ",".join(columns)


def check_dataset(name, label=None, group=None, seed=0):
  """A known dataset name, or a csv:PATH the job can train on (with that split seed).

  Raises:
    FlagError: For an unknown name or a CSV problem.
  """
  if name.startswith("csv:"):
    check_csv(name, label, group, seed)
  else:
    builtin_group(name, group)


def check_output_dir(path):
  """The output directory can be made (it is made only when results are written).

  Raises:
    FlagError: If it is a file or neither it nor its nearest existing parent is writable.
  """
  if os.path.exists(path) and not os.path.isdir(path):
    raise FlagError(f"--output_dir={path} is a file, not a directory.")
  existing = os.path.abspath(path)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise FlagError(f"--output_dir={path} cannot be created: {existing} is a file.")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise FlagError(f"--output_dir={path} is not writable ({existing}).")


def keras3_installed():
  return importlib.util.find_spec("keras") is not None
