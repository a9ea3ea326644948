"""The two Keras flavours behind one dispatcher: tf_keras (Keras 2) and Keras 3.

Everything tf_fairprune does is written once, in logic modules that import no flavour.
A flavour is one table (a `Flavour`): its Keras module, its concrete classes (the
wrapper, the models, the metrics) and the few calls whose spelling differs. Each table
lives with its classes in a module of its own (`flavour_tf_keras.py`,
`flavour_keras3.py`) and registers itself here on import; `of(obj)` picks the table
from the objects the user passes. Nothing global is switched: `tf.keras` keeps meaning what the
user's environment says.

A new flavour-dependent class is registered in one place: the `classes` of each
flavour's table.
"""

import collections
import contextlib
import importlib

_REGISTERED = {}  # name -> Flavour, in registration order (tf_keras first).

# The concrete classes of a flavour: a new flavour-dependent class is a new field here,
# set by each flavour's module in its table.
Classes = collections.namedtuple("Classes", [
    "FairPruneWrapper", "FairPruneModel", "FunctionalFairPruneModel", "GroupRates",
    "LastValue"])


def keras3():
  """The Keras 3 module, or None when it is not installed (or is Keras 2)."""
  try:
    module = importlib.import_module("keras")
  except ImportError:
    return None
  version = getattr(module, "__version__", "0")
  return module if int(version.split(".")[0]) >= 3 else None


class Flavour:
  """One Keras flavour's table. Subclasses implement the calls; the flavour's module
  sets `classes` (a `Classes`) and registers it."""

  name = None
  keras = None      # The Keras module (tf_keras, or keras 3).
  root = None       # The top-level package name its classes live in.
  tfmot_compatible = False  # TFMOT accepts its objects.
  classes = None

  def owns(self, obj):
    """True if `obj` (a layer, model, class or optimizer) belongs to this flavour."""
    cls = obj if isinstance(obj, type) else type(obj)
    return any(k.__module__.split(".")[0] == self.root for k in cls.__mro__)

  def check_same_flavour(self, obj, argument):
    """Raises a clear error when `obj` (an optimizer, say) belongs to another flavour.

    Strings, None and objects of neither Keras pass (Keras' own lookup judges them).

    Raises:
      TypeError: Naming both flavours and `argument`.
    """
    if obj is None or isinstance(obj, (str, dict)) or self.owns(obj):
      return
    others = [f for f in _REGISTERED.values() if f is not self and f.owns(obj)]
    if others:
      raise TypeError(
          f"`{argument}` is a {others[0].name} object ({type(obj).__module__}."
          f"{type(obj).__name__}) but the model is a {self.name} model: use an optimizer "
          f"of the model's own Keras ({self.root}.optimizers), or a string such as 'sgd'.")

  # Variables.
  def mask_weight_kwargs(self):
    """add_weight arguments of a mask: written on every replica alike, one copy read."""
    raise NotImplementedError

  def first_replica(self):
    """The aggregation under which one replica's copy of a variable is read."""
    raise NotImplementedError

  def add_state(self, metric, name, shape):
    """A zero-initialised metric state variable of which one replica's copy is read."""
    raise NotImplementedError

  def state_unlocked(self, layer):
    """A context in which a built `layer` may still create variables (a wrapper whose
    wrapped layer creates its sublayers on its first call: MultiHeadAttention)."""
    return contextlib.nullcontext()

  # Compile and the step.
  def is_compiled(self, model):
    raise NotImplementedError

  def jit_compile(self, model):
    raise NotImplementedError

  def task_loss(self, model, y, y_pred, sample_weight):
    """The compiled loss (scaled by 1/replicas like Keras' own), without regularisers."""
    raise NotImplementedError

  def second_task_loss(self, model, y, y_pred, sample_weight):
    """The compiled loss again (the alternating mode's second pass), leaving the
    reported loss metric alone."""
    raise NotImplementedError

  def test_loss(self, model, x, y, y_pred, sample_weight):
    """The evaluation loss, regularisers included, with the loss metric updated."""
    raise NotImplementedError

  def track_loss(self, model, x, loss):
    """Updates the reported loss metric (tf_keras does it inside compiled_loss)."""
    # A statement, not only a docstring: AutoGraph cannot convert an empty body and
    # warned on every traced step.
    del model, x, loss

  def update_compiled_metrics(self, model, y, y_pred, sample_weight):
    raise NotImplementedError

  def record_compile_argument(self, model, name, value):
    """Stores a compile argument so that a saved model compiles again with it."""
    raise NotImplementedError

  # Optimizers: mixed precision (loss_scale.py) and updates under a strategy (replicas.py).
  def loss_scale(self, optimizer):
    """The current loss scale (a float32 tensor) of a LossScaleOptimizer, else None."""
    raise NotImplementedError

  def weight_gradients(self, optimizer, grads):
    """The gradients of a scaled loss as the weights' LossScaleOptimizer takes them."""
    raise NotImplementedError

  def aggregated_for_apply(self, optimizer, pairs):
    """(pairs, apply_gradients kwargs) for an update applied inside a cross-replica
    cond: the (gradient, variable) pairs all-reduced here when the optimizer would
    otherwise do it in its merge call."""
    raise NotImplementedError

  def current_learning_rate(self, optimizer):
    """The rate `apply_gradients` would use now (a schedule read at the current step)."""
    raise NotImplementedError

  def momentum_slot(self, optimizer, variable):
    """The momentum variable an SGD optimizer keeps for `variable`."""
    raise NotImplementedError

  # Layers.
  def builds_on_first_call(self, layer):
    """True for a MultiHeadAttention that creates its sublayers only when called."""
    raise NotImplementedError

  def build_attention_like(self, new, layer):
    """Builds MultiHeadAttention `new` for the input shapes `layer` was built with;
    False when they are not known."""
    raise NotImplementedError

  def depthwise_kernel(self, layer):
    """The kernel variable of a DepthwiseConv layer."""
    raise NotImplementedError

  # Elementwise layers only this flavour has (shrink passes channels through them).
  extra_elementwise_layers = ()

  # Graphs of layers.
  def is_graph_model(self, model):
    """True for Sequential and Functional models (which can be cloned)."""
    raise NotImplementedError

  def inbound_nodes(self, model, layer):
    """[(node, input tensors)] of the calls of `layer` that belong to `model`'s graph."""
    raise NotImplementedError

  # Export.
  def io_names(self, model):
    """(input names, output names) of a built `model`, to match its TFLite signature's;
    an empty list for a side the model does not name. The flavours differ here: a
    subclassed model has `inputs = None` on tf_keras and no `inputs` on Keras 3, and a
    Keras 3 Sequential has no `output_names`."""
    inputs = getattr(model, "inputs", None) or []
    return ([t.name.split(":")[0] for t in inputs],
            list(getattr(model, "output_names", None) or []))


def register(flavour):
  """Makes `flavour` known to `of` (called once by each flavour's module)."""
  _REGISTERED.setdefault(flavour.name, flavour)
  return _REGISTERED[flavour.name]


def registered():
  """The registered flavours, tf_keras first."""
  return list(_REGISTERED.values())


def of(obj):
  """The `Flavour` of a layer, model, optimizer, list of layers or class; tf_keras by
  default (objects of neither Keras)."""
  if isinstance(obj, (list, tuple)) and obj:
    obj = obj[0]
  for flavour in _REGISTERED.values():
    if flavour.owns(obj):
      return flavour
  return _tf_keras()


def _tf_keras():
  if "tf_keras" not in _REGISTERED:
    raise ImportError("tf_fairprune's tf_keras flavour is not registered yet: import "
                      "tf_fairprune (not one of its modules alone) first.")
  return _REGISTERED["tf_keras"]


def __getattr__(name):
  # `flavours.TF_KERAS`: the tf_keras table, registered by `flavour_tf_keras.py` on import.
  if name == "TF_KERAS":
    return _tf_keras()
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
