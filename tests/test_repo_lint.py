"""Checks of the repository rather than the library: BUILD matches the imports, the job's
flag table in docs/job.md matches its flags, the docs' links resolve, BENCHMARKS.md's
table of contents and the code map are complete, setup.py names both Keras flavours.
Each runs in a second or two (no TensorFlow)."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK_BUILD = os.path.join(ROOT, ".ci", "check_build.py")


def _check_build(*args):
  return subprocess.run([sys.executable, CHECK_BUILD, *args], capture_output=True, text=True,
                        cwd=ROOT, timeout=120, check=False)


def _read(page):
  return open(os.path.join(ROOT, page), encoding="utf-8").read()


def _bench_utils():
  sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
  try:
    import bench_utils  # pylint: disable=g-import-not-at-top
  finally:
    sys.path.pop(0)
  return bench_utils


# ---------------------------------------------------------------- BUILD

def test_build_matches_the_imports_and_has_no_dependency_cycle():
  run = _check_build()
  assert run.returncode == 0, run.stdout + run.stderr


def test_check_build_reports_a_wrong_dep_and_write_fixes_it(tmp_path):
  build = _read("BUILD")
  masking = '    name = "masking",\n    srcs = ["tf_fairprune/masking.py"],\n    deps = [\n'
  assert masking in build
  path = tmp_path / "BUILD"
  path.write_text(build.replace(masking, masking + '        ":groups",\n', 1), encoding="utf-8")
  run = _check_build(f"--build={path}")
  assert run.returncode == 1
  assert "BUILD: masking: extra dep :groups" in run.stdout
  run = _check_build("--write", f"--build={path}")
  assert run.returncode == 0, run.stdout + run.stderr
  assert path.read_text(encoding="utf-8") == build


# ---------------------------------------------------------------- docs

def test_flag_table_matches_the_main_job():
  run = subprocess.run([sys.executable, os.path.join(ROOT, ".ci", "flag_table.py")],
                       capture_output=True, text=True, timeout=120, check=False)
  assert run.returncode == 0, run.stdout + run.stderr


def test_setup_describes_both_keras_flavours():
  description = re.search(r'description="(.*?)",\n', _read("setup.py"), re.S).group(1)
  assert "Keras 3" in description and "tf_keras" in description


def test_benchmarks_table_of_contents_lists_every_section():
  bench_utils = _bench_utils()
  text = _read("BENCHMARKS.md")
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
    texts[page] = _read(page)
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
  code_map = _read(os.path.join("docs", "code_map.md"))
  package = os.path.join(ROOT, "tf_fairprune")
  modules = sorted(f for f in os.listdir(package) if f.endswith(".py"))
  missing = [m for m in modules if f"`{m}`" not in code_map]
  assert not missing, f"docs/code_map.md does not name {missing}"
  named = set(re.findall(r"`([a-z_0-9]+\.py)`", code_map.split("Outside the package")[0]))
  in_tree = {f for _, _, files in os.walk(package) for f in files}
  gone = sorted(named - in_tree)
  assert not gone, f"docs/code_map.md names modules that do not exist: {gone}"


def test_readme_has_no_development_history():
  readme = _read("README.md")
  # Issue numbers, and timings of the test suite, belong in the tracker and the log.
  assert not re.search(r"\b[Ii]ssue \d+|#\d{2,}\b", readme)
  assert not re.search(r"\d+ min \d+ s", readme)
