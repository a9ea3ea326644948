"""`PruningConfig`: the pruning arguments of a model, in one place.

Their defaults, their validation (the constraints and levels excepted: the model's
fairness objective checks those) and their `get_config`/`from_config` live here: `fair_prune_wrapper`, both flavours' `FairPruneModel` classes and Keras 3's
deserialisation all build one. Keras (de)serialisation of the constraints is the
flavour's (`serialize`/`deserialize` arguments), so this module imports no Keras.
"""

import dataclasses
import warnings

import numpy as np

from tf_fairprune import checks
from tf_fairprune import masking
from tf_fairprune import pruning_schedule

LEVELS = ("weights", "mask")
UPDATE_MODES = ("joint", "alternating")
MASK_SCOPES = ("global", "layer")


@dataclasses.dataclass
class PruningConfig:
  """The pruning arguments of a `FairPruneModel` (documented there), validated.

  Raises (at construction):
    ValueError: For an out-of-range sparsity, layer floor, implicit-gradient scale,
      update frequency or group count, or an unknown scope or update mode.
    TypeError: For a `fairness_output` that is neither a name nor an index.
  """

  target_sparsity: object = 0.5
  mask_scope: str = "global"
  implicit_gradient_scale: float = 1e-4
  update_mode: str = "joint"
  mask_update_frequency: int = 1
  fairness: object = ()
  fairness_on: object = LEVELS
  num_groups: int = 2
  source_class: object = None
  fairness_output: object = None
  layer_floor: float = masking.LAYER_FLOOR

  def __post_init__(self):
    self.target_sparsity = pruning_schedule.validate(self.target_sparsity)
    if self.mask_scope not in MASK_SCOPES:
      raise ValueError(f"mask_scope must be one of {MASK_SCOPES}, got {self.mask_scope!r}.")
    if self.update_mode not in UPDATE_MODES:
      raise ValueError(f"update_mode must be one of {UPDATE_MODES}, got {self.update_mode!r}.")
    scale = float(self.implicit_gradient_scale)
    if not np.isfinite(scale) or scale < 0:
      raise ValueError("implicit_gradient_scale (1/γ) must be >= 0, got "
                       f"{self.implicit_gradient_scale!r}.")
    self.implicit_gradient_scale = scale
    self.mask_update_frequency = checks.positive_int("mask_update_frequency",
                                                     self.mask_update_frequency)
    k = self.num_groups
    if not checks.is_integer(k) or k < 2:
      raise ValueError(f"num_groups must be an integer >= 2, got {k!r}.")
    self.num_groups = int(k)
    floor = float(self.layer_floor)
    if not 0.0 <= floor <= 1.0:
      raise ValueError(f"layer_floor must be in [0, 1], got {self.layer_floor!r}.")
    self.layer_floor = floor
    if isinstance(self.fairness_on, str):
      self.fairness_on = (self.fairness_on,)  # One level; validated by the objective.
    if hasattr(self.fairness, "multiplier_shape"):
      self.fairness = [self.fairness]  # One constraint; validated by the objective.
    output = self.fairness_output
    if output is not None and not (isinstance(output, str) or checks.is_integer(output)):
      raise TypeError(f"fairness_output must be an output's name or index, got {output!r}.")
    if checks.is_integer(output):
      self.fairness_output = int(output)

  @classmethod
  def field_names(cls):
    return [f.name for f in dataclasses.fields(cls)]

  @classmethod
  def pop_from(cls, kwargs):
    """The config of the pruning arguments in `kwargs` (removed from it); the rest of
    `kwargs` are the Keras model's own."""
    return cls(**{name: kwargs.pop(name) for name in cls.field_names() if name in kwargs})

  def as_kwargs(self):
    """The arguments as keywords of a `FairPruneModel`."""
    return {name: getattr(self, name) for name in self.field_names()}

  def get_config(self, serialize):
    """JSON-serializable; `serialize` is the flavour's `serialize_keras_object`."""
    config = self.as_kwargs()
    config["target_sparsity"] = pruning_schedule.serialize(self.target_sparsity)
    config["fairness"] = [serialize(c) for c in self.fairness]
    config["fairness_on"] = list(self.fairness_on)
    return config

  @classmethod
  def from_config(cls, config, deserialize):
    """The inverse of `get_config`; `deserialize` is the flavour's
    `deserialize_keras_object`. Keys this version does not know are ignored."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(cls.field_names()))
    if unknown:
      warnings.warn(f"tf_fairprune: the saved pruning arguments {unknown} are unknown to this "
                    "version and were ignored (saved by a newer version?).", UserWarning,
                    stacklevel=2)
    config = {k: v for k, v in config.items() if k in cls.field_names()}
    if "target_sparsity" in config:
      config["target_sparsity"] = pruning_schedule.deserialize(config["target_sparsity"])
    config["fairness"] = [deserialize(c) for c in config.get("fairness", [])]
    return cls(**config)
