"""Target sparsity over training steps: a float or a TFMOT `PruningSchedule`.

Scores are learned every step, so masks are re-ranked every step: a schedule's
`frequency` is ignored, its `begin_step` is honoured (no pruning before it) and its
value is used from then on (TFMOT's `ConstantSparsity` and `PolynomialDecay`).
"""

import numbers

import tensorflow as tf

from tf_fairprune._compat import PruningSchedule, keras, tfmot


def _check_sparsity(value, what="target_sparsity"):
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise TypeError(f"{what} must be a float in [0, 1) or a PruningSchedule, got {value!r}.")
  if not 0.0 <= float(value) < 1.0:
    raise ValueError(f"{what} must be in [0, 1), got {value!r}.")
  return float(value)


def validate(target_sparsity):
  """Checks a float or schedule and returns it; raises a clear error otherwise."""
  if isinstance(target_sparsity, PruningSchedule):
    return target_sparsity
  return _check_sparsity(target_sparsity)


def sparsity_at(target_sparsity, step):
  """Sparsity to apply at `step` (an int tensor) as a float64 tensor."""
  if not isinstance(target_sparsity, PruningSchedule):
    return tf.constant(target_sparsity, tf.float64)
  _, value = target_sparsity(step)
  begin = getattr(target_sparsity, "begin_step", 0)
  return tf.where(tf.cast(step, tf.int64) < begin, tf.constant(0.0, tf.float64),
                  tf.cast(value, tf.float64))


# TFMOT's schedules by class name (also what fair_prune_scope registers).
SCHEDULES = {
    "ConstantSparsity": tfmot.sparsity.keras.ConstantSparsity,
    "PolynomialDecay": tfmot.sparsity.keras.PolynomialDecay,
}


def serialize(target_sparsity):
  if isinstance(target_sparsity, PruningSchedule):
    return target_sparsity.get_config()  # TFMOT already nests {'class_name', 'config'}.
  return target_sparsity


def deserialize(config):
  if not isinstance(config, dict):
    return validate(config)
  name = config["class_name"]
  cls = SCHEDULES.get(name) or keras.saving.get_registered_object(name)
  if cls is None:
    raise ValueError(f"Unknown pruning schedule {name!r}: register it with "
                     "keras.saving.register_keras_serializable or pass custom_objects.")
  return cls.from_config(config["config"])
