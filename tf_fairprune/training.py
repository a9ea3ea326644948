"""The models whose `train_step` runs the bi-level (BiP / BiFP) update.

One step, on a batch (x, y[, sample_weight]):

1. Lower level: the weights θ take a step on L_w = task loss (+ regularisers) + the
   fairness terms placed at the weight level, with the masks fixed.
2. Upper level: the scores s take a step on L_m = task loss + the fairness terms
   placed at the mask level, through the straight-through gradient g_s, plus the
   implicit-gradient term of BiP: IG = -(1/γ) (∂L_m/∂z) ⊙ (∂L_m/∂θ), z = m ⊙ θ.
   Because ∂L_m/∂θ = (∂L_m/∂z) ⊙ m, IG = -(1/γ) (∂L_m/∂θ)² exactly, so it needs no
   extra backward pass.
3. The masks are re-ranked from the new scores at the sparsity of the next step.

`update_mode="joint"` (default) takes both gradients from one forward pass at the
current (θ, s): one forward and one backward pass when both levels optimise the same
objective. `update_mode="alternating"` evaluates the upper level at the updated θ
(a second forward and backward pass), the textbook order of BiP.

A step whose loss or gradients are not finite changes nothing (no weight, score, mask
or optimizer update); `fit` then stops with a message.
"""

import warnings

import numpy as np
import tensorflow as tf

from tf_fairprune import groups as groups_lib
from tf_fairprune import masking
from tf_fairprune import pruning_schedule
from tf_fairprune._compat import keras
from tf_fairprune.fairness import objective as fairness_objective
from tf_fairprune.fairness import metrics as fair_metrics
from tf_fairprune.fairness import outcomes
from tf_fairprune.wrapper import FairPruneWrapper

# pylint: disable=g-direct-tensorflow-import,g-import-not-at-top
from tf_keras.src.engine import compile_utils
from tf_keras.src.engine import functional
from tf_keras.src.saving.legacy import serialization as legacy_serialization
# pylint: enable=g-direct-tensorflow-import,g-import-not-at-top

UPDATE_MODES = ("joint", "alternating")
MASK_SCOPES = ("global", "layer")
LEVELS = fairness_objective.LEVELS


def default_mask_optimizer():
  """The scores' optimizer when `compile` gets none: SGD(0.1, momentum 0.9) (BiP's β)."""
  return keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)


class _StepState:
  """Per-compile training state kept out of Keras attribute tracking.

  Metrics and counters assigned to a model attribute would be tracked as model
  weights (and end up in `get_weights()` and saved files); held here they are not.
  """

  def __init__(self, model):
    self.sparsity = fair_metrics.LastValue(name="sparsity")
    k = model.num_groups
    self.group_accuracy = fair_metrics.GroupRates(k, prefix="accuracy", name="group_accuracy")
    self.gaps = [fair_metrics.GroupRates(k, num_terms=c.num_terms, report="gap", name=c.name,
                                         measure=c.measure) for c in model.fairness]
    self.multipliers = [fair_metrics.LastValue(name=f"{c.name}_multiplier")
                        for c in model.fairness if c.mode == "lagrangian"]
    counter = lambda name, value=0: tf.Variable(
        value, dtype=tf.int64, trainable=False, name=name,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    # Steps run in this fit(), whether a non-finite step stopped it (1) and which step
    # that was: once halted, later steps of the same execution change nothing either
    # (with steps_per_execution > 1 they run before fit can stop).
    self.steps = counter("steps")
    self.halted = counter("halted")
    self.first_bad_step = counter("first_bad_step", -1)
    self.bad_id_batches = counter("bad_id_batches")
    self.non_finite_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                        name="non_finite_steps",
                                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


class _NonFiniteGuard(keras.callbacks.Callback):
  """Stops `fit` after a step whose loss or gradients were not finite.

  The step itself already changed nothing (see `train_step`); this reports it.
  """

  def _check_ids(self, where):
    state = self.model._step_state  # pylint: disable=protected-access
    if int(state.bad_id_batches.numpy()) > self._bad_ids_seen:
      self._bad_ids_seen = int(state.bad_id_batches.numpy())
      self.model.stop_training = True
      raise ValueError(
          f"Group ids outside [0, num_groups={self.model.num_groups}) {where}; that step "
          "changed nothing. Check the ids (pack_group_data(..., num_groups=K) checks "
          "arrays when they are packed) or build the model with a larger num_groups.")

  def on_test_begin(self, logs=None):
    self._bad_ids_seen = int(self.model._step_state.bad_id_batches.numpy())  # pylint: disable=protected-access

  def on_test_batch_end(self, batch, logs=None):
    self._check_ids(f"in evaluation batch {batch}")

  def on_train_begin(self, logs=None):
    state = self.model._step_state  # pylint: disable=protected-access
    self._bad_ids_seen = int(state.bad_id_batches.numpy())
    self._seen = int(state.non_finite_steps.numpy())
    state.steps.assign(0)
    state.halted.assign(0)
    state.first_bad_step.assign(-1)

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch
    self._epoch_start = int(self.model._step_state.steps.numpy())  # pylint: disable=protected-access

  def on_train_batch_end(self, batch, logs=None):
    state = self.model._step_state  # pylint: disable=protected-access
    self._check_ids(f"at batch {int(state.first_bad_step.numpy()) - self._epoch_start} of "
                    f"epoch {self._epoch} (counting from 0)")
    count = int(state.non_finite_steps.numpy())
    if count > self._seen:
      bad = int(state.first_bad_step.numpy())
      tf.get_logger().error(
          "tf_fairprune: the loss or its gradients became NaN/inf at batch %d of epoch %d "
          "(counting from 0); that step and every later one were skipped and training "
          "stopped. The model keeps all of its state from the last finite step: weights, "
          "scores, masks, optimizer slots, multipliers and layer statistics such as "
          "BatchNormalization's moving mean and variance. Lower the learning rates or "
          "check the data for NaN/inf.", bad - self._epoch_start, self._epoch)
      self.model.stop_training = True
      self.model.stopped_on_non_finite_loss = True
      self._seen = count


def _num_replicas():
  ctx = tf.distribute.get_replica_context()
  return ctx.num_replicas_in_sync if ctx is not None else 1


def _under_strategy():
  """True inside a tf.distribute strategy, even one with a single replica: its
  mirrored variables synchronise through merge calls, which may not sit in a cond."""
  return tf.distribute.has_strategy() and tf.distribute.get_replica_context() is not None


def _replica_sum(value):
  """Sum over replicas (identity on one device)."""
  return outcomes.all_reduce_sum(value)


def _all_finite(tensors):
  """True when every tensor is finite on every replica (the same answer on all)."""
  checks = [tf.reduce_all(tf.math.is_finite(t)) for t in tensors if t is not None]
  local = tf.reduce_all(tf.stack(checks)) if checks else tf.constant(True)
  if _num_replicas() > 1:
    return tf.equal(_replica_sum(1.0 - tf.cast(local, tf.float32)), 0.0)
  return local


class _UnwrapPreventer:
  """Keeps a strategy from unwrapping mirrored variables passed through merge_call."""

  __slots__ = ["value"]

  def __init__(self, value):
    self.value = value


class BiLevelTrainingMixin:
  """The bi-level `train_step` shared by `FairPruneModel` and its functional form."""

  # ---------------------------------------------------------------- configuration
  def _init_fair_pruning(self, target_sparsity, mask_scope, implicit_gradient_scale,
                         update_mode, mask_update_frequency=1, fairness=(),
                         fairness_on=LEVELS, num_groups=2, source_class=None):
    if mask_scope not in MASK_SCOPES:
      raise ValueError(f"mask_scope must be one of {MASK_SCOPES}, got {mask_scope!r}.")
    if update_mode not in UPDATE_MODES:
      raise ValueError(f"update_mode must be one of {UPDATE_MODES}, got {update_mode!r}.")
    scale = float(implicit_gradient_scale)
    if not np.isfinite(scale) or scale < 0:
      raise ValueError(f"implicit_gradient_scale (1/γ) must be >= 0, got {implicit_gradient_scale!r}.")
    if (isinstance(mask_update_frequency, bool) or not isinstance(mask_update_frequency, int)
        or mask_update_frequency < 1):
      raise ValueError("mask_update_frequency must be a positive integer, got "
                       f"{mask_update_frequency!r}.")
    self.mask_update_frequency = mask_update_frequency
    self._init_fairness(fairness, fairness_on, num_groups)
    self.target_sparsity = pruning_schedule.validate(target_sparsity)
    self.mask_scope = mask_scope
    self.implicit_gradient_scale = scale
    self.update_mode = update_mode
    self._source_class = source_class
    self.mask_optimizer = None
    self.stopped_on_non_finite_loss = False
    self._upper_loss = None

  def _init_fairness(self, fairness, fairness_on, num_groups):
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 2:
      raise ValueError(f"num_groups must be an integer >= 2, got {num_groups!r}.")
    object.__setattr__(self, "_objective", fairness_objective.FairnessObjective(
        self, fairness, fairness_on, num_groups))  # Untracked: its variables are the model's.
    self.num_groups = num_groups
    object.__setattr__(self, "_reference_model", None)  # Untracked: never saved/trained.

  @property
  def fairness(self):
    """The model's fairness constraints (a list)."""
    return self._objective.constraints

  @property
  def fairness_on(self):
    """The levels whose loss gets the fairness terms."""
    return self._objective.fairness_on

  @property
  def fairness_multipliers(self):
    """One Lagrange multiplier variable per constraint (0 in penalty mode)."""
    return self._objective.multipliers

  def set_reference_model(self, model):
    """Sets the dense model that degradation constraints compare against.

    The model is only called (in inference mode, without gradients); it is neither
    trained nor changed. A `.keras` file does not store it: set it again after
    `load_model` (or pack the dense outputs with the data).

    Args:
      model: The dense `tf_keras` model, or None.
    """
    object.__setattr__(self, "_reference_model", model)
    # The traced steps captured the previous reference: trace them again.
    self.train_function = self.test_function = None

  def fair_pruning_config(self):
    """The pruning arguments of this model, JSON-serializable."""
    return {
        "target_sparsity": pruning_schedule.serialize(self.target_sparsity),
        "mask_scope": self.mask_scope,
        "implicit_gradient_scale": self.implicit_gradient_scale,
        "update_mode": self.update_mode,
        "mask_update_frequency": self.mask_update_frequency,
        "fairness": [keras.saving.serialize_keras_object(c) for c in self.fairness],
        "fairness_on": list(self.fairness_on),
        "num_groups": self.num_groups,
        "source_class": self._source_class,
    }

  @staticmethod
  def _fair_pruning_kwargs(config):
    config = dict(config)
    config["target_sparsity"] = pruning_schedule.deserialize(config["target_sparsity"])
    config["fairness"] = [keras.saving.deserialize_keras_object(c)
                          for c in config.get("fairness", [])]
    return config

  # ---------------------------------------------------------------- pruning state
  @property
  def fair_prune_wrappers(self):
    """All `FairPruneWrapper` layers of the model, nested models included, in order."""
    return [l for l in self._flatten_layers(include_self=False, recursive=True)  # pylint: disable=protected-access
            if isinstance(l, FairPruneWrapper)]

  def _built_wrappers(self):
    return [w for w in self.fair_prune_wrappers if w.score_variables]

  def _pruning_variables(self):
    """(weights θ-level trainables, scores, prunable θ aligned with scores, masks)."""
    wrappers = self._built_wrappers()
    scores = [s for w in wrappers for s in w.score_variables]
    thetas = [v for w in wrappers for v in w.prunable_weights]
    masks = [m for w in wrappers for m in w.mask_variables]
    score_refs = {s.ref() for s in scores}
    weights = [v for v in self.trainable_variables if v.ref() not in score_refs]
    return weights, scores, thetas, masks

  def _step(self):
    opt = getattr(self, "optimizer", None)
    return opt.iterations if opt is not None else tf.constant(0, tf.int64)

  def sparsity_at(self, step=None):
    """Target sparsity at `step` (default: the current training step)."""
    return pruning_schedule.sparsity_at(self.target_sparsity, self._step() if step is None else step)

  def _assign_masks(self, step, keep=None):
    _, scores, _, masks = self._pruning_variables()
    if not scores:
      return
    # Scatter-based histograms compile poorly under XLA; bisection gives the same mask.
    method = "bisect" if getattr(self, "_jit_compile", False) else "histogram"
    wrappers = self._built_wrappers()
    if any(w.is_structured for w in wrappers):
      structures = [w.structure for w in wrappers for _ in w.score_variables]
      new = masking.structured_masks(scores, self.sparsity_at(step), structures,
                                     scope=self.mask_scope, method=method)
    else:
      new = masking.topk_masks(scores, self.sparsity_at(step), scope=self.mask_scope,
                               method=method)
    for var, value in zip(masks, new):
      var.assign(value if keep is None else tf.where(keep, var, value))

  def update_masks(self):
    """Re-ranks the masks from the current scores at the current step's sparsity."""
    self._assign_masks(self._step())

  def rescale_to_masks(self):
    """Multiplies each prunable tensor θ by ‖θ‖ / ‖m ⊙ θ‖ under its current mask.

    Keeps each layer's weight norm — the scale of its output for white inputs — as
    it was before pruning. Without it a 99%-sparse network starts almost silent
    (outputs ~1/100 of the dense model's through three layers), its gradients are
    as small, and a short run ended as the constant majority predictor; with it the
    same run recovered the dense accuracy. Masks and scores are unchanged.
    """
    _, _, thetas, masks = self._pruning_variables()
    for theta, mask in zip(thetas, masks):
      kept = tf.norm(tf.cast(theta, tf.float32) * mask)
      gain = tf.math.divide_no_nan(tf.norm(tf.cast(theta, tf.float32)), kept)
      theta.assign(theta * tf.cast(tf.where(kept > 0, gain, 1.0), theta.dtype))

  def measured_sparsity(self):
    """Fraction of prunable weights whose mask is 0, as a float32 tensor."""
    _, _, _, masks = self._pruning_variables()
    if not masks:
      return tf.constant(0.0)
    kept = tf.add_n([tf.reduce_sum(m) for m in masks])
    total = float(sum(int(np.prod(m.shape)) for m in masks))
    return 1.0 - kept / total

  # ---------------------------------------------------------------- compile / fit
  def compile(self, optimizer="rmsprop", loss=None, metrics=None, mask_optimizer=None,
              **kwargs):
    """Configures the model for bi-level training.

    Args:
      optimizer: Optimizer of the weights (lower level), as in `keras.Model.compile`.
      loss: The task loss, as in `keras.Model.compile`.
      metrics: Metrics, as in `keras.Model.compile`.
      mask_optimizer: Optimizer of the mask scores (upper level). Defaults to
        `SGD(learning_rate=0.1, momentum=0.9)`. Must be a different object from
        `optimizer` (the two keep separate slots).
      **kwargs: Other arguments of `keras.Model.compile` (`loss_weights`,
        `weighted_metrics`, `run_eagerly`, `steps_per_execution`, `jit_compile`).

    Raises:
      ValueError: If `mask_optimizer` is the same object as `optimizer`.
    """
    super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)
    if mask_optimizer is None:
      mask_optimizer = default_mask_optimizer()
    with self.distribute_strategy.scope():
      mask_optimizer = keras.optimizers.get(mask_optimizer)
    if mask_optimizer is self.optimizer:
      raise ValueError("`mask_optimizer` must be a different optimizer object from "
                       "`optimizer`: weights and scores keep separate optimizer slots.")
    self.mask_optimizer = mask_optimizer
    self._compile_config.config["mask_optimizer"] = mask_optimizer
    self._loss_spec = (loss, kwargs.get("loss_weights"))
    self._upper_loss = None
    if self.built:
      # Build both optimizers on their own variables now, so that loaders that
      # build `optimizer` on all trainable variables (legacy .h5) find it built.
      self._build_optimizers()
    # Keras semantics: a loss that does not say (e.g. a string) takes probabilities.
    self._loss_from_logits = bool(outcomes.loss_from_logits(loss))
    self._objective.resolve_from_logits(self._loss_from_logits)
    with self.distribute_strategy.scope():
      object.__setattr__(self, "_step_state", _StepState(self))  # Untracked on purpose.

  def save(self, filepath, *args, **kwargs):  # pylint: disable=missing-function-docstring
    save_format = kwargs.get("save_format") or (args[1] if len(args) > 1 else None)
    path = str(filepath)
    keras_format = save_format == "keras" or (save_format is None and path.endswith(".keras"))
    if not keras_format:
      kind = ".h5" if save_format in ("h5", "hdf5") or path.endswith((".h5", ".hdf5")) \
          else "a SavedModel directory"
      raise ValueError(
          f"tf_fairprune: a model being fair-pruned saves as .keras only, not as {kind} "
          f"({path}): .h5 keeps neither the mask optimizer nor the fairness constraints' "
          "state (training would not resume where it stopped), and a SavedModel does not "
          "reload its training metrics. Save it as .keras (model.save('model.keras')); for "
          "serving, strip it first (strip_fair_pruning) — a plain model saves in any "
          "format. Nothing was written.")
    return super().save(filepath, *args, **kwargs)

  save.__doc__ = keras.Model.save.__doc__

  def compile_from_config(self, config):
    self.compile(**keras.saving.deserialize_keras_object(config))

  def _build_optimizers(self):
    weights, scores, _, _ = self._pruning_variables()
    self.optimizer.build(weights)
    self.mask_optimizer.build(scores)

  @property
  def metrics(self):
    metrics = super().metrics
    state = getattr(self, "_step_state", None)
    if self._is_compiled and state is not None:
      metrics = metrics + [state.sparsity, state.group_accuracy] + state.gaps + state.multipliers
    return metrics

  def fit(self, *args, **kwargs):  # pylint: disable=missing-function-docstring
    if not self._is_compiled or self.mask_optimizer is None:
      raise RuntimeError("You must compile the model (with `compile(optimizer=..., "
                         "loss=..., mask_optimizer=...)`) before calling `fit`.")
    self._check_packed_groups(args[0] if args else kwargs.get("x"))
    callbacks = self._with_guard(kwargs.pop("callbacks", None))
    self.stopped_on_non_finite_loss = False
    if self.built:
      self.update_masks()
    history = super().fit(*args, callbacks=callbacks, **kwargs)
    self._warn_if_too_sparse()
    return history

  fit.__doc__ = keras.Model.fit.__doc__

  def evaluate(self, *args, **kwargs):  # pylint: disable=missing-function-docstring
    self._check_packed_groups(args[0] if args else kwargs.get("x"))
    return super().evaluate(*args, callbacks=self._with_guard(kwargs.pop("callbacks", None)),
                            **kwargs)

  evaluate.__doc__ = keras.Model.evaluate.__doc__

  @staticmethod
  def _with_guard(callbacks):
    callbacks = list(callbacks or [])
    if not any(isinstance(c, _NonFiniteGuard) for c in callbacks):
      callbacks.append(_NonFiniteGuard())
    return callbacks

  def _check_packed_groups(self, x):
    """Checks packed numpy ids at once (the in-graph check covers every other input)."""
    if not isinstance(x, dict) or groups_lib.GROUP_KEY not in x:
      return
    ids = x[groups_lib.GROUP_KEY]
    if isinstance(ids, (tf.Tensor, tf.data.Dataset)) or not hasattr(ids, "__len__"):
      return
    ids = groups_lib.check_ids(ids, self.num_groups)
    present = np.unique(ids)
    if len(present) == 1:
      warnings.warn(f"tf_fairprune: the data holds one group only (id {present[0]}): there "
                    "is nothing to compare, so every gap is 0 and fairness terms do nothing.",
                    UserWarning, stacklevel=3)

  def _warn_if_too_sparse(self):
    """Warns when a wrapped tensor keeps no weight or the sparsity misses the target."""
    wrappers = self._built_wrappers()
    empty = [f"{w.layer.name}/{v.name.split('/')[-1].split(':')[0]}"
             for w in wrappers for v, m in zip(w.prunable_weights, w.mask_variables)
             if float(tf.reduce_sum(m)) == 0.0]
    if empty:
      warnings.warn(f"tf_fairprune: {', '.join(empty)} kept no weight at all: the model's "
                    "output may no longer depend on its input (a constant predictor). "
                    "Lower the sparsity, or use mask_scope='layer'.", UserWarning, stacklevel=3)
    if not wrappers:
      return
    target = pruning_schedule.sparsity_at(self.target_sparsity, self._step())
    measured = float(self.measured_sparsity())
    if abs(measured - float(target)) > 0.02:
      warnings.warn(f"tf_fairprune: the masks remove {measured:.3f} of the prunable weights, "
                    f"not the target {float(target):.3f} (blocks or channels larger than the "
                    "layers allow?).", UserWarning, stacklevel=3)

  # ---------------------------------------------------------------- the step
  def _unpack(self, data):
    """(x, y, sample_weight, groups, dense reference, bad_ids).

    `bad_ids` is True (on every replica) when a group id is outside [0, num_groups):
    one in-graph check that works the same eagerly, in graphs and under XLA (which
    drops assertions); the step then changes nothing and fit/evaluate raise.
    """
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    x, groups, dense = groups_lib.unpack_group_data(x)
    bad_ids = tf.constant(False)
    if groups is not None:
      groups = tf.reshape(groups, [-1])
      if not groups.dtype.is_integer:
        raise ValueError(f"Group ids must be integers, got {groups.dtype.name}; pack them "
                         "with tf_fairprune.pack_group_data.")
      local = tf.reduce_any(tf.logical_or(groups < 0, groups >= self.num_groups))
      bad_ids = tf.logical_not(_all_finite([tf.where(local, float("nan"), 0.0)]))
      # In range, so that no segment sum drops or crashes on them before the check acts.
      groups = tf.cast(tf.clip_by_value(groups, 0, self.num_groups - 1), tf.int32)
    elif self.fairness:
      raise ValueError(
          "The model has fairness constraints but the data carries no group ids. Pack "
          "them with x = tf_fairprune.pack_group_data(x, groups).")
    return x, y, sample_weight, groups, dense, bad_ids

  def _fairness_statistics(self, x, y, y_pred, sample_weight, groups, dense):
    """Per constraint: (smooth sums, hard sums, counts), all [T, K]."""
    if not self._objective:
      return []
    reference = None
    if self._objective.needs_dense:
      if dense is None and self._reference_model is not None:
        dense = tf.stop_gradient(self._reference_model(x, training=False))
      if dense is not None:
        reference = (dense if isinstance(dense, fairness_objective.DenseReference)
                     else fairness_objective.DenseReference(outputs=dense))
    return self._objective.statistics(y, y_pred, sample_weight, groups, reference)

  def _update_fairness_state(self, y, y_pred, sample_weight, groups, stats, finite):
    """Metrics from group sums; multipliers and running rates after a training step."""
    state = self._step_state
    if groups is not None:
      weights = (tf.ones_like(groups, tf.float32) if sample_weight is None
                 else tf.reshape(tf.cast(sample_weight, tf.float32), [-1]))
      from_logits = self._metric_from_logits()
      correct = outcomes.hard_correct(y, y_pred, from_logits)
      state.group_accuracy.update_state(
          outcomes.group_sums(correct, groups, weights, self.num_groups)[None],
          outcomes.group_sums(tf.ones_like(weights), groups, weights, self.num_groups)[None])
    for (_, hard, counts), metric in zip(stats, state.gaps):
      metric.update_state(hard, counts)
    if finite is not None and stats:
      self._objective.update(stats, finite)
    lagrangian = [m for c, m in zip(self.fairness, self.fairness_multipliers)
                  if c.mode == "lagrangian"]
    for metric, multiplier in zip(state.multipliers, lagrangian):
      metric.update_state(tf.reduce_max(multiplier))  # The largest, in the progress bar.

  def _metric_from_logits(self):
    if self._objective:
      return bool(self._objective.from_logits[0])
    return self._loss_from_logits

  def _upper_task_loss(self, y, y_pred, sample_weight):
    """Task loss without touching the reported loss metric (second pass)."""
    if self._upper_loss is None:
      loss, loss_weights = self._loss_spec
      self._upper_loss = compile_utils.LossesContainer(
          loss, loss_weights, output_names=self.output_names)
    return self._upper_loss(y, y_pred, sample_weight)

  def _forward(self, x, y, sample_weight, groups, dense, first_pass=True):
    y_pred = self(x, training=True)
    if first_pass:
      task = self.compiled_loss(y, y_pred, sample_weight)
    else:
      task = self._upper_task_loss(y, y_pred, sample_weight)
    # compiled_loss divides by the number of replicas (gradients are summed across
    # them); terms added by hand must be scaled the same way. The fairness gap is
    # formed from all-reduced group sums, and the all-reduce's gradient sums the
    # replicas' upstream gradients, so 1/R gives exactly the one-device gradient.
    replicas = _num_replicas()
    reg = tf.add_n(self.losses) / replicas if self.losses else None
    stats = self._fairness_statistics(x, y, y_pred, sample_weight, groups, dense)
    pen_w, pen_m = self._objective.level_losses(stats)
    if replicas > 1:
      scaled = {id(p): p / replicas for p in (pen_w, pen_m) if p is not None}
      pen_w = scaled.get(id(pen_w))
      pen_m = scaled.get(id(pen_m))  # Same object again when both levels share it.
    return y_pred, task, reg, pen_w, pen_m, stats

  @staticmethod
  def _plus(*terms):
    terms = [t for t in terms if t is not None]
    return tf.add_n(terms) if len(terms) > 1 else terms[0]

  def _score_gradients(self, g_s, g_theta):
    if self.implicit_gradient_scale == 0.0:
      return g_s
    scale = self.implicit_gradient_scale
    replicas = _num_replicas()
    out = []
    for gs, gt in zip(g_s, g_theta):
      if gt is None:
        out.append(gs)
        continue
      # IG is quadratic in ∂L/∂θ: square the gradient summed over replicas, then
      # share it out so that the optimizer's replica sum gives it back once.
      gt = _replica_sum(tf.cast(gt, gs.dtype)) if replicas > 1 else tf.cast(gt, gs.dtype)
      out.append(gs - scale * tf.square(gt) / replicas)
    return out

  def _apply(self, finite, optimizer, grads, variables):
    """Applies the gradients only when `finite` (identical on every replica)."""
    pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
    if not pairs:
      return
    ctx = tf.distribute.get_replica_context()
    if not _under_strategy():
      def apply():
        optimizer.apply_gradients(pairs)
        return tf.constant(True)
      tf.cond(finite, apply, lambda: tf.constant(False))
      return
    # Under a strategy a cond may not contain the optimizer's cross-replica merge:
    # aggregate first (as Keras' LossScaleOptimizer does), then apply without it.
    pairs = optimizer.aggregate_gradients(pairs)
    grads_only = [g for g, _ in pairs]
    wrapped = _UnwrapPreventer([v for _, v in pairs])
    def apply_fn(grads=grads_only):
      optimizer.apply_gradients(list(zip(grads, wrapped.value)),
                                skip_gradients_aggregation=True)
    if tf.__internal__.distribute.strategy_supports_no_merge_call():
      tf.__internal__.smart_cond.smart_cond(finite, apply_fn, lambda: None)
    else:
      def cross_replica(distribution, finite, grads):
        # `finite` was agreed on by all replicas; any replica's copy will do.
        finite = distribution.experimental_local_results(finite)[0]
        tf.__internal__.smart_cond.smart_cond(
            finite, lambda: distribution.extended.call_for_each_replica(apply_fn, args=(grads,)),
            lambda: None)
      ctx.merge_call(cross_replica, args=(finite, grads_only))

  def train_step(self, data):
    x, y, sample_weight, groups, dense, bad_ids = self._unpack(data)
    fwd = (x, y, sample_weight, groups, dense)
    weights, scores, thetas, _ = self._pruning_variables()
    if not scores:
      raise ValueError("The model has no built FairPruneWrapper layers: nothing to prune.")
    self._build_optimizers()
    nw = len(weights)
    state = self._step_state
    running = tf.logical_and(tf.equal(state.halted, 0), tf.logical_not(bad_ids))
    # Layer state the forward pass updates (BatchNormalization's moving statistics):
    # kept to be put back if the step turns out non-finite.
    forward_state = self._forward_state_variables()
    saved = [tf.identity(v) for v in forward_state]

    if self.update_mode == "joint":
      with tf.GradientTape(persistent=True) as tape:
        y_pred, task, reg, pen_w, pen_m, stats = self._forward(*fwd)
        upper = self._plus(task, pen_m)
        lower = self._plus(task, reg, pen_w)
        same_objective = pen_w is pen_m
        if same_objective:
          lower = upper if reg is None else upper + reg
      if same_objective:
        grads = tape.gradient(upper, weights + scores + thetas)
        g_data_w, g_s = grads[:nw], grads[nw:nw + len(scores)]
        g_theta = grads[nw + len(scores):]
        if reg is not None:
          g_reg = tape.gradient(reg, weights, unconnected_gradients="zero")
          g_w = [None if g is None else g + r for g, r in zip(g_data_w, g_reg)]
        else:
          g_w = g_data_w
      else:
        g_w = tape.gradient(lower, weights)
        grads = tape.gradient(upper, scores + thetas)
        g_s, g_theta = grads[:len(scores)], grads[len(scores):]
      del tape
      g_s = self._score_gradients(g_s, g_theta)
      finite = _all_finite([lower, upper] + g_w + g_s)
      ok = tf.logical_and(finite, running)
      self._apply(ok, self.optimizer, g_w, weights)
      self._apply(ok, self.mask_optimizer, g_s, scores)
    else:
      with tf.GradientTape() as tape:
        y_pred, task, reg, pen_w, _, stats = self._forward(*fwd)
        lower = self._plus(task, reg, pen_w)
      g_w = tape.gradient(lower, weights)
      finite = _all_finite([lower] + g_w)
      self._apply(tf.logical_and(finite, running), self.optimizer, g_w, weights)
      with tf.GradientTape() as tape:
        _, task2, _, _, pen_m2, _ = self._forward(*fwd, first_pass=False)
        upper = self._plus(task2, pen_m2)
      grads = tape.gradient(upper, scores + thetas)
      g_s = self._score_gradients(grads[:len(scores)], grads[len(scores):])
      finite = tf.logical_and(finite, _all_finite([upper] + g_s))
      ok = tf.logical_and(finite, running)
      self._apply(ok, self.mask_optimizer, g_s, scores)

    for var, value in zip(forward_state, saved):
      var.assign(tf.where(ok, var, value))
    newly_bad = tf.logical_and(running, tf.logical_not(finite))
    newly_bad_ids = tf.logical_and(tf.equal(state.halted, 0), bad_ids)
    stop = tf.logical_or(newly_bad, newly_bad_ids)
    state.first_bad_step.assign(tf.where(stop, state.steps, state.first_bad_step))
    state.halted.assign(tf.maximum(state.halted, tf.cast(stop, tf.int64)))
    state.bad_id_batches.assign_add(tf.cast(newly_bad_ids, tf.int64))
    state.steps.assign_add(1)
    finite = ok

    # Masks follow the new scores, at the sparsity of the next step.
    refresh = finite
    if self.mask_update_frequency > 1:
      refresh = tf.logical_and(
          finite, tf.equal(self._step() % self.mask_update_frequency, 0))
    if _under_strategy():
      # A mirrored assign may not sit inside a cond: compute, then keep or replace.
      self._assign_masks(self._step(), keep=tf.logical_not(refresh))
    else:
      tf.cond(refresh, self._assign_masks_op, lambda: tf.constant(False))
    self._step_state.non_finite_steps.assign_add(tf.cast(newly_bad, tf.int64))
    self.compiled_metrics.update_state(y, y_pred, sample_weight)
    self._step_state.sparsity.update_state(self.measured_sparsity())
    self._update_fairness_state(y, y_pred, sample_weight, groups, stats, finite)
    return self._logs(with_groups=groups is not None)

  def _logs(self, with_groups):
    logs = {}
    for m in self.metrics:
      if m is self._step_state.group_accuracy and not with_groups:
        continue  # No group ids in this data: no per-group columns.
      result = m.result()
      if isinstance(result, dict):
        logs.update(result)
      else:
        logs[m.name] = result
    return logs

  def _forward_state_variables(self):
    """Non-trainable variables that a training forward pass may change (e.g.
    BatchNormalization's moving statistics): not masks or the fairness state."""
    _, _, _, masks = self._pruning_variables()
    own = {v.ref() for v in masks + self._objective.variables}
    return [v for v in self.non_trainable_variables if v.ref() not in own]

  def _assign_masks_op(self):
    self._assign_masks(self._step())
    return tf.constant(True)

  def test_step(self, data):
    x, y, sample_weight, groups, dense, bad_ids = self._unpack(data)
    self._step_state.bad_id_batches.assign_add(tf.cast(bad_ids, tf.int64))
    y_pred = self(x, training=False)
    self.compiled_loss(y, y_pred, sample_weight, regularization_losses=self.losses)
    self.compiled_metrics.update_state(y, y_pred, sample_weight)
    self._step_state.sparsity.update_state(self.measured_sparsity())
    stats = self._fairness_statistics(x, y, y_pred, sample_weight, groups, dense)
    self._update_fairness_state(y, y_pred, sample_weight, groups, stats, finite=None)
    return self._logs(with_groups=groups is not None)


def _is_functional_init(args, kwargs):
  return (len(args) == 2 or (len(args) == 1 and "outputs" in kwargs) or
          ("inputs" in kwargs and "outputs" in kwargs))


@keras.saving.register_keras_serializable(package="tf_fairprune")
class FairPruneModel(BiLevelTrainingMixin, keras.Model):
  """A Keras model trained by bi-level fair pruning.

  Subclass it like `keras.Model` and use `FairPruneWrapper` layers inside; or call it
  with `inputs`/`outputs` like the functional API (that is what `fair_prune_wrapper`
  returns for Sequential and Functional models).

  Args:
    target_sparsity: Fraction of prunable weights to remove, a float in [0, 1) or a
      TFMOT `PruningSchedule` (`ConstantSparsity`, `PolynomialDecay`).
    mask_scope: `"global"` (default) ranks the scores of all wrapped layers together;
      `"layer"` prunes every wrapped weight to the same sparsity.
    implicit_gradient_scale: 1/γ of BiP's implicit-gradient term (default 1e-4);
      0 turns the term off.
    update_mode: `"joint"` (default, one forward pass per step) or `"alternating"`
      (upper level evaluated after the weight update, two passes).
    mask_update_frequency: Re-rank the masks from the scores every this many steps
      (default 1, BiP's rule). The scores learn every step either way; a larger value
      amortises the top-k on models whose step is cheap next to it.
    fairness: List of `tf_fairprune.fairness` constraints (e.g.
      `PerformanceFairness()`); empty for plain BiP.
    fairness_on: Where the fairness terms enter: `("weights", "mask")` (BiFP,
      default), `("mask",)`, `("weights",)` or `()` — the paper's ablations.
    num_groups: Number of sensitive groups K (ids in [0, K)).
    **kwargs: Arguments of `keras.Model`.

  Example:

  ```python
  class Net(tf_fairprune.FairPruneModel):
    def __init__(self):
      super().__init__(target_sparsity=0.8)
      self.hidden = tf_fairprune.FairPruneWrapper(keras.layers.Dense(32, "relu"))
      self.out = tf_fairprune.FairPruneWrapper(keras.layers.Dense(2))

    def call(self, x):
      return self.out(self.hidden(x))

  model = Net()
  model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
  model.fit(x, y, epochs=2)
  ```
  """

  def __new__(cls, *args, **kwargs):
    if cls is FairPruneModel and _is_functional_init(args, kwargs):
      return super().__new__(FunctionalFairPruneModel)
    return super().__new__(cls, *args, **kwargs)

  def __init__(self, *args, target_sparsity=0.5, mask_scope="global",
               implicit_gradient_scale=1e-4, update_mode="joint", mask_update_frequency=1,
               fairness=(), fairness_on=LEVELS, num_groups=2, source_class=None, **kwargs):
    super().__init__(*args, **kwargs)
    self._init_fair_pruning(target_sparsity, mask_scope, implicit_gradient_scale,
                            update_mode, mask_update_frequency, fairness, fairness_on,
                            num_groups, source_class)


@keras.saving.register_keras_serializable(package="tf_fairprune")
class FunctionalFairPruneModel(FairPruneModel, functional.Functional):
  """The functional form of `FairPruneModel` (a graph network: saves to .keras and .h5)."""

  def __init__(self, inputs, outputs, name=None, trainable=True, **kwargs):
    super().__init__(inputs, outputs, name=name, trainable=trainable, **kwargs)

  def get_config(self):
    config = functional.Functional.get_config(self)
    config["fair_pruning"] = self.fair_pruning_config()
    return config

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    prune_kwargs = cls._fair_pruning_kwargs(config.pop("fair_pruning", {}) or {})
    with legacy_serialization.SharedObjectLoadingScope():
      inputs, outputs, layers = functional.reconstruct_from_config(config, custom_objects)
      model = cls(inputs=inputs, outputs=outputs, name=config.get("name"),
                  trainable=config.get("trainable", True), **prune_kwargs)
      functional.connect_ancillary_layers(model, layers)
    return model
