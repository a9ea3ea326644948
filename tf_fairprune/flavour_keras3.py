"""Keras 3 (`import keras`, TensorFlow backend): its `Flavour` table and its classes.

Each class adds only its Keras 3 base class to the flavour-free logic
(`wrapper.FairPruneWrapperLogic`, `training.BiLevelTrainingMixin`, the metrics'
logic; callbacks are one class for both flavours, see `callback_base.py`). You rarely
name them: `fair_prune_wrapper` and `FairPruneWrapper(layer)` pick them for Keras 3
objects. Subclass `tf_fairprune.keras3.FairPruneModel` (their public names,
`keras3.py`) for a subclassed Keras 3 model.

Raises ImportError on import when Keras 3 is not installed.
"""

import contextlib

import tensorflow as tf

from tf_fairprune import _private
from tf_fairprune import config as config_lib
from tf_fairprune import flavours
from tf_fairprune import groups as groups_lib
from tf_fairprune import replicas
from tf_fairprune import training
from tf_fairprune import wrapper
from tf_fairprune.fairness import constraints
from tf_fairprune.fairness import metrics

keras = flavours.keras3()
if keras is None:
  raise ImportError("Keras 3 is not installed (pip install keras>=3).")

# Keras 3's functional model class (private; its public face is `keras.Model(inputs, ...)`).
_Functional = _private.resolve("keras.src.models.functional", "Functional",
                               "Keras 3's functional model class")


class Keras3(flavours.Flavour):
  """Keras 3 with the TensorFlow backend. Its private names are used here only."""

  name = "keras3"
  keras = keras
  root = "keras"

  def mask_weight_kwargs(self):
    return dict(aggregation="only_first_replica")

  def first_replica(self):
    return "only_first_replica"

  def add_state(self, metric, name, shape):
    return metric.add_variable(name=name, shape=shape, initializer="zeros",
                               aggregation=self.first_replica())

  @contextlib.contextmanager
  def state_unlocked(self, layer):
    # Keras 3 locks a built layer's state: variables made later are refused.
    tracker = getattr(layer, "_tracker", None)
    locked = tracker is not None and tracker.locked
    if locked:
      tracker.unlock()
    try:
      yield
    finally:
      if locked:
        tracker.lock()

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
    compiled = model._compile_metrics  # pylint: disable=protected-access
    if compiled is not None:
      compiled.update_state(y, y_pred, sample_weight)

  def record_compile_argument(self, model, name, value):
    model._compile_config.config[name] = value  # pylint: disable=protected-access

  def loss_scale(self, optimizer):
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
      return None
    return tf.cast(tf.convert_to_tensor(optimizer.dynamic_scale), tf.float32)

  def weight_gradients(self, optimizer, grads):
    return list(grads)  # Its LossScaleOptimizer unscales inside `apply`.

  def aggregated_for_apply(self, optimizer, pairs):
    return pairs, {}  # Keras 3 all-reduces inside apply (in the replica function).

  def current_learning_rate(self, optimizer):
    return tf.cast(optimizer.learning_rate, tf.float32)  # Reads a schedule at the step.

  def momentum_slot(self, optimizer, variable):
    # pylint: disable=protected-access
    return optimizer.momentums[optimizer._get_variable_index(variable)]

  def builds_on_first_call(self, layer):
    return False  # Keras 3's MultiHeadAttention builds from its input shapes.

  def build_attention_like(self, new, layer):
    config = layer.get_build_config()  # Query, value (key) shapes.
    if not config:
      return False
    new.build_from_config(config)
    return True

  def depthwise_kernel(self, layer):
    return layer.kernel

  def is_graph_model(self, model):
    return (isinstance(model, keras.Sequential) or isinstance(model, _Functional) or
            _private.is_graph_network(model))

  def inbound_nodes(self, model, layer):
    # pylint: disable=protected-access
    graph = model._functional if hasattr(model, "_functional") else model  # Sequential.
    # Key format of Keras 3's Function (ops/function.py make_node_key).
    return [(n, list(n.input_tensors)) for i, n in enumerate(layer._inbound_nodes)
            if f"{id(layer)}_ib-{i}" in graph._nodes]


FLAVOUR = flavours.register(Keras3())

# The constraints are plain Python classes: registered with Keras 3 too, so that a
# Keras 3 .keras file that holds them loads.
for _constraint in constraints.CONSTRAINTS:
  keras.saving.register_keras_serializable(package="tf_fairprune")(_constraint)


@keras.saving.register_keras_serializable(package="tf_fairprune")
class FairPruneWrapper(wrapper.FairPruneWrapperLogic, keras.layers.Wrapper):
  __doc__ = wrapper.FairPruneWrapperLogic.__doc__
  _flavour = FLAVOUR
  # Keras 3's default: trace `call` for the output shape, which works for custom layers
  # that define no compute_output_shape (delegating to theirs would raise).
  compute_output_shape = keras.layers.Layer.compute_output_shape


def _for_multi_worker(model, logs):
  if not _multi_worker(getattr(model, "_distribute_strategy", None)):
    return logs
  return {k: tf.reshape(v, [1]) if tf.is_tensor(v) and v.shape.rank == 0 else v
          for k, v in logs.items()}


def _multi_worker(strategy):
  return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and
          strategy.extended._in_multi_worker_mode())  # pylint: disable=protected-access


@keras.saving.register_keras_serializable(package="tf_fairprune")
class FairPruneModel(training.BiLevelTrainingMixin, keras.Model):
  __doc__ = training.BiLevelTrainingMixin.__doc__
  _flavour = FLAVOUR

  def __new__(cls, *args, **kwargs):
    if cls is FairPruneModel and training.is_functional_init(args, kwargs):
      # A class of its own: Keras 3 would otherwise rewrite this class's bases to
      # Functional (inject_functional_model_class), breaking every subclassed model.
      return FunctionalFairPruneModel.__new__(FunctionalFairPruneModel, *args, **kwargs)
    return super().__new__(cls, *args, **kwargs)

  def __init__(self, *args, **kwargs):
    # The pruning arguments (see PruningConfig) as keywords; the rest go to keras.Model.
    config = config_lib.PruningConfig.pop_from(kwargs)
    super().__init__(*args, **kwargs)
    self._init_fair_pruning(config)

  # Keras 3 (3.15) reduces a multi-worker step's logs with
  # strategy.reduce("MEAN", v, axis=0), which fails on scalars: under
  # MultiWorkerMirroredStrategy each log is returned as a [1] tensor, which that
  # reduction averages over the workers back to a scalar.
  def train_step(self, data):
    return _for_multi_worker(self, super().train_step(data))

  def test_step(self, data):
    return _for_multi_worker(self, super().test_step(data))

  def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    # Under a strategy Keras 3 reduces the first distributed batch with
    # `strategy.reduce`, which MultiWorkerMirroredStrategy cannot do for a dict of
    # per-replica values (our packed group ids): take one replica's batch instead.
    if getattr(self, "_distribute_strategy", None) is None or iterator is None:
      return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
    strategy = self.distribute_strategy
    for _, _, it in iterator:
      batch = next(it)
      data_batch = tf.nest.map_structure(
          lambda v: (strategy.experimental_local_results(v)[0]
                     if isinstance(v, tf.distribute.DistributedValues) else v), batch)
      break
    with strategy.scope():
      self._symbolic_build(data_batch=data_batch)

  def _symbolic_build(self, iterator=None, data_batch=None):
    # Keras 3 builds metrics and losses by tracing the model on one batch; give it the
    # model's inputs, not the packed group ids.
    if data_batch is None and iterator is not None:
      for _, _, data_or_iterator in iterator:
        data_batch = (data_or_iterator[0] if isinstance(data_or_iterator, (list, tuple))
                      else next(data_or_iterator))
        break
    if data_batch is not None:
      x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data_batch)
      data_batch = (groups_lib.unpack_group_data(x)[0], y, sample_weight)
    return super()._symbolic_build(data_batch=data_batch)


@keras.saving.register_keras_serializable(package="tf_fairprune")
class FunctionalFairPruneModel(FairPruneModel, _Functional):
  """The functional form of the Keras 3 `FairPruneModel` (what `fair_prune_wrapper`
  returns for a Sequential or Functional Keras 3 model)."""

  # Functional's positional signature exactly, so that Keras' clone_model rebuilds this
  # class (it checks the argument names); the pruning arguments come as keywords.
  def __init__(self, inputs, outputs, name=None, **kwargs):
    config = config_lib.PruningConfig.pop_from(kwargs)
    _Functional.__init__(self, inputs, outputs, name=name, **kwargs)
    self._init_fair_pruning(config)

  def get_config(self):
    config = _Functional.get_config(self)
    config["fair_pruning"] = self.fair_pruning_config()
    return config

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    pruning = cls._pruning_config_from(config.pop("fair_pruning", {}))
    # Keras 3 rebuilds a functional subclass through `cls(inputs=, outputs=, name=,
    # trainable=, ...)` with no way to pass the pruning arguments: they are set on the
    # model it returns, before anything has read the defaults. The defaults' objective
    # has no constraints, hence no variables: nothing is created twice or reordered.
    model = _Functional.from_config.__func__(cls, config, custom_objects)
    assert not model._objective.variables  # pylint: disable=protected-access
    model._init_fair_pruning(pruning)  # pylint: disable=protected-access
    return model


class GroupRates(metrics.GroupRatesLogic, keras.metrics.Metric):
  __doc__ = metrics.GroupRatesLogic.__doc__
  _flavour = FLAVOUR


class LastValue(metrics.LastValueLogic, keras.metrics.Metric):
  __doc__ = metrics.LastValueLogic.__doc__
  _flavour = FLAVOUR


FLAVOUR.classes = flavours.Classes(
    FairPruneWrapper=FairPruneWrapper, FairPruneModel=FairPruneModel,
    FunctionalFairPruneModel=FunctionalFairPruneModel, GroupRates=GroupRates,
    LastValue=LastValue)
