"""What `export_tflite` returns (`TFLiteExport`) and the model's sparsity it reports."""

import dataclasses

import numpy as np

from tf_fairprune import conditioning as conditioning_lib
from tf_fairprune import quantization
from tf_fairprune import strip as strip_lib
from tf_fairprune import wrapper as wrapper_lib


@dataclasses.dataclass
class TFLiteExport:
  """What `export_tflite` wrote and how the check went.

  Attributes:
    path: The file written.
    size_bytes: Its size.
    sparse: Whether the file stores sparse tensors (False after a fallback).
    quantize: The quantization mode used.
    max_abs_diff: Max |TFLite − Keras| over the sample inputs.
    interpreter: `"ai_edge_litert"` or `"tf.lite"` (the fallback interpreter).
    num_samples: How many sample inputs were checked.
    note: Why a fallback happened, if one did.
    ops: Operator counts of the flatbuffer (e.g. `{"FULLY_CONNECTED": 3}`).
    densified_ops: Number of DENSIFY ops: sparse weights expanded to dense at load time
      (a smaller file but no speed-up). Block-sparse (4, 1) float / (16, 1) int8 Dense
      kernels run as native sparse FULLY_CONNECTED instead.
    sparse_ops: Operators that run a native sparse kernel (read a sparse weight
      directly), e.g. `{"FULLY_CONNECTED": 2}`.
    weight_sparsity: Zero fraction over EVERY kernel of the Keras model — dense,
      convolution, depthwise, pointwise and embedding weights, pruned or not (checked
      unchanged by QAT for `quantize="qat"`). Lower than the target when some kernels
      were not pruned (MobileNetV2 at 0.9: 0.874, its depthwise kernels being
      unpruned by default).
    pruned_sparsity: Zero fraction over the tensors that were pruned (the wrapped
      ones): the target sparsity. None when unknown (a model not from
      `fair_prune_wrapper` / `strip_fair_pruning`).
    target: `"cpu"` or `"gpu"` (see `export_tflite`).
    gpu_compatibility: For `target="gpu"`: the verdict of TF's own check
      (`tf.lite.experimental.Analyzer.analyze(..., gpu_compatibility=True)`).
    conditioning: A `tf_fairprune.conditioning.Conditioning`: the model's own float32
      noise on the sample inputs and, when the plain check missed, the distances of
      Keras and of the file from the model run in float64.
    dense_stored: The constant kernels and tables (2-D or more) of a sparse file that
      hold zeros (at least 10%) but are stored dense, one dict each: `name`, `shape`, `zero_fraction`, `read_by`
      (the operators reading it) and `why`: `"consumer"` — no operator reading it
      takes a sparse tensor (an Embedding table read by GATHER): the format cannot
      hold it sparse, and pruning it bought accuracy cost only; or `"converter"` — its
      readers could, but the converter kept it dense (too few zeros for its sparse
      encoding to be smaller).
  """
  path: str
  size_bytes: int
  sparse: bool
  quantize: object
  max_abs_diff: float
  interpreter: str
  num_samples: int
  note: str = ""
  ops: dict = dataclasses.field(default_factory=dict)
  densified_ops: int = 0
  sparse_ops: dict = dataclasses.field(default_factory=dict)
  weight_sparsity: float = None
  pruned_sparsity: float = None
  target: str = "cpu"
  gpu_compatibility: str = None
  conditioning: conditioning_lib.Conditioning = None
  dense_stored: list = dataclasses.field(default_factory=list)


def model_sparsities(model):
  """`weight_sparsity` (every kernel of the model) and `pruned_sparsity` (the tensors
  that were pruned, when known) of a stripped model, or of a subclassed one with its
  masks baked in.

  Returns:
    `{"weight_sparsity": float, "pruned_sparsity": float or None}`: the keyword
    arguments of `TFLiteExport` they fill.

  Example:

  ```python
  model_sparsities(tf_fairprune.strip_fair_pruning(pruned))["pruned_sparsity"]  # 0.8
  ```
  """
  sparsity = {"weight_sparsity": quantization.kernel_sparsity(model), "pruned_sparsity": None}
  if wrapper_lib.contains_wrappers(model):
    masks = [m.numpy() for w in wrapper_lib.wrappers_of(model) for m in w.mask_variables]
    if masks:
      sparsity["pruned_sparsity"] = 1.0 - sum(float(m.sum()) for m in masks) / sum(
          m.size for m in masks)
  else:
    pruned = strip_lib.pruned_variables(model)
    if pruned:
      values = [np.asarray(v) for v in pruned]
      sparsity["pruned_sparsity"] = sum(int(np.sum(v == 0)) for v in values) / sum(
          v.size for v in values)
  return sparsity
