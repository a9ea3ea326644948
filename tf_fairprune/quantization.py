"""Prune-preserving quantization-aware training (TFMOT's scheme) for fair-pruned models.

Plain QAT after pruning lets the optimizer refill pruned weights; TFMOT's
`Default8BitPrunePreserveQuantizeScheme` keeps them at zero. `quantize_preserving_sparsity`
strips a fair-pruned model and applies that scheme; `export_tflite(..., quantize="qat")`
converts the trained result to int8 and refuses it if any pruned weight came back.
"""

import numpy as np

from tf_fairprune import flavours
from tf_fairprune import strip as strip_lib
from tf_fairprune._compat import keras
from tf_fairprune._compat import tfmot
from tf_fairprune.wrapper import contains_wrappers

_ZERO_MASKS = "_tf_fairprune_zero_masks"


def _kernels(model):
  """{name: variable} of the prunable kernels (not TFMOT's kernel_min / kernel_max)."""
  # Keras 3 names a variable by its own name only ("kernel"); its path is unique.
  named = {getattr(w, "path", None) or w.name: w for w in model.weights}
  return {n: w for n, w in named.items() if n.split("/")[-1].split(":")[0] in
          ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")}


def kernel_sparsity(model):
  """Zero fraction over EVERY kernel of the model (dense, convolution, depthwise,
  pointwise and embedding weights), pruned or not; `export_tflite` reports it as
  `weight_sparsity`, beside `pruned_sparsity` over the pruned tensors only."""
  values = [w.numpy() for w in _kernels(model).values()]
  return sum(int(np.sum(v == 0)) for v in values) / max(sum(v.size for v in values), 1)


def quantize_preserving_sparsity(model):
  """Returns a quantization-aware copy of `model` whose pruned weights stay zero.

  Strips `FairPruneWrapper`s first, then applies TFMOT's `quantize_annotate_model` and
  `quantize_apply` with `Default8BitPrunePreserveQuantizeScheme`. Compile and fit the
  result for a few epochs (QAT), then export it with `export_tflite(..., quantize="qat")`,
  which checks that the sparsity survived.

  Args:
    model: A fair-pruned or stripped Sequential / Functional tf_keras model.

  Returns:
    A tf_keras model with TFMOT quantize wrappers.

  Raises:
    TypeError: If `model` is not a tf_keras model.

  Example:

  ```python
  qat = tf_fairprune.quantize_preserving_sparsity(pruned)
  qat.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss)
  qat.fit(x, y, epochs=1)
  tf_fairprune.export_tflite(qat, "model_int8.tflite", quantize="qat")
  ```
  """
  if not flavours.of(model).tfmot_compatible:
    raise TypeError(
        "quantize_preserving_sparsity needs TFMOT's prune-preserving QAT, which works on "
        "tf_keras models only (TFMOT rejects Keras 3). For a Keras 3 model use post-training "
        "quantization, which keeps the zeros: export_tflite(model, path, quantize='dynamic') "
        "or quantize='int8' with a representative_dataset. Or build the model with "
        "`import tf_keras as keras` for QAT.")
  if not isinstance(model, keras.Model):
    raise TypeError(f"quantize_preserving_sparsity expects a tf_keras model, got "
                    f"{type(model).__name__}.")
  if contains_wrappers(model):
    model = strip_lib.strip_fair_pruning(model)
  annotated = tfmot.quantization.keras.quantize_annotate_model(model)
  qat = tfmot.quantization.keras.quantize_apply(
      annotated, tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
  setattr(qat, _ZERO_MASKS, {name: w.numpy() == 0 for name, w in _kernels(qat).items()})
  return qat


def is_qat_model(model):
  return any(type(l).__name__.startswith("Quantize") for l in model.layers)


def check_sparsity_preserved(model):
  """Returns the kernels' zero fraction; raises if QAT refilled a pruned weight.

  Raises:
    ValueError: If `model` was not made by `quantize_preserving_sparsity`, or a weight
      that was zero then is nonzero now.
  """
  zero_masks = getattr(model, _ZERO_MASKS, None)
  if zero_masks is None:
    raise ValueError("quantize='qat' exports models made by "
                     "tf_fairprune.quantize_preserving_sparsity (and then trained).")
  for name, w in _kernels(model).items():
    refilled = int(np.sum(zero_masks[name] & (w.numpy() != 0)))
    if refilled:
      raise ValueError(f"Quantization-aware training refilled {refilled} pruned weights of "
                       f"{name}: the sparsity was not preserved.")
  return kernel_sparsity(model)
