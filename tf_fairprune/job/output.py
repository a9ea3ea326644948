"""The main job's --output_dir: the flags a run records, the check that a run never
replaces another run's output made with other flags, and writing the output whole.

A run writes into a staging directory inside --output_dir and `publish` moves its files
in at the end, results.json last: a run that fails, or is killed, leaves the earlier
output as it was (or no results.json), never a mix of two runs. Other files in the
directory are left alone.
"""

import json
import os
import shutil

from .flag_checks import FlagError

RESULTS = "results.json"
# Every file a run writes; an earlier run's ones are removed when a new run publishes.
OUTPUTS = ("report.md", RESULTS, "tradeoff.png", "model.tflite", "dense.tflite")
STAGING_PREFIX = ".fair_prune-partial-"
# Flags that do not change what a run computes.
NOT_RECORDED = ("output_dir", "overwrite", "verbose")


def recorded_flags(flag_values, names):
  """The flags a run records in results.json ("flags"), file paths made absolute.

  Args:
    flag_values: absl's FLAGS (parsed).
    names: The flag names to record (those in `NOT_RECORDED` are skipped).

  Returns:
    {name: value}, JSON values (lists for list flags).
  """
  recorded = {}
  for name in sorted(set(names) - set(NOT_RECORDED)):
    value = flag_values[name].value
    if name == "dataset" and str(value).startswith("csv:"):
      value = "csv:" + os.path.abspath(value[len("csv:"):])
    elif name == "dense_model" and value:
      value = os.path.abspath(value)
    recorded[name] = list(value) if isinstance(value, tuple) else value
  return json.loads(json.dumps(recorded))


def check_earlier_run(output_dir, flags, defaults, overwrite):
  """Whether a run with `flags` may write into `output_dir`.

  Args:
    output_dir: The --output_dir.
    flags: This run's `recorded_flags`.
    defaults: {name: default}, for flags an earlier run did not record.
    overwrite: --overwrite: replace an earlier run's output even with other flags.

  Returns:
    None when there is no earlier run's output, else a message (the phase message
    saying it is replaced).

  Raises:
    FlagError: When the directory holds an earlier run's results.json made with other
      flags (naming them), whose flags are not recorded, or that cannot be read, and
      `overwrite` is False.

  Example:

  ```python
  note = check_earlier_run("runs/x", flags, defaults, overwrite=False)
  ```
  """
  results = os.path.join(output_dir, RESULTS)
  remedy = "add --overwrite to replace it, or choose another --output_dir"
  if not os.path.isfile(results):
    leftovers = [f for f in OUTPUTS if os.path.exists(os.path.join(output_dir, f))]
    if leftovers:
      return (f"{output_dir} holds files of a run that did not finish (no {RESULTS}): "
              f"{', '.join(leftovers)} will be replaced")
    return None
  try:
    with open(results, encoding="utf-8") as f:
      earlier = json.load(f).get("flags")
  except (OSError, ValueError, AttributeError) as err:
    if overwrite:
      return f"replacing the unreadable {results} (--overwrite)"
    raise FlagError(f"--output_dir={output_dir} holds a {RESULTS} that cannot be read "
                    f"({type(err).__name__}): {remedy}.") from err
  if not isinstance(earlier, dict):
    if overwrite:
      return f"replacing the earlier run's output in {output_dir} (--overwrite)"
    raise FlagError(f"--output_dir={output_dir} holds the output of an earlier run whose "
                    f"flags are not recorded in its {RESULTS}: {remedy}.")
  differing = [(name, earlier.get(name, defaults.get(name)), value)
               for name, value in sorted(flags.items())
               if earlier.get(name, defaults.get(name)) != value]
  if not differing:
    return (f"replacing the earlier run's output in {output_dir} (made with the same "
            "flags)")
  said = "; ".join(f"--{name}: {_show(then)} there, {_show(now)} now"
                   for name, then, now in differing[:6])
  more = f"; and {len(differing) - 6} more" if len(differing) > 6 else ""
  if overwrite:
    return f"replacing the earlier run's output in {output_dir} (--overwrite; {said}{more})"
  raise FlagError(f"--output_dir={output_dir} holds the output of a run with other flags "
                  f"({said}{more}): {remedy}.")


def _show(value):
  return "unset" if value is None else json.dumps(value)


def staging_dir(output_dir):
  """Where this process's run writes before `publish` (made by the run)."""
  return os.path.join(output_dir, f"{STAGING_PREFIX}{os.getpid()}")


def publish(staging, output_dir, flags):
  """Moves a finished run's files from `staging` into `output_dir`, results.json last
  (with "flags" added), after removing an earlier run's outputs.

  Args:
    staging: The `staging_dir` the run wrote into.
    output_dir: The --output_dir.
    flags: This run's `recorded_flags`.
  """
  old = os.path.join(output_dir, RESULTS)
  if os.path.exists(old):
    os.remove(old)  # First: a directory without results.json is not a finished run.
  for name in OUTPUTS:
    path = os.path.join(output_dir, name)
    if os.path.isfile(path) and not os.path.exists(os.path.join(staging, name)):
      os.remove(path)
  names = sorted(os.listdir(staging))
  for name in names:
    if name != RESULTS:
      os.replace(os.path.join(staging, name), os.path.join(output_dir, name))
  if RESULTS in names:
    with open(os.path.join(staging, RESULTS), encoding="utf-8") as f:
      results = json.load(f)
    results.setdefault("flags", flags)
    with open(os.path.join(staging, RESULTS), "w", encoding="utf-8") as f:
      json.dump(results, f, indent=1, allow_nan=False)
    os.replace(os.path.join(staging, RESULTS), os.path.join(output_dir, RESULTS))
  discard(staging)


def discard(staging):
  """Removes a staging directory (a failed run's partial output)."""
  shutil.rmtree(staging, ignore_errors=True)
