"""The README's Keras 3 quick start and subclassed-model example run as written; its flag
table, BENCHMARKS.md's table of contents and the docs' links are up to date."""

import os
import re
import subprocess
import sys
import warnings

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blocks(title):
  """The python code blocks of the README section `title`, in order."""
  text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
  section = text.split(f"\n{title}\n", 1)[1].split("\n## ", 1)[0]
  return re.findall(r"```python\n(.*?)```", section, re.S)


def test_keras3_quick_start_and_subclassed_model_run(tmp_path):
  pytest.importorskip("tf_fairprune.keras3")
  quick = _blocks("## Quick start (Keras 3)")[0].replace("/tmp/model.tflite",
                                                        str(tmp_path / "model.tflite"))
  assert "import keras\n" in quick
  namespace = {}
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    exec(compile(quick, "README quick start", "exec"), namespace)  # pylint: disable=exec-used
  # The happy path is quiet: nothing from tf_fairprune (DENSIFY is in the result).
  ours = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught
          if "tf_fairprune" in str(w.message) or os.sep + "tf_fairprune" + os.sep in w.filename]
  assert not ours, ours
  assert namespace["result"].densified_ops > 0
  assert os.path.exists(tmp_path / "model.tflite")
  assert namespace["result"].max_abs_diff < 1e-3
  assert type(namespace["final"]).__module__.startswith("keras.")  # A Keras 3 model.
  subclassed = _blocks("### Subclassed models")[0].replace(
      "/tmp/subclassed.tflite", str(tmp_path / "subclassed.tflite"))
  exec(compile(subclassed, "README subclassed", "exec"), namespace)  # pylint: disable=exec-used
  model = namespace["model"]
  assert float(model.measured_sparsity()) == pytest.approx(0.8, abs=0.01)
  # Stripped in place, exported and checked in LiteRT.
  assert namespace["final"] is model
  assert namespace["result"].max_abs_diff < 1e-3
  assert namespace["result"].weight_sparsity == pytest.approx(0.8, abs=0.01)


def test_setup_describes_both_keras_flavours():
  text = open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read()
  description = re.search(r'description="(.*?)",\n', text, re.S).group(1)
  assert "Keras 3" in description and "tf_keras" in description


def test_flag_table_matches_the_main_job():
  run = subprocess.run([sys.executable, os.path.join(ROOT, ".ci", "flag_table.py")],
                       capture_output=True, text=True, timeout=120, check=False)
  assert run.returncode == 0, run.stdout + run.stderr


def _bench_utils():
  sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
  try:
    import bench_utils  # pylint: disable=g-import-not-at-top
  finally:
    sys.path.pop(0)
  return bench_utils


def test_benchmarks_table_of_contents_lists_every_section():
  bench_utils = _bench_utils()
  text = open(os.path.join(ROOT, "BENCHMARKS.md"), encoding="utf-8").read()
  toc = re.search(r"<!-- BEGIN toc -->\n(.*?)\n<!-- END toc -->", text, re.S).group(1)
  assert toc == bench_utils.toc(text), "run a benchmark's --render_only, or copy bench_utils.toc()"
  # The headline benchmark comes first.
  assert re.search(r"^## (.+)$", text, re.M).group(1).startswith("Benchmark: ")


def test_relative_links_in_the_docs_resolve():
  bench_utils = _bench_utils()
  pages = ["README.md", "BENCHMARKS.md"] + [os.path.join("docs", p) for p in
                                            sorted(os.listdir(os.path.join(ROOT, "docs")))]
  anchors, texts = {}, {}
  for page in pages:
    texts[page] = open(os.path.join(ROOT, page), encoding="utf-8").read()
    anchors[os.path.normpath(page)] = {bench_utils.anchor(h) for h in
                                       re.findall(r"^#+ (.+?)\s*$", texts[page], re.M)}
  broken = []
  for page, text in texts.items():
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
      if re.match(r"[a-z]+:", target):
        continue
      path, _, anchor = target.partition("#")
      resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
      if not os.path.exists(os.path.join(ROOT, resolved)):
        broken.append(f"{page}: {target} (no file)")
      elif anchor and resolved.endswith(".md") and anchor not in anchors.get(
          os.path.normpath(resolved), ()):
        broken.append(f"{page}: {target} (no heading)")
  assert not broken, broken


def test_code_map_names_every_module_of_the_package():
  readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
  code_map = readme[readme.index("## Code map"):readme.index("### Where things live")]
  package = os.path.join(ROOT, "tf_fairprune")
  modules = sorted(f for f in os.listdir(package) if f.endswith(".py"))
  missing = [m for m in modules if f"`{m}`" not in code_map]
  assert not missing, f"README's code map does not name {missing}"
  named = set(re.findall(r"`([a-z_0-9]+\.py)`", code_map.split("Outside the package")[0]))
  in_tree = {f for _, _, files in os.walk(package) for f in files}
  gone = sorted(named - in_tree)
  assert not gone, f"README's code map names modules that do not exist: {gone}"
