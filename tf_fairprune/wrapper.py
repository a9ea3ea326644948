"""`FairPruneWrapper`: the trainable mask scores of one layer.

For each prunable weight θ of the wrapped layer the wrapper holds a trainable score
tensor s (same shape, initialised from |θ|) and a non-trainable 0/1 mask m. During
`call` the layer computes with z = m ⊙ θ, and the gradient reaches the scores through
a straight-through estimator. Masks are *chosen* by the model (top-k over all wrapped
layers), not here, because a global top-k needs every layer's scores at once.

Unlike TFMOT's `PruneLowMagnitude`, the mask is applied in the graph rather than by
assigning zeros into the weight, so the pruned entries of θ are kept (and can come
back if their score rises) and the user's weights are never overwritten.
"""

import inspect

import tensorflow as tf

from tf_fairprune import _private
from tf_fairprune import flavours
from tf_fairprune import masking
from tf_fairprune import registry


def _find_owner(layer, var):
  """Finds (object, attribute) through which `layer` reads the variable `var`."""
  for obj in _private.flatten_layers(layer, include_self=True, recursive=True):
    for attr, value in vars(obj).items():
      if value is var:
        return obj, attr
  raise ValueError(
      f"Cannot find the attribute through which layer '{layer.name}' reads its prunable "
      f"weight '{var.name}'. tf_fairprune substitutes masked weights by attribute, so a "
      "prunable weight must be stored as a plain attribute of the layer or a sublayer.")


def builds_sublayers_late(layer):
  """MultiHeadAttention: its projections (the prunable kernels) are sublayers built from
  query, value and key together, which a copy made from the config has not seen."""
  return any(c.__name__ == "MultiHeadAttention" for c in type(layer).__mro__)


def build_like(new, layer):
  """Builds `new` (a copy of `layer`, or `layer` itself) for the input shapes `layer`
  was built with, as TFMOT does before it wraps MultiHeadAttention, so that the
  sublayers' kernels exist. Returns False when the shapes are not known."""
  return flavours.of(layer).build_attention_like(new, layer)


def _sublayers_built(layer):
  """False for a MultiHeadAttention whose projection sublayers have no kernels yet."""
  if not builds_sublayers_late(layer):
    return True
  query = getattr(layer, "_query_dense", None)
  return query is not None and query.built


def is_wrapper(obj):
  """True for a `FairPruneWrapper` of either Keras flavour."""
  return isinstance(obj, FairPruneWrapperLogic)


def wrappers_of(model):
  """All `FairPruneWrapper` layers of `model`, nested models included, in order."""
  return [l for l in _private.flatten_layers(model, include_self=False) if is_wrapper(l)]


def contains_wrappers(model):
  """True if any layer of `model` (nested models included) is a FairPruneWrapper."""
  return bool(wrappers_of(model))


class FairPruneWrapperLogic:
  """Wraps a layer so that its prunable weights are masked by learned scores.

  Everything a `FairPruneWrapper` does, for both Keras flavours: each flavour's class
  (`flavour_tf_keras.py`, `flavour_keras3.py`) adds only its base
  (`keras.layers.Wrapper`) and `_flavour`.

  Use it directly inside subclassed models (with `tf_fairprune.FairPruneModel` as the
  base class); for Sequential and Functional models use `fair_prune_wrapper`, which
  wraps every prunable layer for you.

  Args:
    layer: A layer with prunable weights (see `register_prunable_layer`): a `tf_keras`
      layer, or a Keras 3 layer (then the wrapper is Keras 3's, see
      `tf_fairprune.keras3`).
    block_size: Prune blocks of this (rows, cols) shape of 2-D kernels in Keras layout
      (in, out), as TFMOT's `block_size`; (1, 1) prunes single weights.
    sparsity_m_by_n: `(N, M)`: keep N of every M consecutive inputs (e.g. (2, 4)).
    granularity: `"weight"` or `"channel"` (whole output channels / filters).
    mask_scope: None (default: ranked as the model ranks every wrapper) or `"layer"`:
      this layer's tensors stay out of a global ranking and are each pruned to the
      target sparsity on their own (`fair_prune_wrapper(prune_embeddings="layer")`
      sets it on embedding tables).
    **kwargs: Keyword arguments of `tf_keras.layers.Layer` (e.g. `name`).

  Raises:
    TypeError: If `layer` is not a Keras layer.
    ValueError: If `layer` is a model, is already wrapped, or is not prunable.

  Example:

  ```python
  class Net(tf_fairprune.FairPruneModel):
    def __init__(self):
      super().__init__(target_sparsity=0.9)
      self.hidden = tf_fairprune.FairPruneWrapper(keras.layers.Dense(64, "relu"))
      self.out = tf_fairprune.FairPruneWrapper(keras.layers.Dense(1))

    def call(self, x):
      return self.out(self.hidden(x))
  ```
  """

  _flavour = None

  def __init__(self, layer, block_size=(1, 1), sparsity_m_by_n=None, granularity="weight",
               mask_scope=None, **kwargs):
    flavour = self._flavour
    if not isinstance(layer, flavour.keras.layers.Layer):
      raise TypeError(
          f"This FairPruneWrapper ({flavour.name}) expects a {flavour.name} layer, got "
          f"{type(layer).__module__}.{type(layer).__name__}: a model's layers must all come "
          "from one Keras (`import keras` or `import tf_keras`).")
    if is_wrapper(layer):
      raise ValueError(f"Layer '{layer.name}' is already wrapped by FairPruneWrapper.")
    if isinstance(layer, flavour.keras.Model):
      raise ValueError(
          f"FairPruneWrapper wraps layers, not models ('{layer.name}'); use "
          "tf_fairprune.fair_prune_wrapper(model) to prune a whole model.")
    if layer.built and not _sublayers_built(layer):
      build_like(layer, layer)  # tf_keras' MultiHeadAttention from a config.
    if layer.built and _sublayers_built(layer) and not registry.get_prunable_weights(layer):
      raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}) has no prunable weights.")
    if not layer.built and not registry.is_known(layer):
      raise ValueError(
          f"Layer '{layer.name}' of type {type(layer).__name__} is not supported. "
          f"{registry._HOW_TO}")  # pylint: disable=protected-access
    # Checked before int(): (True, 1) or (4.5, 1) would otherwise pass as (1, 1), (4, 1).
    masking.check_structure_args(block_size, sparsity_m_by_n, granularity)
    self.block_size = tuple(int(b) for b in block_size)
    self.sparsity_m_by_n = (None if sparsity_m_by_n is None
                            else tuple(int(v) for v in sparsity_m_by_n))
    self.granularity = granularity
    if mask_scope not in (None, "layer"):
      raise ValueError(f"A wrapper's mask_scope must be None or 'layer', got {mask_scope!r}.")
    self.mask_scope = mask_scope
    if granularity == "channel" and "Transpose" in type(layer).__name__:
      raise ValueError(f"granularity='channel' needs the output channels on the kernel's "
                       f"last axis; {type(layer).__name__} '{layer.name}' stores them second "
                       "to last.")
    kwargs.setdefault("name", f"fair_prune_{layer.name}")
    # The layer's dtype policy, not the global one (Keras' convention: a layer keeps the
    # policy it was built with; see README "Mixed precision").
    kwargs.setdefault("dtype", _private.dtype_policy(layer))
    super().__init__(layer, **kwargs)
    self._call_arg_names = set(inspect.signature(layer.call).parameters)
    self._targets = []
    self.score_variables = []
    self.mask_variables = []

  def build(self, input_shape=None):
    if self._builds_from_call_signature():
      # MultiHeadAttention creates its sublayers from query/value/key together,
      # which only `call` sees: the scores are created on the first call.
      self.built = True
      return
    if not _sublayers_built(self.layer):
      # A MultiHeadAttention read from a file: build it for the shapes in its config.
      if not build_like(self.layer, self.layer):
        self.built = True  # Shapes unknown: the scores are created on the first call.
        return
    super().build(input_shape)
    self._create_scores()

  def _builds_from_call_signature(self):
    return self._flavour.builds_on_first_call(self.layer)

  def _create_scores(self):
    weights = registry.get_prunable_weights(self.layer)
    if not weights:
      raise ValueError(f"Layer '{self.layer.name}' has no prunable weights.")
    self._targets = []
    used = set()
    for var in weights:
      masking.check_structure(var.shape, self.block_size, self.sparsity_m_by_n,
                              self.granularity, where=f"'{self.layer.name}' weight {var.name}")
      owner, attr = _find_owner(self.layer, var)
      label = attr if owner is self.layer else f"{owner.name}_{attr}"
      label = label.lstrip("_")
      while label in used:
        label += "_"
      used.add(label)
      self._targets.append((owner, attr, var))
      self.score_variables.append(self.add_weight(
          name=f"{label}_score", shape=var.shape, dtype=tf.float32, trainable=True,
          initializer=lambda shape, dtype=None, v=var: tf.abs(tf.cast(v, tf.float32))))
      self.mask_variables.append(self.add_weight(
          name=f"{label}_mask", shape=var.shape, dtype=tf.float32, trainable=False,
          initializer="ones", **self._flavour.mask_weight_kwargs()))
    self.built = True

  @property
  def structure(self):
    """(block_size, sparsity_m_by_n, granularity) of this layer's masks."""
    return self.block_size, self.sparsity_m_by_n, self.granularity

  @property
  def is_structured(self):
    return self.structure != ((1, 1), None, "weight")

  def get_config(self):
    config = super().get_config()
    config.update(block_size=list(self.block_size),
                  sparsity_m_by_n=None if self.sparsity_m_by_n is None else list(self.sparsity_m_by_n),
                  granularity=self.granularity)
    if self.mask_scope is not None:  # Absent otherwise: files stay as they were.
      config["mask_scope"] = self.mask_scope
    return config

  @property
  def prunable_weights(self):
    """The wrapped layer's variables that are masked (θ)."""
    return [var for _, _, var in self._targets]

  def reset_scores(self):
    """Sets every score to |θ| (so the first mask equals magnitude pruning)."""
    for score, var in zip(self.score_variables, self.prunable_weights):
      score.assign(tf.abs(tf.cast(var, tf.float32)))

  def masked_weights(self):
    """The effective weights z = m ⊙ θ as tensors (what inference computes with)."""
    return [var * tf.cast(mask, var.dtype)
            for var, mask in zip(self.prunable_weights, self.mask_variables)]

  def _masked_bias(self):
    """(bias variable, masked bias) in channel mode, where a pruned channel loses its
    bias too (its output is then exactly 0, which lets `shrink` drop it); else None."""
    bias = getattr(self.layer, "bias", None)
    if (self.granularity != "channel" or bias is None or len(self._targets) != 1 or
        self._targets[0][0] is not self.layer or bias.shape[-1] != self._targets[0][2].shape[-1]):
      return None
    keep = self.channel_mask()
    return bias, bias * tf.cast(keep, bias.dtype)

  def channel_mask(self):
    """In channel mode, the 0/1 mask of the output channels (kept = 1) as a tensor."""
    if self.granularity != "channel":
      raise ValueError(f"'{self.name}' prunes at granularity {self.granularity!r}, not channels.")
    mask = tf.convert_to_tensor(self.mask_variables[0])
    return tf.reduce_max(tf.reshape(mask, [-1, mask.shape[-1]]), axis=0)

  def masked_variables(self):
    """{id(variable): masked value} for every variable the masks touch (strip uses it)."""
    masked = {id(v): z for v, z in zip(self.prunable_weights, self.masked_weights())}
    bias = self._masked_bias()
    if bias is not None:
      masked[id(bias[0])] = bias[1]
    return masked

  def call(self, inputs, *args, training=None, **kwargs):
    if "training" in self._call_arg_names:
      kwargs["training"] = training
    if "mask" in kwargs and "mask" not in self._call_arg_names:
      kwargs.pop("mask")
    if not self._targets:
      self.layer(inputs, *args, **kwargs)  # Builds all sublayers (first call only).
      with self._flavour.state_unlocked(self):
        self._create_scores()
    for (owner, attr, var), score, mask in zip(
        self._targets, self.score_variables, self.mask_variables):
      m = masking.straight_through(tf.convert_to_tensor(score), tf.convert_to_tensor(mask))
      # Past Keras attribute tracking: the variable stays the tracked weight, only this
      # call reads the masked tensor in its place.
      _private.untracked(owner, attr, var * tf.cast(m, var.dtype))
    bias = self._masked_bias()
    if bias is not None:
      _private.untracked(self.layer, "bias", bias[1])
    try:
      return self.layer.call(inputs, *args, **kwargs)
    finally:
      for owner, attr, var in self._targets:
        _private.untracked(owner, attr, var)
      if bias is not None:
        _private.untracked(self.layer, "bias", bias[0])

  def compute_output_shape(self, input_shape):
    return self.layer.compute_output_shape(input_shape)

  def compute_mask(self, inputs, mask=None):
    return self.layer.compute_mask(inputs, mask)
