"""Channel shrinking: rebuild a channel-pruned model without its pruned channels.

After channel pruning a pruned output channel of a Dense / Conv layer is input-
independent: its kernel (and, in channel mode, its bias) is zero, so it carries a
constant — 0, or after a BatchNormalization and an activation some value c. Removing
it from the producer and from everything that consumes it keeps the predictions
exactly when that constant can be folded into the consumer's bias:

- Dense, 1x1 convolutions and 'valid' convolutions: bias += Σ c · W (exact);
- a zero-padded k x k convolution or depthwise convolution: only when c = 0 (a nonzero
  constant would differ at the image border), otherwise the channel stays;
- BatchNormalization, activations, Dropout, pooling, Flatten: the channel passes
  through (its constant transformed); Add: a channel goes only if it is removable in
  every branch.

Channels that cannot be removed exactly are kept, so the result always computes the
same function as the stripped model (up to float rounding); `ShrinkReport` says how
many channels each layer lost.
"""

import dataclasses
import functools

import numpy as np

from tf_fairprune import flavours
from tf_fairprune._compat import tf



class _Kinds:
  """The layer classes shrink reasons about, from one Keras flavour's `layers`."""

  def __init__(self, flavour):
    layers = self.layers = flavour.keras.layers
    # Softmax (mixes channels) and PReLU (per-position slopes) are deliberately absent.
    self.elementwise = tuple(getattr(layers, n) for n in (
        "Activation", "ReLU", "LeakyReLU", "ELU", "Dropout", "SpatialDropout1D",
        "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
        "AlphaDropout") + flavour.extra_elementwise_layers)
    self.const_preserving = tuple(getattr(layers, f"{kind}{d}D") for d in (1, 2, 3) for kind in (
        "MaxPooling", "AveragePooling", "GlobalMaxPooling", "GlobalAveragePooling"))
    self.conv = (layers.Conv1D, layers.Conv2D, layers.Conv3D)
    # Subclasses of Conv*D whose kernels keep the output channels elsewhere.
    self.transposed = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)


@functools.lru_cache(maxsize=None)
def _kinds_of(flavour):
  return _Kinds(flavour)


def _kinds(layer_or_model):
  """The layer classes of `layer_or_model`'s Keras flavour."""
  return _kinds_of(flavours.of(layer_or_model))


@dataclasses.dataclass
class ShrinkReport:
  """Channels per shrunk layer: {layer name: (kept, before)}; and parameters before/after."""
  channels: dict
  params_before: int
  params_after: int


def _is_pass_through(layer, out):
  k = _kinds(layer)
  if isinstance(layer, k.elementwise + k.const_preserving +
                (k.layers.BatchNormalization, k.layers.Flatten)):
    if isinstance(layer, k.layers.BatchNormalization):
      axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
      return axis in (-1, len(out.shape) - 1)
    return True
  return False


def _is_depthwise(layer):
  return (isinstance(layer, _kinds(layer).layers.DepthwiseConv2D) and
          layer.depth_multiplier == 1)


def _depthwise_kernel(layer):
  return flavours.of(layer).depthwise_kernel(layer)


def _is_conv(layer):
  k = _kinds(layer)
  return (isinstance(layer, k.conv) and not isinstance(layer, k.transposed) and
          getattr(layer, "groups", 1) == 1)


def _spatial_ok(layer, const):
  """Whether input channels with constant `const` can be folded into this conv's bias."""
  if layer.padding == "valid" or all(k == 1 for k in layer.kernel_size):
    return np.ones(const.shape, dtype=bool)
  return const == 0.0  # Zero padding: a nonzero constant is not constant at the border.


def _nodes_in(model, layer):
  """The nodes of `layer` that belong to `model`'s graph, with their input tensors."""
  return flavours.of(model).inbound_nodes(model, layer)


def _graph(model):
  """[(layer, input tensors, output tensor)] in topological order."""
  k = _kinds(model)
  order = []
  for layer in model.layers:
    if isinstance(layer, flavours.of(model).keras.Model):
      raise ValueError(f"shrink=True does not support nested models ('{layer.name}').")
    if isinstance(layer, k.layers.InputLayer):
      continue
    nodes = _nodes_in(model, layer)
    if len(nodes) != 1:
      raise ValueError(f"shrink=True does not support shared layers ('{layer.name}').")
    outs = tf.nest.flatten(nodes[0][0].outputs)
    if len(outs) != 1:
      raise ValueError(f"shrink=True needs single-output layers ('{layer.name}').")
    order.append((layer, nodes[0][1], outs[0]))
  return order


def _apply_const(layer, const):
  """The constant a pass-through layer outputs for channel constants `const`."""
  layers = _kinds(layer).layers
  if isinstance(layer, layers.BatchNormalization):
    gamma = layer.gamma.numpy() if layer.gamma is not None else 1.0
    beta = layer.beta.numpy() if layer.beta is not None else 0.0
    return (gamma * (const - layer.moving_mean.numpy()) /
            np.sqrt(layer.moving_variance.numpy() + layer.epsilon) + beta)
  if isinstance(layer, _kinds(layer).elementwise):
    return np.asarray(layer(tf.constant(const[None], tf.float32), training=False))[0]
  return const  # Pooling keeps a constant constant (padding is excluded or -inf).


def _constants(order, model, pruned_channels):
  """Forward pass: per tensor, the constant of each input-independent channel (NaN: live)."""
  const = {id(t): np.full(t.shape[-1], np.nan) for t in model.inputs}
  layers = _kinds(model).layers
  for layer, ins, out in order:
    c = np.full(out.shape[-1], np.nan)
    cin = const[id(ins[0])] if ins else None
    if layer.name in pruned_channels:
      dead = np.asarray(pruned_channels[layer.name], bool)
      bias = getattr(layer, "bias", None)
      c[dead] = bias.numpy()[dead] if bias is not None else 0.0
    elif isinstance(layer, layers.Flatten):
      c = np.tile(cin, out.shape[-1] // len(cin))
    elif _is_pass_through(layer, out):
      c = np.where(np.isnan(cin), np.nan, _apply_const(layer, np.nan_to_num(cin)))
    elif isinstance(layer, layers.Add):
      c = np.sum([const[id(t)] for t in ins], axis=0)  # NaN where any branch is live.
    elif _is_depthwise(layer):
      kernel = _depthwise_kernel(layer).numpy()  # [kh, kw, C, 1]
      value = np.nan_to_num(cin) * kernel.reshape(-1, kernel.shape[-2]).sum(0)
      if layer.bias is not None:
        value = value + layer.bias.numpy()
      c = np.where(~np.isnan(cin) & _spatial_ok(layer, np.nan_to_num(cin)), value, np.nan)
    const[id(out)] = c
  return const


def _removable(order, model, const):
  """Fixpoint: a dead channel goes only if every layer touching it can do without it."""
  rem = {k: ~np.isnan(v) for k, v in const.items()}
  layers = _kinds(model).layers
  for t in model.outputs + model.inputs:
    rem[id(t)][:] = False
  changed = True
  while changed:
    changed = False

    def meet(key, value):
      nonlocal changed
      new = rem[key] & value
      if (new != rem[key]).any():
        rem[key] = new
        changed = True

    for layer, ins, out in order:
      o = id(out)
      if isinstance(layer, layers.Flatten):
        i = id(ins[0])
        meet(i, rem[o].reshape(-1, len(rem[i])).all(axis=0))
        meet(o, np.tile(rem[i], len(rem[o]) // len(rem[i])))
      elif _is_pass_through(layer, out) or _is_depthwise(layer):
        meet(id(ins[0]), rem[o])
        meet(o, rem[id(ins[0])])
      elif isinstance(layer, layers.Add):
        for t in ins:
          meet(id(t), rem[o])
          meet(o, rem[id(t)])
      elif isinstance(layer, layers.Dense):
        pass  # Any constant folds into the bias.
      elif _is_conv(layer):
        meet(id(ins[0]), _spatial_ok(layer, np.nan_to_num(const[id(ins[0])])))
      else:
        for t in ins:
          meet(id(t), np.zeros_like(rem[id(t)]))
        meet(o, np.zeros_like(rem[o]))
  return rem


def shrink_model(model, pruned_channels):
  """Rebuilds a stripped model without the pruned channels it can remove exactly.

  Args:
    model: A Sequential or Functional tf_keras model (already stripped).
    pruned_channels: {layer name: bool array over its output channels, True = pruned}.

  Returns:
    (new model, `ShrinkReport`).

  Raises:
    ValueError: For nested models, shared layers or multi-output layers.
  """
  keras = flavours.of(model).keras
  layers = keras.layers
  order = _graph(model)
  const = _constants(order, model, pruned_channels)
  rem = _removable(order, model, const)
  new_tensors = {}
  inputs = []
  for t in model.inputs:
    new_tensors[id(t)] = keras.Input(batch_shape=t.shape, dtype=t.dtype)
    inputs.append(new_tensors[id(t)])
  channels = {}
  new_layers = []
  for layer, ins, out in order:
    keep_out = ~rem[id(out)]
    keep_in = ~rem[id(ins[0])]
    args = [new_tensors[id(t)] for t in ins]
    config = layer.get_config()
    if isinstance(layer, layers.Dense) or _is_conv(layer):
      kernel = layer.kernel.numpy()
      bias = layer.bias.numpy() if layer.bias is not None else np.zeros(kernel.shape[-1])
      dropped = ~keep_in
      if dropped.any():  # Fold the dropped inputs' constants into the bias.
        per_input = kernel[..., dropped, :].reshape(-1, dropped.sum(), kernel.shape[-1]).sum(0)
        bias = bias + np.nan_to_num(const[id(ins[0])])[dropped] @ per_input
      new_bias = bias[keep_out].astype(kernel.dtype)
      use_bias = layer.bias is not None or bool(np.any(new_bias != 0))
      config["units" if isinstance(layer, layers.Dense) else "filters"] = int(keep_out.sum())
      config["use_bias"] = use_bias
      new = type(layer).from_config(config)
      tensor = new(args[0])
      new.set_weights([kernel[..., keep_in, :][..., keep_out]] + ([new_bias] if use_bias else []))
      if not keep_out.all():
        channels[layer.name] = (int(keep_out.sum()), len(keep_out))
    elif isinstance(layer, layers.BatchNormalization):
      new = type(layer).from_config(config)
      tensor = new(args[0])
      new.set_weights([w.numpy()[keep_out] for w in layer.weights])
    elif _is_depthwise(layer):
      new = type(layer).from_config(config)
      tensor = new(args[0])
      new.set_weights([_depthwise_kernel(layer).numpy()[..., keep_in, :]] +
                      ([layer.bias.numpy()[keep_out]] if layer.bias is not None else []))
      if not keep_out.all():
        channels[layer.name] = (int(keep_out.sum()), len(keep_out))
    else:
      new = type(layer).from_config(config)
      tensor = new(args if len(args) > 1 else args[0])
      if layer.weights:
        new.set_weights(layer.get_weights())
    new_tensors[id(out)] = tensor
    new_layers.append(new)
  if isinstance(model, keras.Sequential):
    shrunk = keras.Sequential([inputs[0]] + new_layers, name=model.name)
  else:
    outputs = [new_tensors[id(t)] for t in model.outputs]
    shrunk = keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0], name=model.name)
  return shrunk, ShrinkReport(channels, int(model.count_params()), int(shrunk.count_params()))
