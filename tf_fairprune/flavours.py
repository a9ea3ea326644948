"""The two Keras flavours: tf_keras (Keras 2, TFMOT's) and Keras 3 (`import keras`).

Everything tf_fairprune does is written once; the few calls whose spelling differs
between the flavours go through a `Flavour` here, chosen from the objects the user
passes (`of(obj)`). Nothing global is switched: `tf.keras` keeps meaning what the
user's environment says.
"""

import importlib

import tensorflow as tf

from tf_fairprune import _private
from tf_fairprune import replicas
from tf_fairprune._compat import keras as tf_keras


def keras3():
  """The Keras 3 module, or None when it is not installed (or is Keras 2)."""
  try:
    module = importlib.import_module("keras")
  except ImportError:
    return None
  version = getattr(module, "__version__", "0")
  return module if int(version.split(".")[0]) >= 3 else None


class Flavour:
  """What differs between the flavours, as small functions of a model or a layer."""

  name = None
  keras = None

  def owns(self, obj):
    """True if `obj` (a layer, model, class or optimizer) belongs to this flavour."""
    cls = obj if isinstance(obj, type) else type(obj)
    return any(k.__module__.split(".")[0] == self._root for k in cls.__mro__)

  # Weights.
  def mask_weight_kwargs(self):
    """add_weight arguments of a mask: written on every replica alike, one copy read."""
    raise NotImplementedError

  def first_replica(self):
    raise NotImplementedError

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

  def update_compiled_metrics(self, model, y, y_pred, sample_weight):
    raise NotImplementedError

  def record_compile_argument(self, model, name, value):
    """Stores a compile argument so that a saved model compiles again with it."""
    model._compile_config.config[name] = value  # pylint: disable=protected-access

  def is_graph_model(self, model):
    """True for Sequential and Functional models (which can be cloned)."""
    raise NotImplementedError


class TfKeras(Flavour):
  """tf_keras (Keras 2): the TFMOT-compatible path."""

  name = "tf_keras"
  keras = tf_keras
  _root = "tf_keras"

  def mask_weight_kwargs(self):
    return dict(synchronization=tf.VariableSynchronization.ON_WRITE,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

  def first_replica(self):
    return tf.VariableAggregation.ONLY_FIRST_REPLICA

  def is_compiled(self, model):
    return bool(getattr(model, "_is_compiled", False))

  def jit_compile(self, model):
    return bool(getattr(model, "_jit_compile", False))

  def task_loss(self, model, y, y_pred, sample_weight):
    return model.compiled_loss(y, y_pred, sample_weight)

  def second_task_loss(self, model, y, y_pred, sample_weight):
    if model._upper_loss is None:  # pylint: disable=protected-access
      loss, loss_weights = model._loss_spec  # pylint: disable=protected-access
      model._upper_loss = _private.LossesContainer(  # pylint: disable=protected-access
          loss, loss_weights, output_names=model.output_names)
    return model._upper_loss(y, y_pred, sample_weight)  # pylint: disable=protected-access

  def test_loss(self, model, x, y, y_pred, sample_weight):
    return model.compiled_loss(y, y_pred, sample_weight, regularization_losses=model.losses)

  def update_compiled_metrics(self, model, y, y_pred, sample_weight):
    model.compiled_metrics.update_state(y, y_pred, sample_weight)

  def is_graph_model(self, model):
    return isinstance(model, tf_keras.Sequential) or getattr(model, "_is_graph_network", False)


class Keras3(Flavour):
  """Keras 3 with the TensorFlow backend."""

  name = "keras3"
  _root = "keras"

  def __init__(self, module):
    self.keras = module

  def mask_weight_kwargs(self):
    return dict(aggregation="only_first_replica")

  def first_replica(self):
    return "only_first_replica"

  def is_compiled(self, model):
    return bool(getattr(model, "compiled", False))

  def jit_compile(self, model):
    return bool(getattr(model, "jit_compile", False))

  def task_loss(self, model, y, y_pred, sample_weight):
    # Keras 3's compiled loss already divides by the replicas (scale_loss_for_distribution).
    return model._compile_loss(y, y_pred, sample_weight)  # pylint: disable=protected-access

  second_task_loss = task_loss  # Keras 3's compiled loss updates no metric.

  def test_loss(self, model, x, y, y_pred, sample_weight):
    loss = model._compute_loss(x=x, y=y, y_pred=y_pred,  # pylint: disable=protected-access
                               sample_weight=sample_weight, training=False)
    self.track_loss(model, x, loss)
    return loss

  def track_loss(self, model, x, loss):
    # The compiled loss was divided by the replicas; the reported one is not (as in
    # Keras 3's own train_step).
    size = tf.shape(tf.nest.flatten(x)[0])[0]
    model._loss_tracker.update_state(  # pylint: disable=protected-access
        loss * replicas.num_replicas(), sample_weight=size)

  def update_compiled_metrics(self, model, y, y_pred, sample_weight):
    metrics = model._compile_metrics  # pylint: disable=protected-access
    if metrics is not None:
      metrics.update_state(y, y_pred, sample_weight)

  def is_graph_model(self, model):
    return (isinstance(model, self.keras.Sequential) or
            getattr(model, "_is_graph_network", False) or
            any(k.__name__ == "Functional" for k in type(model).__mro__))


TF_KERAS = TfKeras()
_KERAS3 = None
_DERIVED = {}


def derive(logic, base, name):
  """The class `name` with `logic` mixed into `base` (a class of either Keras), made
  once per pair: how a metric, callback or layer gets its Keras 3 twin."""
  key = (logic, base)
  if key not in _DERIVED:
    _DERIVED[key] = type(name, (logic, base), {"_flavour": of(base)})
  return _DERIVED[key]


def keras3_flavour():
  """The Keras 3 `Flavour`.

  Raises:
    ImportError: If Keras 3 is not installed.
  """
  global _KERAS3
  if _KERAS3 is None:
    module = keras3()
    if module is None:
      raise ImportError("Keras 3 is not installed (pip install keras>=3).")
    _KERAS3 = Keras3(module)
  return _KERAS3


def check_same_flavour(flavour, obj, argument):
  """Raises a clear error when `obj` (an optimizer, say) belongs to the other flavour.

  Strings, None and objects of neither Keras pass (Keras' own lookup judges them).

  Raises:
    TypeError: Naming both flavours and `argument`.
  """
  if obj is None or isinstance(obj, (str, dict)) or flavour.owns(obj):
    return
  others = [f for f in (TF_KERAS, keras3_flavour() if keras3() is not None else None)
            if f is not None and f is not flavour and f.owns(obj)]
  if others:
    raise TypeError(
        f"`{argument}` is a {others[0].name} object ({type(obj).__module__}."
        f"{type(obj).__name__}) but the model is a {flavour.name} model: use an optimizer of "
        f"the model's own Keras ({_spelling(flavour)}), or a string such as 'sgd'.")


def _spelling(flavour):
  return "tf_keras.optimizers" if flavour is TF_KERAS else "keras.optimizers"


def of(obj):
  """The `Flavour` of a layer, model, list of layers or class; tf_keras by default."""
  if isinstance(obj, (list, tuple)) and obj:
    obj = obj[0]
  if TF_KERAS.owns(obj):
    return TF_KERAS
  module = keras3()
  if module is not None:
    flavour = keras3_flavour()
    if flavour.owns(obj):
      return flavour
  return TF_KERAS
