"""Helpers shared by the benchmark scripts: timing, BENCHMARKS.md sections, stats."""

import json
import os
import platform
import re
import statistics
import time

from absl import flags
import numpy as np
import tensorflow as tf
import tf_keras as keras

from tf_fairprune.baselines.tracking import callback_class  # pylint: disable=unused-import
from tf_fairprune.fairness import enforcement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS_MD = os.path.join(ROOT, "BENCHMARKS.md")

_HEADER = """# Benchmarks

Every table below is written by a script in this repository; each section names the
command that produced it. Timings are medians of repeated runs measured in one process
and reported as ratios; absolute times depend on the machine (named in each section).
"""


class EpochTimerLogic:
  """Records the wall time of every epoch."""

  def on_train_begin(self, logs=None):
    self.times = []

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    self.times.append(time.perf_counter() - self._start)


class EpochTimer(EpochTimerLogic, keras.callbacks.Callback):
  __doc__ = EpochTimerLogic.__doc__


def read_rows(path):
  """The JSON rows of a .jsonl file, one per non-empty line; [] when it does not exist."""
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def read_row_files(directory, suffix=".jsonl"):
  """The rows of every file of `directory` whose name ends with `suffix`, by file name."""
  if not os.path.isdir(directory):
    return []
  return [row for name in sorted(os.listdir(directory)) if name.endswith(suffix)
          for row in read_rows(os.path.join(directory, name))]


def median(values):
  return float(statistics.median(values))


def mean_std(values):
  values = np.asarray(values, dtype=float)
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def fmt_mean_std(values, scale=1.0, digits=1):
  m, s = mean_std(np.asarray(values, dtype=float) * scale)
  return f"{m:.{digits}f} ± {s:.{digits}f}"


def machine():
  return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"TF {tf.__version__}")


def anchor(heading):
  """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces '-'."""
  kept = "".join(c for c in heading.strip().lower() if c.isalnum() or c in "_- ")
  return kept.replace(" ", "-")


def toc(text):
  """The table of contents of a Markdown text: one line per `## ` heading, in order."""
  lines, seen = [], {}
  for heading in re.findall(r"^## (.+?)\s*$", text, re.M):
    slug = anchor(heading)
    suffix = f"-{seen[slug]}" if slug in seen else ""
    seen[slug] = seen.get(slug, 0) + 1
    lines.append(f"- [{heading}](#{slug}{suffix})")
  return "\n".join(lines)


def _replace_section(text, name, body):
  begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
  block = f"{begin}\n{body.strip()}\n{end}"
  pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
  if pattern.search(text):
    return pattern.sub(lambda _: block, text)
  return text.rstrip() + "\n\n" + block + "\n"


def write_section(name, body, path=BENCHMARKS_MD):
  """Replaces (or appends) the section `name` of BENCHMARKS.md (or of `path`); then
  rewrites the file's table of contents (section "toc"), if it has one."""
  text = open(path, encoding="utf-8").read() if os.path.exists(path) else _HEADER
  text = _replace_section(text, name, body)
  if "<!-- BEGIN toc -->" in text:
    text = _replace_section(text, "toc", toc(text))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)


def table(header, rows):
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


# One-sided 95% Student t quantiles by degrees of freedom (normal beyond 30).
_T95 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860,
        9: 1.833, 10: 1.812, 15: 1.753, 20: 1.725, 30: 1.697}


def lower_bound(differences):
  """One-sided 95% lower t-bound of the mean of paired per-seed differences (-inf for
  fewer than two)."""
  d = np.asarray(differences, dtype=float)
  if len(d) < 2:
    return float("-inf")
  df = len(d) - 1
  t = _T95[max(k for k in _T95 if k <= df)] if df <= 30 else 1.645
  return float(d.mean() - t * d.std(ddof=1) / np.sqrt(len(d)))


def paired(a, b):
  """Rows of two cells (lists of result rows) matched by seed."""
  by_seed = {r["seed"]: r for r in b}
  return [(r, by_seed[r["seed"]]) for r in a if r["seed"] in by_seed]


def dominates(ours, theirs, gap):
  """Whether cell `ours` dominates cell `theirs` beyond seed noise in (accuracy, `gap`).

  Paired per seed: on neither axis is `ours` significantly worse (the one-sided 95%
  upper bound of its gain is >= 0), and on one it is significantly better (the lower
  bound of its gain is > 0). Higher accuracy and a lower gap are gains.
  """
  pairs = paired(ours, theirs)
  if len(pairs) < 2:
    return False
  gains = ([o["accuracy"] - t["accuracy"] for o, t in pairs],
           [t[gap] - o[gap] for o, t in pairs])
  not_worse = all(-lower_bound([-x for x in d]) >= 0 for d in gains)
  return not_worse and any(lower_bound(d) > 0 for d in gains)


# The Lagrangian's settings of the constrained rows: the library's defaults, or the
# earlier behaviour to reproduce rows made before them (`define_rule_flags`).
RULE_PREDATES = (
    "predate `Lagrangian(per_row=True, split_pressure=True)`: a multiplier weighed each "
    "row of its group by 1/(the group's share) and pushed on its own however many others "
    "pushed (rerun them so with `--noper_row --nosplit_pressure`")


def define_rule_flags():
  """Defines --per_row and --split_pressure (the Lagrangian's, default the library's)."""
  flags.DEFINE_bool("per_row", True, "The Lagrangian's `per_row` (the library default); "
                    "--noper_row reproduces rows made before it.")
  flags.DEFINE_bool("split_pressure", True, "The Lagrangian's `split_pressure` (the library "
                    "default); --nosplit_pressure reproduces rows made before it.")


def rule_settings():
  """The Lagrangian settings of `define_rule_flags`, as a row records them."""
  return {"per_row": flags.FLAGS.per_row, "split_pressure": flags.FLAGS.split_pressure}


def lagrangian(**settings):
  """A `Lagrangian` with `settings` and the flags' `per_row` / `split_pressure`."""
  return enforcement.Lagrangian(**settings, **rule_settings())


def predates_note(rows, key, note, some=" {done} of {total} rows ran with `{key}`."):
  """`note` when no row records `key` as true, `some` (how many do) when some do, "" when
  all do: the sentence that says which rows ran before a setting (rows without the key
  did)."""
  done = sum(bool(r.get(key)) for r in rows)
  if done == len(rows):
    return ""
  return note if done == 0 else some.format(done=done, total=len(rows), key=key)

