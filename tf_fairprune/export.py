"""TFLite export with a built-in check in the LiteRT interpreter.

`export_tflite` strips a fair-pruned model, converts it (sparse tensors with
`EXPERIMENTAL_SPARSITY`), runs the flatbuffer in the LiteRT interpreter on sample
inputs and only then writes the file. What TFLite cannot run is never written:
quantized + unstructured-sparse models fail to prepare under the default XNNPACK
delegate (checked on TF 2.21), so such an export falls back to a dense quantized
file with a warning, and any other failure raises.

The steps are public for measuring files without writing them (the benchmarks do):
`convert` (Keras model -> flatbuffer, unchecked), `run_tflite` (flatbuffer vs Keras on
samples) and `interpreter_class` (LiteRT's interpreter, or tf.lite's).
"""

import collections
import contextlib
import dataclasses
import io
import logging
import os
import tempfile
import warnings

import numpy as np
import tensorflow as tf

from tf_fairprune import _private
from tf_fairprune import cloning
from tf_fairprune import conditioning as conditioning_lib
from tf_fairprune import flavours
from tf_fairprune import quantization
from tf_fairprune import sample_inputs as sample_inputs_lib
from tf_fairprune import strip as strip_lib
from tf_fairprune import wrapper as wrapper_lib
from tf_fairprune.wrapper import contains_wrappers

QUANTIZE_MODES = (None, "dynamic", "int8", "qat")
RNN_MODES = (None, "unroll", "select_tf_ops")
TARGETS = ("cpu", "gpu")
# Ops into which the GPU delegate folds a DENSIFY at load (merge_densify.cc); it has
# no DENSIFY kernel, so a sparse weight feeding any other op cannot run there.
_GPU_DENSIFY_CONSUMERS = ("CONV_2D", "DEPTHWISE_CONV_2D")


_LOG = logging.getLogger(__name__)
# TFLite TensorType -> numpy dtype, for the constant tensors a sparse file stores.
_NUMPY_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64,
                7: np.int16, 9: np.int8, 10: np.float64}


class _SparseMismatch(Exception):
  """A sparse flatbuffer that must not be written (the dense one is tried instead)."""


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


def interpreter_class():
  """The TFLite interpreter that `export_tflite` checks files in.

  Returns:
    `(cls, name)`: LiteRT's `ai_edge_litert.interpreter.Interpreter` and
    `"ai_edge_litert"` when it is installed (`pip install -e ".[litert]"`), else
    `tf.lite.Interpreter` and `"tf.lite"`. `cls(model_content=flatbuffer)` builds one.
  """
  try:
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
    return Interpreter, "ai_edge_litert"
  except ImportError:
    return tf.lite.Interpreter, "tf.lite"


def _ops_and_tensors(flatbuffer):
  """(ops, {index: tensor details}) of a flatbuffer; (None, tensors) where the
  interpreter does not list its ops, (None, None) where it cannot read the file."""
  interpreter_cls, _ = interpreter_class()
  try:
    interpreter = interpreter_cls(model_content=flatbuffer)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
  except (RuntimeError, ValueError):
    return None, None
  return _private.interpreter_ops(interpreter), tensors


def _op_counts(flatbuffer):
  """(operator -> count, operator -> count of those reading a sparse weight directly).

  An op that reads a tensor with sparsity parameters runs a native sparse kernel; a
  DENSIFY op instead expands the tensor to dense when the model loads. Both dicts are
  empty if the interpreter does not expose its ops.
  """
  details, tensors = _ops_and_tensors(flatbuffer)
  if details is None:
    return {}, {}
  counts, sparse = {}, {}
  for d in details:
    name = d["op_name"]
    counts[name] = counts.get(name, 0) + 1
    reads_sparse = any(i >= 0 and i in tensors and tensors[i].get("sparsity_parameters")
                       for i in d["inputs"])
    if reads_sparse and name != "DENSIFY":
      sparse[name] = sparse.get(name, 0) + 1
  return counts, sparse


def _misaligned_block_tensors(flatbuffer):
  """Names of block-sparse tensors whose blocked axis is not a multiple of the block.

  TFLite's block-sparse FULLY_CONNECTED kernel reads such tensors wrongly (measured
  with TF 2.21: a 6-input layer stored in 1x4 blocks gave outputs 0.2-2.6 away from
  Keras). The converter also picks this format for small unstructured layers, so an
  odd input width is enough to trigger it.
  """
  _, tensors = _ops_and_tensors(flatbuffer)
  bad = []
  for t in (tensors or {}).values():
    params = t.get("sparsity_parameters") or {}
    block_map = list(params.get("block_map", []))
    dims = params.get("dim_metadata", [])
    blocks = [d.get("dense_size") for d in dims[len(dims) - len(block_map):]]
    if any(size and t["shape"][axis] % size for axis, size in zip(block_map, blocks)):
      bad.append(t["name"])
  return bad


def _gpu_unfoldable_ops(flatbuffer):
  """Ops other than CONV_2D / DEPTHWISE_CONV_2D that read a sparse or densified weight."""
  details, tensors = _ops_and_tensors(flatbuffer)
  if details is None:
    return []
  densified = {o for d in details if d["op_name"] == "DENSIFY" for o in d["outputs"]}
  return sorted({d["op_name"] for d in details
                 if d["op_name"] not in _GPU_DENSIFY_CONSUMERS + ("DENSIFY",)
                 and any(i in densified or (i >= 0 and i in tensors and
                                            tensors[i].get("sparsity_parameters"))
                         for i in d["inputs"])})


def _gpu_unfoldable_tensors(flatbuffer):
  """Indices of the sparse tensors that ops other than CONV_2D / DEPTHWISE_CONV_2D read
  (directly, or through a DENSIFY op): what the GPU delegate cannot fold."""
  details, tensors = _ops_and_tensors(flatbuffer)
  if details is None:
    return []
  source = {o: d["inputs"][0] for d in details if d["op_name"] == "DENSIFY"
            for o in d["outputs"]}
  found = set()
  for d in details:
    if d["op_name"] in _GPU_DENSIFY_CONSUMERS + ("DENSIFY",):
      continue
    for i in d["inputs"]:
      if i in source:
        found.add(source[i])
      elif i >= 0 and i in tensors and tensors[i].get("sparsity_parameters"):
        found.add(i)
  return sorted(found)


def _tensor_indices(flatbuffer, names):
  _, tensors = _ops_and_tensors(flatbuffer)
  return sorted(i for i, t in (tensors or {}).items() if t["name"] in names)


def _store_dense(flatbuffer, indices, dense_flatbuffer):
  """The flatbuffer with the tensors `indices` (of the main subgraph) stored dense, their
  values taken from `dense_flatbuffer`, the model converted without sparsity (the
  tensor that the same input of the same operator reads there); the DENSIFY ops that
  read them are removed (their consumers read the dense constant). Every other tensor
  stays as it was.

  The sparse encoding itself cannot be expanded: for a misaligned block-sparse tensor
  the converter's encoding already lost values (TF 2.21: one 1x4 block kept of a 3-wide
  layer's 64 rows).

  Raises:
    _SparseMismatch: If a tensor has no dense counterpart of its shape.
  """
  from tensorflow.lite.tools import flatbuffer_utils  # pylint: disable=g-import-not-at-top
  model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
  reference = flatbuffer_utils.convert_bytearray_to_object(bytearray(dense_flatbuffer))
  graph, ref_graph = model.subgraphs[0], reference.subgraphs[0]
  name = lambda m, op: flatbuffer_utils.opcode_to_name(m, op.opcodeIndex)
  densify = [op for op in graph.operators if name(model, op) == "DENSIFY"]
  source = {op.outputs[0]: op.inputs[0] for op in densify}
  ops = [op for op in graph.operators if name(model, op) != "DENSIFY"]
  ref_ops = list(ref_graph.operators)
  if [name(model, op) for op in ops] != [name(reference, op) for op in ref_ops]:
    raise _SparseMismatch("the dense conversion has other operators; wrote a dense file "
                          "instead.")
  for i in indices:
    tensor = graph.tensors[i]
    slots = [(op, ref, slot) for op, ref in zip(ops, ref_ops)
             for slot, t in enumerate(op.inputs) if source.get(t, t) == i]
    twins = {ref.inputs[slot] for _, ref, slot in slots}
    if len(twins) != 1:
      raise _SparseMismatch(f"no dense counterpart of {tensor.name!r} to store it dense on "
                            "its own; wrote a dense file instead.")
    twin = ref_graph.tensors[twins.pop()]
    if list(twin.shape) != list(tensor.shape):
      raise _SparseMismatch(f"the dense counterpart of {tensor.name!r} has another shape; "
                            "wrote a dense file instead.")
    model.buffers[tensor.buffer].data = reference.buffers[twin.buffer].data
    tensor.type, tensor.quantization = twin.type, twin.quantization
    tensor.sparsity = None
  for op in [op for op in densify if op.inputs[0] in indices]:
    for other in graph.operators:
      other.inputs = [op.inputs[0] if t == op.outputs[0] else t for t in other.inputs]
    graph.operators.remove(op)
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


# Operators that read a sparse weight (natively or through DENSIFY).
_SPARSE_READERS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "DENSIFY")
# A constant with at least this zero fraction counts as pruned in `dense_stored`.
_ZERO_FRACTION = 0.1


def dense_stored(flatbuffer):
  """The float constants of `flatbuffer` of two or more dimensions (kernels, tables)
  with zeros (≥ 10%, ≥ 64 values) stored dense.

  Returns:
    A list of dicts (`name`, `shape`, `zero_fraction`, `read_by`, `why`) as described
    in `TFLiteExport.dense_stored`.
  """
  from tensorflow.lite.tools import flatbuffer_utils  # pylint: disable=g-import-not-at-top
  model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
  graph = model.subgraphs[0]
  readers = collections.defaultdict(set)
  for op in graph.operators:
    for i in op.inputs:
      readers[i].add(flatbuffer_utils.opcode_to_name(model, op.opcodeIndex))
  found = []
  for i, tensor in enumerate(graph.tensors):
    data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
    dtype = _NUMPY_TYPES.get(tensor.type)
    if (data is None or tensor.sparsity is not None or dtype not in (np.float32, np.float16)
        or len(tensor.shape) < 2):  # Kernels and tables, not biases or scales.
      continue
    values = np.frombuffer(bytes(data), dtype)
    zeros = float(np.mean(values == 0)) if values.size >= 64 else 0.0
    if zeros < _ZERO_FRACTION or not readers[i]:
      continue
    name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
    found.append({"name": name, "shape": [int(d) for d in tensor.shape],
                  "zero_fraction": zeros, "read_by": sorted(readers[i]),
                  "why": "converter" if readers[i] <= set(_SPARSE_READERS) else "consumer"})
  return found


def _has_sparse_tensors(flatbuffer):
  _, tensors = _ops_and_tensors(flatbuffer)
  return any(t.get("sparsity_parameters") for t in (tensors or {}).values())


def _gpu_verdict(flatbuffer):
  """The lines of TF's GPU compatibility check that give its verdict."""
  captured = io.StringIO()
  with contextlib.redirect_stdout(captured):  # The analyzer prints its report.
    tf.lite.experimental.Analyzer.analyze(model_content=flatbuffer, gpu_compatibility=True)
  text = captured.getvalue()
  lines = [l.strip() for l in text.splitlines()
           if "GPU" in l and ("compatib" in l.lower() or "delegate" in l.lower())]
  return "\n".join(lines) or text.strip()[-500:]


def _umask():
  """The process umask (read by setting it and putting it back at once)."""
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def _tolerance(quantize, expected_scale):
  """The largest |TFLite − Keras| accepted: 1e-3 (float) or 5e-2 (quantized) times
  max(1, max |Keras output|)."""
  return (1e-3 if quantize is None else 5e-2) * max(1.0, expected_scale)


def _has_rnn(model):
  k = flavours.of(model).keras
  return any(isinstance(l, k.layers.RNN)
             for l in _private.flatten_layers(model, include_self=False))


def computes_in_float16(model):
  """True when a layer of `model` computes in float16 (a `mixed_float16` policy)."""
  return any(str(getattr(l, "compute_dtype", "")) in ("float16", "bfloat16")
             for l in _private.flatten_layers(model, include_self=False))


_FLOAT16_NOTE = (
    "the model computes in float16 (mixed precision) and TFLite has no float16 kernels "
    "for its ops, so a float32 copy (the same weights: mixed-precision variables are "
    "float32) was converted and checked")


def _converted_copy(model, unroll, float32):
  """A copy of `model` that TFLite builtins can run: its RNN layers unrolled over their
  (static) time steps (`unroll`; a dynamic loop needs TensorList ops, which only select
  TF ops run) and every layer computing in float32 (`float32`: a `mixed_float16`
  model, whose float16 ops the converter cannot lower)."""
  if not flavours.of(model).is_graph_model(model):
    if unroll:
      raise ValueError("rnn='unroll' needs a Sequential or Functional model; use "
                       "rnn='select_tf_ops' for a subclassed one.")
    raise ValueError(
        f"export_tflite: '{model.name}' computes in float16 (mixed precision), which TFLite "
        "cannot convert, and a subclassed model cannot be copied in float32 here: build "
        "it again under the float32 policy, copy the weights over (mixed-precision "
        "variables are float32 already) and export that (README, 'Mixed precision').")
  k = flavours.of(model).keras

  def copy(layer):
    config = layer.get_config()
    if unroll and isinstance(layer, k.layers.RNN):
      config["unroll"] = True
    if float32:
      config["dtype"] = "float32"
    return layer.__class__.from_config(config)
  if unroll:
    for t in model.inputs:
      if len(t.shape) >= 3 and t.shape[1] is None:
        raise ValueError(f"rnn='unroll' needs a fixed number of time steps; input "
                         f"'{t.name}' has shape {tuple(t.shape)}. Give the model's Input a "
                         "fixed length, or use rnn='select_tf_ops'.")
  clone = cloning.clone_graph(model, copy)
  clone.set_weights(model.get_weights())
  return clone


def convert(model, sparse=True, quantize=None, representative_dataset=None, rnn=None):
  """Converts a Keras model to a TFLite flatbuffer, without `export_tflite`'s check.

  The conversion `export_tflite` uses, for measuring files (e.g. their size at each
  sparsity) without running or writing them. Strip a fair-pruned model first
  (`strip_fair_pruning`); nothing here checks the outputs or falls back to dense.

  Args:
    model: A plain Keras model (Keras 3 or tf_keras).
    sparse: Store sparse tensors (`tf.lite.Optimize.EXPERIMENTAL_SPARSITY`).
    quantize: One of `QUANTIZE_MODES`: None (float), "dynamic" (dynamic range), "int8"
      (needs `representative_dataset`) or "qat" (a model from
      `quantize_preserving_sparsity`).
    representative_dataset: For "int8": a callable yielding lists of input arrays.
    rnn: One of `RNN_MODES`; "select_tf_ops" keeps TensorFlow ops (Flex) for recurrent
      layers. ("unroll" is applied by `export_tflite` before it converts.)

  Returns:
    The flatbuffer, as bytes.

  Raises:
    ValueError: If TFLite's builtin ops cannot run a recurrent layer as a loop and
      `rnn` is None (the message names both `rnn` options).
    Exception: Whatever else the TFLite converter raises.
  """
  converter = tf.lite.TFLiteConverter.from_keras_model(model)
  if rnn == "select_tf_ops":
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    _private.keep_tensor_list_ops(converter)
  optimizations = []
  if quantize is not None:
    optimizations.append(tf.lite.Optimize.DEFAULT)
  if sparse:
    optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
  converter.optimizations = optimizations
  if quantize == "int8":
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  # Keras 3's export prints the saved signature to stdout: keep the user's output clean.
  with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
    warnings.simplefilter("ignore", UserWarning)  # The converter's statistics notice.
    try:
      return converter.convert()
    except Exception as err:  # pylint: disable=broad-except
      if "TensorList" in str(err) and rnn is None:
        raise ValueError(
            "TFLite's builtin ops cannot run this model's recurrent layer as a loop "
            "(TensorListReserve needs a static element shape). Pass rnn='unroll' to "
            "export_tflite (the RNN unrolled over its fixed time steps: builtin ops, "
            "checked in LiteRT) or rnn='select_tf_ops' (TensorFlow's ops inside the file: "
            "the app must link the Flex delegate).") from err
      raise


def _runs_here(flatbuffer, model, inputs):
  """False when this interpreter cannot run the file's select TF (Flex) ops."""
  try:
    _run(flatbuffer, model, [a[:1] for a in inputs])
  except (RuntimeError, ValueError) as err:
    if "Select TensorFlow op" in str(err) or "Flex" in str(err):
      return False
    raise
  return True


def _write_unchecked(flatbuffer, path, sparse, quantize, sparsities, target):
  note = ("rnn='select_tf_ops': the file holds TensorFlow (Flex) ops, which the LiteRT "
          "interpreter here cannot run, so it was written WITHOUT the output check. The "
          "app must link the Flex delegate; rnn='unroll' gives a checked builtin-only file.")
  warnings.warn("tf_fairprune.export_tflite: " + note, RuntimeWarning)
  _write(flatbuffer, path)
  ops, sparse_ops = _op_counts(flatbuffer)
  return TFLiteExport(path=os.fspath(path), size_bytes=len(flatbuffer), sparse=sparse,
                      quantize=quantize, max_abs_diff=float("nan"),
                      interpreter=interpreter_class()[1], num_samples=0, note=note, ops=ops,
                      densified_ops=ops.get("DENSIFY", 0), sparse_ops=sparse_ops,
                      target=target, **sparsities)


# What `_compare` found: max |TFLite − Keras|, the interpreter's name, max |Keras output|,
# and both sides' outputs (lists with one [samples, ...] array per output).
Comparison = collections.namedtuple("Comparison", "diff interpreter scale outputs expected")


def _compare(flatbuffer, model, inputs):
  """`run_tflite`, with both sides' outputs (a `Comparison`)."""
  interpreter_cls, name = interpreter_class()
  interpreter = interpreter_cls(model_content=flatbuffer)
  interpreter.allocate_tensors()
  runner = interpreter.get_signature_runner()
  signature = interpreter.get_signature_list()["serving_default"]
  input_names = [t.name.split(":")[0] for t in getattr(model, "inputs", None) or []]
  feed_names = list(signature["inputs"])
  if sorted(input_names) == sorted(feed_names):
    feed_names = input_names
  expected = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
  expected = list(expected.values()) if isinstance(expected, dict) else expected
  expected = list(expected) if isinstance(expected, (list, tuple)) else [expected]
  output_names = list(signature["outputs"])
  model_output_names = getattr(model, "output_names", None) or []  # Not on Keras 3 Sequential.
  if sorted(output_names) == sorted(model_output_names):
    output_names = list(model_output_names)
  rows = [runner(**{n: a[i:i + 1] for n, a in zip(feed_names, inputs)})
          for i in range(inputs[0].shape[0])]
  outputs = [np.concatenate([r[n] for r in rows]).astype(np.float64) for n in output_names]
  diff = conditioning_lib.max_abs_diff(outputs, expected)
  scale = max(float(np.max(np.abs(e))) for e in expected)
  return Comparison(diff, name, scale, outputs, expected)


def run_tflite(flatbuffer, model, inputs):
  """Runs a flatbuffer on sample inputs and compares it with the Keras model.

  Args:
    flatbuffer: A TFLite model (bytes), e.g. from `convert`.
    model: The Keras model it was converted from.
    inputs: A list with one array per model input, the samples along axis 0; each
      sample is run through the interpreter on its own (batch 1).

  Returns:
    `(max_abs_diff, interpreter_name, output_scale)`: max |TFLite − Keras| over every
    sample and output, the interpreter used (see `interpreter_class`), and
    max |Keras output| (what `export_tflite` scales its tolerance by).

  Raises:
    RuntimeError: If the interpreter cannot prepare or run the file (e.g. int8 with
      unstructured sparsity under XNNPACK).
    ValueError: If the interpreter rejects the file or the inputs.
  """
  comparison = _compare(flatbuffer, model, inputs)
  return comparison.diff, comparison.interpreter, comparison.scale


# `export_tflite` calls the check through this name, so that a test can replace it.
_run = _compare


def _judge(comparison, model, inputs, quantize):
  """(accepted, `Conditioning`, tolerance) of a file's comparison with Keras.

  Within the plain tolerance of Keras it is accepted. A float file outside it is judged
  against the model run in float64 (`conditioning.float64_outputs`): accepted when it is
  within the tolerance plus `NOISE_FACTOR` × the model's float32 noise of it (so never
  refused for being closer to float64 than Keras float32 is); with no float64 run, when
  its difference from Keras is within the tolerance plus `NOISE_FACTOR_WITHOUT_FLOAT64`
  × the noise that a few-ulp input change causes.
  """
  tolerance = _tolerance(quantize, comparison.scale)
  found = conditioning_lib.Conditioning(
      conditioning_lib.float32_noise(model, inputs, comparison.expected))
  if comparison.diff <= tolerance:
    return True, found, tolerance
  if quantize is not None:
    return False, found, tolerance
  noise = found.float32_noise if np.isfinite(found.float32_noise) else 0.0
  exact = conditioning_lib.float64_outputs(model, inputs)
  if exact is not None:
    found.keras_vs_float64 = conditioning_lib.max_abs_diff(comparison.expected, exact)
    found.tflite_vs_float64 = conditioning_lib.max_abs_diff(comparison.outputs, exact)
    noise = max(noise, found.keras_vs_float64)
    found.judged_by = "float64"
    return (found.tflite_vs_float64 <= tolerance + conditioning_lib.NOISE_FACTOR * noise,
            found, tolerance)
  found.judged_by = "noise"
  return (comparison.diff <= tolerance + conditioning_lib.NOISE_FACTOR_WITHOUT_FLOAT64 * noise,
          found, tolerance)


def _mismatch(comparison, found, tolerance, what):
  """The one-line account of a refused comparison."""
  text = (f"{what} differ from Keras by {comparison.diff:.3g} (tolerance {tolerance:.3g}")
  if found.tflite_vs_float64 is not None:
    text += (f"; from the model run in float64 by {found.tflite_vs_float64:.3g}, where Keras "
             f"float32 is {found.keras_vs_float64:.3g} from it")
  return text + ")"


def _sparsities(model):
  """`weight_sparsity` (every kernel of the model) and `pruned_sparsity` (the tensors
  that were pruned, when known) of a stripped model, or of a subclassed one with its
  masks baked in."""
  sparsity = {"weight_sparsity": quantization.kernel_sparsity(model), "pruned_sparsity": None}
  if contains_wrappers(model):
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


def export_tflite(model, path, *, sparse=True, quantize=None, representative_dataset=None,
                  sample_inputs=None, num_samples=16, seed=0, target="cpu", rnn=None):
  """Converts a (fair-pruned) model to TFLite, checks it in LiteRT, writes it.

  Args:
    model: A `tf_keras` or Keras 3 model; a model with `FairPruneWrapper` layers is
      stripped first. A model that computes in float16 (`mixed_float16`) is converted
      as a float32 copy with the same weights (TFLite has no float16 kernels for its
      ops), with a `note`.
    path: Where to write the `.tflite` file. Written only after the check passes.
    sparse: Store pruned weights as sparse tensors (`EXPERIMENTAL_SPARSITY`).
    quantize: `None` (float32), `"dynamic"` (dynamic-range int8 weights), `"int8"`
      (full integer kernels; needs `representative_dataset`) or `"qat"` (int8 from a
      model made by `quantize_preserving_sparsity` and trained: TFMOT's prune-preserving
      QAT; the export fails if training refilled a pruned weight).
    representative_dataset: A callable yielding lists of input arrays (TFLite's
      convention), required for `quantize="int8"`.
    sample_inputs: The model's plain inputs to check the file with: an array, a list
      (one array per model input) or a dict keyed by input name, samples along axis 0
      (not inputs packed by `pack_group_data`); random normal inputs are drawn when
      omitted.
    num_samples: Number of random samples when `sample_inputs` is omitted.
    seed: Seed of the random samples.
    target: `"cpu"` (default) or `"gpu"`. The TFLite GPU delegate has no DENSIFY kernel:
      it folds DENSIFY into CONV_2D and DEPTHWISE_CONV_2D weights when it loads a model
      but not into FULLY_CONNECTED, so for `"gpu"` the weights another op would read
      are stored dense (with a note; convolution weights stay sparse), and the result
      carries the
      verdict of TF's GPU compatibility check. On GPU, sparsity buys file size (sparse
      convolution weights), not speed.
    rnn: How recurrent layers (LSTM, GRU, SimpleRNN) are converted, which TFLite's
      builtins cannot run as a dynamic loop: `None` (default) raises an error naming
      the two ways; `"unroll"` converts a copy whose RNN layers are unrolled over their
      fixed time steps (builtin ops, checked in LiteRT like any model); `"select_tf_ops"`
      keeps the loop as TensorFlow ops (TFLite's advice: SELECT_TF_OPS with
      `_experimental_lower_tensor_list_ops=False`); the app must then link the Flex
      delegate, and where the interpreter here has none the file is written unchecked
      with a warning and a `note`.

  Returns:
    A `TFLiteExport` with the path, size, max abs difference to Keras and any fallback.

  Raises:
    TypeError: If `model` is not a Keras model.
    ValueError: For an unknown `quantize`, a missing representative dataset, or sample
      inputs that are empty, packed with group ids, non-numeric or non-finite, or do not
      match the model's inputs (one line each; nothing is written).
    RuntimeError: If the converted model does not run in the interpreter, or its outputs
      differ from Keras' by more than the tolerance even when stored dense (nothing is
      written then).

  The file is checked before it is written: its outputs on the sample inputs must be
  within 1e-3 (float) or 5e-2 (quantized) × max(1, max |Keras output|) of the Keras
  model's. A float file outside that is judged against the model run in float64: an
  ill-conditioned model (an untrained net with batch normalisation can move its outputs
  by 0.1 for a 1e-7 input change) differs from itself by that much in float32, so the
  file is written when it is within the tolerance plus twice the model's own float32
  noise of the float64 run, never refused for being closer to float64 than Keras is;
  `conditioning` holds the numbers. A block-sparse tensor whose width is not a multiple
  of its block (which TFLite's sparse kernel reads wrongly), or for `target="gpu"` a
  sparse weight of an op other than a convolution, is stored dense on its own — every
  other tensor stays sparse — and `note` says which. A sparse file that still misses
  the check is written dense instead, with a warning and `note`. DENSIFY ops
  (unstructured sparsity: a smaller file, no speed-up) are counted in `densified_ops`
  and logged at INFO. A pruned tensor that TFLite stores dense anyway — an Embedding
  table, read by GATHER, which takes no sparse tensor — is listed in `dense_stored`
  and warned about: its zeros cost accuracy and buy no file size.

  Example:

  ```python
  result = tf_fairprune.export_tflite(pruned, "/tmp/model.tflite", sample_inputs=x[:32])
  print(result.size_bytes, result.max_abs_diff, result.pruned_sparsity)
  ```
  """
  if not isinstance(model, flavours.of(model).keras.Model):
    raise TypeError(f"export_tflite expects a Keras model (tf_keras or Keras 3), got "
                    f"{type(model).__name__}.")
  if target not in TARGETS:
    raise ValueError(f"target must be one of {TARGETS}, got {target!r}.")
  if quantize not in QUANTIZE_MODES:
    raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}.")
  if rnn not in RNN_MODES:
    raise ValueError(f"rnn must be one of {RNN_MODES}, got {rnn!r}.")
  if quantize == "int8" and representative_dataset is None:
    raise ValueError("quantize='int8' needs a representative_dataset (a callable that "
                     "yields lists of input arrays).")
  inputs = sample_inputs_lib.sample_inputs(model, sample_inputs, num_samples, seed)
  if quantize == "qat":
    quantization.check_sparsity_preserved(model)
  elif quantization.is_qat_model(model):
    raise ValueError("This is a quantization-aware model: export it with quantize='qat'.")
  if contains_wrappers(model) and not flavours.of(model).is_graph_model(model):
    # A subclassed model cannot be copied: export it with its masks baked into its
    # weights for the conversion, then give the weights back.
    if computes_in_float16(model):
      _converted_copy(model, unroll=False, float32=True)  # Raises: it names the recipe.
    with strip_lib.masks_baked_in(model):
      return _export(model, path, sparse, quantize, representative_dataset, inputs,
                     target, rnn, _sparsities(model), "")
  if contains_wrappers(model):
    model = strip_lib.strip_fair_pruning(model)
  sparsities = _sparsities(model)  # Of the stripped model, before any copy for TFLite.
  unroll = rnn == "unroll" and _has_rnn(model)
  float32 = computes_in_float16(model)
  if unroll or float32:
    model = _converted_copy(model, unroll, float32)
  return _export(model, path, sparse, quantize, representative_dataset, inputs, target,
                 rnn, sparsities, _FLOAT16_NOTE if float32 else "")


def _export(model, path, sparse, quantize, representative_dataset, inputs, target, rnn,
            sparsities, first_note):
  """`export_tflite` of a model whose masks are in its weights; `inputs` checked."""
  notes = [first_note] if first_note else []
  indices = []
  partly_dense = False  # Some tensors stored dense on purpose: fall back, never raise.
  flatbuffer = convert(model, sparse, quantize, representative_dataset, rnn)
  if rnn == "select_tf_ops" and not _runs_here(flatbuffer, model, inputs):
    return _write_unchecked(flatbuffer, path, sparse, quantize, sparsities, target)
  if sparse:
    # Tensors a sparse kernel would misread, or (for the GPU) that only CONV_2D /
    # DEPTHWISE_CONV_2D can fold: stored dense one by one, the rest stays sparse.
    misaligned = _misaligned_block_tensors(flatbuffer)
    unfoldable = _gpu_unfoldable_ops(flatbuffer) if target == "gpu" else []
    reasons = []
    if misaligned:
      indices += _tensor_indices(flatbuffer, set(misaligned))
      reasons.append(
          f"TFLite's block-sparse kernel misreads tensors whose width is not a multiple of "
          f"the block, so {', '.join(misaligned[:3])}{' …' if len(misaligned) > 3 else ''} "
          "stored dense (layer widths divisible by 4 avoid this)")
    if unfoldable:
      indices += _gpu_unfoldable_tensors(flatbuffer)
      reasons.append(
          f"the TFLite GPU delegate folds sparse (DENSIFY) weights into CONV_2D and "
          f"DEPTHWISE_CONV_2D only, so the weights {', '.join(unfoldable)} read are stored "
          "dense for target='gpu'")
  try:
    if sparse and indices:
      partly_dense = True
      notes.append("; ".join(reasons) + "; every other tensor stays sparse.")
      flatbuffer = _store_dense(flatbuffer, sorted(set(indices)),
                                convert(model, False, quantize, representative_dataset, rnn))
      sparse = _has_sparse_tensors(flatbuffer)
    if sparse and target == "gpu" and _gpu_unfoldable_ops(flatbuffer):
      raise _SparseMismatch("a weight the TFLite GPU delegate cannot fold is still sparse; "
                            "wrote a dense file for target='gpu'.")
    if sparse and _misaligned_block_tensors(flatbuffer):
      raise _SparseMismatch("a misaligned block-sparse tensor is still sparse; wrote a "
                            "dense file instead.")
    comparison = _run(flatbuffer, model, inputs)
    accepted, found, tolerance = _judge(comparison, model, inputs, quantize)
    if sparse and not accepted:
      raise _SparseMismatch(_mismatch(comparison, found, tolerance, "the sparse file's "
                                      "outputs") + "; wrote a dense file instead.")
  except (RuntimeError, _SparseMismatch) as err:
    if not sparse and not partly_dense:
      raise RuntimeError(f"The converted TFLite model does not run: {err}. "
                         "Nothing was written.") from err
    if isinstance(err, _SparseMismatch):
      note = str(err)
    else:
      note = ("Quantized unstructured-sparse kernels fail to prepare under TFLite's default "
              "XNNPACK delegate; wrote a dense quantized file instead. "
              f"Interpreter error: {str(err).strip()[:200]}")
    notes.append(note)
    warnings.warn("tf_fairprune.export_tflite: " + note, RuntimeWarning, stacklevel=2)
    sparse = False
    flatbuffer = convert(model, sparse, quantize, representative_dataset, rnn)
    try:
      comparison = _run(flatbuffer, model, inputs)
    except RuntimeError as dense_err:
      raise RuntimeError(f"The converted TFLite model does not run: {dense_err}. "
                         "Nothing was written.") from dense_err
    accepted, found, tolerance = _judge(comparison, model, inputs, quantize)
  if not accepted:
    raise RuntimeError(_mismatch(comparison, found, tolerance, "The TFLite model's outputs")
                       + " on the sample inputs. Nothing was written.")
  if found.judged_by != "keras":
    notes.append(
        f"the model is ill-conditioned: a few-ulp input change moves its outputs by "
        f"{found.float32_noise:.2g}, so the file ({comparison.diff:.2g} from Keras float32) "
        f"was judged against {'the model run in float64' if found.judged_by == 'float64' else 'that noise'}"
        " (see `conditioning`).")
  stored_dense = dense_stored(flatbuffer) if sparse else []
  unsparse = [t for t in stored_dense if t["why"] == "consumer"]
  if unsparse:
    note = (f"TFLite stores {', '.join(t['name'] for t in unsparse[:3])}"
            f"{' …' if len(unsparse) > 3 else ''} dense although "
            f"{'it holds' if len(unsparse) == 1 else 'they hold'} zeros (read by "
            f"{', '.join(sorted({o for t in unsparse for o in t['read_by']}))}, which takes no "
            "sparse tensor): pruning such a tensor costs accuracy and buys no file size. "
            "fair_prune_wrapper(prune_embeddings=False), the default, leaves Embedding tables "
            "dense and puts the sparsity where the file can hold it.")
    notes.append(note)
    warnings.warn("tf_fairprune.export_tflite: " + note, UserWarning, stacklevel=2)

  ops, sparse_ops = _op_counts(flatbuffer)
  densified = ops.get("DENSIFY", 0)
  if sparse and densified and target == "cpu":
    # Expected of unstructured sparsity, not a problem: the result says it
    # (`densified_ops`), logged at INFO, never warned.
    _LOG.info("tf_fairprune.export_tflite: %d sparse weight tensor(s) are densified when "
              "the model loads (DENSIFY ops): the file is smaller but inference is not "
              "faster; block_size=(4, 1) (float) or (16, 1) (int8) gives native sparse "
              "kernels.", densified)
  path = os.fspath(path)
  _write(flatbuffer, path)
  return TFLiteExport(path=path, size_bytes=len(flatbuffer), sparse=sparse,
                      quantize=quantize, max_abs_diff=comparison.diff,
                      interpreter=comparison.interpreter,
                      num_samples=int(inputs[0].shape[0]), note=" ".join(notes), ops=ops,
                      densified_ops=densified, sparse_ops=sparse_ops, target=target,
                      gpu_compatibility=_gpu_verdict(flatbuffer) if target == "gpu" else None,
                      conditioning=found, dense_stored=stored_dense, **sparsities)


def _write(flatbuffer, path):
  """Writes the file atomically (a temporary file, then a rename)."""
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tflite.tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(flatbuffer)
    # mkstemp makes the file 0600; give it what open() would: 0666 less the umask.
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
