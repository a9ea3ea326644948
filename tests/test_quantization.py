"""Kernel sparsity and the check that quantization-aware training kept the zeros."""

import numpy as np
import pytest

import tf_fairprune
from tf_fairprune import quantization
from conftest import make_mlp


def test_kernel_sparsity_counts_kernels_only():
  model = make_mlp()  # 8x16 + 16x1 kernels, biases not counted.
  kernels = [w for w in model.weights if "kernel" in w.name]
  kernels[0].assign(np.zeros(kernels[0].shape, "float32"))
  assert quantization.kernel_sparsity(model) == pytest.approx(128 / 144)


def test_qat_keeps_zeros_and_a_refilled_weight_is_caught():
  pruned = tf_fairprune.fair_prune_wrapper(make_mlp(), 0.75)
  qat = tf_fairprune.quantize_preserving_sparsity(pruned)
  assert quantization.is_qat_model(qat) and not quantization.is_qat_model(make_mlp())
  assert quantization.check_sparsity_preserved(qat) == pytest.approx(0.75, abs=0.01)
  kernel = next(w for w in qat.weights if w.name.endswith("kernel:0"))
  value = kernel.numpy()
  value[value == 0] = 1.0
  kernel.assign(value)
  with pytest.raises(ValueError, match="refilled"):
    quantization.check_sparsity_preserved(qat)
  with pytest.raises(ValueError, match="quantize_preserving_sparsity"):
    quantization.check_sparsity_preserved(make_mlp())
  with pytest.raises(TypeError, match="tf_keras model"):
    tf_fairprune.quantize_preserving_sparsity("model")
