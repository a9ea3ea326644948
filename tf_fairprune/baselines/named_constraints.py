"""Fairness constraints by name ("excess", "performance", ...), as the job's --fairness
flag and the benchmarks name them.

Example:

```python
make_constraints(["performance", "group_loss"], epsilon=0.02)
```
"""

from tf_fairprune.baselines import names as names_lib
from tf_fairprune.fairness import constraints as constraints_lib
from tf_fairprune.fairness import enforcement as enforcement_lib

# Names -> constraint classes (`names_lib.AUDIT_GAP`: the audit's name of the gap each bounds).
CONSTRAINTS = {
    "performance": constraints_lib.PerformanceFairness,
    "degradation": constraints_lib.DegradationFairness,
    "excess": constraints_lib.ExcessDegradation,
    "group_loss": constraints_lib.MaxGroupLoss,
    "demographic_parity": constraints_lib.DemographicParity,
    "equalized_odds": constraints_lib.EqualizedOdds,
    "equal_opportunity": constraints_lib.EqualOpportunity,
}
# The names are known without TensorFlow (`names_lib`); they must agree.
if tuple(CONSTRAINTS) != names_lib.CONSTRAINT_NAMES:  # Not an assert: it holds under -O too.
  raise RuntimeError(f"constraint names disagree: {tuple(CONSTRAINTS)} vs "
                     f"{names_lib.CONSTRAINT_NAMES}")


def make_constraints(names=names_lib.DEFAULT_FAIRNESS, mode="lagrangian",
                     epsilon=names_lib.DEFAULT_EPSILON, weight=1.0):
  """Constraints by name (see `CONSTRAINTS`), all with the same ε and rule.

  Args:
    names: A name or a list of names (default: BiFP's, "excess").
    mode: The rule's name (--fairness_mode): "lagrangian" or "penalty".
    epsilon: Each constraint's tolerance, a fraction (0.01 = 1 point).
    weight: The `Penalty` rule's weight.

  Returns:
    A list of constraints.

  Raises:
    ValueError: For an unknown name or mode, or a bad ε or weight.
  """
  names = [n.strip() for n in ([names] if isinstance(names, str) else names) if n.strip()]
  unknown = [n for n in names if n not in CONSTRAINTS]
  if unknown:
    raise ValueError(f"Unknown fairness constraint(s) {unknown}: use {', '.join(CONSTRAINTS)}.")
  if len(set(names)) != len(names):
    raise ValueError(f"A fairness constraint is named twice in {names}.")
  if mode not in enforcement_lib.RULES:
    raise ValueError(f"mode must be one of {tuple(enforcement_lib.RULES)}, got {mode!r}.")
  rules = {"lagrangian": enforcement_lib.Lagrangian(),  # --fairness_mode's values.
           "penalty": enforcement_lib.Penalty(weight=weight)}
  return [CONSTRAINTS[n](tolerance=epsilon, enforcement=rules[mode]) for n in names]
