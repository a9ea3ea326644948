"""Fairness constraints: a hard gap to report and bound, a surrogate to differentiate.

Each constraint measures per-group rates twice: *hard* (0/1 outcomes — what is
reported, and what the tolerance ε bounds) and *smooth* (what is differentiated). The
two are tied together the way proxy-Lagrangian methods do (Cotter et al. 2019; Cooper;
Balancing Act's CEAG):

* The hard gap decides. Under the `Lagrangian` rule a multiplier grows while the
  *measured* gap exceeds ε (under `Penalty` the *measured* rates pick the pair of
  groups to act on). A surrogate that can be lowered without changing a decision therefore cannot
  satisfy the constraint.
* The surrogate only supplies the direction. The default (`surrogate="margin"`) is a
  sigmoid of each example's logit margin divided by `temperature` × the batch's mean
  |margin|: 0.5 at the decision boundary, steepest for the examples nearest to it, and
  unchanged when every logit shrinks — the move that let the old surrogate
  (`"probability"`, the probability of the true class) shrink its gap while the
  decisions stayed put.

A constraint defines only the gap: its one-sided values and their standard errors.
How it is enforced is a separate rule (`enforcement.py`) that owns its state, loss term
and update: `Lagrangian` (default: state ε, a multiplier per one-sided constraint finds
the weight — reading held-out rates when `fit` gets a `HeldOutFairness` callback) or
`Penalty` (the paper's fixed weight). The gap is split into one-sided constraints — rate_i − rate_j ≤ ε for
every ordered pair of groups; ψ_g ≤ ε for every group of `ExcessDegradation` — so a gap
pushed past zero releases the multiplier that pushed it (one multiplier on |gap| kept
pushing and reversed the gap in our first measurement).

Degradation compares smooth with smooth: the dense model's surrogate (from its outputs,
given by a reference model or packed with the data) minus the pruned model's, so the
term is exactly zero at θ = θ_dense.
"""

import tensorflow as tf

from tf_fairprune import checks
from tf_fairprune.fairness import enforcement as enforcement_lib
from tf_fairprune.fairness import outcomes

SURROGATES = ("margin", "probability")


class FairnessConstraint:
  """Base class: a gap between groups to keep at most `tolerance`.

  A constraint names the gap and ε; how it is enforced is a separate rule
  (`enforcement`): `Lagrangian()` (default) or `Penalty(weight)`.

  Args:
    tolerance: ε, the gap accepted, as a fraction (0.02 = 2 points of accuracy).
    enforcement: A `tf_fairprune.fairness.Lagrangian` (default) or `Penalty` rule, or
      the name of one (`"lagrangian"`, `"penalty"`) for its default settings.
    surrogate: `"margin"` (default) or `"probability"` (the probability of the true or
      positive class; kept for comparison: it can be lowered without changing a
      decision).
    temperature: Of the margin surrogate, relative to the batch's mean |margin|.
    from_logits: Whether model outputs are logits. `None` takes it from the compiled
      loss (its `from_logits`; `False` for string losses, as in Keras).
    positive_class: The class treated as "positive" by selection-rate and TPR/FPR
      based constraints on multi-class outputs.
    name: Name of the gap in logs (defaults per class, e.g. `"performance_gap"`).

  Raises:
    ValueError: For a negative or non-finite number, or an unknown rule or surrogate.
    TypeError: For an unknown argument, or the rule's settings given to the constraint
      (`mode=`, `weight=`, ...: the message names the `enforcement=` spelling).
  """

  default_name = "gap"
  needs_dense = False  # Compares against the dense model's outputs.
  num_terms = 1  # Rates per group the constraint bounds (equalized odds: TPR and FPR).
  # The name of the gap in the audit (`evaluate_fairness`'s report, fairlearn's names).
  audit_gap = None
  # How the one-sided constraints are formed from the group rates: "pairwise" (rate_i −
  # rate_j for every ordered pair), "excess" (each group's rate − the overall rate) or
  # "group" (each group's rate), for the intervals (`intervals.gap_interval`).
  kind = "pairwise"

  def __init__(self, tolerance=0.01, enforcement=None, surrogate="margin", temperature=0.5,
               from_logits=None, positive_class=1, name=None, **unknown):
    if unknown:
      raise TypeError(_unknown_arguments(type(self).__name__, unknown))
    if surrogate not in SURROGATES:
      raise ValueError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}.")
    for arg, value in (("tolerance", tolerance), ("temperature", temperature)):
      checks.number(arg, value)
    if float(temperature) == 0.0:
      raise ValueError("temperature must be > 0.")
    self.enforcement = enforcement_lib.deserialize(
        enforcement_lib.Lagrangian() if enforcement is None else enforcement)
    self.tolerance = float(tolerance)
    self.surrogate = surrogate
    self.temperature = float(temperature)
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

  def _check_dense(self, dense):
    if self.needs_dense and dense is None:
      raise ValueError(
          f"{type(self).__name__} compares against the dense model, which this model does "
          "not have (a .keras file does not store it). Call "
          "`model.set_reference_model(dense_model)` — after `load_model` too — or pack "
          "the dense model's outputs with the data: pack_group_data(x, groups, "
          "dense_outputs=dense_model.predict(x)).")

  def hard_statistics(self, y_true, y_pred, groups, sample_weight, num_groups, dense=None,
                      from_logits=None):
    """The sufficient statistics of the hard outcomes for intervals, each [T, K] float64,
    summed over replicas: (Σ w·v, Σ w·v², Σ w, Σ w², rows), over the rows each term
    counts (`intervals.GroupSums`). Measured outside the training step (held-out sets);
    the first and third are the hard sums and counts the multipliers read."""
    if from_logits is None:
      from_logits = bool(self.from_logits)
    self._check_dense(dense)
    groups = tf.reshape(tf.cast(groups, tf.int32), [-1])
    weights = tf.cast(outcomes.example_weights(sample_weight, groups), tf.float64)
    out = [[] for _ in range(5)]
    for _, hard_v, eligible in self.terms(y_true, y_pred, from_logits, dense):
      eligible = tf.cast(eligible, tf.float64)
      w = weights * eligible
      hard_v = tf.cast(hard_v, tf.float64)
      for i, (values, per_row) in enumerate(((hard_v, w), (tf.square(hard_v), w),
                                             (tf.ones_like(w), w), (w, w),
                                             (tf.ones_like(w), tf.cast(eligible > 0,
                                                                       tf.float64)))):
        out[i].append(outcomes.group_sums(values, groups, per_row, num_groups, tf.float64))
    return tuple(tf.stack(o) for o in out)

  def statistics(self, y_true, y_pred, groups, sample_weight, num_groups, dense=None,
                 from_logits=None):
    """Per-group sums and counts, summed over replicas: (smooth, hard, counts), [T, K]."""
    if from_logits is None:
      from_logits = bool(self.from_logits)
    self._check_dense(dense)
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

  def row_weight_scale(self, counts):
    """Per one-sided constraint rate_i − rate_j, 4·p_i·p_j/(p_i + p_j) (p: the groups'
    shares of the term's rows; `Lagrangian(per_row=True)`): the weights its term puts on
    one row of each group then sum to what they are for two equal groups (1 there)."""
    shares = tf.math.divide_no_nan(counts, tf.reduce_sum(counts, -1, keepdims=True))
    return tf.math.divide_no_nan(4.0 * shares[..., :, None] * shares[..., None, :],
                                 shares[..., :, None] + shares[..., None, :])

  def standard_errors(self, counts):
    """A bound on each constraint value's sampling error: 0.5/√n per group (Bernoulli)."""
    se = 0.5 * tf.math.rsqrt(tf.maximum(counts, 1.0))
    return tf.sqrt(tf.square(se)[..., :, None] + tf.square(se)[..., None, :])

  def measure(self, hard_sums, counts):
    """The hard gap (what is reported and bounded): the largest constraint value."""
    values, valid = self.values(hard_sums, counts)
    return tf.reduce_max(tf.where(valid, values, 0.0))

  # ------------------------------------------------------------ serialisation
  def get_config(self):
    return {"tolerance": self.tolerance,
            "enforcement": enforcement_lib.serialize(self.enforcement),
            "surrogate": self.surrogate, "temperature": self.temperature,
            "from_logits": self.from_logits, "positive_class": self.positive_class,
            "name": self.name}

  @classmethod
  def from_config(cls, config):
    # Files saved with the pre-rule spelling (mode=, weight=, ...) load as their rule;
    # a rule's settings the file lacks are those it trained with (`saved_before`).
    config = enforcement_lib.legacy_config(config)
    if isinstance(config.get("enforcement"), dict):
      config = {**config, "enforcement": enforcement_lib.deserialize(config["enforcement"],
                                                                     saved=True)}
    return cls(**config)

  def __repr__(self):
    args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
    return f"{type(self).__name__}({args})"


def _unknown_arguments(cls_name, unknown):
  """The TypeError message for unknown constructor arguments: the rule's settings
  (the pre-rule spelling) are named with their `enforcement=` equivalent."""
  legacy = {k: v for k, v in unknown.items() if k in enforcement_lib.LEGACY_ARGS}
  others = sorted(set(unknown) - set(legacy))
  if others:
    return f"{cls_name} got unexpected argument(s) {others}."
  given = sorted(legacy)
  if "mode" not in legacy:  # The rule whose settings these are (Lagrangian if both's).
    legacy["mode"] = next((name for name, rule in enforcement_lib.RULES.items()
                           if set(legacy) <= set(rule().get_config())), "lagrangian")
  try:
    rule = enforcement_lib.deserialize(enforcement_lib.legacy_config(legacy, saved=False)[
        "enforcement"])
    spelled = f"enforcement={rule!r}"
  except ValueError as err:
    spelled = f"enforcement=Lagrangian(...) or enforcement=Penalty(...) ({err})"
  return (f"{cls_name} takes its rule's settings in the rule, not as {given}: "
          f"pass {spelled}.")


def _all(values):
  return tf.ones_like(values)


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
  audit_gap = "performance_gap"

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
  audit_gap = "degradation_gap"


class _PerGroupDegradation(_DegradationBase):
  """A one-sided constraint per group (not per pair): one multiplier and one standard
  error per group."""

  def multiplier_shape(self, num_groups):
    return (self.num_terms, num_groups)

  def row_weight_scale(self, counts):
    """2·p_g: a term on one group weighs each of its rows as a term on one of two equal
    groups does (p_g: the group's share of the term's rows)."""
    return 2.0 * tf.math.divide_no_nan(counts, tf.reduce_sum(counts, -1, keepdims=True))

  def standard_errors(self, counts):
    return 0.5 * tf.math.rsqrt(tf.maximum(counts, 1.0))


class ExcessDegradation(_PerGroupDegradation):
  """"Do no harm": no group loses more than ε beyond the average loss (Balancing Act).

  ψ_g = R_g − R, with R_g the accuracy group g lost against the dense model and R the
  overall loss; the constraint is max_g ψ_g ≤ ε. One-sided: a group that loses less
  than average (or gains) is never penalised, so it does not fight an accuracy-gap
  constraint the way the two-sided `DegradationFairness` does.

  Args:
    detach_average: Whether the loss term treats R as a fixed reference (default): the
      gradient of ψ_g then only helps group g. Without it, the gradient of −R pushes
      every other row's loss *up*; with many binding groups (20 class × colour groups of
      colored Fashion-MNIST) that collapsed training (BENCHMARKS.md, "Intersectional
      groups", the rows before the selection guard). Balancing Act's code has the same
      switch (`detach_model_constraint_contribution`). The measured ψ_g is the same
      either way. A file saved before this option existed loads with False.
    **kwargs: As for `FairnessConstraint`.

  Example:

  ```python
  pruned = tf_fairprune.fair_prune_wrapper(
      dense, 0.95, fairness=[tf_fairprune.fairness.ExcessDegradation(tolerance=0.01)])
  ```
  """

  default_name = "max_excess_gap"
  audit_gap = "max_excess_gap"
  kind = "excess"

  def __init__(self, *args, detach_average=True, **kwargs):
    super().__init__(*args, **kwargs)
    self.detach_average = bool(detach_average)

  def values(self, sums, counts):
    return outcomes.excesses(sums, counts, detach_average=self.detach_average)

  def get_config(self):
    return {**super().get_config(), "detach_average": self.detach_average}

  @classmethod
  def from_config(cls, config):
    # A file saved before the option existed trained with the average attached: it
    # resumes as it was.
    return super().from_config({"detach_average": False, **config})



class MaxGroupLoss(_PerGroupDegradation):
  """A floor for every group: no group loses more than ε of accuracy against the dense
  model, max_g R_g ≤ ε.

  Parity constraints (`PerformanceFairness`, `DemographicParity`, ...) can be met by
  making the better-served group worse off (levelling down). Adding this floor keeps
  every group's loss against the dense model within ε, so a gap can only close as far as
  that allows. `ExcessDegradation` bounds each group's loss *beyond the average*; this
  bounds the loss itself.

  Example:

  ```python
  fairness = [PerformanceFairness(tolerance=0.03), MaxGroupLoss(tolerance=0.02)]
  pruned = tf_fairprune.fair_prune_wrapper(dense, 0.9, fairness=fairness)
  ```
  """

  default_name = "max_group_loss"
  audit_gap = "max_group_loss"
  kind = "group"

  def values(self, sums, counts):
    return tf.math.divide_no_nan(sums, counts), counts > 0



class DemographicParity(FairnessConstraint):
  """Gap in selection rate P(ŷ = positive) between groups (fairlearn's name)."""

  default_name = "demographic_parity_gap"
  audit_gap = "demographic_parity_difference"

  def terms(self, y_true, y_pred, from_logits, dense):
    smooth, hard = self._positive(y_pred, from_logits)
    return [(smooth, hard, _all(hard))]


class EqualOpportunity(FairnessConstraint):
  """Gap in true-positive rate between groups."""

  default_name = "equal_opportunity_gap"
  audit_gap = "equal_opportunity_difference"

  def terms(self, y_true, y_pred, from_logits, dense):
    smooth, hard = self._positive(y_pred, from_logits)
    return [(smooth, hard, outcomes.label_positive(y_true, y_pred, self.positive_class))]


class EqualizedOdds(FairnessConstraint):
  """The larger of the TPR gap and the FPR gap between groups (fairlearn's definition)."""

  default_name = "equalized_odds_gap"
  audit_gap = "equalized_odds_difference"
  num_terms = 2

  def terms(self, y_true, y_pred, from_logits, dense):
    smooth, hard = self._positive(y_pred, from_logits)
    positive = outcomes.label_positive(y_true, y_pred, self.positive_class)
    return [(smooth, hard, positive), (smooth, hard, 1.0 - positive)]


# Registered with each flavour's Keras (flavour_*.py), so .keras files hold them.
CONSTRAINTS = (PerformanceFairness, DegradationFairness, ExcessDegradation, MaxGroupLoss,
               DemographicParity, EqualOpportunity, EqualizedOdds)
