"""Benchmark sections render what their rows say: a section heading, a header per dataset,
tables with the expected columns, one table row per configuration of the input rows, and
the figures the script computes from those rows (seed pairing, medians) in the columns
that name them. Synthetic rows only: nothing here depends on a benchmark's last run.
Each script runs in its own process (their absl flags share names)."""

import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _render(script, rows, tmp_path, *flags):
  path = tmp_path / "rows.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  out = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", script), "--render_only",
       f"--rows={path}", *flags], capture_output=True, text=True, env=env, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  return out.stdout


def _tables(text):
  """Every Markdown table of `text`: a list of {column: cell} rows per table."""
  tables = []
  for block in re.findall(r"((?:^\|.*\|\n)+)", text + "\n", re.M):
    lines = [[c.strip() for c in line.strip()[1:-1].split(" | ")] for line in block.splitlines()]
    assert re.fullmatch(r"(---\|)+", block.splitlines()[1][1:]), block  # header separator
    header, body = lines[0], lines[2:]
    assert all(len(row) == len(header) for row in body), block
    tables.append([dict(zip(header, row)) for row in body])
  return tables


def _section(text, heading):
  assert re.search(rf"^## {re.escape(heading)}$", text, re.M), text[:500]
  assert "Command: `python benchmarks/" in text  # Every section says what produced it.
  return text


def test_rerank_frequency_pairs_seeds_against_the_first_frequency(tmp_path):
  def row(seed, frequency, accuracy, gap, seconds, run="bip"):
    return {"dataset": "toy", "seed": seed, "run": run, "sparsity": 0.9,
            "mask_update_frequency": frequency, "accuracy": accuracy,
            "performance_gap": gap, "max_excess_gap": 0.5, "collapsed": False,
            "train_seconds": seconds, "group_names": ["a", "b"], "group_size": [90, 10]}
  rows = [row(0, 1, 0.80, 0.10, 10.0), row(1, 1, 0.70, 0.20, 10.0), row(2, 1, 0.75, 0.10, 8.0),
          row(0, 10, 0.78, 0.12, 5.0), row(1, 10, 0.68, 0.22, 6.0), row(2, 10, 0.73, 0.12, 4.0),
          # No frequency-1 partner: counted in its own mean, never paired.
          row(3, 10, 0.10, 0.90, 1.0)]
  text = _section(_render("benchmark_rerank_frequency.py", rows, tmp_path, "--nowrite_markdown"),
                  "Mask re-rank frequency: what re-ranking less often costs")
  assert re.search(r"^### toy$", text, re.M)
  assert "a 90, b 10" in text and "Seeds: 4." in text  # Group sizes and seed count.
  (table,) = _tables(text)
  assert list(table[0]) == ["run", "every k steps", "accuracy", "gap", "Δ accuracy vs every 1",
                            "Δ gap vs every 1", "time", "collapsed"]
  by_frequency = {r["every k steps"]: r for r in table}
  assert sorted(by_frequency) == ["1", "10"] and len(table) == 2  # One row per frequency.
  first, every10 = by_frequency["1"], by_frequency["10"]
  assert first["run"] == every10["run"] == "bip @90%"
  # The reference frequency: its own mean over seeds 0-2, no Δ, time 1.
  assert (first["accuracy"], first["gap"]) == ("75.0 ± 5.0", "13.3 ± 5.8")
  assert first["Δ accuracy vs every 1"] == first["Δ gap vs every 1"] == "–"
  assert first["time"] == "1" and first["collapsed"] == "0/3"
  # Paired over seeds 0-2 only: every Δ is exactly -2 / +2 points; time ratio 0.5.
  assert every10["Δ accuracy vs every 1"] == "-2.0 ± 0.0"
  assert every10["Δ gap vs every 1"] == "+2.0 ± 0.0"
  assert every10["time"] == "0.50" and every10["collapsed"] == "0/4"
  # The paired costs whose interval excludes zero are listed.
  listed = re.findall(r"^- toy bip @90%, every 10: (accuracy|gap) ([-+]\d\.\d) ", text, re.M)
  assert listed == [("accuracy", "-2.0"), ("gap", "+2.0")]


def test_time_to_fair_reports_seconds_and_the_target(tmp_path):
  def row(seed, method, seconds, steps=50):
    return {"dataset": "toy", "dataset_key": "toy", "semi_synthetic": False, "seed": seed,
            "method": method, "target_sparsity": 0.9, "sparsity": 0.9,
            "seconds_to_target": seconds, "steps_to_target": None if seconds is None else steps,
            "train_seconds": 20.0, "accuracy": 0.8, "max_excess_gap": 0.01,
            "collapsed": False, "group_names": ["a", "b"], "group_size": {"a": 90, "b": 10}}
  rows = [row(0, "bifp", 2.0), row(1, "bifp", 3.0),
          row(0, "two_stage", 10.0), row(1, "two_stage", None),
          row(0, "ceag", 20.0), row(1, "ceag", 6.0)]
  text = _section(_render("benchmark_time_to_fair.py", rows, tmp_path, "--nowrite_docs"),
                  "Time to fair with held-out steering")
  assert re.search(r"^### toy$", text, re.M)
  assert "a 90, b 10" in text
  methods, targets = _tables(text)
  assert list(methods[0]) == ["sparsity", "method", "fair after", "total", "accuracy",
                              "max excess ψ (test)", "collapsed"]
  by_method = {r["method"]: r for r in methods}
  assert sorted(by_method) == ["BiFP", "CEAG", "two-stage"] and len(methods) == 3
  assert all(r["sparsity"] == "90%" for r in methods)
  # Median over the seeds that got there, with their count; a seed that never got there
  # is left out of the median and of the count.
  assert by_method["BiFP"]["fair after"] == "2.5 s / 50 steps (2/2)"
  assert by_method["two-stage"]["fair after"] == "10.0 s / 50 steps (1/2)"
  assert by_method["BiFP"]["total"] == "20.0 s"
  assert list(targets[0]) == ["dataset", "sparsity", "target", "measured", "met?"]
  (target,) = targets
  # Per seed against the faster of the other two: 2/10 and 3/6 -> median 0.35 > 0.3.
  assert target["measured"] == "median 0.35× (s0: 2.0 vs 10.0 s; s1: 3.0 vs 6.0 s)"
  assert target["met?"] == "**no**"
