"""`export_tflite`: one linear pipeline, each step a small function.

  arguments -> convertible model -> convert (sparse) -> repair (tensors a sparse kernel
  would misread stored dense) -> verify (in LiteRT, against Keras) -> fall back to a
  dense file (when the sparse one cannot be trusted) -> write (atomically) -> report

A flatbuffer travels between the steps as an `_File`: its bytes, what it holds (a
`FlatbufferInfo`, parsed once) and whether it counts as sparse. Each conversion of the
model (sparse, dense) is made at most once.
"""

import collections
import logging
import os
import warnings

from tf_fairprune import flavours
from tf_fairprune import sample_inputs as sample_inputs_lib
from tf_fairprune import strip as strip_lib
from tf_fairprune.export import arguments
from tf_fairprune.export import atomic_write
from tf_fairprune.export import conversion
from tf_fairprune.export import result as result_lib
from tf_fairprune.export import surgery
from tf_fairprune.export import verify
from tf_fairprune.export.flatbuffer_info import FlatbufferInfo
from tf_fairprune.export.flatbuffer_info import gpu_verdict
from tf_fairprune.wrapper import contains_wrappers

_LOG = logging.getLogger("tf_fairprune.export")

# `export_tflite` calls the check through this name, so that a test can replace it.
_run = verify.compare

# What the caller asked for (`export_tflite`'s arguments past the model and its inputs).
_Request = collections.namedtuple(
    "_Request", "path sparse quantize representative_dataset target rnn")
# A flatbuffer between two steps: its bytes, what it holds (read once), and whether it
# counts as sparse (as requested, until a repair leaves no sparse tensor in it).
_File = collections.namedtuple("_File", "flatbuffer info sparse")
# Tensors of a sparse file to store dense on their own, and the note saying why.
_Repair = collections.namedtuple("_Repair", "indices note")


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
  arguments.check_options(model, target, quantize, rnn, representative_dataset)
  inputs = sample_inputs_lib.sample_inputs(model, sample_inputs, num_samples, seed)
  arguments.check_quantization(model, quantize)
  request = _Request(path, sparse, quantize, representative_dataset, target, rnn)
  if contains_wrappers(model) and not flavours.of(model).is_graph_model(model):
    # A subclassed model cannot be copied: export it with its masks baked into its
    # weights for the conversion, then give the weights back.
    if conversion.computes_in_float16(model):
      conversion.convertible_copy(model, unroll=False, float32=True)  # Raises: names the recipe.
    with strip_lib.masks_baked_in(model):
      return _export(model, inputs, request, result_lib.model_sparsities(model), notes=[])
  if contains_wrappers(model):
    model = strip_lib.strip_fair_pruning(model)
  sparsities = result_lib.model_sparsities(model)  # Before any copy for TFLite.
  model, notes = _convertible(model, rnn)
  return _export(model, inputs, request, sparsities, notes)


def _convertible(model, rnn):
  """(a model TFLite's builtins can run, the notes saying what was copied): RNN layers
  unrolled for `rnn="unroll"`, a float16 model copied in float32."""
  unroll = rnn == "unroll" and conversion.has_rnn(model)
  float32 = conversion.computes_in_float16(model)
  if unroll or float32:
    model = conversion.convertible_copy(model, unroll, float32)
  return model, [conversion.FLOAT16_NOTE] if float32 else []


def _export(model, inputs, request, sparsities, notes):
  """`export_tflite` of a model whose masks are in its weights; `inputs` checked."""
  convert = _Converter(model, request)
  file = convert(request.sparse)
  if request.rnn == "select_tf_ops" and not _runs_here(file.flatbuffer, model, inputs):
    return _write_unchecked(file, request, sparsities)
  repair = _plan_repair(file.info, request.target) if file.sparse else None
  if repair:
    notes.append(repair.note)
  try:
    if repair:
      file = _repair(file, repair.indices, convert)
    verdict = _verify(file, model, inputs, request)
  except (RuntimeError, surgery.SparseMismatch) as err:
    if not file.sparse and not repair:  # A dense file was asked for: nothing to fall to.
      raise _does_not_run(err) from err
    notes.append(_fallback_note(err))
    file, verdict = _fall_back_to_dense(convert, model, inputs, request)
  if not verdict.accepted:
    raise RuntimeError(verify.mismatch(verdict, "The TFLite model's outputs")
                       + " on the sample inputs. Nothing was written.")
  notes += _conditioning_notes(verdict) + _stored_dense_notes(file)
  _log_densified(file, request.target)
  return _write(file, verdict, request, inputs, sparsities, notes)


class _Converter:
  """The model's conversions with the request's settings, each (sparse, dense) made and
  read at most once: `convert(sparse)` is an `_File`."""

  def __init__(self, model, request):
    self._model, self._request = model, request
    self._files = {}

  def __call__(self, sparse):
    if sparse not in self._files:
      r = self._request
      flatbuffer = conversion.convert(self._model, sparse, r.quantize,
                                      r.representative_dataset, r.rnn)
      self._files[sparse] = _File(flatbuffer, FlatbufferInfo(flatbuffer), sparse)
    return self._files[sparse]


def _plan_repair(info, target):
  """The tensors of a sparse file to store dense on their own (the rest stays sparse):
  those TFLite's sparse kernel would misread, and for `target="gpu"` those read by ops
  other than CONV_2D / DEPTHWISE_CONV_2D; None when there are none."""
  indices, reasons = [], []
  misaligned = [info.tensor_name(i) for i in info.misaligned_block_tensors]
  if misaligned:
    indices += info.misaligned_block_tensors
    reasons.append(
        f"TFLite's block-sparse kernel misreads tensors whose width is not a multiple of "
        f"the block, so {', '.join(misaligned[:3])}{' …' if len(misaligned) > 3 else ''} "
        "stored dense (layer widths divisible by 4 avoid this)")
  unfoldable = info.gpu_unfoldable_ops if target == "gpu" else []
  if unfoldable:
    indices += info.gpu_unfoldable_tensors
    reasons.append(
        f"the TFLite GPU delegate folds sparse (DENSIFY) weights into CONV_2D and "
        f"DEPTHWISE_CONV_2D only, so the weights {', '.join(unfoldable)} read are stored "
        "dense for target='gpu'")
  if not indices:
    return None
  return _Repair(sorted(set(indices)), "; ".join(reasons) + "; every other tensor stays sparse.")


def _repair(file, indices, convert):
  """`file` with the tensors `indices` stored dense (values from the dense conversion)."""
  flatbuffer = surgery.store_dense(file.flatbuffer, indices, convert(False).info)
  info = FlatbufferInfo(flatbuffer)
  return _File(flatbuffer, info, info.has_sparse_tensors)


def _verify(file, model, inputs, request):
  """The `verify.Verdict` on `file`.

  Raises:
    surgery.SparseMismatch: If `file` is sparse and still holds a tensor it must not
      (one the GPU delegate cannot fold, a misaligned block) or misses the check.
    RuntimeError: If the interpreter cannot prepare or run the file.
  """
  if file.sparse and request.target == "gpu" and file.info.gpu_unfoldable_ops:
    raise surgery.SparseMismatch("a weight the TFLite GPU delegate cannot fold is still "
                                 "sparse; wrote a dense file for target='gpu'.")
  if file.sparse and file.info.misaligned_block_tensors:
    raise surgery.SparseMismatch("a misaligned block-sparse tensor is still sparse; wrote a "
                                 "dense file instead.")
  verdict = verify.judge(_run(file.flatbuffer, model, inputs), model, inputs, request.quantize)
  if file.sparse and not verdict.accepted:
    raise surgery.SparseMismatch(verify.mismatch(verdict, "the sparse file's outputs")
                                 + "; wrote a dense file instead.")
  return verdict


def _fallback_note(err):
  """Why a sparse file was not written (warned, and kept for the result's `note`)."""
  if isinstance(err, surgery.SparseMismatch):
    note = str(err)
  else:
    note = ("Quantized unstructured-sparse kernels fail to prepare under TFLite's default "
            "XNNPACK delegate; wrote a dense quantized file instead. "
            f"Interpreter error: {str(err).strip()[:200]}")
  _warn(note, RuntimeWarning)
  return note


def _fall_back_to_dense(convert, model, inputs, request):
  """(the dense `_File`, its verdict), after a sparse file was refused."""
  file = convert(False)
  try:
    comparison = _run(file.flatbuffer, model, inputs)
  except RuntimeError as err:
    raise _does_not_run(err) from err
  return file, verify.judge(comparison, model, inputs, request.quantize)


def _does_not_run(err):
  return RuntimeError(f"The converted TFLite model does not run: {err}. Nothing was written.")


def _runs_here(flatbuffer, model, inputs):
  """False when this interpreter cannot run the file's select TF (Flex) ops."""
  try:
    _run(flatbuffer, model, [a[:1] for a in inputs])
  except (RuntimeError, ValueError) as err:
    if "Select TensorFlow op" in str(err) or "Flex" in str(err):
      return False
    raise
  return True


def _conditioning_notes(verdict):
  """A note when the file was judged against float64 or the model's noise, not Keras."""
  found = verdict.conditioning
  if found.judged_by == "keras":
    return []
  against = "the model run in float64" if found.judged_by == "float64" else "that noise"
  return [f"the model is ill-conditioned: a few-ulp input change moves its outputs by "
          f"{found.float32_noise:.2g}, so the file ({verdict.comparison.diff:.2g} from Keras "
          f"float32) was judged against {against} (see `conditioning`)."]


def _stored_dense_notes(file):
  """A note (and a warning) when a sparse file stores pruned tensors dense because no
  operator reading them takes a sparse tensor (an Embedding table read by GATHER)."""
  unsparse = [t for t in _dense_stored(file) if t["why"] == "consumer"]
  if not unsparse:
    return []
  note = (f"TFLite stores {', '.join(t['name'] for t in unsparse[:3])}"
          f"{' …' if len(unsparse) > 3 else ''} dense although "
          f"{'it holds' if len(unsparse) == 1 else 'they hold'} zeros (read by "
          f"{', '.join(sorted({o for t in unsparse for o in t['read_by']}))}, which takes no "
          "sparse tensor): pruning such a tensor costs accuracy and buys no file size. "
          "fair_prune_wrapper(prune_embeddings=False), the default, leaves Embedding tables "
          "dense and puts the sparsity where the file can hold it.")
  _warn(note, UserWarning)
  return [note]


def _dense_stored(file):
  return list(file.info.dense_stored) if file.sparse else []


def _log_densified(file, target):
  densified = file.info.op_counts.get("DENSIFY", 0)
  if file.sparse and densified and target == "cpu":
    # Expected of unstructured sparsity, not a problem: the result says it
    # (`densified_ops`), logged at INFO, never warned.
    _LOG.info("tf_fairprune.export_tflite: %d sparse weight tensor(s) are densified when "
              "the model loads (DENSIFY ops): the file is smaller but inference is not "
              "faster; block_size=(4, 1) (float) or (16, 1) (int8) gives native sparse "
              "kernels.", densified)


def _write(file, verdict, request, inputs, sparsities, notes):
  """Writes the checked file and returns the `TFLiteExport` describing it."""
  path = os.fspath(request.path)
  atomic_write.write_atomically(file.flatbuffer, path)
  return result_lib.TFLiteExport(
      path=path, size_bytes=len(file.flatbuffer), sparse=file.sparse,
      quantize=request.quantize, max_abs_diff=verdict.comparison.diff,
      interpreter=verdict.comparison.interpreter, num_samples=int(inputs[0].shape[0]),
      note=" ".join(notes), target=request.target,
      gpu_compatibility=gpu_verdict(file.flatbuffer) if request.target == "gpu" else None,
      conditioning=verdict.conditioning, dense_stored=_dense_stored(file),
      **_op_reports(file.info), **sparsities)


def _write_unchecked(file, request, sparsities):
  """Writes a file whose Flex ops this interpreter cannot run, with a warning."""
  note = ("rnn='select_tf_ops': the file holds TensorFlow (Flex) ops, which the LiteRT "
          "interpreter here cannot run, so it was written WITHOUT the output check. The "
          "app must link the Flex delegate; rnn='unroll' gives a checked builtin-only file.")
  _warn(note, RuntimeWarning)
  atomic_write.write_atomically(file.flatbuffer, request.path)
  return result_lib.TFLiteExport(
      path=os.fspath(request.path), size_bytes=len(file.flatbuffer), sparse=file.sparse,
      quantize=request.quantize, max_abs_diff=float("nan"),
      interpreter=verify.interpreter_class()[1], num_samples=0, note=note,
      target=request.target, **_op_reports(file.info), **sparsities)


def _op_reports(info):
  """The `TFLiteExport` fields counting operators."""
  return {"ops": dict(info.op_counts), "densified_ops": info.op_counts.get("DENSIFY", 0),
          "sparse_ops": dict(info.sparse_ops)}


def _warn(note, category):
  # Every note is warned two calls below `_export` (export_tflite -> _export -> a step
  # -> here): stacklevel 5 names the user's call of export_tflite.
  warnings.warn("tf_fairprune.export_tflite: " + note, category, stacklevel=5)
