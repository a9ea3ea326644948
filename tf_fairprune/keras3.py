"""tf_fairprune's classes on Keras 3 (`import keras`, TensorFlow backend).

The logic is the tf_keras classes' (`wrapper.FairPruneWrapperLogic`,
`training.BiLevelTrainingMixin`); each class here adds only its Keras 3 base class and
the Keras 3 `Flavour`. You rarely name them: `fair_prune_wrapper` and
`FairPruneWrapper(layer)` pick them for Keras 3 objects. Subclass
`tf_fairprune.keras3.FairPruneModel` for a subclassed Keras 3 model.

Raises ImportError on import when Keras 3 is not installed.
"""

import contextvars

from tf_fairprune import flavours
from tf_fairprune import groups as groups_lib
from tf_fairprune import training
from tf_fairprune import wrapper
from tf_fairprune.fairness import constraints

FLAVOUR = flavours.keras3_flavour()
keras = FLAVOUR.keras

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


@keras.saving.register_keras_serializable(package="tf_fairprune")
class FairPruneModel(training.BiLevelTrainingMixin, keras.Model):
  __doc__ = training.FairPruneModel.__doc__
  _flavour = FLAVOUR

  def __init__(self, *args, target_sparsity=0.5, mask_scope="global",
               implicit_gradient_scale=1e-4, update_mode="joint", mask_update_frequency=1,
               fairness=(), fairness_on=training.LEVELS, num_groups=2, source_class=None,
               **kwargs):
    super().__init__(*args, **kwargs)
    loading = _LOADING.get()
    if loading is not None:
      _LOADING.set(None)  # Only the outer model takes them.
      self._init_fair_pruning(**loading)
      return
    self._init_fair_pruning(target_sparsity, mask_scope, implicit_gradient_scale,
                            update_mode, mask_update_frequency, fairness, fairness_on,
                            num_groups, source_class)

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

  def get_config(self):
    config = super().get_config()
    config["fair_pruning"] = self.fair_pruning_config()
    return config

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    token = _LOADING.set(cls._fair_pruning_kwargs(config.pop("fair_pruning", {}) or {}))
    try:
      return super().from_config(config, custom_objects)
    finally:
      _LOADING.reset(token)
