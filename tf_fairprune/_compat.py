"""Imports shared by the package: Keras 2 (tf_keras) and TFMOT, without side effects.

TFMOT's import sets ``TF_USE_LEGACY_KERAS=1`` and touches ``tf.keras``, which would
silently switch ``tf.keras`` to Keras 2 for the whole process. We resolve ``tf.keras``
first (under the user's own setting), import TFMOT, then restore the variable, so that
``import tf_fairprune`` leaves the meaning of ``tf.keras`` exactly as it was.
"""

import os

import tensorflow as tf
import tf_keras as keras

_ENV = "TF_USE_LEGACY_KERAS"
_previous = os.environ.get(_ENV)
try:
  # Resolving the lazy loader pins tf.keras to what the user's environment asks for.
  getattr(tf.keras, "version", None)
except ImportError:  # No Keras 3 installed: tf.keras cannot resolve; nothing to pin.
  pass
import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top
from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry as _tfmot_registry  # pylint: disable=g-import-not-at-top

if _previous is None:
  os.environ.pop(_ENV, None)
else:
  os.environ[_ENV] = _previous

PrunableLayer = tfmot.sparsity.keras.PrunableLayer
PruningSchedule = tfmot.sparsity.keras.PruningSchedule
TfmotPruneRegistry = _tfmot_registry.PruneRegistry

__all__ = ["keras", "tf", "tfmot", "PrunableLayer", "PruningSchedule", "TfmotPruneRegistry"]
