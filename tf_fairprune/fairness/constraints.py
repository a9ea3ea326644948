"""Fairness constraints: a hard gap to report and bound, a surrogate to differentiate.

Each constraint measures per-group rates twice: *hard* (0/1 outcomes — what is
reported, and what the tolerance ε bounds) and *smooth* (what is differentiated). The
two are tied together the way proxy-Lagrangian methods do (Cotter et al. 2019; Cooper;
Balancing Act's CEAG):

* The hard gap decides. In Lagrangian mode a multiplier grows while the *measured*
  gap exceeds ε (in penalty mode the *measured* rates pick the pair of groups to act
  on). A surrogate that can be lowered without changing a decision therefore cannot
  satisfy the constraint.
* The surrogate only supplies the direction. The default (`surrogate="margin"`) is a
  sigmoid of each example's logit margin divided by `temperature` × the batch's mean
  |margin|: 0.5 at the decision boundary, steepest for the examples nearest to it, and
  unchanged when every logit shrinks — the move that let the old surrogate
  (`"probability"`, the probability of the true class) shrink its gap while the
  decisions stayed put.

Two ways to enforce a constraint:

* `mode="lagrangian"` (default): state the gap you accept, ε (`tolerance`). The gap is
  split into one-sided constraints — rate_i − rate_j ≤ ε for every ordered pair of
  groups; ψ_g ≤ ε for every group of `ExcessDegradation` — each with its own
  multiplier λ. The loss gets Σ λ · (smooth value); after each step
  `λ ← clip(λ + η · (measured value − ε), 0, λ_max)`, measured on exponentially
  averaged group counts (decay `rate_decay`, so that a batch's sampling noise — large
  for a small group — does not drive λ). When a gap is pushed past zero, the
  multiplier that pushed it decays instead of pushing further (one multiplier on
  |gap| kept pushing and reversed the gap in our first measurement). The multiplier
  also has a proportional term (`damping`, PI control as nuPI in Cooper), so pressure
  drops as soon as the gap falls below ε, and a constraint acts only on a gap larger
  than `noise_margin` standard errors of its running rates. `λ_max` bounds the
  pressure, so an infeasible ε costs at most what a penalty of weight λ_max costs.
* `mode="penalty"` (the paper's): `weight · max(0, surrogate gap − ε)²` (linear with
  `squared=False`).

Degradation compares smooth with smooth: the dense model's surrogate (from its outputs,
given by a reference model or packed with the data) minus the pruned model's, so the
term is exactly zero at θ = θ_dense.
"""

import tensorflow as tf

from tf_fairprune._compat import keras
from tf_fairprune.fairness import outcomes

MODES = ("lagrangian", "penalty")
SURROGATES = ("margin", "probability")


class FairnessConstraint:
  """Base class: a gap between groups to keep at most `tolerance`.

  Args:
    tolerance: ε, the gap accepted, as a fraction (0.02 = 2 points of accuracy).
    mode: `"lagrangian"` (default: the multiplier finds the weight that meets ε) or
      `"penalty"` (a fixed `weight`).
    weight: λ of the penalty mode (ignored in Lagrangian mode).
    multiplier_lr: η, the dual-ascent step per training step (Lagrangian mode).
    max_multiplier: λ_max, the largest multiplier (Lagrangian mode).
    rate_decay: Decay of the running group counts that the multiplier update and the
      choice of the worst pair read (0 uses each batch alone).
    damping: κ of the multiplier's proportional term (PI control); 0 for plain dual
      ascent, which oscillated in our measurements.
    noise_margin: z: a one-sided constraint counts as violated only where its measured
      value exceeds ε by more than z standard errors of the running rates (0.5/√n per
      group). Without it, multipliers on small groups chased sampling noise and made a
      5-group test gap worse than no constraint at all.
    surrogate: `"margin"` (default) or `"probability"` (the probability of the true or
      positive class; kept for comparison: it can be lowered without changing a
      decision).
    temperature: Of the margin surrogate, relative to the batch's mean |margin|.
    squared: Penalty mode: square the excess over ε (default True: a sum of squared
      terms has a unique compromise where two constraints pull apart; linear terms of
      equal weight can cancel exactly).
    from_logits: Whether model outputs are logits. `None` takes it from the compiled
      loss (its `from_logits`; `False` for string losses, as in Keras).
    positive_class: The class treated as "positive" by selection-rate and TPR/FPR
      based constraints on multi-class outputs.
    name: Name of the gap in logs (defaults per class, e.g. `"performance_gap"`).

  Raises:
    ValueError: For a negative or non-finite number, a decay outside [0, 1), or an
      unknown mode or surrogate.
  """

  default_name = "gap"
  needs_dense = False  # Compares against the dense model's outputs.
  num_terms = 1  # Rates per group the constraint bounds (equalized odds: TPR and FPR).

  def __init__(self, tolerance=0.01, mode="lagrangian", weight=1.0, multiplier_lr=0.2,
               max_multiplier=5.0, rate_decay=0.9, damping=10.0, noise_margin=1.0,
               surrogate="margin", temperature=0.5, squared=True, from_logits=None,
               positive_class=1, name=None):
    if mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    if surrogate not in SURROGATES:
      raise ValueError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}.")
    for arg, value in (("weight", weight), ("tolerance", tolerance),
                       ("multiplier_lr", multiplier_lr), ("max_multiplier", max_multiplier),
                       ("temperature", temperature), ("damping", damping),
                       ("noise_margin", noise_margin)):
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
          0.0 <= float(value) < float("inf")):
        raise ValueError(f"{arg} must be a finite number >= 0, got {value!r}.")
    if not 0.0 <= float(rate_decay) < 1.0:
      raise ValueError(f"rate_decay must be in [0, 1), got {rate_decay!r}.")
    if float(temperature) == 0.0:
      raise ValueError("temperature must be > 0.")
    self.tolerance = float(tolerance)
    self.mode = mode
    self.weight = float(weight)
    self.multiplier_lr = float(multiplier_lr)
    self.max_multiplier = float(max_multiplier)
    self.rate_decay = float(rate_decay)
    self.damping = float(damping)
    self.noise_margin = float(noise_margin)
    self.surrogate = surrogate
    self.temperature = float(temperature)
    self.squared = bool(squared)
    self.from_logits = from_logits
    self.positive_class = int(positive_class)
    self.name = name or self.default_name

  # ------------------------------------------------------------ per-example outcomes
  def _correct(self, y_true, y_pred, from_logits):
    """(smooth, hard) correctness, [B] each."""
    hard = outcomes.hard_correct(y_true, y_pred, from_logits)
    if self.surrogate == "probability":
      return outcomes.smooth_correct(y_true, y_pred, from_logits), hard
    return outcomes.soft_step(outcomes.correct_margin(y_true, y_pred, from_logits),
                              self.temperature), hard

  def _positive(self, y_pred, from_logits):
    """(smooth, hard) 'predicted positive', [B] each."""
    hard = outcomes.hard_positive(y_pred, from_logits, self.positive_class)
    if self.surrogate == "probability":
      return outcomes.smooth_positive(y_pred, from_logits, self.positive_class), hard
    return outcomes.soft_step(
        outcomes.positive_margin(y_pred, from_logits, self.positive_class),
        self.temperature), hard

  def terms(self, y_true, y_pred, from_logits, dense):
    """`num_terms` triples (smooth values, hard values, eligibility), each [B].

    `dense` is a `DenseReference` (or None) for constraints with `needs_dense`.
    """
    raise NotImplementedError

  def statistics(self, y_true, y_pred, groups, sample_weight, num_groups, dense=None,
                 from_logits=None):
    """Per-group sums and counts, summed over replicas: (smooth, hard, counts), [T, K]."""
    if from_logits is None:
      from_logits = bool(self.from_logits)
    if self.needs_dense and dense is None:
      raise ValueError(
          f"{type(self).__name__} compares against the dense model, which this model does "
          "not have (a .keras file does not store it). Call "
          "`model.set_reference_model(dense_model)` — after `load_model` too — or pack "
          "the dense model's outputs with the data: pack_group_data(x, groups, "
          "dense_outputs=dense_model.predict(x)).")
    groups = tf.reshape(tf.cast(groups, tf.int32), [-1])
    weights = outcomes.example_weights(sample_weight, groups)
    smooth, hard, counts = [], [], []
    for soft_v, hard_v, eligible in self.terms(y_true, y_pred, from_logits, dense):
      w = weights * eligible
      smooth.append(outcomes.group_sums(soft_v, groups, w, num_groups))
      hard.append(outcomes.group_sums(hard_v, groups, w, num_groups))
      counts.append(outcomes.group_sums(tf.ones_like(w), groups, w, num_groups))
    return tf.stack(smooth), tf.stack(hard), tf.stack(counts)

  # ------------------------------------------------------------ gaps
  # A constraint is a set of one-sided constraints v ≤ ε, one per entry of
  # `values(...)`: rate_i − rate_j for every ordered pair of groups (per term) here,
  # ψ_g per group for `ExcessDegradation`. Each has its own Lagrange multiplier, so a
  # gap pushed past zero to the other side releases the multiplier that pushed it.

  def multiplier_shape(self, num_groups):
    """Shape of the multipliers: one per one-sided constraint."""
    return (self.num_terms, num_groups, num_groups)

  def values(self, sums, counts):
    """(values, valid) of every one-sided constraint from [T, K] sums and counts."""
    return outcomes.pairwise_differences(sums, counts)

  def standard_errors(self, counts):
    """A bound on each constraint value's sampling error: 0.5/√n per group (Bernoulli)."""
    se = 0.5 * tf.math.rsqrt(tf.maximum(counts, 1.0))
    return tf.sqrt(tf.square(se)[..., :, None] + tf.square(se)[..., None, :])

  def violations(self, ref_hard_sums, ref_counts):
    """Measured value − ε − noise_margin · standard error, per one-sided constraint;
    −ε where the groups are absent (counts as met)."""
    values, valid = self.values(ref_hard_sums, ref_counts)
    values = values - self.noise_margin * self.standard_errors(ref_counts)
    return tf.where(valid, values, 0.0) - self.tolerance

  def measure(self, hard_sums, counts):
    """The hard gap (what is reported and bounded): the largest constraint value."""
    values, valid = self.values(hard_sums, counts)
    return tf.reduce_max(tf.where(valid, values, 0.0))

  def penalty(self, smooth_sums, counts, ref_hard_sums, ref_counts, multipliers=None):
    """The loss term of this batch.

    Args:
      smooth_sums, counts: This batch's [T, K] smooth sums and counts.
      ref_hard_sums, ref_counts: [T, K] hard sums and counts that pick the constraint
        the penalty mode acts on (the running rates in training).
      multipliers: The Lagrange multipliers (Lagrangian mode), `multiplier_shape`.

    Returns:
      Lagrangian: Σ λ · smooth value over the one-sided constraints present in the
      batch. Penalty: weight · max(0, smooth value − ε)² of the constraint whose hard
      reference value is largest (linear with `squared=False`).
    """
    smooth, valid = self.values(smooth_sums, counts)
    smooth = tf.where(valid, smooth, 0.0)
    if self.mode == "lagrangian":
      if self.damping:
        # PI control of the multiplier (nuPI): the proportional part follows the
        # current violation, so the pressure drops as soon as the gap falls below ε.
        multipliers = tf.clip_by_value(
            multipliers + self.damping * self.violations(ref_hard_sums, ref_counts), 0.0,
            self.max_multiplier)
      return tf.reduce_sum(tf.stop_gradient(multipliers) * smooth)
    ref, ref_valid = self.values(ref_hard_sums, ref_counts)
    worst = tf.argmax(tf.reshape(tf.where(ref_valid, ref, -3.0e38), [-1]), output_type=tf.int32)
    excess = tf.nn.relu(tf.gather(tf.reshape(smooth, [-1]), worst) - self.tolerance)
    return self.weight * (tf.square(excess) if self.squared else excess)

  def updated_multipliers(self, multipliers, ref_hard_sums, ref_counts):
    """One clipped dual-ascent step per one-sided constraint on its measured value;
    a constraint whose groups are absent counts as met (its multiplier decays)."""
    return tf.clip_by_value(
        multipliers + self.multiplier_lr * self.violations(ref_hard_sums, ref_counts), 0.0,
        self.max_multiplier)

  # ------------------------------------------------------------ serialisation
  def get_config(self):
    return {"tolerance": self.tolerance, "mode": self.mode, "weight": self.weight,
            "multiplier_lr": self.multiplier_lr, "max_multiplier": self.max_multiplier,
            "rate_decay": self.rate_decay, "damping": self.damping,
            "noise_margin": self.noise_margin,
            "surrogate": self.surrogate,
            "temperature": self.temperature, "squared": self.squared,
            "from_logits": self.from_logits, "positive_class": self.positive_class,
            "name": self.name}

  @classmethod
  def from_config(cls, config):
    return cls(**config)

  def __repr__(self):
    args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
    return f"{type(self).__name__}({args})"


def _all(values):
  return tf.ones_like(values)


@keras.saving.register_keras_serializable(package="tf_fairprune")
class PerformanceFairness(FairnessConstraint):
  """Accuracy gap between groups, max_g A_g − min_g A_g (paper Def. 1).

  Closing an existing gap can mean lowering the better-served group's accuracy
  (levelling down): look at each group's accuracy, not only at the gap.

  Example:

  ```python
  pruned = tf_fairprune.fair_prune_wrapper(
      model, 0.9, fairness=[tf_fairprune.fairness.PerformanceFairness(tolerance=0.05)])
  ```
  """

  default_name = "performance_gap"

  def terms(self, y_true, y_pred, from_logits, dense):
    smooth, hard = self._correct(y_true, y_pred, from_logits)
    return [(smooth, hard, _all(hard))]


class _DegradationBase(FairnessConstraint):
  """Per-example degradation d = dense correct − pruned correct, smooth and hard."""

  needs_dense = True

  def terms(self, y_true, y_pred, from_logits, dense):
    smooth, hard = self._correct(y_true, y_pred, from_logits)
    dense_smooth, dense_hard = dense.correct(self, y_true, from_logits)
    return [(dense_smooth - smooth, dense_hard - hard, _all(hard))]


@keras.saving.register_keras_serializable(package="tf_fairprune")
class DegradationFairness(_DegradationBase):
  """Gap in accuracy lost against the dense model, max_g R_g − min_g R_g (paper Defs. 2–3).

  R_g = A(f, D_g) − A(f_c, D_g). Two-sided: it also penalises a pruned model that helps
  the worse-served group more than the other. When the dense model is unfair, this and
  `PerformanceFairness` pull in opposite directions (with two groups the degradation
  gap is |D − P|, D and P the dense and pruned accuracy gaps): see `ExcessDegradation`
  for the one-sided "do no harm" form. Needs the dense model's outputs: from a frozen
  reference model (`fair_prune_wrapper` keeps one) or packed with the data
  (`pack_group_data(..., dense_outputs=...)`).
  """

  default_name = "degradation_gap"


@keras.saving.register_keras_serializable(package="tf_fairprune")
class ExcessDegradation(_DegradationBase):
  """"Do no harm": no group loses more than ε beyond the average loss (Balancing Act).

  ψ_g = R_g − R, with R_g the accuracy group g lost against the dense model and R the
  overall loss; the constraint is max_g ψ_g ≤ ε. One-sided: a group that loses less
  than average (or gains) is never penalised, so it does not fight an accuracy-gap
  constraint the way the two-sided `DegradationFairness` does.

  Example:

  ```python
  pruned = tf_fairprune.fair_prune_wrapper(
      dense, 0.95, fairness=[tf_fairprune.fairness.ExcessDegradation(tolerance=0.01)])
  ```
  """

  default_name = "max_excess_gap"

  def multiplier_shape(self, num_groups):
    return (self.num_terms, num_groups)

  def values(self, sums, counts):
    return outcomes.excesses(sums, counts)

  def standard_errors(self, counts):
    return 0.5 * tf.math.rsqrt(tf.maximum(counts, 1.0))


@keras.saving.register_keras_serializable(package="tf_fairprune")
class DemographicParity(FairnessConstraint):
  """Gap in selection rate P(ŷ = positive) between groups (fairlearn's name)."""

  default_name = "demographic_parity_gap"

  def terms(self, y_true, y_pred, from_logits, dense):
    smooth, hard = self._positive(y_pred, from_logits)
    return [(smooth, hard, _all(hard))]


@keras.saving.register_keras_serializable(package="tf_fairprune")
class EqualOpportunity(FairnessConstraint):
  """Gap in true-positive rate between groups."""

  default_name = "equal_opportunity_gap"

  def terms(self, y_true, y_pred, from_logits, dense):
    smooth, hard = self._positive(y_pred, from_logits)
    return [(smooth, hard, outcomes.label_positive(y_true, y_pred, self.positive_class))]


@keras.saving.register_keras_serializable(package="tf_fairprune")
class EqualizedOdds(FairnessConstraint):
  """The larger of the TPR gap and the FPR gap between groups (fairlearn's definition)."""

  default_name = "equalized_odds_gap"
  num_terms = 2

  def terms(self, y_true, y_pred, from_logits, dense):
    smooth, hard = self._positive(y_pred, from_logits)
    positive = outcomes.label_positive(y_true, y_pred, self.positive_class)
    return [(smooth, hard, positive), (smooth, hard, 1.0 - positive)]


CONSTRAINTS = (PerformanceFairness, DegradationFairness, ExcessDegradation,
               DemographicParity, EqualOpportunity, EqualizedOdds)
