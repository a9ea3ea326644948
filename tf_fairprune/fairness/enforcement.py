"""How a fairness constraint is enforced: a rule that owns its state, loss term and update.

A constraint (`constraints.py`) defines the gap — its one-sided values and their
standard errors — and ε; a rule says *how* training pushes the gap under ε. As in
Optax, a rule is a small value object with pure functions over a state it declares:

* `init(constraint, num_groups, add_weight)` makes the rule's state (its variables);
* `loss(constraint, state, ...)` is the fairness term of a batch;
* `update(constraint, state, ...)` is the state after a measurement, and
  `back_off(state)` the state when the held-out accuracy floor is hit.

Two rules:

* `Lagrangian` (default): one multiplier λ per one-sided constraint, raised while the
  measured *hard* value exceeds ε and lowered (to 0) once it does not, with a
  proportional term (PI control, nuPI in Cooper) so pressure drops as soon as the gap
  falls below ε. The rates it reads come from a held-out constraint set when `fit` gets
  a `tf_fairprune.HeldOutFairness` callback (Cotter et al., ICML 2019: a gap fitted on
  the training rows does not carry over to new people), else from running averages of
  the training batches.
* `Penalty`: the paper's fixed-weight penalty, weight · max(0, surrogate gap − ε)². It
  has no state.

Callers ask a rule what it does (`drives_multipliers`, `uses_held_out`), never its
name. The model makes the state's variables (`add_weight`), so the multipliers are
model weights: saved, restored and replicated with the model.

Example:

```python
rule = Lagrangian(multiplier_lr=0.5)
c = PerformanceFairness(tolerance=0.02, enforcement=rule)
state = rule.init(c, num_groups=2)           # LagrangianState(multipliers=<variable>)
state = rule.update(c, state, hard_sums, counts)   # one dual-ascent step (tensors)
```
"""

import collections

import tensorflow as tf

from tf_fairprune import checks

# The state of each rule (a namedtuple of variables, or of tensors after `update`).
LagrangianState = collections.namedtuple("LagrangianState", "multipliers")
PenaltyState = collections.namedtuple("PenaltyState", "")


def _check_decay(value):
  return checks.number("rate_decay", value, 0.0, 1.0)


def _zeros_variable(name, shape):
  """`init`'s default `add_weight`: a plain variable (outside a model, e.g. in tests)."""
  return tf.Variable(tf.zeros(shape), trainable=False, name=name)


class _Rule:
  """Settings as a config dict; equal when of one class with equal settings.

  What the training step asks of every rule: `drives_multipliers`, `uses_held_out`,
  `rate_decay` (of the running training rates the rule reads; 0: each batch alone),
  `init`, `multipliers`, `loss`, `update`, `back_off` and `get_config`.
  """

  drives_multipliers = False  # Has multipliers that the measured rates move.
  uses_held_out = False  # Reads held-out rates when `fit` has a `HeldOutFairness`.
  rate_decay = 0.0  # Decay of the running training rates the rule reads.
  # Settings added after files were saved without them: the value such a file trained
  # with (a config lacking the key loads with it).
  saved_before = {}

  def get_config(self):
    raise NotImplementedError

  def __repr__(self):
    args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
    return f"{type(self).__name__}({args})"

  def __eq__(self, other):
    return type(self) is type(other) and self.get_config() == other.get_config()


class Lagrangian(_Rule):
  """Find the weight that meets ε: a multiplier per one-sided constraint (PI dual ascent).

  After each measurement, `λ ← clip(λ + η · steps · v / n, 0, λ_max)` with the violation
  v = value − ε − z · se, where `steps` is the number of training steps the measurement
  covers (1 for training rates, the update period for held-out rates: λ moves equally
  fast per training step either way) and n, for a positive v, the number of its term's
  one-sided constraints violated at once (`split_pressure`; else 1). The loss gets
  Σ clip(λ + κ · v / n) · s · (smooth value), s the row-weight scale of the groups'
  shares of the batch (`per_row`; else 1).

  Args:
    multiplier_lr: η, the dual-ascent step per training step.
    max_multiplier: λ_max, the bound on λ (before the row-weight scale s): what an
      infeasible ε can cost.
    damping: κ of the proportional term; 0 for plain dual ascent (which oscillated).
    rate_decay: Training rates only: decay of the running group counts the update reads
      (0 uses each batch alone).
    per_row: Whether λ weighs each row of its groups the same whatever their size
      (default): the term of a one-sided constraint is scaled by its groups' share of the
      batch's rows of that term (`constraint.row_weight_scale`; 1 for a batch with two
      groups of equal share, the term it had before), so the pressure of a
      multiplier, and with it the loop gain of the dual step, does not grow as a group
      shrinks or as groups multiply. Without it a multiplier on a group of share p puts
      a weight ∝ λ/p on each of its rows: defaults tuned on two groups oscillated with 20
      class × colour groups (BENCHMARKS.md, "Intersectional groups"). A file saved
      before this option existed loads with False.
    split_pressure: Whether the proportional term and the dual step of a violated
      one-sided constraint are shared among those of its term violated at once (divided
      by their count; default; met ones decay as before): K groups pushing together then
      push as hard in total as one does. Where at most one is violated (a gap between
      two groups, do no harm on two groups) nothing changes; with 20 class × colour groups
      the unshared κ drove several classes' weights to λ_max at once and training swung
      from one class to another (BENCHMARKS.md, "Intersectional groups"). A file saved
      before this option existed loads with False.
    noise_margin: Training rates only: z, the standard errors (0.5/√n per group of the
      running rates) a value must exceed ε by to count as violated, so a small group's
      batch noise does not drive λ. Held-out rates (`HeldOutFairness`) are judged
      against ε where the held-out set resolves ε, and against the half-width of their
      simultaneous 95% interval where it does not (a gap the set cannot tell from noise
      never drives λ); a margin on resolvable gaps would only raise the ε stated.

  Raises:
    ValueError: For a negative or non-finite number, or a decay outside [0, 1).

  Example:

  ```python
  fairness = [PerformanceFairness(tolerance=0.02, enforcement=Lagrangian(damping=0.0))]
  ```
  """

  drives_multipliers = True
  uses_held_out = True
  saved_before = {"per_row": False, "split_pressure": False}

  def __init__(self, multiplier_lr=0.2, max_multiplier=5.0, damping=10.0, rate_decay=0.9,
               noise_margin=1.0, per_row=True, split_pressure=True):
    self.multiplier_lr = checks.number("multiplier_lr", multiplier_lr)
    self.max_multiplier = checks.number("max_multiplier", max_multiplier)
    self.damping = checks.number("damping", damping)
    self.rate_decay = _check_decay(rate_decay)
    self.noise_margin = checks.number("noise_margin", noise_margin)
    self.per_row = bool(per_row)
    self.split_pressure = bool(split_pressure)

  def init(self, constraint, num_groups, add_weight=_zeros_variable):
    """The multipliers, zero: `add_weight(name, shape)` makes each variable (the model's
    `add_weight`, so they are model weights)."""
    return LagrangianState(add_weight("multiplier", constraint.multiplier_shape(num_groups)))

  def multipliers(self, constraint, state, num_groups):
    """The multipliers in force, `constraint.multiplier_shape(num_groups)`."""
    del constraint, num_groups
    return state.multipliers

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

  def loss(self, constraint, state, smooth_sums, counts, ref_hard_sums, ref_counts,
           held_out=False, tolerances=None):
    """Σ λ_eff · s · smooth value over the one-sided constraints present in the batch,
    λ_eff = clip(λ + κ · violation) (no gradient into λ), s the row-weight scale of the
    batch's group shares with `per_row` (else 1).

    Args:
      constraint: The constraint (its gap).
      state: This rule's state for the constraint.
      smooth_sums, counts: This batch's [T, K] smooth sums and counts.
      ref_hard_sums, ref_counts: [T, K] measured hard sums and counts (held-out rates,
        or the running training rates) that the rule reads.
      held_out: Whether the reference rates are held-out ones (a bool, or a bool tensor
        the traced step reads).
      tolerances: With held-out rates, the tolerance of each one-sided constraint
        (`multiplier_shape`; default ε everywhere).
    """
    smooth, valid = constraint.values(smooth_sums, counts)
    multipliers = state.multipliers
    if self.damping:
      multipliers = tf.clip_by_value(
          multipliers + self.damping * self._shared(
              self.violations(constraint, ref_hard_sums, ref_counts, held_out, tolerances)),
          0.0, self.max_multiplier)
    if self.per_row:
      multipliers = multipliers * constraint.row_weight_scale(counts)
    return tf.reduce_sum(tf.stop_gradient(multipliers) * tf.where(valid, smooth, 0.0))

  def update(self, constraint, state, hard_sums, counts, held_out=False, steps=1.0,
             tolerances=None):
    """The state after one clipped dual-ascent step covering `steps` training steps; a
    one-sided constraint whose groups are absent counts as met (its multiplier decays)."""
    return LagrangianState(tf.clip_by_value(
        state.multipliers + self.multiplier_lr * steps * self._shared(
            self.violations(constraint, hard_sums, counts, held_out, tolerances)),
        0.0, self.max_multiplier))

  def _shared(self, violations):
    """With `split_pressure`, each positive violation divided by how many of its term's
    (the leading axis) are positive; met ones (≤ 0: relief and decay) as they are."""
    if not self.split_pressure:
      return violations
    positive = violations > 0.0
    axes = list(range(1, len(violations.shape)))
    violated = tf.reduce_sum(tf.cast(positive, violations.dtype), axis=axes, keepdims=True)
    return tf.where(positive, violations / tf.maximum(violated, 1.0), violations)

  def back_off(self, state):
    """The state when the accuracy floor is hit: the multipliers halved."""
    return LagrangianState(0.5 * state.multipliers)

  def get_config(self):
    return {"multiplier_lr": self.multiplier_lr, "max_multiplier": self.max_multiplier,
            "damping": self.damping, "rate_decay": self.rate_decay,
            "noise_margin": self.noise_margin, "per_row": self.per_row,
            "split_pressure": self.split_pressure}


class Penalty(_Rule):
  """The paper's fixed-weight penalty on the worst one-sided constraint.

  `weight · max(0, smooth value − ε)²` (linear with `squared=False`) of the constraint
  whose measured hard value is largest. Nothing adapts (no state): the weight must be
  tuned, and ε is a dead zone, not a guarantee.

  Args:
    weight: The penalty weight.
    squared: Square the excess (default: a sum of squared terms has a unique compromise
      where two constraints pull apart; linear terms of equal weight can cancel exactly).
    rate_decay: Decay of the running group counts that pick the worst constraint.

  Raises:
    ValueError: For a negative or non-finite weight, or a decay outside [0, 1).

  Example:

  ```python
  fairness = [PerformanceFairness(tolerance=0.02, enforcement=Penalty(weight=2.0))]
  ```
  """

  def __init__(self, weight=1.0, squared=True, rate_decay=0.9):
    self.weight = checks.number("weight", weight)
    self.squared = bool(squared)
    self.rate_decay = _check_decay(rate_decay)

  def init(self, constraint, num_groups, add_weight=_zeros_variable):
    del constraint, num_groups, add_weight
    return PenaltyState()

  def multipliers(self, constraint, state, num_groups):
    """Zeros: a fixed weight has no multipliers."""
    del state
    return tf.zeros(constraint.multiplier_shape(num_groups))

  def loss(self, constraint, state, smooth_sums, counts, ref_hard_sums, ref_counts,
           held_out=False, tolerances=None):
    """weight · max(0, smooth value − ε)² of the one-sided constraint whose reference
    hard value is largest (the arguments as `Lagrangian.loss`'s; held-out settings are
    not read)."""
    del state, held_out, tolerances
    smooth, valid = constraint.values(smooth_sums, counts)
    ref, ref_valid = constraint.values(ref_hard_sums, ref_counts)
    worst = tf.argmax(tf.reshape(tf.where(ref_valid, ref, -3.0e38), [-1]),
                      output_type=tf.int32)
    smooth = tf.reshape(tf.where(valid, smooth, 0.0), [-1])
    excess = tf.nn.relu(tf.gather(smooth, worst) - constraint.tolerance)
    return self.weight * (tf.square(excess) if self.squared else excess)

  def update(self, constraint, state, hard_sums, counts, held_out=False, steps=1.0,
             tolerances=None):
    del constraint, hard_sums, counts, held_out, steps, tolerances
    return state

  def back_off(self, state):
    return state

  def get_config(self):
    return {"weight": self.weight, "squared": self.squared, "rate_decay": self.rate_decay}


RULES = {"lagrangian": Lagrangian, "penalty": Penalty}


def serialize(rule):
  return {"class_name": type(rule).__name__, "config": rule.get_config()}


def deserialize(config, saved=False):
  """A rule from a rule, its serialized dict, or its name (default settings).

  `saved`: the dict comes from a saved file; settings it lacks take the values such files
  trained with (`saved_before`), not today's defaults.

  Raises:
    ValueError: For anything else.
  """
  if isinstance(config, _Rule):
    return config
  if isinstance(config, str) and config in RULES:
    return RULES[config]()
  by_name = {cls.__name__: cls for cls in RULES.values()}
  if not isinstance(config, dict) or config.get("class_name") not in by_name:
    raise ValueError(f"Unknown enforcement rule {config!r}: use one of {sorted(by_name)} "
                     f"(or their names {sorted(RULES)}).")
  cls = by_name[config["class_name"]]
  return cls(**{**(cls.saved_before if saved else {}), **config.get("config", {})})


# ------------------------------------------------------------ the pre-rule spelling
# Constraints once took the rule's settings directly: `mode="lagrangian"|"penalty"` and
# `weight`, `multiplier_lr`, ... Files saved then hold those keys in each constraint's
# config; `legacy_config` maps them to `enforcement` so such files still load.
LEGACY_ARGS = ("mode", "weight", "multiplier_lr", "max_multiplier", "rate_decay", "damping",
               "noise_margin", "squared")


def legacy_config(config, saved=True):
  """A constraint config of the pre-rule spelling with its rule in `enforcement`.

  `saved`: the config is a saved file's (its rule gets the settings such files trained
  with, `saved_before`); False for new code spelled the old way (the current defaults).

  Settings of the other rule (e.g. `weight` with `mode="lagrangian"`) are dropped, as
  the pre-rule constructor did. A config without legacy keys is returned as is.

  Raises:
    ValueError: For an unknown mode or a bad setting.
  """
  legacy = {k: v for k, v in config.items() if k in LEGACY_ARGS}
  if not legacy:
    return config
  config = {k: v for k, v in config.items() if k not in LEGACY_ARGS}
  mode = legacy.pop("mode", "lagrangian")
  if mode not in RULES:
    raise ValueError(f"mode must be one of {tuple(RULES)}, got {mode!r}.")
  rule = RULES[mode]
  accepted = set(rule().get_config())
  config["enforcement"] = serialize(rule(**{**(rule.saved_before if saved else {}),
                                           **{k: v for k, v in legacy.items() if k in accepted}}))
  return config
