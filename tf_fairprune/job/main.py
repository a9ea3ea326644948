r"""The main job: train (or load) a dense model, fair-prune it, strip, export, report.

  tf-fairprune                       # UCI Adult (sex), BiFP, 90 percent sparsity
  tf-fairprune --fairness=performance --epsilon=0.05   # accuracy gap <= 5 points
  tf-fairprune --method=gmp --sparsity=0.95 --output_dir=/tmp/gmp
  tf-fairprune --dataset=csv:data.csv --label=income --group=sex
  tf-fairprune --dataset=colored-fmnist --train_size=12000  # CNN; semi-synthetic groups
  tf-fairprune --dataset=compas-race --method=two_stage
  tf-fairprune --strategy=mirrored   # all local GPUs (or CPUs)

`tf-fairprune` is installed with the library; `python -m tf_fairprune.job` and
`python examples/fair_prune.py` run the same job. The example script checks the flags
before TensorFlow is imported (a bad flag fails in a second); the other two import
tf_fairprune, and with it TensorFlow (10-15 s), first.

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

import os
import shutil
import sys

from absl import app
from absl import flags

from . import flag_checks
from . import flags as job_flags
from . import output

FLAGS = flags.FLAGS


def _verbose(argv):
  return any(a in ("--verbose", "--verbose=true", "--verbose=1") for a in argv[1:])


def _import_tensorflow_quietly(verbose):
  """Imports TensorFlow with its C++ start-up lines (written to stderr before its log
  level applies) hidden unless --verbose; an import error is still shown."""
  if verbose:
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


def _program():
  """The command's name in error lines: fair_prune.py, tf-fairprune or the -m module."""
  name = os.path.basename(sys.argv[0])
  return "python -m tf_fairprune.job" if name == "__main__.py" else name


def fail(message):
  """Ends the run with one line, last and alone: what is wrong."""
  sys.stderr.flush()
  line = " ".join(str(message).split())  # One line, whatever the message holds.
  print(f"{_program()}: error: {line}", file=sys.stderr, flush=True)
  sys.exit(2)


def main(argv):
  """absl's main: checks the flags, then imports TensorFlow and runs the job."""
  if len(argv) > 1:
    fail(f"unexpected arguments {argv[1:]}: every option is a --flag (--help lists them).")
  try:
    output_dir = job_flags.check_flags()
    names = [f.name for f in FLAGS.get_key_flags_for_module(
        FLAGS.find_module_defining_flag("dataset"))]
    recorded = output.recorded_flags(FLAGS, names)
    replacing = output.check_earlier_run(
        output_dir, recorded, {n: FLAGS[n].default for n in names}, FLAGS.overwrite)
  except flag_checks.FlagError as err:
    fail(err)
  existed = os.path.exists(output_dir)
  staging = output.staging_dir(output_dir)  # Published whole at the end.
  try:
    _import_tensorflow_quietly(FLAGS.verbose)
    from . import run as run_lib  # pylint: disable=g-import-not-at-top  (TensorFlow)
    run_lib.job(output_dir, staging, recorded, replacing)
  except app.UsageError as err:
    _cleanup(staging, output_dir, existed)
    fail(err)
  except BaseException:
    _cleanup(staging, output_dir, existed)
    raise
  _cleanup(staging, output_dir, existed)  # A worker that wrote nothing.


def _cleanup(staging, output_dir, existed):
  output.discard(staging)
  _remove_if_empty(output_dir, existed)


def _remove_if_empty(path, existed):
  """A failed run leaves no empty output directory behind (only one it made)."""
  if not existed and os.path.isdir(path) and not os.listdir(path):
    shutil.rmtree(path, ignore_errors=True)


def run(argv=None):
  """The job's command line (the `tf-fairprune` command).

  Args:
    argv: The command line (default `sys.argv`).

  Example:

  ```python
  from tf_fairprune.job import main
  main.run(["tf-fairprune", "--method=gmp", "--output_dir=/tmp/gmp"])
  ```
  """
  argv = sys.argv if argv is None else argv
  # TensorFlow's own messages (C++ INFO/ERROR lines such as the CUDA probe, Python INFO)
  # only with --verbose: the job's phase messages are what a user reads.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if _verbose(argv) else "3")
  # absl's --help prints the __main__ module's docstring and the flags key to it.
  sys.modules["__main__"].__doc__ = __doc__
  for flag in FLAGS.get_key_flags_for_module(job_flags.__name__):
    FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  app.run(main, argv)
