"""Fairness constraints with differentiable surrogates (DESIGN.md §2).

Each constraint measures a per-group rate, hard (0/1 outcomes, what is reported) and
smooth (probabilities, what is differentiated), and reduces K groups by the worst pair
(max - min over the groups present in the batch). Group sums and counts are summed
over replicas before any gap is formed.

Two ways to enforce a constraint:

* `mode="penalty"` (the paper's): add `weight * max(0, gap - tolerance)` (squared with
  `squared=True`) to the loss.
* `mode="lagrangian"`: add `λ * (gap - tolerance)` with a multiplier λ >= 0 updated by
  dual ascent on the *measured* (hard) gap each step:
  `λ <- max(0, λ + multiplier_lr * (measured_gap - tolerance))`. You state the gap you
  accept instead of tuning a weight.
"""

import tensorflow as tf

from tf_fairprune._compat import keras
from tf_fairprune.fairness import outcomes

MODES = ("penalty", "lagrangian")


class FairnessConstraint:
  """Base class: a gap between groups to keep small.

  Args:
    weight: λ of the penalty mode (ignored in Lagrangian mode).
    tolerance: ε, the gap that is accepted without penalty.
    mode: `"penalty"` or `"lagrangian"`.
    multiplier_lr: η, the dual-ascent step of the Lagrangian mode.
    squared: Penalise the squared excess instead of the absolute excess.
    from_logits: Whether model outputs are logits. `None` takes it from the compiled
      loss (its `from_logits`; `False` for string losses, as in Keras).
    positive_class: The class treated as "positive" by selection-rate and TPR/FPR
      based constraints on multi-class outputs.
    name: Name of the gap in logs (defaults per class, e.g. `"performance_gap"`).

  Raises:
    ValueError: For a negative weight, tolerance or step, or an unknown mode.
  """

  default_name = "gap"
  needs_dense_correct = False

  def __init__(self, weight=1.0, tolerance=0.0, mode="penalty", multiplier_lr=0.05,
               squared=False, from_logits=None, positive_class=1, name=None):
    if mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    for arg, value in (("weight", weight), ("tolerance", tolerance),
                       ("multiplier_lr", multiplier_lr)):
      if not float(value) >= 0.0:
        raise ValueError(f"{arg} must be >= 0, got {value!r}.")
    self.weight = float(weight)
    self.tolerance = float(tolerance)
    self.mode = mode
    self.multiplier_lr = float(multiplier_lr)
    self.squared = bool(squared)
    self.from_logits = from_logits
    self.positive_class = int(positive_class)
    self.name = name or self.default_name

  # Subclasses return a list of terms (smooth values, hard values, eligibility), all
  # [B]; the gap is the largest worst-pair gap over the terms.
  def terms(self, y_true, y_pred, from_logits, dense_correct):
    raise NotImplementedError

  def statistics(self, y_true, y_pred, groups, sample_weight, num_groups, dense_correct=None,
                 from_logits=None):
    """Per-group sums and counts: (smooth_sums, hard_sums, counts), each [T, K]."""
    if from_logits is None:
      from_logits = bool(self.from_logits)
    if self.needs_dense_correct and dense_correct is None:
      raise ValueError(
          f"{type(self).__name__} needs the dense model's per-example correctness: pack "
          "it with pack_group_data(x, groups, dense_correct=dense_correctness(dense, x, y)) "
          "or give the model a reference model.")
    batch = tf.shape(tf.reshape(groups, [-1]))[0]
    weights = (tf.ones([batch]) if sample_weight is None
               else tf.reshape(tf.cast(sample_weight, tf.float32), [-1]))
    groups = tf.reshape(tf.cast(groups, tf.int32), [-1])
    smooth, hard, counts = [], [], []
    for soft_v, hard_v, eligible in self.terms(y_true, y_pred, from_logits, dense_correct):
      w = weights * eligible
      smooth.append(outcomes.group_sums(soft_v, groups, w, num_groups))
      hard.append(outcomes.group_sums(hard_v, groups, w, num_groups))
      counts.append(outcomes.group_sums(tf.ones_like(w), groups, w, num_groups))
    return tf.stack(smooth), tf.stack(hard), tf.stack(counts)

  @staticmethod
  def gap(sums, counts):
    """Worst-pair gap from [T, K] sums and counts (max over the T terms)."""
    return tf.reduce_max(outcomes.worst_pair_gap(sums, counts))

  def penalty(self, smooth_gap, multiplier=None):
    """The loss term for a (smooth) gap."""
    excess = smooth_gap - self.tolerance
    if self.mode == "lagrangian":
      return multiplier * excess
    excess = tf.nn.relu(excess)
    return self.weight * (tf.square(excess) if self.squared else excess)

  def updated_multiplier(self, multiplier, measured_gap):
    return tf.nn.relu(multiplier + self.multiplier_lr * (measured_gap - self.tolerance))

  def get_config(self):
    return {"weight": self.weight, "tolerance": self.tolerance, "mode": self.mode,
            "multiplier_lr": self.multiplier_lr, "squared": self.squared,
            "from_logits": self.from_logits, "positive_class": self.positive_class,
            "name": self.name}

  @classmethod
  def from_config(cls, config):
    return cls(**config)

  def __repr__(self):
    args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
    return f"{type(self).__name__}({args})"


def _all(y_pred):
  return tf.ones_like(outcomes.probabilities(y_pred, False)[..., 0]
                      if outcomes.is_multiclass(y_pred) else outcomes.probabilities(y_pred, False))


@keras.saving.register_keras_serializable(package="tf_fairprune")
class PerformanceFairness(FairnessConstraint):
  """Accuracy gap between groups, |A(f_c, D_a) - A(f_c, D_b)| (paper Def. 1).

  Surrogate: the probability of the true class instead of 0/1 correctness.

  Example:

  ```python
  pruned = tf_fairprune.fair_prune_wrapper(
      model, 0.9, fairness=[tf_fairprune.fairness.PerformanceFairness(weight=1.0)])
  ```
  """

  default_name = "performance_gap"

  def terms(self, y_true, y_pred, from_logits, dense_correct):
    return [(outcomes.smooth_correct(y_true, y_pred, from_logits),
             outcomes.hard_correct(y_true, y_pred, from_logits), _all(y_pred))]


@keras.saving.register_keras_serializable(package="tf_fairprune")
class DegradationFairness(FairnessConstraint):
  """Gap in accuracy lost against the dense model, |R_a - R_b| (paper Defs. 2-3).

  R_g = A(f, D_g) - A(f_c, D_g). Needs the dense model's per-example correctness,
  packed with the data (`pack_group_data(..., dense_correct=...)`) or computed by a
  frozen reference model (`fair_prune_wrapper` keeps a never-trained copy of the
  dense model for this).
  """

  default_name = "degradation_gap"
  needs_dense_correct = True

  def terms(self, y_true, y_pred, from_logits, dense_correct):
    dense_correct = tf.reshape(tf.cast(dense_correct, tf.float32), [-1])
    return [(dense_correct - outcomes.smooth_correct(y_true, y_pred, from_logits),
             dense_correct - outcomes.hard_correct(y_true, y_pred, from_logits), _all(y_pred))]


@keras.saving.register_keras_serializable(package="tf_fairprune")
class DemographicParity(FairnessConstraint):
  """Gap in selection rate P(ŷ = positive) between groups (fairlearn's name)."""

  default_name = "demographic_parity_gap"

  def terms(self, y_true, y_pred, from_logits, dense_correct):
    return [(outcomes.smooth_positive(y_pred, from_logits, self.positive_class),
             outcomes.hard_positive(y_pred, from_logits, self.positive_class), _all(y_pred))]


@keras.saving.register_keras_serializable(package="tf_fairprune")
class EqualOpportunity(FairnessConstraint):
  """Gap in true-positive rate between groups."""

  default_name = "equal_opportunity_gap"

  def terms(self, y_true, y_pred, from_logits, dense_correct):
    return [(outcomes.smooth_positive(y_pred, from_logits, self.positive_class),
             outcomes.hard_positive(y_pred, from_logits, self.positive_class),
             outcomes.label_positive(y_true, y_pred, self.positive_class))]


@keras.saving.register_keras_serializable(package="tf_fairprune")
class EqualizedOdds(FairnessConstraint):
  """The larger of the TPR gap and the FPR gap between groups (fairlearn's definition)."""

  default_name = "equalized_odds_gap"

  def terms(self, y_true, y_pred, from_logits, dense_correct):
    soft = outcomes.smooth_positive(y_pred, from_logits, self.positive_class)
    hard = outcomes.hard_positive(y_pred, from_logits, self.positive_class)
    positive = outcomes.label_positive(y_true, y_pred, self.positive_class)
    return [(soft, hard, positive), (soft, hard, 1.0 - positive)]


CONSTRAINTS = (PerformanceFairness, DegradationFairness, DemographicParity,
               EqualOpportunity, EqualizedOdds)
