"""The pruning methods and fairness constraints by name, without TensorFlow.

The job's flags (`tf_fairprune.job`) read these names before TensorFlow is imported, so
this module imports nothing but the standard library; `tf_fairprune.baselines.prune`
runs each method, and `named_constraints.CONSTRAINTS` maps each constraint name to its
class.

Example:

```python
from tf_fairprune.baselines import names
names.FAIRNESS_OFF["bifp"]  # "bip": the same method with fairness off
```
"""

METHODS = ("bifp", "bifp_layer", "bip", "bip_layer", "bifp_no_mask_term", "bifp_no_weight_term",
           "gmp", "magnitude_ft", "ceag", "two_stage", "dense")
# Methods that need TFMOT, which works on tf_keras models only.
TF_KERAS_ONLY = ("gmp", "two_stage")
# Levels that get the fairness terms in each bi-level method (the paper's ablations).
LEVELS = {"bifp": ("weights", "mask"), "bip": (), "bifp_no_mask_term": ("weights",),
          "bifp_no_weight_term": ("mask",), "bifp_layer": ("weights", "mask"),
          "bip_layer": ()}
# Bi-level methods that rank the scores per layer (each layer at the target sparsity, as
# TFMOT does) instead of globally.
PER_LAYER = ("bifp_layer", "bip_layer")
# Methods that train with a fairness constraint (the others ignore `fairness`).
CONSTRAINED = ("bifp", "bifp_layer", "bifp_no_mask_term", "bifp_no_weight_term", "ceag",
               "two_stage")
# The same method with fairness off: what a constrained method's fairness cost is measured
# against (the main job runs it beside, unless --nocompare_fairness_off).
FAIRNESS_OFF = {"bifp": "bip", "bifp_layer": "bip_layer", "bifp_no_mask_term": "bip",
                "bifp_no_weight_term": "bip", "ceag": "magnitude_ft", "two_stage": "gmp"}
# Methods whose mask is a fixed magnitude mask from the dense model; only the weights train.
FIXED_MASK = {"magnitude_ft": False, "ceag": True}  # -> with the fairness constraint?

# Constraint names (`named_constraints.CONSTRAINTS` maps them to the classes) and the
# audit's name of the gap each bounds.
CONSTRAINT_NAMES = ("performance", "degradation", "excess", "group_loss",
                    "demographic_parity", "equalized_odds", "equal_opportunity")
AUDIT_GAP = {"performance": "performance_gap", "degradation": "degradation_gap",
             "excess": "max_excess_gap", "group_loss": "max_group_loss",
             "demographic_parity": "demographic_parity_difference",
             "equalized_odds": "equalized_odds_difference",
             "equal_opportunity": "equal_opportunity_difference"}
# BiFP's default: "do no harm" — no group loses more than 1 point beyond the average.
DEFAULT_FAIRNESS = ("excess",)
DEFAULT_EPSILON = 0.01
DEFAULT_OPTIMIZER = "sgd:0.01"


def parse_optimizer(spec):
  """(name, learning rate) from "sgd:LR" or "adam:LR".

  Args:
    spec: The optimizer's spelling, e.g. "sgd:0.01".

  Returns:
    ("sgd" or "adam", the learning rate as a float).

  Raises:
    ValueError: For another name or a learning rate that is not a positive number.

  Example:

  ```python
  parse_optimizer("adam:0.001")  # ("adam", 0.001)
  ```
  """
  name, _, rate = str(spec).partition(":")
  try:
    rate = float(rate)
  except ValueError:
    rate = float("nan")
  if name not in ("sgd", "adam") or not rate > 0:
    raise ValueError(f"Bad optimizer {spec!r}: use 'sgd:LR' or 'adam:LR' with LR > 0.")
  return name, rate
