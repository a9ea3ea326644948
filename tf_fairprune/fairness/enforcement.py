"""How a fairness constraint is enforced: a small rule with its own settings.

A constraint (`constraints.py`) says *which* gap and ε; a rule says *how* the training
pushes the gap under ε — the way Optax separates an update rule from the parameters:

* `Lagrangian` (default): one multiplier λ per one-sided constraint, raised while the
  measured *hard* value exceeds ε and lowered (to 0) once it does not, with a
  proportional term (PI control, nuPI in Cooper) so pressure drops as soon as the gap
  falls below ε. The rates it reads come from a held-out constraint set when `fit` gets
  a `tf_fairprune.HeldOutFairness` callback (Cotter et al., ICML 2019: a gap fitted on
  the training rows does not carry over to new people), else from running averages of
  the training batches.
* `Penalty`: the paper's fixed-weight penalty, weight · max(0, surrogate gap − ε)².

Both are small value objects; the state they act on (multipliers, measured rates) is
model weights kept by `FairnessObjective`, so it is saved and replicated with the model.
"""

import tensorflow as tf

from tf_fairprune import checks


def _check_number(arg, value):
  return checks.number(arg, value)


def _check_decay(value):
  return checks.number("rate_decay", value, 0.0, 1.0)


class Lagrangian:
  """Find the weight that meets ε: a multiplier per one-sided constraint (PI dual ascent).

  After each measurement, `λ ← clip(λ + η · steps · (value − ε − z · se), 0, λ_max)`,
  where `steps` is the number of training steps the measurement covers (1 for training
  rates, the update period for held-out rates: λ moves equally fast per training step
  either way). The loss gets Σ clip(λ + κ · violation) · (smooth value).

  Args:
    multiplier_lr: η, the dual-ascent step per training step.
    max_multiplier: λ_max: an infeasible ε costs at most a penalty of this weight.
    damping: κ of the proportional term; 0 for plain dual ascent (which oscillated).
    rate_decay: Training rates only: decay of the running group counts the update reads
      (0 uses each batch alone).
    noise_margin: Training rates only: z, the standard errors (0.5/√n per group of the
      running rates) a value must exceed ε by to count as violated, so a small group's
      batch noise does not drive λ. Held-out rates (`HeldOutFairness`) are judged
      against ε where the held-out set resolves ε, and against the half-width of their
      simultaneous 95% interval where it does not (a gap the set cannot tell from noise
      never drives λ); a margin on resolvable gaps would only raise the ε stated.

  Raises:
    ValueError: For a negative or non-finite number, or a decay outside [0, 1).
  """

  mode = "lagrangian"

  def __init__(self, multiplier_lr=0.2, max_multiplier=5.0, damping=10.0, rate_decay=0.9,
               noise_margin=1.0):
    self.multiplier_lr = _check_number("multiplier_lr", multiplier_lr)
    self.max_multiplier = _check_number("max_multiplier", max_multiplier)
    self.damping = _check_number("damping", damping)
    self.rate_decay = _check_decay(rate_decay)
    self.noise_margin = _check_number("noise_margin", noise_margin)

  def violations(self, constraint, hard_sums, counts, held_out=False, tolerances=None):
    """Measured value − ε per one-sided constraint; −ε where the groups are absent
    (counts as met).

    Training rates (`held_out` False): the value less `noise_margin` standard errors.
    Held-out rates (`held_out` True, or a bool tensor the traced step reads): the value
    less `tolerances` — per one-sided constraint, ε or, where the held-out set cannot
    resolve ε, the half-width of its interval (`HeldOutFairness`), so that a violation
    counts only where the held-out set can tell it from noise; ε when None.
    """
    values, valid = constraint.values(hard_sums, counts)
    tolerance = constraint.tolerance
    def training():
      margin = values - self.noise_margin * constraint.standard_errors(counts)
      return tf.where(valid, margin, 0.0) - tolerance
    def measured():
      return tf.where(valid, values, 0.0) - (tolerance if tolerances is None else tolerances)
    if isinstance(held_out, bool):
      return measured() if held_out else training()
    return tf.where(held_out, measured(), training())

  def penalty(self, constraint, smooth, hard_sums, counts, multipliers, held_out=False,
              tolerances=None):
    """Σ λ_eff · smooth value, λ_eff = clip(λ + κ · violation) (no gradient into λ)."""
    if self.damping:
      multipliers = tf.clip_by_value(
          multipliers + self.damping * self.violations(constraint, hard_sums, counts, held_out,
                                                       tolerances),
          0.0, self.max_multiplier)
    return tf.reduce_sum(tf.stop_gradient(multipliers) * smooth)

  def updated_multipliers(self, constraint, multipliers, hard_sums, counts, held_out=False,
                          steps=1.0, tolerances=None):
    """One clipped dual-ascent step covering `steps` training steps."""
    return tf.clip_by_value(
        multipliers + self.multiplier_lr * steps *
        self.violations(constraint, hard_sums, counts, held_out, tolerances),
        0.0, self.max_multiplier)

  def get_config(self):
    return {"multiplier_lr": self.multiplier_lr, "max_multiplier": self.max_multiplier,
            "damping": self.damping, "rate_decay": self.rate_decay,
            "noise_margin": self.noise_margin}

  def __repr__(self):
    args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
    return f"{type(self).__name__}({args})"

  def __eq__(self, other):
    return type(self) is type(other) and self.get_config() == other.get_config()


class Penalty:
  """The paper's fixed-weight penalty on the worst one-sided constraint.

  `weight · max(0, smooth value − ε)²` (linear with `squared=False`) of the constraint
  whose measured hard value is largest. Nothing adapts: the weight must be tuned, and ε
  is a dead zone, not a guarantee.

  Args:
    weight: The penalty weight.
    squared: Square the excess (default: a sum of squared terms has a unique compromise
      where two constraints pull apart; linear terms of equal weight can cancel exactly).
    rate_decay: Decay of the running group counts that pick the worst constraint.

  Raises:
    ValueError: For a negative or non-finite weight, or a decay outside [0, 1).
  """

  mode = "penalty"

  def __init__(self, weight=1.0, squared=True, rate_decay=0.9):
    self.weight = _check_number("weight", weight)
    self.squared = bool(squared)
    self.rate_decay = _check_decay(rate_decay)

  def penalty(self, constraint, smooth, hard_sums, counts, multipliers=None, held_out=False,
              tolerances=None):
    del multipliers, held_out, tolerances
    ref, ref_valid = constraint.values(hard_sums, counts)
    worst = tf.argmax(tf.reshape(tf.where(ref_valid, ref, -3.0e38), [-1]),
                      output_type=tf.int32)
    excess = tf.nn.relu(tf.gather(tf.reshape(smooth, [-1]), worst) - constraint.tolerance)
    return self.weight * (tf.square(excess) if self.squared else excess)

  def get_config(self):
    return {"weight": self.weight, "squared": self.squared, "rate_decay": self.rate_decay}

  def __repr__(self):
    args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
    return f"{type(self).__name__}({args})"

  def __eq__(self, other):
    return type(self) is type(other) and self.get_config() == other.get_config()


RULES = {"lagrangian": Lagrangian, "penalty": Penalty}
# The arguments `FairnessConstraint` still takes directly (the pre-rule signature).
LEGACY_ARGS = ("mode", "weight", "multiplier_lr", "max_multiplier", "rate_decay", "damping",
               "noise_margin", "squared")


def from_legacy(mode="lagrangian", **kwargs):
  """The rule that `FairnessConstraint(mode=..., weight=..., ...)` asked for.

  Every argument is validated, as before; those of the other mode are ignored.
  """
  if mode not in RULES:
    raise ValueError(f"mode must be one of {tuple(RULES)}, got {mode!r}.")
  for arg, value in kwargs.items():
    if arg == "rate_decay":
      _check_decay(value)
    elif arg != "squared":
      _check_number(arg, value)
  rule = RULES[mode]
  accepted = set(rule().get_config())
  return rule(**{k: v for k, v in kwargs.items() if k in accepted})


def serialize(rule):
  return {"class_name": type(rule).__name__, "config": rule.get_config()}


def deserialize(config):
  """A rule from a rule, its serialized dict, or its mode's name (default settings)."""
  if isinstance(config, (Lagrangian, Penalty)):
    return config
  if isinstance(config, str) and config in RULES:
    return RULES[config]()
  by_name = {cls.__name__: cls for cls in RULES.values()}
  if not isinstance(config, dict) or config.get("class_name") not in by_name:
    raise ValueError(f"Unknown enforcement rule {config!r}: use one of {sorted(by_name)}.")
  return by_name[config["class_name"]](**config.get("config", {}))
