"""The fairness objective of a model: constraints → statistics → rule states → losses.

`training.py` asks this module for three things per step: the group statistics of a
batch (`batch_statistics`, which also calls the reference model when a degradation
constraint needs it), the fairness loss of each level, scaled per replica (`level_losses`), and, after a
finite step, the update of the rules' states and the running rates (`update`). With
held-out data (`held_out.HeldOutFairness`) the rules read the held-out set's rates
instead (`apply_held_out`), measured every few steps outside the step. A constraint
(`constraints.py`) defines the gap; its rule (`enforcement.py`) owns its state, loss
term and update; this module makes the state's variables as model weights, keeps the
measured rates the rules read, and assigns what the rules return.
"""

import collections
import warnings

import numpy as np
import tensorflow as tf

from tf_fairprune import config as config_lib
from tf_fairprune import groups as groups_lib
from tf_fairprune.fairness import constraints as constraints_lib

# Where the dense model's side of a degradation constraint comes from (packed with the
# data, or the reference model's outputs); defined with the packing, in groups.py.
DenseReference = groups_lib.DenseReference

LEVELS = config_lib.LEVELS

# The fairness loss of each level (None: that level gets no fairness term), and whether
# both get the same term.
LevelLosses = collections.namedtuple("LevelLosses", "weights mask shared")


def _check_constraints(fairness):
  if isinstance(fairness, constraints_lib.FairnessConstraint):
    fairness = [fairness]
  if fairness is None:
    fairness = []
  if isinstance(fairness, (str, bytes)) or not hasattr(fairness, "__iter__"):
    raise TypeError("fairness must be a list of tf_fairprune.fairness constraints "
                    f"(e.g. [PerformanceFairness()]), got {fairness!r}.")
  fairness = list(fairness)
  for c in fairness:
    if not isinstance(c, constraints_lib.FairnessConstraint):
      raise TypeError("fairness must be a list of tf_fairprune.fairness constraints "
                      f"(e.g. PerformanceFairness()), got {c!r}.")
  names = [c.name for c in fairness]
  if len(set(names)) != len(names):
    raise ValueError(f"Fairness constraints need distinct names, got {names}.")
  return fairness


def _check_levels(fairness_on):
  if fairness_on is None:
    raise ValueError(f"fairness_on must be a subset of {LEVELS} (() for none), got None.")
  if isinstance(fairness_on, str):
    fairness_on = (fairness_on,)
  fairness_on = tuple(fairness_on)
  if not set(fairness_on) <= set(LEVELS):
    raise ValueError(f"fairness_on must be a subset of {LEVELS}, got {fairness_on!r}.")
  return fairness_on


def conflicts(fairness):
  """Pairs of constraints that pull against each other when the dense model is unfair."""
  perf = [c for c in fairness if isinstance(c, constraints_lib.PerformanceFairness)]
  degr = [c for c in fairness if isinstance(c, constraints_lib.DegradationFairness)]
  return [(p, d) for p in perf for d in degr]


class FairnessObjective:
  """The constraints of one model, their rules' states and running rates.

  Args:
    owner: The Keras model; its `add_weight` creates the rules' state (the
      multipliers) and the running rates, so they are saved with the model and
      replicated under a strategy.
    fairness: A constraint or a list of constraints.
    fairness_on: Levels whose loss gets the fairness terms.
    num_groups: K.

  Raises:
    TypeError: If `fairness` holds something that is not a constraint.
    ValueError: For duplicate names or unknown levels.
  """

  def __init__(self, owner, fairness, fairness_on, num_groups):
    self.constraints = _check_constraints(fairness)
    self.fairness_on = _check_levels(fairness_on)
    self.num_groups = num_groups
    for perf, degr in conflicts(self.constraints):
      warnings.warn(
          f"tf_fairprune: {perf.name} and {degr.name} pull in opposite directions when the "
          "dense model is unfair: with two groups the degradation gap is |D - P| (D, P: "
          "the dense and pruned accuracy gaps), so narrowing P means degrading one group "
          "more. Both can hold only if D <= ε_performance + ε_degradation; otherwise the "
          "multipliers (or squared penalties) settle on a compromise. For 'pruning must "
          "not hurt one group more' use ExcessDegradation (one-sided) instead.",
          UserWarning, stacklevel=4)
    first = owner._flavour.first_replica()  # pylint: disable=protected-access
    # Model weights, so .keras files keep them; every replica assigns the same
    # (all-reduced) values, so one replica's copy is read.
    def weight_maker(c):
      return lambda name, shape: owner.add_weight(
          name=f"{c.name}_{name}", shape=shape, initializer="zeros", trainable=False,
          aggregation=first)
    # Each rule's state (Lagrangian: its multipliers; Penalty: none), made first: the
    # order of a .keras file's weights.
    self.states = [c.enforcement.init(c, num_groups, weight_maker(c))
                   for c in self.constraints]
    self.running_hard = [
        owner.add_weight(name=f"{c.name}_running_hard", shape=(c.num_terms, num_groups),
                         initializer="zeros", trainable=False, aggregation=first)
        for c in self.constraints]
    self.running_counts = [
        owner.add_weight(name=f"{c.name}_running_counts", shape=(c.num_terms, num_groups),
                         initializer="zeros", trainable=False, aggregation=first)
        for c in self.constraints]
    self.from_logits = [c.from_logits for c in self.constraints]
    self.loss_from_logits = False
    # Held-out steering (`HeldOutFairness`): a value the traced step reads, so one trace
    # serves both modes. While True the running rates hold the held-out set's rates and
    # only `apply_held_out` moves them and the multipliers; `held_out_tolerances` holds
    # each one-sided constraint's tolerance there. Transient state of a `fit`: plain
    # variables, not model weights (never saved), made in the owner's strategy scope.
    with owner.distribute_strategy.scope():
      self._held_out = tf.Variable(False, trainable=False, name="held_out_mode")
      self.held_out_tolerances = [
          tf.Variable(tf.fill(c.multiplier_shape(num_groups), c.tolerance), trainable=False,
                      name=f"{c.name}_held_out_tolerance")
          for c in self.constraints]
    self._apply_held_out_traced = None  # apply_held_out's tf.function, made on first use.

  @property
  def held_out(self):
    """Whether the step reads held-out rates (a Python bool)."""
    return bool(self._held_out.numpy())

  @held_out.setter
  def held_out(self, value):
    value = bool(value)
    if not value and self.held_out:
      # The running rates hold the held-out set's totals: a later fit on training rates
      # starts from none rather than decaying from them.
      for var in self.running_hard + self.running_counts:
        var.assign(tf.zeros_like(var))
    self._held_out.assign(value)

  @property
  def multipliers(self):
    """Per constraint, the multipliers its rule applies (zeros for a fixed weight)."""
    return [c.enforcement.multipliers(c, state, self.num_groups)
            for c, state in zip(self.constraints, self.states)]

  @property
  def variables(self):
    """The rules' states and the running rates (updated only after a finite step)."""
    return tf.nest.flatten(self.states) + self.running_hard + self.running_counts

  def __bool__(self):
    return bool(self.constraints)

  @property
  def needs_dense(self):
    return any(c.needs_dense for c in self.constraints)

  def resolve_from_logits(self, loss_from_logits):
    """Constraints that do not say take `from_logits` from the compiled loss (the one
    place where it is resolved for training)."""
    self.loss_from_logits = bool(loss_from_logits)
    self.from_logits = [self.loss_from_logits if c.from_logits is None else bool(c.from_logits)
                        for c in self.constraints]

  @property
  def metric_from_logits(self):
    """How the per-group accuracy metric reads the outputs: as the first constraint
    does, else as the compiled loss does."""
    return self.from_logits[0] if self.constraints else self.loss_from_logits

  def statistics(self, y, y_pred, sample_weight, groups, dense):
    """Per constraint: (smooth sums, hard sums, counts), each [T, K], all-reduced."""
    return [c.statistics(y, y_pred, groups, sample_weight, self.num_groups,
                         dense=dense if c.needs_dense else None, from_logits=logits)
            for c, logits in zip(self.constraints, self.from_logits)]

  def _training_reference(self, i, hard, counts):
    """The running training rates including this batch (the batch alone with
    `rate_decay=0`)."""
    decay = self.constraints[i].enforcement.rate_decay
    if decay == 0.0:
      return hard, counts
    return (decay * self.running_hard[i] + hard, decay * self.running_counts[i] + counts)

  def _reference(self, i, hard, counts):
    """The hard sums and counts the rules read: the held-out rates last measured
    (held-out mode), else the running training rates including this batch."""
    train_h, train_c = self._training_reference(i, hard, counts)
    return (tf.where(self._held_out, self.running_hard[i], train_h),
            tf.where(self._held_out, self.running_counts[i], train_c))

  def batch_statistics(self, labels, y_pred, sample_weight, groups, dense, reference=None):
    """`statistics` of a training or test batch. Without dense outputs packed with the
    data, a degradation constraint reads the reference model's: `reference()` returns
    them for this batch (called only when a constraint needs them; no gradient flows
    into the reference model)."""
    if not self.constraints:
      return []
    if self.needs_dense and dense is None and reference is not None:
      dense = DenseReference(outputs=tf.stop_gradient(reference()))
    return self.statistics(labels, y_pred, sample_weight, groups, dense)

  def level_losses(self, stats, num_replicas=1):
    """The fairness loss of each level: a `LevelLosses(weights, mask, shared)`.

    `shared` says both levels get the same term (then one backward pass serves both,
    `bilevel.joint_gradients`). Each term is divided by `num_replicas`, as Keras'
    compiled loss is: the gap is formed from all-reduced group sums, and the
    all-reduce's gradient sums the replicas' upstream gradients, so 1/R gives exactly
    the one-device gradient.
    """
    both_or_neither = ("weights" in self.fairness_on) == ("mask" in self.fairness_on)
    if not self.constraints or not self.fairness_on:
      return LevelLosses(None, None, True)
    terms = [c.enforcement.loss(c, self.states[i], smooth, counts,
                                *self._reference(i, hard, counts), held_out=self._held_out,
                                tolerances=self.held_out_tolerances[i])
             for i, (c, (smooth, hard, counts)) in enumerate(zip(self.constraints, stats))]
    total = tf.add_n(terms)
    if num_replicas > 1:
      total = total / num_replicas
    return LevelLosses(total if "weights" in self.fairness_on else None,
                       total if "mask" in self.fairness_on else None,
                       both_or_neither)

  def update(self, stats, finite):
    """After a training step, if `finite`: running rates, then each rule's update
    (nothing in held-out mode: `apply_held_out` moves them)."""
    keep_going = tf.logical_and(finite, tf.logical_not(self._held_out))
    for i, (c, (_, hard, counts)) in enumerate(zip(self.constraints, stats)):
      ref_h, ref_c = self._training_reference(i, hard, counts)
      state = self.states[i]
      updates = [(self.running_hard[i], ref_h), (self.running_counts[i], ref_c)]
      updates += _pairs(state, c.enforcement.update(c, state, ref_h, ref_c))
      for var, new in updates:
        var.assign(tf.where(keep_going, new, var))

  def without_stateless_multipliers(self, store):
    """A saved model's own weights (`store`: "0", "1", ... → values) in the current
    layout if they have the pre-rule one (see `load_own_variables`), else None."""
    stateless = [i for i, state in enumerate(self.states) if not tf.nest.flatten(state)]
    count, num_constraints = len(store.keys()), len(self.constraints)
    start = count - 3 * num_constraints  # [λ per constraint] + running hard + counts.
    if not stateless or start < 0:
      return None
    for i in stateless:
      value = np.asarray(store[str(start + i)])
      if (value.shape != tuple(self.constraints[i].multiplier_shape(self.num_groups))
          or np.any(value)):
        return None
    kept = [j for j in range(count) if j - start not in stateless]
    return {str(new): np.asarray(store[str(old)]) for new, old in enumerate(kept)}

  def apply_held_out(self, measured, steps, back_off=False, tolerances=None):
    """One held-out measurement: store its rates and take each rule's update.

    Args:
      measured: Per constraint, (hard sums, counts) [T, K] on the held-out set.
      steps: Training steps since the previous measurement (the update covers them).
      back_off: The accuracy floor was hit: each rule backs off instead (`back_off`:
        the Lagrangian halves its multipliers), and the rates are cleared, which drops
        the proportional push until the next measurement.
      tolerances: Per constraint, the tolerance of each one-sided constraint on this set
        (`multiplier_shape`: ε, or the half-width of its interval where the set cannot
        resolve ε); None: ε everywhere.
    """
    measured = [(np.asarray(hard, np.float32), np.asarray(counts, np.float32))
                for hard, counts in measured]
    if tolerances is None:
      tolerances = [np.full(c.multiplier_shape(self.num_groups), c.tolerance, np.float32)
                    for c in self.constraints]
    tolerances = [np.asarray(t, np.float32) for t in tolerances]
    # One traced call instead of ~10 eager ops per constraint. `steps` and `back_off`
    # stay Python values (as in the eager form, where lr · steps is a Python product):
    # one trace per value met, a handful per run. The constraints' configuration is an
    # argument too, so a changed rule traces again instead of being missed.
    if self._apply_held_out_traced is None:
      self._apply_held_out_traced = tf.function(self._apply_held_out)
    self._apply_held_out_traced(measured, tolerances, float(steps), bool(back_off),
                                tuple(repr(c) for c in self.constraints))

  def _apply_held_out(self, measured, tolerances, steps, back_off, unused_config=None):
    for i, (c, (hard, counts), tol) in enumerate(zip(self.constraints, measured, tolerances)):
      self.held_out_tolerances[i].assign(tol)
      state = self.states[i]
      if back_off:
        new = c.enforcement.back_off(state)
        hard, counts = tf.zeros_like(hard), tf.zeros_like(counts)
      else:
        new = c.enforcement.update(c, state, hard, counts, held_out=True, steps=float(steps),
                                   tolerances=tol)
      for var, value in _pairs(state, new):
        var.assign(value)
      self.running_hard[i].assign(hard)
      self.running_counts[i].assign(counts)


def load_own_variables(load, objective, store):
  """Loads a model's own weights with `load(store)` (Keras' `load_own_variables`), also
  from a .keras file saved before enforcement rules owned their state.

  Such files hold a multiplier for every constraint, also for rules that have none
  (`Penalty`: always zero): the model's own weights then ended with one multiplier per
  constraint and the running rates. Those zeros are dropped (nothing is lost; saving
  again writes the current layout). Keras checks the count before assigning anything,
  so a first attempt that fails leaves the model untouched.

  Raises:
    ValueError: Keras' own error, when `store` fits neither layout.
  """
  try:
    load(store)
  except ValueError as err:
    current = objective.without_stateless_multipliers(store)
    if current is None:
      raise
    try:
      load(current)
    except ValueError:
      raise err  # pylint: disable=raise-missing-from


def _pairs(state, new_state):
  """(variable, new value) for each variable of a rule's state."""
  return list(zip(tf.nest.flatten(state), tf.nest.flatten(new_state)))
