"""The constraints the jobs' fairness flags (`flag_checks.define_fairness_flags`) ask for,
and those flags as results.json records them.

Example:

```python
constraints = fairness_from_flags(flags.FLAGS)  # after absl parsed the flags
```
"""

from absl import app

from tf_fairprune.baselines.named_constraints import make_constraints
from tf_fairprune.fairness import enforcement as enforcement_lib

from . import flag_checks

# --fairness_mode's values are known before TensorFlow is imported; they must agree.
if tuple(enforcement_lib.RULES) != flag_checks.MODES:  # Not an assert: it holds under -O too.
  raise RuntimeError(f"--fairness_mode values {flag_checks.MODES} disagree with the rules "
                     f"{tuple(enforcement_lib.RULES)}")


def fairness_from_flags(flags_values):
  """The constraints the fairness flags ask for.

  Raises:
    app.UsageError: Naming the flag whose value is bad.
  """
  f = flags_values
  try:
    names = flag_checks.fairness_names(f)
  except flag_checks.FlagError as err:
    raise app.UsageError(str(err)) from err
  try:
    constraints = make_constraints(names, f.fairness_mode, f.epsilon, f.fairness_weight)
    if getattr(f, "max_group_loss", None) is not None and "group_loss" not in names:
      constraints += make_constraints(["group_loss"], f.fairness_mode, f.max_group_loss,
                                      f.fairness_weight)
    return constraints
  except ValueError as err:
    raise app.UsageError(f"--fairness: {err}") from err


def fairness_settings(flags_values):
  """The fairness flags as recorded in results.json."""
  return {"fairness": list(flags_values.fairness), "fairness_mode": flags_values.fairness_mode,
          "epsilon": flags_values.epsilon, "fairness_weight": flags_values.fairness_weight,
          "held_out": flags_values.held_out,
          "max_accuracy_loss": flags_values.max_accuracy_loss,
          "max_group_loss": getattr(flags_values, "max_group_loss", None),
          "harm_tolerance": getattr(flags_values, "harm_tolerance", None)}
