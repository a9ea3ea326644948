"""Every Python block of the README runs as written, in a fresh namespace in an empty
directory, and does what the text around it says."""

import os
import re
import warnings

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks(page="README.md"):
  """(section heading, code) of every ```python block of `page`, in order."""
  text = open(os.path.join(ROOT, page), encoding="utf-8").read()
  blocks, heading = [], None
  for match in re.finditer(r"^(#+) (.+?)\s*$|^```python\n(.*?)^```", text, re.S | re.M):
    if match.group(2):
      heading = match.group(2)
    else:
      blocks.append((heading, match.group(3)))
  return blocks


def _tflite_ok(result, path, sparsity):
  assert os.path.exists(path)
  assert result.max_abs_diff < 1e-3
  assert result.weight_sparsity == pytest.approx(sparsity, abs=0.01)


def _check_quick_start(ns, ours):
  assert not ours, ours  # The happy path is quiet: nothing from tf_fairprune.
  assert type(ns["final"]).__module__.startswith("keras.")  # A Keras 3 model.
  assert float(ns["pruned"].measured_sparsity()) == pytest.approx(0.9, abs=0.01)
  assert ns["result"].densified_ops > 0  # Stored sparse: DENSIFY at load.
  _tflite_ok(ns["result"], "model.tflite", 0.9)


def _check_tf_keras(ns, _):
  import tf_keras  # pylint: disable=g-import-not-at-top
  assert isinstance(ns["pruned"], tf_keras.Model)
  # The schedule's end: 80% after its 8 steps (16 were run).
  assert float(ns["pruned"].measured_sparsity()) == pytest.approx(0.8, abs=0.01)


def _check_subclassed(ns, _):
  model = ns["model"]
  assert float(model.measured_sparsity()) == pytest.approx(0.8, abs=0.01)
  assert ns["final"] is model  # Stripped in place.
  _tflite_ok(ns["result"], "subclassed.tflite", 0.8)


def _check_export(ns, _):
  _tflite_ok(ns["result"], "model.tflite", 0.9)
  assert ns["result"].pruned_sparsity == pytest.approx(0.9, abs=0.01)
  assert ns["result"].dense_stored == []
  assert os.path.exists("model_dynamic.tflite") and os.path.exists("model_gpu.tflite")
  assert ns["gpu"].gpu_compatibility is not None
  # The wrapped model itself is left as it was: still wrapped.
  assert ns["pruned"].fair_prune_wrappers


def _check_fairness(ns, _):
  from tf_fairprune.fairness import Lagrangian  # pylint: disable=g-import-not-at-top
  pruned, report = ns["pruned"], ns["report"]
  assert float(pruned.measured_sparsity()) == pytest.approx(0.95, abs=0.01)
  assert isinstance(pruned.fairness[0].enforcement, Lagrangian)
  assert ns["held_out"].candidates  # The held-out set was measured during fit.
  text = report.verdict("max_excess_gap", 0.01).text()
  assert text.startswith("max_excess_gap") and "95% interval" in text, text
  assert "max_excess_gap" in str(report)


# Section heading -> what its block must have done. A new block needs an entry here.
CHECKS = {
    "Quick start (Keras 3)": _check_quick_start,
    "With tf_keras and TFMOT": _check_tf_keras,
    "Subclassed models": _check_subclassed,
    "TFLite export": _check_export,
    "Fairness constraints": _check_fairness,
}


def test_every_readme_block_has_a_check():
  assert [heading for heading, _ in python_blocks()] == list(CHECKS)


@pytest.mark.parametrize("heading,code", [pytest.param(h, c, id=h) for h, c in python_blocks()])
def test_readme_block_runs_as_written(heading, code, tmp_path, monkeypatch):
  if "import keras\n" in code:
    pytest.importorskip("tf_fairprune.keras3")
  monkeypatch.chdir(tmp_path)  # Files the block writes land here.
  np.random.seed(0)
  namespace = {"__name__": "readme"}
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    exec(compile(code, f"README: {heading}", "exec"), namespace)  # pylint: disable=exec-used
  ours = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught
          if "tf_fairprune" in str(w.message) or os.sep + "tf_fairprune" + os.sep in w.filename]
  CHECKS[heading](namespace, ours)
