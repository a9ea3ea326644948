"""Re-estimating batch-normalisation statistics after pruning.

A BatchNormalization layer normalises with the moving mean and variance it saw while the
network was dense. Pruning (and the first mask's rescale) changes what reaches it, so
those statistics no longer describe its inputs: an untrained or briefly trained pruned
net can then output a constant. `recalibrate_batch_norm` replaces them by the exact
average over some data of what the pruned network feeds each layer, as PyTorch's
`torch.optim.swa_utils.update_bn` does; no weight, score or mask changes.
"""

import numpy as np
import tensorflow as tf

from tf_fairprune import _private
from tf_fairprune import flavours
from tf_fairprune import groups as groups_lib


def batch_norm_layers(model):
  """The BatchNormalization layers of `model` (nested models and wrappers included)."""
  k = flavours.of(model).keras
  return [l for l in _private.flatten_layers(model, include_self=False)
          if isinstance(l, k.layers.BatchNormalization)]


def _batches(data, batch_size, steps):
  """Input batches of `data` (arrays, a list or dict of arrays, packed group data, or a
  dataset of `x` or `(x, y[, w])` elements); at most `steps` of them."""
  if isinstance(data, tf.data.Dataset):
    for i, element in enumerate(data):
      if steps is not None and i >= steps:
        return
      x = element[0] if isinstance(element, tuple) else element
      yield groups_lib.unpack_group_data(x)[0]
    return
  if isinstance(data, tuple):  # (x, y) or (x, y, w), as `fit` takes them.
    data = data[0]
  data = groups_lib.unpack_group_data(data)[0]
  n = len(tf.nest.flatten(data)[0])
  for i, start in enumerate(range(0, n, batch_size)):
    if steps is not None and i >= steps:
      return
    yield tf.nest.map_structure(lambda a, s=start: a[s:s + batch_size], data)


def recalibrate_batch_norm(model, data, batch_size=64, steps=None):
  """Re-estimates every BatchNormalization layer's moving mean and variance from `data`.

  Runs the model in training mode over the batches and sets each layer's moving
  statistics to the plain average of its batch statistics (momentum 1 − 1/t at batch t;
  the momentum is restored afterwards). Weights, scores and masks do not change; other
  training-mode layers (Dropout) act as they do in training.

  Args:
    model: A Keras model of either flavour: fair-pruned (wrapped), stripped or dense.
    data: Inputs: an array, a list or dict of arrays, `(x, y)` as `fit` takes it,
      inputs packed by `pack_group_data`, or a `tf.data.Dataset` (batched) of `x` or
      `(x, y[, sample_weight])` elements. A few hundred to a few thousand training rows
      are enough.
    batch_size: Rows per batch for array data (ignored for a dataset). Batch statistics
      of very small batches are noisy; 32 or more is advisable.
    steps: At most this many batches (default: all).

  Returns:
    The number of batches averaged.

  Raises:
    ValueError: If the model has no BatchNormalization layer, `data` holds no batch, or
      `batch_size` / `steps` is not a positive integer.

  Example:

  ```python
  final = tf_fairprune.strip_fair_pruning(pruned)
  tf_fairprune.recalibrate_batch_norm(final, x_train[:2048])
  tf_fairprune.export_tflite(final, "model.tflite", sample_inputs=x_train[:32])
  ```
  """
  for name, value in (("batch_size", batch_size), ("steps", steps)):
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                              or value < 1):
      raise ValueError(f"{name} must be a positive integer, got {value!r}.")
  layers = batch_norm_layers(model)
  if not layers:
    raise ValueError(f"Model '{model.name}' has no BatchNormalization layer to recalibrate.")
  momenta = [l.momentum for l in layers]
  count = 0
  try:
    for x in _batches(data, batch_size, steps):
      count += 1
      for layer in layers:
        layer.momentum = 1.0 - 1.0 / count  # Batch t weighs 1/t: the running average.
      model(x, training=True)
  finally:
    for layer, momentum in zip(layers, momenta):
      layer.momentum = momentum
  if not count:
    raise ValueError("recalibrate_batch_norm: `data` holds no batch.")
  return count
