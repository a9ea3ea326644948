"""Edits of a TFLite flatbuffer: storing chosen sparse tensors dense, the rest untouched."""

from tensorflow.lite.tools import flatbuffer_utils


class SparseMismatch(Exception):
  """A sparse flatbuffer that must not be written (the dense one is tried instead)."""


def store_dense(flatbuffer, indices, dense):
  """The flatbuffer with the tensors `indices` (of the main subgraph) stored dense.

  Their values are taken from `dense`, the model converted without sparsity (the tensor
  that the same input of the same operator reads there); the DENSIFY ops that read them
  are removed (their consumers read the dense constant). Every other tensor stays as it
  was. The sparse encoding itself cannot be expanded: for a misaligned block-sparse
  tensor the converter's encoding already lost values (TF 2.21: one 1x4 block kept of a
  3-wide layer's 64 rows).

  Args:
    flatbuffer: The sparse file (bytes); it is parsed into a copy of its own to edit.
    indices: Tensor indices of its main subgraph to store dense.
    dense: The `FlatbufferInfo` of the same model converted without sparsity (only
      read).

  Returns:
    The edited flatbuffer, as bytes.

  Raises:
    SparseMismatch: If the dense conversion has other operators, or a tensor has no
      dense counterpart of its shape (the message ends in what is written instead).

  Example:

  ```python
  fixed = store_dense(sparse_file, info.misaligned_block_tensors,
                      FlatbufferInfo(convert(model, sparse=False)))
  ```
  """
  model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
  reference, ref_graph = dense.model, dense.model.subgraphs[0]
  graph = model.subgraphs[0]
  name = lambda op: flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
  densify = [op for op in graph.operators if name(op) == "DENSIFY"]
  source = {op.outputs[0]: op.inputs[0] for op in densify}
  ops = [op for op in graph.operators if name(op) != "DENSIFY"]
  ref_ops = list(ref_graph.operators)
  if [name(op) for op in ops] != [flatbuffer_utils.opcode_to_name(reference, op.opcodeIndex)
                                  for op in ref_ops]:
    raise SparseMismatch("the dense conversion has other operators; wrote a dense file "
                         "instead.")
  for i in indices:
    tensor = graph.tensors[i]
    slots = [(ref, slot) for op, ref in zip(ops, ref_ops)
             for slot, t in enumerate(op.inputs) if source.get(t, t) == i]
    twins = {ref.inputs[slot] for ref, slot in slots}
    if len(twins) != 1:
      raise SparseMismatch(f"no dense counterpart of {tensor.name!r} to store it dense on "
                           "its own; wrote a dense file instead.")
    twin = ref_graph.tensors[twins.pop()]
    if list(twin.shape) != list(tensor.shape):
      raise SparseMismatch(f"the dense counterpart of {tensor.name!r} has another shape; "
                           "wrote a dense file instead.")
    model.buffers[tensor.buffer].data = reference.buffers[twin.buffer].data
    tensor.type, tensor.quantization = twin.type, twin.quantization
    tensor.sparsity = None
  for op in [op for op in densify if op.inputs[0] in indices]:
    for other in graph.operators:
      other.inputs = [op.inputs[0] if t == op.outputs[0] else t for t in other.inputs]
    graph.operators.remove(op)
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
