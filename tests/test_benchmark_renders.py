"""The issue-20 benchmarks render what their rows say (run as scripts: their absl flags
share names with the other benchmarks', so each runs in its own process)."""

import json
import os
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
  text = _render("benchmark_rerank_frequency.py", rows, tmp_path, "--nowrite_markdown")
  assert "Test group sizes (seed 0): a 90, b 10. Seeds: 4." in text
  assert "| bip @90% | 1 | 75.0 ± 5.0 | 13.3 ± 5.8 | – | – | 1 | 0/3 |" in text
  # Paired over seeds 0-2: every Δ is exactly -2 / +2 points (half-width 0); time 0.5.
  assert "| -2.0 ± 0.0 | +2.0 ± 0.0 | 0.50 | 0/4 |" in text
  assert "- toy bip @90%, every 10: accuracy -2.0 ± 0.0 pts" in text
  assert "- toy bip @90%, every 10: gap +2.0 ± 0.0 pts" in text


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
  text = _render("benchmark_time_to_fair.py", rows, tmp_path, "--nowrite_docs")
  assert "Test group sizes (mean over seeds): a 90, b 10." in text
  assert "| 90% | BiFP | 2.5 s / 50 steps (2/2) | 20.0 s |" in text
  assert "| 90% | two-stage | 10.0 s / 50 steps (1/2) |" in text
  # Per seed against the faster of the other two: 2/10 and 3/6 -> median 0.35 > 0.3.
  assert "median 0.35× (s0: 2.0 vs 10.0 s; s1: 3.0 vs 6.0 s) | **no** |" in text
