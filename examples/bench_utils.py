"""Helpers shared by the benchmark scripts: timing, BENCHMARKS.md sections, stats."""

import os
import platform
import re
import statistics
import time

import numpy as np
import tensorflow as tf
import tf_keras as keras

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS_MD = os.path.join(ROOT, "BENCHMARKS.md")

_HEADER = """# Benchmarks

Every table below is written by a script in this repository; each section names the
command that produced it. Timings are medians of repeated runs measured in one process
and reported as ratios; absolute times depend on the machine (named in each section).
"""


class EpochTimer(keras.callbacks.Callback):
  """Records the wall time of every epoch."""

  def on_train_begin(self, logs=None):
    self.times = []

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    self.times.append(time.perf_counter() - self._start)


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


README_MD = os.path.join(ROOT, "README.md")


def write_section(name, body, path=BENCHMARKS_MD):
  """Replaces (or appends) the section `name` of BENCHMARKS.md (or of `path`)."""
  text = open(path, encoding="utf-8").read() if os.path.exists(path) else _HEADER
  begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
  block = f"{begin}\n{body.strip()}\n{end}"
  pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
  text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)


def table(header, rows):
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)
