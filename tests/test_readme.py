"""The README's Keras 3 quick start and subclassed-model example run as written."""

import os
import re
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
