"""BUILD matches the code: `.ci/check_build.py` finds every target's sources and its deps
equal to its imports (run as CI runs it, in a subprocess)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK = os.path.join(ROOT, ".ci", "check_build.py")


def _check(*args):
  return subprocess.run([sys.executable, CHECK, *args], capture_output=True, text=True,
                        cwd=ROOT, timeout=120, check=False)


def test_build_matches_the_imports_and_has_no_dependency_cycle():
  run = _check()
  assert run.returncode == 0, run.stdout + run.stderr


def test_check_reports_a_wrong_dep_and_write_fixes_it(tmp_path):
  build = open(os.path.join(ROOT, "BUILD"), encoding="utf-8").read()
  masking = '    name = "masking",\n    srcs = ["tf_fairprune/masking.py"],\n    deps = [\n'
  assert masking in build
  path = tmp_path / "BUILD"
  path.write_text(build.replace(masking, masking + '        ":groups",\n', 1), encoding="utf-8")
  run = _check(f"--build={path}")
  assert run.returncode == 1
  assert "BUILD: masking: extra dep :groups" in run.stdout
  run = _check("--write", f"--build={path}")
  assert run.returncode == 0, run.stdout + run.stderr
  assert path.read_text(encoding="utf-8") == build
