"""`BiLevelTrainingMixin`: the bi-level (BiP / BiFP) step recipe and the Keras overrides
(compile, fit, evaluate, save) of `FairPruneModel`, for both flavours.

How a batch flows through `train_step` (each step a named helper; the math lives in
the modules named):

1. `_unpack`: (x, y, sample_weight) plus the group ids and dense outputs packed in x
   (`groups.py`), and one range check of the ids that works under XLA too.
2. `_forward`: the model in training mode; the task loss, the regularisers and the
   fairness losses of each level (`fairness/objective.py`), scaled per replica.
3. `bilevel.level_losses` / `bilevel.joint_gradients`: L_w for the weights, L_m for the
   scores, their gradients; `bilevel.score_gradients` adds the implicit-gradient term.
   `update_mode="joint"` (default) takes both from one pass; `"alternating"` evaluates
   L_m after the weight update (a second pass, the textbook order of BiP).
4. `replicas.apply_if`: both optimizers step only if the step is finite on every
   replica and its ids are valid (`step_guard.py` puts back what the forward pass
   changed otherwise, e.g. BatchNormalization's statistics, and reports it).
5. `MaskUpdater.after_step`: the masks follow the new scores at the next step's
   sparsity (`mask_updater.py`, `masking.py`); the fairness multipliers take their dual
   step (`FairnessObjective.update`); the progress-bar metrics accumulate group sums
   (`fairness/metrics.py`).
"""

import collections
import dataclasses
import warnings

import tensorflow as tf

from tf_fairprune import _private
from tf_fairprune import bilevel
from tf_fairprune import config as config_lib
from tf_fairprune import fused_sgd
from tf_fairprune import groups as groups_lib
from tf_fairprune import input_checks
from tf_fairprune import loss_scale
from tf_fairprune import mask_updater as mask_updater_lib
from tf_fairprune import outputs as outputs_lib
from tf_fairprune import replicas
from tf_fairprune import save_format
from tf_fairprune import step_guard
from tf_fairprune import wrapper as wrapper_lib
from tf_fairprune.fairness import held_out as held_out_lib
from tf_fairprune.fairness import metrics as fair_metrics
from tf_fairprune.fairness import objective as fairness_objective
from tf_fairprune.fairness import outcomes

# `labels`: what the group statistics read (0/1 for a hinge loss's -1/1), `y` the loss's.
_Batch = collections.namedtuple("_Batch", "x y sample_weight groups dense bad_ids labels")
# `fair`: the objective's LevelLosses (weights, mask, shared).
_Forward = collections.namedtuple("_Forward", "y_pred task reg fair stats")


def default_mask_optimizer(flavour):
  """The scores' optimizer when `compile` gets none: SGD(0.1, momentum 0.9) (BiP's β)."""
  return flavour.keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)


class BiLevelTrainingMixin:
  """A Keras model trained by bi-level fair pruning (the logic of `FairPruneModel`).

  The bi-level `train_step` for both Keras flavours: each flavour's model class
  (`flavour_tf_keras.py`, `flavour_keras3.py`) adds only its base (`keras.Model`) and
  `_flavour`, the table of the few calls whose spelling differs (`flavours.py`).

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
    fairness_output: Name or index of the output the fairness constraints and group
      metrics judge, for a model with several outputs (default: the only output).
    layer_floor: Under global ranking every wrapped tensor keeps at least
      max(1, ⌈layer_floor·(1−s)·n⌉) of its n weights (default 0.1: a tenth of its share
      at the average density), so no layer is emptied; the total stays exact. 0 ranks
      purely globally (whole layers may then vanish).
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

  _flavour = None

  # ---------------------------------------------------------------- configuration
  def _init_fair_pruning(self, config):
    """Sets the pruning arguments (a validated `config_lib.PruningConfig`)."""
    _private.untracked(self, "_pruning_config", config)
    self.num_groups = config.num_groups
    # Untracked helpers: their variables are the model's (objective) or per compile.
    _private.untracked(self, "_objective", fairness_objective.FairnessObjective(
        self, config.fairness, config.fairness_on, config.num_groups))
    _private.untracked(self, "_mask_updater", mask_updater_lib.MaskUpdater(
        config.target_sparsity, config.mask_scope, config.mask_update_frequency,
        config.layer_floor))
    _private.untracked(self, "_reference_model", None)  # Never saved or trained.
    self.implicit_gradient_scale = config.implicit_gradient_scale
    self.update_mode = config.update_mode
    self._source_class = config.source_class
    self.fairness_output = config.fairness_output
    outputs_lib.use_original_names(self)
    if config.fairness or config.fairness_output is not None:
      # A clear error now if the judged output is ambiguous or unknown.
      outputs_lib.judged_index(self, config.fairness_output)
    self.mask_optimizer = None
    self.stopped_on_non_finite_loss = False
    self._upper_loss = None

  target_sparsity = property(lambda self: self._mask_updater.target_sparsity,
                             doc="The target sparsity (a float or a PruningSchedule).")
  mask_scope = property(lambda self: self._mask_updater.scope,
                        doc="`'global'` or `'layer'` ranking of the scores.")
  mask_update_frequency = property(lambda self: self._mask_updater.frequency,
                                   doc="Masks are re-ranked every this many steps.")
  fairness = property(lambda self: self._objective.constraints,
                      doc="The model's fairness constraints (a list).")
  fairness_on = property(lambda self: self._objective.fairness_on,
                         doc="The levels whose loss gets the fairness terms.")
  fairness_multipliers = property(
      lambda self: self._objective.multipliers,
      doc="The multipliers of each constraint's rule (zeros for a fixed-weight Penalty).")

  def fair_pruning_config(self):
    """The pruning arguments of this model, JSON-serializable."""
    # The live values: the public attributes may have been set after construction.
    config = dataclasses.replace(
        self._pruning_config, fairness=self.fairness, fairness_on=self.fairness_on,
        implicit_gradient_scale=self.implicit_gradient_scale, update_mode=self.update_mode,
        num_groups=self.num_groups, fairness_output=self.fairness_output,
        source_class=self._source_class)
    return config.get_config(self._flavour.keras.saving.serialize_keras_object)

  @classmethod
  def _pruning_config_from(cls, config):
    """The `PruningConfig` of a saved `fair_pruning_config()`."""
    return config_lib.PruningConfig.from_config(
        config, cls._flavour.keras.saving.deserialize_keras_object)

  # ---------------------------------------------------------------- multi-output models
  # (the rules live in outputs.py)
  def _judged(self, value):
    """The judged output's entry of a per-output structure (predictions, targets, sample
    weights or losses); a single value is returned as it is."""
    return outputs_lib.judged(self, self.fairness_output, value)

  def set_reference_model(self, model):
    """Sets the dense model that degradation constraints compare against.

    The model is only called (in inference mode, without gradients); it is neither
    trained nor changed. A `.keras` file does not store it: set it again after
    `load_model` (or pack the dense outputs with the data).

    Args:
      model: The dense `tf_keras` model, or None.
    """
    _private.untracked(self, "_reference_model", model)
    # The traced steps captured the previous reference: trace them again.
    self._drop_traced_functions()

  def _drop_traced_functions(self):
    """Forgets every traced function that captured the model's configuration."""
    for name, value in (("train_function", None), ("test_function", None),
                        ("_held_out_passes", {}), ("_sparsity_status", None)):
      _private.untracked(self, name, value)

  # ---------------------------------------------------------------- pruning state
  # (the queries themselves live next to the mask updater, in mask_updater.py)
  @property
  def fair_prune_wrappers(self):
    """All `FairPruneWrapper` layers of the model, nested models included, in order."""
    return wrapper_lib.wrappers_of(self)

  def _built_wrappers(self):
    return mask_updater_lib.built_wrappers(self)

  def _level_variables(self):
    return mask_updater_lib.level_variables(self)

  def _step(self):
    opt = getattr(self, "optimizer", None)
    return opt.iterations if opt is not None else tf.constant(0, tf.int64)

  def _jit(self):
    return self._flavour.jit_compile(self)

  def sparsity_at(self, step=None):
    """Target sparsity at `step` (default: the current training step)."""
    return self._mask_updater.sparsity_at(self._step() if step is None else step)

  def update_masks(self):
    """Re-ranks the masks from the current scores at the current step's sparsity."""
    self._mask_updater.assign(self._built_wrappers(), self._step(), jit_compile=self._jit())

  def rescale_to_masks(self, cap=None):
    """Multiplies each prunable tensor θ by ‖θ‖ / ‖m ⊙ θ‖ under its current mask,
    except the tensors that the layer floor holds under global ranking (gain 1).

    Keeps each layer's weight norm — the scale of its output for white inputs — as
    it was before pruning. Without it a 99%-sparse network starts almost silent
    (outputs ~1/100 of the dense model's through three layers), its gradients are
    as small, and a short run ended as the constant majority predictor; with it the
    same run recovered the dense accuracy. Masks and scores are unchanged.

    The exception: under global ranking with `layer_floor` a tensor that ranking alone
    would empty keeps just its floor, max(1, ⌈ρ·(1−s)·n⌉) weights, and ‖θ‖ / ‖m ⊙ θ‖
    multiplied those few weights by an order of magnitude: ResNet-10 runs at 99% ended
    as constant predictors. The floor is there to keep a path through the layer, not
    to restore its output, so a floor-held tensor is not rescaled (then no run
    collapsed). Every other tensor is rescaled as before, so models where the floor
    holds nothing are unchanged.
    Measured against capping the gains (at each tensor's gain at the target sparsity,
    or the model-wide gain) on ResNet-10 and MobileNetV2: only the rules that leave
    floor-held tensors alone collapsed no run; none was best everywhere (MobileNetV2
    at 90–95% did better with every tensor rescaled). BENCHMARKS.md, "Layer floor vs
    pure global ranking".

    Args:
      cap: How the gains are bounded, one of `mask_updater.RESCALE_CAPS` (the
        alternatives the benchmark measured); None: the default rule described above.
    """
    updater = self._mask_updater
    mask_updater_lib.rescale_to_masks(self._built_wrappers(), self.sparsity_at(),
                                      updater.scope, updater.layer_floor, cap)

  def measured_sparsity(self):
    """Fraction of prunable weights whose mask is 0, as a float32 tensor."""
    return self._mask_updater.measured_sparsity(self._built_wrappers())

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
      TypeError: If an optimizer is of the other Keras flavour than the model.
    """
    self._flavour.check_same_flavour(optimizer, "optimizer")
    self._flavour.check_same_flavour(mask_optimizer, "mask_optimizer")
    super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)
    self._drop_traced_functions()
    if mask_optimizer is None:
      mask_optimizer = default_mask_optimizer(self._flavour)
    with self.distribute_strategy.scope():
      mask_optimizer = self._flavour.keras.optimizers.get(mask_optimizer)
    if mask_optimizer is self.optimizer:
      raise ValueError("`mask_optimizer` must be a different optimizer object from "
                       "`optimizer`: weights and scores keep separate optimizer slots.")
    self.mask_optimizer = mask_optimizer
    self._flavour.record_compile_argument(self, "mask_optimizer", mask_optimizer)
    self._loss_spec = (loss, kwargs.get("loss_weights"))
    self._upper_loss = None
    if self.built:
      # Build both optimizers on their own variables now, so that a loader that builds
      # `optimizer` on all trainable variables finds it built.
      self._build_optimizers()
    judged_loss = outputs_lib.judged_loss(self, loss)  # Says if the output is logits.
    # A hinge loss: labels -1/1, decision at 0 (read as logits).
    _private.untracked(self, "_signed_labels", outcomes.is_hinge_loss(judged_loss))
    self._objective.resolve_from_logits(self._signed_labels or
                                        outcomes.from_logits_of(judged_loss))
    with self.distribute_strategy.scope():
      # Untracked on purpose (see ProgressMetrics).
      _private.untracked(self, "_fair_metrics", fair_metrics.ProgressMetrics(
          self._flavour.classes, self.num_groups, self.fairness))
      _private.untracked(self, "_step_guard", step_guard.StepGuard())

  def save(self, filepath, *args, **kwargs):  # pylint: disable=missing-function-docstring
    save_format.check_keras_format(filepath, *args, **kwargs)
    return super().save(filepath, *args, **kwargs)

  def compile_from_config(self, config):
    self.compile(**self._flavour.keras.saving.deserialize_keras_object(config))

  def _build_optimizers(self):
    weights, scores, _ = self._level_variables()
    # Once only: Keras 3's LossScaleOptimizer (mixed_float16) creates new variables on
    # every build, which a traced step may not.
    for optimizer, variables in ((self.optimizer, weights), (self.mask_optimizer, scores)):
      if not getattr(optimizer, "built", False):
        optimizer.build(variables)

  @property
  def metrics(self):
    metrics = super().metrics
    own = getattr(self, "_fair_metrics", None)
    if self._flavour.is_compiled(self) and own is not None:
      metrics = metrics + own.all()
    return metrics

  def fit(self, *args, **kwargs):  # pylint: disable=missing-function-docstring
    if not self._flavour.is_compiled(self) or self.mask_optimizer is None:
      raise RuntimeError("You must compile the model (with `compile(optimizer=..., "
                         "loss=..., mask_optimizer=...)`) before calling `fit`.")
    input_checks.check_arrays(self, *input_checks.x_and_y(args, kwargs), stacklevel=2)
    steering = self._use_held_out(kwargs.get("callbacks"))
    callbacks = step_guard.with_guard(kwargs.pop("callbacks", None))
    self.stopped_on_non_finite_loss = False
    if self.built:
      self.update_masks()
    try:
      history = super().fit(*args, callbacks=callbacks, **kwargs)
      for callback in steering:
        # After every callback's `on_train_end` (one may restore other weights), so that
        # the model returned is the iterate `selected` describes.
        callback.finish()
    finally:
      self.held_out_mode = False  # Training rates for whatever runs next.
    mask_updater_lib.warn_if_too_sparse(self, stacklevel=2)
    return history

  # ---------------------------------------------------------------- held-out steering
  # The protocol `HeldOutFairness` uses (fairness/held_out/): the mode the step reads,
  # the statistics of a held-out batch, a cached traced pass over a held-out set, and
  # the multipliers' update from a measurement.
  @property
  def held_out_mode(self):
    """Whether the training step reads held-out rates (set by `fit` while a
    `HeldOutFairness` callback is in its callbacks)."""
    return self._objective.held_out

  @held_out_mode.setter
  def held_out_mode(self, value):
    self._objective.held_out = bool(value)

  def held_out_statistics(self, data):
    """One held-out batch in inference mode: a `held_out.BatchStatistics` (traceable).

    Args:
      data: `(packed x, y)` or `(packed x, y, sample_weight)` of one batch.
    """
    return held_out_lib.batch_statistics(self, self._unpack(data), self._objective,
                                         self._judged, self._reference_model,
                                         getattr(self, "_signed_labels", False))

  @property
  def reference_model(self):
    """The dense model degradation constraints compare against (`set_reference_model`),
    or None."""
    return self._reference_model

  def check_data(self, x, y=None):
    """The checks `fit` and `evaluate` make on array data before a step: group ids in
    [0, num_groups) and labels the output can read.

    Raises:
      ValueError: Naming what is wrong.
    """
    input_checks.check_arrays(self, x, y, stacklevel=2)

  def held_out_pass(self, dataset):
    """A traced pass of `held_out_statistics` summed over every batch of `dataset`:
    made once per dataset and kept until `compile` or `set_reference_model` (which
    change what it computes)."""
    cache = self.__dict__.setdefault("_held_out_passes", {})
    if id(dataset) not in cache:
      cache[id(dataset)] = (dataset, held_out_lib.reduction_function(self, dataset))
    return cache[id(dataset)][1]

  def sparsity_status(self):
    """(schedule's sparsity now, final sparsity of the schedule, measured sparsity of the
    masks) as floats, from one traced call (kept until `compile`)."""
    function = self.__dict__.get("_sparsity_status")
    if function is None:
      function = tf.function(lambda: (self.sparsity_at(), self.sparsity_at(2**40),
                                      self.measured_sparsity()))
      _private.untracked(self, "_sparsity_status", function)
    return tuple(float(v) for v in function())

  def load_own_variables(self, store):  # pylint: disable=missing-function-docstring
    # Also .keras files of the pre-rule layout (`objective.load_own_variables`).
    fairness_objective.load_own_variables(super().load_own_variables, self._objective, store)

  def apply_held_out(self, rates, steps, back_off=False, tolerances=None):
    """Takes the multipliers' dual step on measured held-out rates (`FairnessObjective.
    apply_held_out`)."""
    self._objective.apply_held_out(rates, steps, back_off=back_off, tolerances=tolerances)

  def _use_held_out(self, callbacks):
    """Held-out mode while a `HeldOutFairness` callback is in `fit`'s callbacks (a value
    the traced step reads: one trace serves both modes); else warns once that
    multipliers steered by training rates do not make a gap hold on new data. Returns
    the callbacks that steer on held-out data."""
    steering = [c for c in step_guard.listed(callbacks)
                if isinstance(c, held_out_lib.HeldOutFairness)]
    if len(steering) > 1:
      raise ValueError("fit got several HeldOutFairness callbacks: the multipliers can "
                       "follow one held-out set only. Pass one.")
    held_out = bool(steering)
    self.held_out_mode = held_out
    steered = [c.name for c in self.fairness if c.enforcement.uses_held_out]
    if steered and not held_out and not getattr(self, "_warned_training_rates", False):
      _private.untracked(self, "_warned_training_rates", True)
      warnings.warn(
          f"tf_fairprune: the multipliers of {', '.join(steered)} read the training "
          "batches' rates: a gap closed on the training rows often stays open on new "
          "data. Give fit a held-out set with group ids: callbacks=[tf_fairprune."
          "HeldOutFairness((pack_group_data(x_val, g_val), y_val))].",
          UserWarning, stacklevel=3)
    return steering

  def evaluate(self, *args, **kwargs):  # pylint: disable=missing-function-docstring
    input_checks.check_arrays(self, *input_checks.x_and_y(args, kwargs), stacklevel=2)
    callbacks = step_guard.with_guard(kwargs.pop("callbacks", None))
    return super().evaluate(*args, callbacks=callbacks, **kwargs)

  # ---------------------------------------------------------------- the step's parts
  def _unpack(self, data):
    """A `_Batch`. `bad_ids` is True (on every replica) when a group id is outside
    [0, num_groups): one in-graph check that works the same eagerly, in graphs and
    under XLA (which drops assertions)."""
    x, y, sample_weight = self._flavour.keras.utils.unpack_x_y_sample_weight(data)
    x, groups, dense = groups_lib.unpack_group_data(x)
    bad_ids = tf.constant(False)
    if groups is not None:
      groups = tf.reshape(groups, [-1])
      if not groups.dtype.is_integer:
        raise ValueError(f"Group ids must be integers, got {groups.dtype.name}; pack them "
                         "with tf_fairprune.pack_group_data.")
      inside = tf.reduce_all(tf.logical_and(groups >= 0, groups < self.num_groups))
      bad_ids = tf.logical_not(replicas.all_true(inside))
      # In range, so that no segment sum drops or crashes on them before the check acts.
      groups = tf.cast(tf.clip_by_value(groups, 0, self.num_groups - 1), tf.int32)
    elif self.fairness:
      raise ValueError(
          "The model has fairness constraints but the data carries no group ids. Pack "
          "them with x = tf_fairprune.pack_group_data(x, groups).")
    # The judged output's labels (multi-output models), as the group statistics read them.
    labels = None
    if outputs_lib.judges_an_output(self):
      labels = outcomes.decision_labels(self._judged(y), getattr(self, "_signed_labels", False))
    return _Batch(x, y, sample_weight, groups, dense, bad_ids, labels)

  def _fairness_statistics(self, batch, y_pred):
    """Per constraint: (smooth sums, hard sums, counts), all [T, K], of the judged output
    (multi-output models)."""
    if not self.fairness:
      return []
    reference = None
    if self._reference_model is not None:
      reference = lambda: self._judged(self._reference_model(batch.x, training=False))
    return self._objective.batch_statistics(
        batch.labels, self._judged(y_pred), self._judged(batch.sample_weight), batch.groups,
        batch.dense, reference)

  def _forward(self, batch, first_pass=True):
    """A `_Forward`: predictions, task loss, regularisers and the levels' fairness losses."""
    y_pred = self(batch.x, training=True)
    if first_pass:
      task = self._flavour.task_loss(self, batch.y, y_pred, batch.sample_weight)
    else:  # Without touching the reported loss metric.
      task = self._flavour.second_task_loss(self, batch.y, y_pred, batch.sample_weight)
    # compiled_loss divides by the number of replicas (gradients are summed across
    # them); terms added by hand are scaled the same way (the objective scales its own).
    r = replicas.num_replicas()
    reg = tf.add_n(self.losses) / r if self.losses else None
    if first_pass:
      self._flavour.track_loss(self, batch.x, task)
    stats = self._fairness_statistics(batch, y_pred)
    return _Forward(y_pred, task, reg, self._objective.level_losses(stats, r), stats)

  def _score_gradients(self, g_s, g_theta):
    return bilevel.score_gradients(g_s, g_theta, self.implicit_gradient_scale,
                                   replicas.num_replicas(), replicas.replica_sum)

  def _update_metrics(self, batch, y_pred, stats, training=True):
    self._flavour.update_compiled_metrics(self, batch.y, y_pred, batch.sample_weight)
    if not outputs_lib.judges_an_output(self):  # No judged output: no group statistics.
      self._fair_metrics.update_state(self.measured_sparsity(), stats, self.fairness_multipliers)
      return
    judged = self._judged(y_pred)
    if batch.groups is not None:
      # Labels the group statistics cannot read (e.g. {0, 2} for one output): counted
      # in graph (works under XLA), raised by the guard callback after the batch.
      bad = outcomes.labels_outside(self._judged(batch.y), judged,
                                    getattr(self, "_signed_labels", False))
      self._step_guard.count_bad_labels(tf.logical_not(replicas.all_true(tf.logical_not(bad))),
                                        halt=training)
    self._fair_metrics.update_state(
        self.measured_sparsity(), stats, self.fairness_multipliers, labels=batch.labels,
        y_pred=judged, groups=batch.groups, sample_weight=self._judged(batch.sample_weight),
        from_logits=self._objective.metric_from_logits)

  def _logs(self, batch):
    return self._fair_metrics.logs(self.metrics, has_groups=batch.groups is not None and
                                   outputs_lib.judges_an_output(self))

  # ---------------------------------------------------------------- the steps
  def _joint_update(self, batch, running, weights, scores, thetas):
    """Both levels' gradients from one forward pass; returns (forward, finite, ok)."""
    factor = loss_scale.of(self.optimizer)  # mixed_float16: differentiate scaled losses.
    with tf.GradientTape(persistent=True) as tape:
      out = self._forward(batch)
      lower, upper, shared = bilevel.level_losses(out.task, out.reg, *out.fair)
      scaled = [loss_scale.scale(t, factor) for t in (lower, upper, out.reg)]
    g_w, g_s, g_theta = bilevel.joint_gradients(tape, *scaled, shared, weights, scores, thetas)
    del tape
    g_s = self._score_gradients(*(loss_scale.unscale(g, factor) for g in (g_s, g_theta)))
    g_w = loss_scale.weight_gradients(self.optimizer, g_w, factor)
    finite, ok_w, ok = loss_scale.joint_step_flags(factor, [lower, upper], g_w, g_s, running)
    replicas.apply_if(ok_w, self.optimizer, g_w, weights)
    fused_sgd.apply_if(ok, self.mask_optimizer, g_s, scores)
    return out, finite, ok

  def _alternating_update(self, batch, running, weights, scores, thetas):
    """The weights' step, then the scores' at the updated weights (two passes)."""
    factor = loss_scale.of(self.optimizer)  # mixed_float16: differentiate scaled losses.
    with tf.GradientTape() as tape:
      out = self._forward(batch)
      lower, _, _ = bilevel.level_losses(out.task, out.reg, *out.fair)
      scaled_lower = loss_scale.scale(lower, factor)
    g_w = loss_scale.weight_gradients(self.optimizer, tape.gradient(scaled_lower, weights),
                                      factor)
    finite = replicas.all_finite([lower] + ([] if factor is not None else g_w))
    replicas.apply_if(tf.logical_and(finite, running), self.optimizer, g_w, weights)
    if factor is not None:  # Skipped by the LossScaleOptimizer: skip the scores too.
      finite = tf.logical_and(finite, replicas.all_finite(loss_scale.unscale(g_w, factor)))
    with tf.GradientTape() as tape:
      second = self._forward(batch, first_pass=False)
      _, upper, _ = bilevel.level_losses(second.task, None, *second.fair)
      scaled_upper = loss_scale.scale(upper, factor)
    grads = loss_scale.unscale(tape.gradient(scaled_upper, scores + thetas), factor)
    g_s = self._score_gradients(grads[:len(scores)], grads[len(scores):])
    finite = tf.logical_and(finite, replicas.all_finite([upper] + g_s))
    ok = tf.logical_and(finite, running)
    fused_sgd.apply_if(ok, self.mask_optimizer, g_s, scores)
    return out, finite, ok

  def train_step(self, data):
    batch = self._unpack(data)
    weights, scores, thetas = self._level_variables()
    if not scores:
      raise ValueError("The model has no built FairPruneWrapper layers: nothing to prune.")
    self._build_optimizers()
    guard = self._step_guard
    running = guard.running(batch.bad_ids)  # No bad step yet and valid ids.
    state = step_guard.forward_state_variables(self, self._built_wrappers(),
                                               self._objective.variables)
    saved = guard.snapshot(state)
    update = self._joint_update if self.update_mode == "joint" else self._alternating_update
    out, finite, ok = update(batch, running, weights, scores, thetas)
    guard.finish(ok, finite, batch.bad_ids, state, saved)
    self._mask_updater.after_step(self._built_wrappers(), self._step(), ok, self._jit())
    if out.stats:
      self._objective.update(out.stats, ok)
    self._update_metrics(batch, out.y_pred, out.stats)
    return self._logs(batch)

  def test_step(self, data):
    batch = self._unpack(data)
    self._step_guard.count_bad_ids(batch.bad_ids)
    y_pred = self(batch.x, training=False)
    self._flavour.test_loss(self, batch.x, batch.y, y_pred, batch.sample_weight)
    self._update_metrics(batch, y_pred, self._fairness_statistics(batch, y_pred),
                         training=False)
    return self._logs(batch)


def is_functional_init(args, kwargs):
  return (len(args) == 2 or (len(args) == 1 and "outputs" in kwargs) or
          ("inputs" in kwargs and "outputs" in kwargs))
