"""Entry points: `fair_prune_wrapper` (TFMOT's `prune_low_magnitude`) and
`fair_prune_scope`; `strip_fair_pruning` lives in `strip.py`."""

import warnings

from tf_fairprune import _private
from tf_fairprune import cloning
from tf_fairprune import config as config_lib
from tf_fairprune import flavours
from tf_fairprune import mask_updater
from tf_fairprune import masking
from tf_fairprune import pruning_schedule
from tf_fairprune import registry
from tf_fairprune._compat import PruningSchedule
from tf_fairprune.fairness import constraints
from tf_fairprune.training import BiLevelTrainingMixin
from tf_fairprune.wrapper import contains_wrappers
from tf_fairprune.wrapper import is_wrapper

_DEFAULTS = config_lib.PruningConfig  # Its field defaults are the arguments' defaults.


def fair_prune_wrapper(to_prune, target_sparsity=_DEFAULTS.target_sparsity, mask_scope=None,
                       implicit_gradient_scale=_DEFAULTS.implicit_gradient_scale,
                       update_mode=_DEFAULTS.update_mode,
                       mask_update_frequency=_DEFAULTS.mask_update_frequency,
                       fairness=_DEFAULTS.fairness, fairness_on=_DEFAULTS.fairness_on,
                       num_groups=_DEFAULTS.num_groups, block_size=(1, 1),
                       sparsity_m_by_n=None, granularity="weight", rescale=True,
                       fairness_output=_DEFAULTS.fairness_output,
                       layer_floor=_DEFAULTS.layer_floor, prune_embeddings=None):
  """Prepares a model (or layers) for bi-level fair pruning.

  The counterpart of TFMOT's `prune_low_magnitude`. For a Sequential or Functional
  model (nested models included) it returns a *copy* in which every prunable layer is
  wrapped in a `FairPruneWrapper`; the returned `FairPruneModel` runs the bi-level
  update in `fit`. The model you pass is never modified. If the model already contains
  `FairPruneWrapper` layers, only those are pruned (selective pruning).

  For a layer or a list of layers it returns them wrapped, to build a model from
  (then pass that model here to get the bi-level training loop).

  Args:
    to_prune: A Sequential or Functional model, a layer, or a list of layers, of either
      Keras flavour (Keras 3 or tf_keras); the result is of the same flavour.
    target_sparsity: Fraction of prunable weights to remove: a float in [0, 1) or a
      TFMOT `PruningSchedule` (`ConstantSparsity`, `PolynomialDecay`).
    mask_scope: `"global"` ranks scores across all wrapped layers; `"layer"` prunes
      each wrapped weight to the same sparsity. Default: `"global"`, but `"layer"` for
      `granularity="channel"` (ranked globally, whole narrow layers could vanish).
    implicit_gradient_scale: 1/γ of BiP's implicit-gradient term; 0 turns it off.
    update_mode: `"joint"` (one forward pass per step) or `"alternating"`.
    mask_update_frequency: Re-rank the masks every this many steps (default 1).
    fairness: List of `tf_fairprune.fairness` constraints (e.g.
      `[ExcessDegradation(tolerance=0.01)]`); empty for plain BiP.
    fairness_on: Levels that get the fairness terms: `("weights", "mask")` (BiFP),
      `("mask",)`, `("weights",)` or `()` (= BiP) — the paper's ablations.
    num_groups: Number of sensitive groups K; group ids are in [0, K). Feed them with
      `pack_group_data`.
    block_size: Prune (rows, cols) blocks of 2-D kernels in Keras layout (in, out), as
      TFMOT's argument; (4, 1) for float and (16, 1) for int8 run as native sparse
      FULLY_CONNECTED in TFLite. Blocks are ranked by their mean |score|.
    sparsity_m_by_n: `(N, M)`, e.g. `(2, 4)`: keep N of every M consecutive inputs.
      `target_sparsity` must then be 1 - N/M. Kept in the model config (TFMOT loses it).
    granularity: `"weight"` (default) or `"channel"`: prune whole output channels /
      filters (the paper's structured BiFP), ranked by mean |score|. The target
      sparsity is then the fraction of units (blocks, channels) removed. A pruned
      channel loses its bias too, so it outputs exactly 0. Layers whose output is a
      model output (the logits), depthwise convolutions (their channels are their
      inputs') and transposed convolutions are not wrapped in channel mode.
      `strip_fair_pruning(shrink=True)` then removes the pruned channels.
    rescale: Multiply each wrapped tensor by ‖θ‖ / ‖m ⊙ θ‖ under the first mask
      (default True), so every layer starts with the weight norm it had dense. At
      extreme sparsity an unrescaled network starts nearly silent and short runs
      ended as a constant predictor (see `FairPruneModel.rescale_to_masks`). Under
      global ranking the gain is bounded: a tensor that the `layer_floor` holds (it
      keeps only its floor) is not rescaled — blowing its few weights up by
      ‖θ‖ / ‖m ⊙ θ‖ made ResNet-10's runs at 99% constant predictors (BENCHMARKS.md,
      "Layer floor vs pure global ranking"). False starts from the dense weights
      exactly (step 0 = magnitude pruning). A name from `mask_updater.RESCALE_CAPS`
      rescales with that bound on the gains instead (the alternatives
      `benchmarks/benchmark_layer_floor.py` measures).
    layer_floor: With `mask_scope="global"`, every wrapped tensor keeps at least
      max(1, ⌈layer_floor·(1−s)·n⌉) of its n weights (default 0.1), so global ranking
      never empties a layer (it did: 11 layers of ResNet50 at 90%); the total sparsity
      stays exact. 0 ranks purely globally.
    prune_embeddings: Whether `Embedding` tables are pruned. TFLite stores an
      embedding table dense whatever its zeros (its consumer, GATHER, reads no sparse
      tensor), so pruning it costs accuracy and buys no file size. `False` (default)
      leaves them dense and unwrapped: the target sparsity applies to the other
      prunable weights, the ones the file can hold sparse. `"layer"` prunes each
      table to the target sparsity on its own, outside the global ranking (it then
      never takes the pruning the other layers need). `True` ranks them with every
      other tensor (the behaviour before; a token transformer's table then took most
      of the pruning: BENCHMARKS.md, "Embedding tables: pruned or not").
    fairness_output: For a model with several outputs: the name (as in the original
      model) or index of the output that the fairness constraints and the per-group
      metrics judge. Default: the only output; with several outputs and fairness
      constraints (or group ids in the data) it must be given.

  Returns:
    A `FairPruneModel` for a model; a `FairPruneWrapper` (or a list) for layers.

  Raises:
    TypeError: If `to_prune` is not a Keras model, layer or list of layers.
    ValueError: For a bad sparsity or `rescale`, an already wrapped model or layer, a
      subclassed or unbuilt model, an unsupported layer with kernels, or nothing to
      prune.

  Example:

  ```python
  model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(64, "relu"),
                            keras.layers.Dense(1)])
  pruned = tf_fairprune.fair_prune_wrapper(model, target_sparsity=0.9)
  pruned.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                 loss=keras.losses.BinaryCrossentropy(from_logits=True))
  pruned.fit(x, y, epochs=3)

  # With fairness (group ids travel inside x):
  fair = tf_fairprune.fair_prune_wrapper(
      model, target_sparsity=0.9,
      fairness=[tf_fairprune.fairness.ExcessDegradation(tolerance=0.01)])
  fair.compile(...)
  fair.fit(tf_fairprune.pack_group_data(x, groups), y, epochs=3)
  final = tf_fairprune.strip_fair_pruning(pruned)
  ```
  """
  structure = _check_structure(target_sparsity, block_size, sparsity_m_by_n, granularity)
  target_sparsity = pruning_schedule.validate(target_sparsity)  # Also for layers.
  prune_embeddings = _check_prune_embeddings(prune_embeddings)
  if isinstance(rescale, str) and rescale not in mask_updater.RESCALE_CAPS:
    raise ValueError(f"rescale must be True, False or one of {mask_updater.RESCALE_CAPS}, "
                     f"got {rescale!r}.")
  if isinstance(to_prune, (list, tuple)):
    return [fair_prune_wrapper(l, target_sparsity, **structure) for l in to_prune]
  if isinstance(to_prune, BiLevelTrainingMixin):
    raise ValueError(f"Model '{to_prune.name}' is already wrapped for fair pruning.")
  if is_wrapper(to_prune):
    raise ValueError(f"Layer '{to_prune.name}' is already wrapped for fair pruning.")
  flavour = flavours.of(to_prune)
  if not isinstance(to_prune, flavour.keras.layers.Layer):
    raise cloning.type_error(to_prune)
  wrapper_cls = flavour.classes.FairPruneWrapper
  if not isinstance(to_prune, flavour.keras.Model):
    return wrapper_cls(to_prune, **structure, dtype=_private.dtype_policy(to_prune))
  cloning.check_graph_model(to_prune, "Model")
  if mask_scope is None:
    mask_scope = "layer" if granularity == "channel" else "global"
  policy = WrappingPolicy(to_prune, structure, prune_embeddings)
  config = config_lib.PruningConfig(
      target_sparsity=target_sparsity, mask_scope=mask_scope,
      implicit_gradient_scale=implicit_gradient_scale, update_mode=update_mode,
      mask_update_frequency=mask_update_frequency, fairness=fairness,
      fairness_on=fairness_on, num_groups=num_groups, fairness_output=fairness_output,
      layer_floor=layer_floor)  # Validated (constraints and levels by the model's objective).
  pruned = _construct(to_prune, policy, **config.as_kwargs())
  _initialise(pruned, to_prune, rescale=False if policy.selective else rescale)
  return pruned


PRUNE_EMBEDDINGS = (False, "layer", True)
PRUNE_EMBEDDINGS_DEFAULT = False


def _check_prune_embeddings(value):
  """`prune_embeddings` validated; None reads `PRUNE_EMBEDDINGS_DEFAULT`."""
  if value is None:
    return PRUNE_EMBEDDINGS_DEFAULT
  if not any(value is v or (isinstance(v, str) and value == v) for v in PRUNE_EMBEDDINGS):
    raise ValueError(f"prune_embeddings must be one of {PRUNE_EMBEDDINGS}, got {value!r}.")
  return value


def is_embedding(layer):
  """True for an `Embedding` layer of either flavour (TFLite stores its table dense)."""
  return any(c.__name__ == "Embedding" and c.__module__.split(".")[0] in ("keras", "tf_keras")
             for c in type(layer).__mro__)


def _check_structure(target_sparsity, block_size, sparsity_m_by_n, granularity):
  """The mask structure as wrapper arguments; checks it against the sparsity."""
  masking.check_structure_args(block_size, sparsity_m_by_n, granularity)
  if sparsity_m_by_n is not None:
    if not isinstance(target_sparsity, PruningSchedule):
      n, m = sparsity_m_by_n
      if abs(float(target_sparsity) - (1 - n / m)) > 1e-9:
        raise ValueError(f"With sparsity_m_by_n={tuple(sparsity_m_by_n)} the sparsity is "
                         f"{1 - n / m:g} by construction; got target_sparsity={target_sparsity}.")
    warnings.warn(
        f"tf_fairprune: {sparsity_m_by_n[0]}:{sparsity_m_by_n[1]} masks have no native "
        "TFLite CPU kernel: export_tflite stores them sparse but they are densified at load "
        "(smaller file, no speed-up). block_size=(4, 1) runs natively sparse.", UserWarning,
        stacklevel=3)  # The caller of fair_prune_wrapper.
  return dict(block_size=tuple(block_size), sparsity_m_by_n=sparsity_m_by_n,
              granularity=granularity)


class WrappingPolicy:
  """Which layers of a model get a `FairPruneWrapper`, and with which mask structure.

  * A model that already holds `FairPruneWrapper`s is pruned *selectively*: only those
    layers (copied with their scores and masks), nothing else.
  * Otherwise every built layer with prunable weights (see `registry.py`) is wrapped,
    except, in channel mode, the layers whose channels cannot be removed: the logits
    (a removed logit is a removed class), depthwise convolutions (their channels are
    their input's) and transposed convolutions (outputs on another kernel axis).

  * Embedding tables follow `prune_embeddings`: not wrapped (False), wrapped and ranked
    on their own (`"layer"`), or wrapped like any layer (True).

  Args:
    model: The Sequential or Functional model to prune.
    structure: The wrapper arguments (block_size, sparsity_m_by_n, granularity).
    prune_embeddings: False, `"layer"` or True (see `fair_prune_wrapper`).
  """

  def __init__(self, model, structure, prune_embeddings=True):
    self.structure = structure
    self.prune_embeddings = prune_embeddings
    self.flavour = flavours.of(model)
    self.wrapper_cls = self.flavour.classes.FairPruneWrapper
    self.model_cls = self.flavour.classes.FairPruneModel
    self.selective = contains_wrappers(model)
    self.skip = set()
    if structure["granularity"] == "channel":
      k = self.flavour.keras
      self.skip = {_private.output_layer(t).name for t in model.outputs}
      self.skip |= {l.name for l in model.layers if isinstance(l, (
          k.layers.DepthwiseConv2D, k.layers.Conv1DTranspose,
          k.layers.Conv2DTranspose, k.layers.Conv3DTranspose))}

  def wraps(self, layer):
    """Whether a (non-wrapper) layer of the model gets a new wrapper."""
    if self.prune_embeddings is False and is_embedding(layer):
      return False
    return (not self.selective and layer.built and layer.name not in self.skip and
            bool(registry.get_prunable_weights(layer)))

  def copy(self, layer):
    """A fresh copy of `layer` for the pruned model: wrapped where the policy says."""
    if is_wrapper(layer):
      return self.wrapper_cls.from_config(
          {**layer.get_config(),
           "layer": self.flavour.keras.layers.serialize(cloning.copy_layer(layer.layer))})
    new = cloning.copy_layer(layer)
    if not self.wraps(layer):
      return new
    # A wrapper computes in its layer's dtype policy, not the global one: a layer keeps
    # the policy it was built with (Keras' and TFMOT's convention), so a float32 model
    # stays float32 when mixed_float16 is set afterwards, wrappers included.
    scope = {"mask_scope": "layer"} if self.prune_embeddings == "layer" and is_embedding(
        layer) else {}
    return self.wrapper_cls(new, **self.structure, **scope, dtype=_private.dtype_policy(new))


def _construct(model, policy, **model_kwargs):
  """The `FairPruneModel` over a copy of `model`'s graph, with its weights copied."""
  copies = []  # (source layer, new layer): weights are copied after cloning.

  def copy(layer):
    new = policy.copy(layer)
    copies.append((layer, new))
    return new

  k = policy.flavour.keras
  source_class = "Sequential" if isinstance(model, k.Sequential) else "Functional"
  model_kwargs["source_class"] = source_class
  pruned = cloning.rebuild(cloning.clone_graph(model, copy), model, policy.model_cls,
                           **model_kwargs)
  for source, new in copies:
    if is_wrapper(source):
      new.set_weights(source.get_weights())  # Weights, scores and masks as they were.
    elif is_wrapper(new):
      new.layer.set_weights(source.get_weights())
      new.reset_scores()
    else:
      new.set_weights(source.get_weights())
  if not pruned.fair_prune_wrappers:
    hint = ""
    if policy.prune_embeddings is False and any(
        is_embedding(l) for l in _private.flatten_layers(model, include_self=False)):
      hint = (" Its Embedding tables are left dense by default (TFLite stores them dense): "
              "prune_embeddings='layer' or True prunes them.")
    raise ValueError(f"Model '{model.name}' has no prunable weights: nothing to prune.{hint}")
  return pruned


def _initialise(pruned, dense, rescale):
  """The dense reference, the first masks, the rescale and the too-sparse warnings."""
  if any(c.needs_dense for c in pruned.fairness):
    # A frozen copy of the dense model: degradation constraints compare against it.
    reference = flavours.of(dense).keras.models.clone_model(dense)
    reference.set_weights(dense.get_weights())
    pruned.set_reference_model(reference)
  pruned.update_masks()
  if rescale:
    pruned.rescale_to_masks(cap=rescale if isinstance(rescale, str) else None)
  mask_updater.warn_if_too_sparse(pruned, stacklevel=2)


def fair_prune_scope():
  """Scope in which fair-pruned models can be deserialized (like TFMOT's `prune_scope`).

  The classes are also registered as Keras serializables, so `.keras` files load
  without it; it is kept for symmetry with TFMOT and for `.h5` files written by
  versions before 0.2 (a model being fair-pruned now saves as `.keras` only).

  Example:

  ```python
  with tf_fairprune.fair_prune_scope():
    model = keras.models.load_model("pruned.keras")
  ```
  """
  tf_keras = flavours.TF_KERAS
  return tf_keras.keras.utils.custom_object_scope({
      **{c.__name__: c for c in constraints.CONSTRAINTS},
      "FairPruneWrapper": tf_keras.classes.FairPruneWrapper,
      "FairPruneModel": tf_keras.classes.FairPruneModel,
      "FunctionalFairPruneModel": tf_keras.classes.FunctionalFairPruneModel,
      **pruning_schedule.SCHEDULES,
  })
