"""tf_keras (Keras 2, TFMOT's flavour): its `Flavour` table and its concrete classes.

Each class adds only its tf_keras base class to the flavour-free logic
(`wrapper.FairPruneWrapperLogic`, `training.BiLevelTrainingMixin`, the metrics'
logic; callbacks are one class for both flavours, see `callback_base.py`). These are
the classes `tf_fairprune.FairPruneWrapper` and `tf_fairprune.FairPruneModel` name;
given Keras 3 objects they return the Keras 3 classes instead (the flavour follows the
objects passed).
"""

import tensorflow as tf

from tf_fairprune import _private
from tf_fairprune import config as config_lib
from tf_fairprune import flavours
from tf_fairprune import training
from tf_fairprune import wrapper
from tf_fairprune._compat import keras
from tf_fairprune.fairness import constraints
from tf_fairprune.fairness import metrics


class TfKeras(flavours.Flavour):
  """tf_keras (Keras 2): the TFMOT-compatible path."""

  name = "tf_keras"
  keras = keras
  root = "tf_keras"
  tfmot_compatible = True

  def mask_weight_kwargs(self):
    return dict(synchronization=tf.VariableSynchronization.ON_WRITE,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

  def first_replica(self):
    return tf.VariableAggregation.ONLY_FIRST_REPLICA

  def add_state(self, metric, name, shape):
    return metric.add_weight(name=name, shape=shape, initializer="zeros",
                             aggregation=self.first_replica())

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

  def record_compile_argument(self, model, name, value):
    _private.compile_config(model)[name] = value

  def loss_scale(self, optimizer):
    if not isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer):
      return None
    # The scale of a unit loss (this also records that the loss was scaled).
    return tf.cast(optimizer.get_scaled_loss(tf.constant(1.0)), tf.float32)

  def weight_gradients(self, optimizer, grads):
    return optimizer.get_unscaled_gradients(grads)  # It takes unscaled gradients.

  def aggregated_for_apply(self, optimizer, pairs):
    if isinstance(optimizer, keras.optimizers.Optimizer):
      # Aggregate here, then apply without aggregating again.
      return optimizer.aggregate_gradients(pairs), {"skip_gradients_aggregation": True}
    return pairs, {}  # A legacy optimizer aggregates in apply_gradients.

  def current_learning_rate(self, optimizer):
    optimizer._compute_current_learning_rate()  # pylint: disable=protected-access
    return tf.cast(optimizer.learning_rate, tf.float32)

  def momentum_slot(self, optimizer, variable):
    # pylint: disable=protected-access
    return optimizer.momentums[optimizer._index_dict[optimizer._var_key(variable)]]

  def builds_on_first_call(self, layer):
    # tf_keras' MultiHeadAttention: `_build_from_signature` makes its sublayers.
    return (hasattr(layer, "_build_from_signature") and
            not getattr(layer, "_built_from_signature", False))

  def build_attention_like(self, new, layer):
    # Call it once on zeros of the shapes in `layer`'s config.
    config = layer.get_config()
    if config.get("query_shape") is None or config.get("value_shape") is None:
      return False
    def zeros(shape):
      return None if shape is None else tf.zeros([1] + list(shape)[1:])
    new(zeros(config["query_shape"]), zeros(config["value_shape"]),
        key=zeros(config.get("key_shape")))
    return True

  def depthwise_kernel(self, layer):
    return layer.depthwise_kernel

  extra_elementwise_layers = ("ThresholdedReLU",)

  def is_graph_model(self, model):
    return isinstance(model, keras.Sequential) or _private.is_graph_network(model)

  def inbound_nodes(self, model, layer):
    return _private.tf_keras_inbound_nodes(model, layer)


FLAVOUR = flavours.register(TfKeras())

# The constraints are plain Python classes: registered so that .keras files hold them.
for _constraint in constraints.CONSTRAINTS:
  keras.saving.register_keras_serializable(package="tf_fairprune")(_constraint)

@keras.saving.register_keras_serializable(package="tf_fairprune")
class FairPruneWrapper(wrapper.FairPruneWrapperLogic, keras.layers.Wrapper):
  __doc__ = wrapper.FairPruneWrapperLogic.__doc__
  _flavour = FLAVOUR

  @classmethod
  def from_config(cls, config, custom_objects=None):
    # tf_keras' Wrapper reads the wrapped layer in the legacy format whenever the
    # wrapper's own config has no "module", which loses registered custom layers
    # (`Unknown layer`); the layer's config says which format it is in.
    config = dict(config)
    layer = config.pop("layer")
    if isinstance(layer, dict) and ("module" in layer or "registered_name" in layer):
      layer = keras.saving.deserialize_keras_object(layer, custom_objects=custom_objects)
    else:
      layer = keras.layers.deserialize(layer, custom_objects=custom_objects)
    return cls(layer, **config)

  def __new__(cls, layer=None, *args, **kwargs):
    flavour = flavours.of(layer) if layer is not None else FLAVOUR
    if cls is FairPruneWrapper and flavour is not FLAVOUR:
      # A Keras 3 layer gets the Keras 3 wrapper: the flavour follows the objects passed.
      return flavour.classes.FairPruneWrapper(layer, *args, **kwargs)
    return super().__new__(cls)


@keras.saving.register_keras_serializable(package="tf_fairprune")
class FairPruneModel(training.BiLevelTrainingMixin, keras.Model):
  __doc__ = training.BiLevelTrainingMixin.__doc__
  _flavour = FLAVOUR

  def __new__(cls, *args, **kwargs):
    if cls is FairPruneModel and training.is_functional_init(args, kwargs):
      inputs = kwargs.get("inputs", args[0] if args else None)
      flavour = flavours.of(tf.nest.flatten(inputs)[0])
      if flavour is not FLAVOUR:
        # Keras 3 tensors: the Keras 3 functional model (the flavour follows the objects).
        return flavour.classes.FairPruneModel(*args, **kwargs)
      return super().__new__(FunctionalFairPruneModel)
    return super().__new__(cls, *args, **kwargs)

  def __init__(self, *args, **kwargs):
    # The pruning arguments (see PruningConfig) as keywords; the rest go to keras.Model.
    config = config_lib.PruningConfig.pop_from(kwargs)
    super().__init__(*args, **kwargs)
    self._init_fair_pruning(config)


@keras.saving.register_keras_serializable(package="tf_fairprune")
class FunctionalFairPruneModel(FairPruneModel, _private.Functional):
  """The functional form of `FairPruneModel` (a graph network: saves to .keras and .h5)."""

  def __init__(self, inputs, outputs, name=None, trainable=True, **kwargs):
    super().__init__(inputs, outputs, name=name, trainable=trainable, **kwargs)

  def get_config(self):
    config = _private.Functional.get_config(self)
    config["fair_pruning"] = self.fair_pruning_config()
    return config

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    pruning = cls._pruning_config_from(config.pop("fair_pruning", {}))
    with _private.SharedObjectLoadingScope():
      inputs, outputs, layers = _private.reconstruct_from_config(config, custom_objects)
      model = cls(inputs=inputs, outputs=outputs, name=config.get("name"),
                  trainable=config.get("trainable", True), **pruning.as_kwargs())
      _private.connect_ancillary_layers(model, layers)
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
