"""`strip_fair_pruning`: the plain model with the masks baked in (TFMOT's `strip_pruning`)."""

import contextlib

import numpy as np

from tf_fairprune import _private
from tf_fairprune import cloning
from tf_fairprune import flavours
from tf_fairprune import shrink as shrink_lib
from tf_fairprune.wrapper import contains_wrappers
from tf_fairprune.wrapper import is_wrapper
from tf_fairprune.wrapper import wrappers_of


def bake_masks(model):
  """Assigns m ⊙ θ to every masked variable of `model`'s wrappers; returns the old values."""
  saved = []
  for w in wrappers_of(model):
    masked = w.masked_variables()
    for var in w.layer.weights:
      if id(var) in masked:
        saved.append((var, var.numpy()))
        var.assign(masked[id(var)])
  return saved


@contextlib.contextmanager
def masks_baked_in(model):
  """Within the block, `model`'s masked weights hold m ⊙ θ (so its variables are what
  inference computes with); afterwards θ is restored exactly."""
  saved = bake_masks(model)
  try:
    yield model
  finally:
    for var, value in saved:
      var.assign(value)


_PRUNED_VARIABLES = "_tf_fairprune_pruned_variables"


def pruned_variables(model):
  """The variables of a model made by `strip_fair_pruning` that were pruned (the wrapped
  tensors), or None for any other model (e.g. one read back from a file)."""
  return getattr(model, _PRUNED_VARIABLES, None)


def strip_fair_pruning(model, shrink=False):
  """Returns a plain Keras model (of the model's flavour) with the masks baked in.

  The counterpart of TFMOT's `strip_pruning`: every `FairPruneWrapper` is replaced by
  a copy of the layer it wraps, whose pruned weights are exact zeros. The result has
  the architecture of the model originally passed to `fair_prune_wrapper` (Sequential
  stays Sequential), computes the same outputs as the wrapped model in inference, and
  can go on to TFMOT's quantization or to `export_tflite`.

  With `shrink=True` (channel pruning) the pruned channels are removed: Dense / Conv
  layers get fewer units / filters, and what consumes them (BatchNormalization,
  depthwise convolutions, the next layer's inputs, residual adds) loses the same
  channels, giving a smaller dense model with the same predictions. A channel stays
  where removing it would change the outputs (see `tf_fairprune.shrink`).

  Args:
    model: A model returned by `fair_prune_wrapper` (or any Sequential or Functional
      model containing `FairPruneWrapper` layers).
    shrink: Remove the channels pruned with `granularity="channel"`.

  A subclassed model (a subclass of `FairPruneModel` with `FairPruneWrapper` layers)
  cannot be copied: it is stripped *in place* — every masked weight is set to m ⊙ θ
  (pruned weights become exact zeros, the masks stay) — and returned. It computes the
  same outputs as before, saves as `.keras` and goes to `export_tflite` (which itself
  never changes a model: for a subclassed one it bakes the masks in only while it
  converts).

  Returns:
    A new Keras model of `model`'s flavour; `model` is not modified (a subclassed model
    is stripped in place and returned). With `shrink=True` the model's
    `shrink_report` attribute holds a `ShrinkReport` (channels kept per layer).

  Raises:
    TypeError: If `model` is not a Keras model.
    ValueError: If `model` is a subclassed model without wrappers; with `shrink=True`,
      if the model is subclassed, no layer was pruned by channels, or the model has
      nested models or shared layers.
  """
  k = flavours.of(model).keras
  if not isinstance(model, k.Model):
    raise cloning.type_error(model)
  if not flavours.of(model).is_graph_model(model) and contains_wrappers(model):
    # A subclassed model (e.g. a subclass of FairPruneModel) cannot be cloned.
    if shrink:
      raise ValueError(f"shrink=True needs a Sequential or Functional model; '{model.name}' "
                       "is subclassed.")
    bake_masks(model)
    return model
  cloning.check_graph_model(model, "Model")
  copies = []

  def unwrap(layer):
    source = layer.layer if is_wrapper(layer) else layer
    new = cloning.copy_layer(source)
    copies.append((layer, new))
    return new

  clone = cloning.clone_graph(model, unwrap)
  source_class = getattr(model, "_source_class", None)
  if source_class is None:
    source_class = "Sequential" if isinstance(model, k.Sequential) else "Functional"
  stripped = cloning.rebuild(clone, model, k.Sequential if source_class == "Sequential" else k.Model)
  pruned_channels = {}
  pruned = []
  for source, new in copies:
    if is_wrapper(source):
      masked = source.masked_variables()
      new.set_weights([np.asarray(masked.get(id(v), v)) for v in source.layer.weights])
      ids = {id(v) for v in source.prunable_weights}
      pruned += [n for v, n in zip(source.layer.weights, new.weights) if id(v) in ids]
      if source.granularity == "channel":
        pruned_channels[new.name] = source.channel_mask().numpy() == 0
    else:
      new.set_weights(source.get_weights())
  if not shrink:
    # Unsaved, untracked: which variables were pruned (`export_tflite`'s pruned_sparsity).
    _private.untracked(stripped, _PRUNED_VARIABLES, pruned)
    return stripped
  if not pruned_channels:
    raise ValueError("shrink=True removes channels pruned with granularity='channel'; "
                     f"'{model.name}' has no such layers.")
  shrunk, report = shrink_lib.shrink_model(stripped, pruned_channels)
  shrunk.shrink_report = report
  return shrunk
