"""FairPruningSummaries: TensorBoard logs, and a clear message without TensorBoard."""

import builtins
import os

import numpy as np
import pytest

import tf_fairprune
from tf_fairprune.fairness import Lagrangian
from tf_fairprune.fairness import PerformanceFairness
from conftest import compile_binary, make_data, make_mlp


def test_summaries_are_written(tmp_path, k):
  pytest.importorskip("tensorboard")
  x, y = make_data(n=128)
  g = (x[:, 2] > 0).astype(int)
  model = compile_binary(tf_fairprune.fair_prune_wrapper(
      make_mlp(k=k), 0.6, fairness=[PerformanceFairness(enforcement=Lagrangian())]))
  model.fit(tf_fairprune.pack_group_data(x, g), y, epochs=2, verbose=0,
            callbacks=[tf_fairprune.FairPruningSummaries(str(tmp_path), update_freq=2)])
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  files = os.listdir(tmp_path)
  assert files
  acc = event_accumulator.EventAccumulator(str(tmp_path))
  acc.Reload()
  tags = set(acc.Tags()["tensors"]) | set(acc.Tags()["scalars"])
  assert "sparsity/model" in tags
  assert "fairness/performance_gap_multiplier" in tags
  assert any(t.startswith("sparsity/fair_prune_hidden") for t in tags)


def test_missing_tensorboard_says_how_to_install(monkeypatch):
  real_import = builtins.__import__
  def fake_import(name, *args, **kwargs):
    if name == "tensorboard" or name.startswith("tensorboard."):
      raise ImportError("No module named 'tensorboard'")
    return real_import(name, *args, **kwargs)
  monkeypatch.setattr(builtins, "__import__", fake_import)
  with pytest.raises(ImportError, match="pip install tensorboard"):
    tf_fairprune.FairPruningSummaries("/tmp/unused")


def test_bad_update_freq():
  with pytest.raises(ValueError, match="update_freq"):
    tf_fairprune.FairPruningSummaries("/tmp/unused", update_freq=0)
  with pytest.raises(ValueError, match="update_freq"):
    tf_fairprune.FairPruningSummaries("/tmp/unused", update_freq=True)
  # A NumPy integer is a number like any other.
  assert tf_fairprune.FairPruningSummaries("/tmp/unused", update_freq=np.int64(3)).update_freq == 3
