"""tf_fairprune's classes on Keras 3 (`import keras`, TensorFlow backend).

The logic is the tf_keras classes' (`wrapper.FairPruneWrapperLogic`,
`training.BiLevelTrainingMixin`); each class here adds only its Keras 3 base class and
the Keras 3 `Flavour`. You rarely name them: `fair_prune_wrapper` and
`FairPruneWrapper(layer)` pick them for Keras 3 objects. Subclass
`tf_fairprune.keras3.FairPruneModel` for a subclassed Keras 3 model.

Raises ImportError on import when Keras 3 is not installed.
"""

import contextvars

import tensorflow as tf

from tf_fairprune import _private
from tf_fairprune import flavours
from tf_fairprune import groups as groups_lib
from tf_fairprune import training
from tf_fairprune import wrapper
from tf_fairprune.fairness import constraints

FLAVOUR = flavours.keras3_flavour()
keras = FLAVOUR.keras
# Keras 3's functional model class (private; its public face is `keras.Model(inputs, ...)`).
_Functional = _private.resolve("keras.src.models.functional", "Functional",
                               "Keras 3's functional model class")

# The constraints are plain Python classes: registered with Keras 3 too, so that a
# Keras 3 .keras file that holds them loads.
for _constraint in constraints.CONSTRAINTS:
  keras.saving.register_keras_serializable(package="tf_fairprune")(_constraint)

# The pruning arguments of a model being loaded: Keras 3 rebuilds a functional
# subclass through `cls(inputs=..., outputs=..., name=...)` only.
_LOADING = contextvars.ContextVar("tf_fairprune_keras3_loading", default=None)


@keras.saving.register_keras_serializable(package="tf_fairprune")
class FairPruneWrapper(wrapper.FairPruneWrapperLogic, keras.layers.Wrapper):
  __doc__ = wrapper.FairPruneWrapper.__doc__
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


# The pruning arguments of FairPruneModel and their defaults (those of the tf_keras class).
_PRUNE_DEFAULTS = {"target_sparsity": 0.5, "mask_scope": "global",
                   "implicit_gradient_scale": 1e-4, "update_mode": "joint",
                   "mask_update_frequency": 1, "fairness": (), "fairness_on": training.LEVELS,
                   "num_groups": 2, "source_class": None,
                   "fairness_output": None, "layer_floor": 0.1}


@keras.saving.register_keras_serializable(package="tf_fairprune")
class FairPruneModel(training.BiLevelTrainingMixin, keras.Model):
  __doc__ = training.FairPruneModel.__doc__
  _flavour = FLAVOUR

  def __new__(cls, *args, **kwargs):
    if cls is FairPruneModel and training.is_functional_init(args, kwargs):
      # A class of its own: Keras 3 would otherwise rewrite this class's bases to
      # Functional (inject_functional_model_class), breaking every subclassed model.
      return FunctionalFairPruneModel.__new__(FunctionalFairPruneModel, *args, **kwargs)
    return super().__new__(cls, *args, **kwargs)

  def __init__(self, *args, **kwargs):
    # The pruning arguments (documented above) as keywords; the rest go to keras.Model.
    prune_kwargs = {k: kwargs.pop(k, default) for k, default in _PRUNE_DEFAULTS.items()}
    super().__init__(*args, **kwargs)
    self._init_fair_pruning(**prune_kwargs)

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
    prune_kwargs = {k: kwargs.pop(k, default) for k, default in _PRUNE_DEFAULTS.items()}
    _Functional.__init__(self, inputs, outputs, name=name, **kwargs)
    loading = _LOADING.get()
    if loading is not None:
      _LOADING.set(None)  # Only the outer model takes them.
      prune_kwargs = loading
    self._init_fair_pruning(**prune_kwargs)

  def get_config(self):
    config = _Functional.get_config(self)
    config["fair_pruning"] = self.fair_pruning_config()
    return config

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    token = _LOADING.set(cls._fair_pruning_kwargs(config.pop("fair_pruning", {}) or {}))
    try:
      return _Functional.from_config.__func__(cls, config, custom_objects)
    finally:
      _LOADING.reset(token)
