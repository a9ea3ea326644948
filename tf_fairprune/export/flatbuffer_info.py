"""What a TFLite flatbuffer holds, read once: its operators and tensors, and the facts
`export_tflite` decides on (which tensors are sparse, which a sparse kernel would misread,
which the GPU delegate cannot fold, what is stored dense although it holds zeros).

The file is parsed with TensorFlow's own flatbuffer reader (`flatbuffer_utils`), the
same object model `surgery` edits, so reading it builds no interpreter.
"""

import collections
import contextlib
import functools
import io

import numpy as np
import tensorflow as tf
from tensorflow.lite.tools import flatbuffer_utils

# Ops into which the GPU delegate folds a DENSIFY at load (merge_densify.cc); it has
# no DENSIFY kernel, so a sparse weight feeding any other op cannot run there.
GPU_DENSIFY_CONSUMERS = ("CONV_2D", "DEPTHWISE_CONV_2D")
# Operators that read a sparse weight (natively or through DENSIFY).
SPARSE_READERS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "DENSIFY")
# A constant with at least this zero fraction counts as pruned in `dense_stored`.
ZERO_FRACTION = 0.1
# TFLite TensorType -> numpy dtype, for the constant tensors a sparse file stores.
_NUMPY_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64,
                7: np.int16, 9: np.int8, 10: np.float64}
_BUILTIN_NAMES = {code: name for name, code in
                  vars(flatbuffer_utils.schema_fb.BuiltinOperator).items()
                  if not name.startswith("_")}

# One operator of the main subgraph: its name ("FULLY_CONNECTED"; a custom op's own
# code, e.g. a Flex op's) and its input / output tensor indices (-1: an absent input).
Operator = collections.namedtuple("Operator", "name inputs outputs")


def _text(value):
  return value.decode() if isinstance(value, bytes) else str(value)


class FlatbufferInfo:
  """One flatbuffer, parsed once, and what export decides on (main subgraph only).

  Attributes:
    model: The parsed `flatbuffer_utils` object model (read it, do not edit it:
      `surgery` edits a copy of its own).
    operators: The `Operator`s in execution order.
    tensors: The tensors (`flatbuffer_utils` objects): `name`, `shape` (the dense shape,
      also of a sparse tensor), `type`, `buffer`, `sparsity` (None when dense).

  Example:

  ```python
  info = FlatbufferInfo(convert(model))
  print(info.op_counts, info.sparse_ops, info.misaligned_block_tensors)
  ```
  """

  def __init__(self, flatbuffer):
    self.model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    graph = self.model.subgraphs[0]
    self.tensors = list(graph.tensors)
    self.operators = [Operator(self._op_name(op.opcodeIndex),
                               [int(i) for i in _indices(op.inputs)],
                               [int(i) for i in _indices(op.outputs)])
                      for op in graph.operators or []]

  def _op_name(self, index):
    code = self.model.operatorCodes[index]
    name = _BUILTIN_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode))
    if name == "CUSTOM" and code.customCode:
      return _text(code.customCode)  # What the interpreter calls it (e.g. a Flex op).
    return name

  def tensor_name(self, index):
    """The name of tensor `index`, as a str."""
    return _text(self.tensors[index].name)

  def is_sparse(self, index):
    """True when tensor `index` is stored sparse (False for -1, an absent input)."""
    return 0 <= index < len(self.tensors) and self.tensors[index].sparsity is not None

  @functools.cached_property
  def has_sparse_tensors(self):
    """True when any tensor is stored sparse."""
    return any(t.sparsity is not None for t in self.tensors)

  @functools.cached_property
  def op_counts(self):
    """Operator name -> how many the file holds (e.g. `{"FULLY_CONNECTED": 3}`)."""
    return dict(collections.Counter(op.name for op in self.operators))

  @functools.cached_property
  def sparse_ops(self):
    """Operator name -> how many read a sparse weight directly (a native sparse kernel;
    a DENSIFY op instead expands its tensor to dense when the model loads)."""
    return dict(collections.Counter(
        op.name for op in self.operators
        if op.name != "DENSIFY" and any(self.is_sparse(i) for i in op.inputs)))

  @functools.cached_property
  def misaligned_block_tensors(self):
    """Indices of block-sparse tensors whose blocked axis is not a multiple of the block.

    TFLite's block-sparse FULLY_CONNECTED kernel reads such tensors wrongly (measured
    with TF 2.21: a 6-input layer stored in 1x4 blocks gave outputs 0.2-2.6 away from
    Keras). The converter also picks this format for small unstructured layers, so an
    odd input width is enough to trigger it.
    """
    bad = []
    for index, tensor in enumerate(self.tensors):
      if tensor.sparsity is None:
        continue
      block_map = list(_indices(tensor.sparsity.blockMap))
      dims = list(tensor.sparsity.dimMetadata or [])
      blocks = [d.denseSize for d in dims[len(dims) - len(block_map):]]
      if any(size and tensor.shape[axis] % size for axis, size in zip(block_map, blocks)):
        bad.append(index)
    return bad

  @functools.cached_property
  def _densify_sources(self):
    """DENSIFY output -> the sparse tensor it expands."""
    return {o: op.inputs[0] for op in self.operators if op.name == "DENSIFY"
            for o in op.outputs}

  def _gpu_unfoldable_reads(self):
    """(operator, sparse tensor index) for each op other than CONV_2D /
    DEPTHWISE_CONV_2D that reads a sparse weight, directly or through a DENSIFY op."""
    for op in self.operators:
      if op.name in GPU_DENSIFY_CONSUMERS + ("DENSIFY",):
        continue
      for i in op.inputs:
        if i in self._densify_sources:
          yield op.name, self._densify_sources[i]
        elif self.is_sparse(i):
          yield op.name, i

  @functools.cached_property
  def gpu_unfoldable_ops(self):
    """Names of the ops other than CONV_2D / DEPTHWISE_CONV_2D that read a sparse or
    densified weight: what the GPU delegate cannot fold."""
    return sorted({name for name, _ in self._gpu_unfoldable_reads()})

  @functools.cached_property
  def gpu_unfoldable_tensors(self):
    """Indices of the sparse tensors those ops read."""
    return sorted({index for _, index in self._gpu_unfoldable_reads()})

  @functools.cached_property
  def dense_stored(self):
    """The float constants of two or more dimensions (kernels, tables) with zeros
    (≥ 10%, ≥ 64 values) stored dense: a list of dicts (`name`, `shape`,
    `zero_fraction`, `read_by`, `why`) as described in `TFLiteExport.dense_stored`."""
    readers = collections.defaultdict(set)
    for op in self.operators:
      for i in op.inputs:
        readers[i].add(op.name)
    buffers = self.model.buffers
    found = []
    for i, tensor in enumerate(self.tensors):
      data = buffers[tensor.buffer].data if tensor.buffer < len(buffers) else None
      dtype = _NUMPY_TYPES.get(tensor.type)
      if (data is None or tensor.sparsity is not None or dtype not in (np.float32, np.float16)
          or len(tensor.shape) < 2):  # Kernels and tables, not biases or scales.
        continue
      values = np.frombuffer(bytes(data), dtype)
      zeros = float(np.mean(values == 0)) if values.size >= 64 else 0.0
      if zeros < ZERO_FRACTION or not readers[i]:
        continue
      found.append({"name": _text(tensor.name), "shape": [int(d) for d in tensor.shape],
                    "zero_fraction": zeros, "read_by": sorted(readers[i]),
                    "why": "converter" if readers[i] <= set(SPARSE_READERS) else "consumer"})
    return found


def _indices(values):
  """A flatbuffer vector that may be absent (None) as an iterable."""
  return [] if values is None else values


def dense_stored(flatbuffer):
  """The float constants of `flatbuffer` of two or more dimensions (kernels, tables)
  with zeros (≥ 10%, ≥ 64 values) stored dense.

  Returns:
    A list of dicts (`name`, `shape`, `zero_fraction`, `read_by`, `why`) as described
    in `TFLiteExport.dense_stored`.

  Example:

  ```python
  [t["name"] for t in dense_stored(convert(model)) if t["why"] == "consumer"]
  ```
  """
  return FlatbufferInfo(flatbuffer).dense_stored


def gpu_verdict(flatbuffer):
  """The lines of TF's GPU compatibility check that give its verdict."""
  captured = io.StringIO()
  with contextlib.redirect_stdout(captured):  # The analyzer prints its report.
    tf.lite.experimental.Analyzer.analyze(model_content=flatbuffer, gpu_compatibility=True)
  text = captured.getvalue()
  lines = [l.strip() for l in text.splitlines()
           if "GPU" in l and ("compatib" in l.lower() or "delegate" in l.lower())]
  return "\n".join(lines) or text.strip()[-500:]
