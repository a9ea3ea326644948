"""The steps shared by the main job (`fair_prune.py`) and the benchmark (`benchmark.py`).

Datasets by name, the dense model per dataset, one function per pruning method with the
same budget (epochs), a validation tracker that records when a run first reaches the
target (time to a fair sparse model), and the test-set audit.
"""

import time

import numpy as np

import tf_keras as keras

import tf_fairprune
from tf_fairprune import datasets
from tf_fairprune import models
from tf_fairprune._compat import tfmot
from tf_fairprune.fairness import constraints as constraints_lib
from tf_fairprune.fairness import enforcement as enforcement_lib
from tf_fairprune.fairness import evaluate_fairness
from tf_fairprune.fairness import held_out as held_out_lib
from tf_fairprune.quantization import kernel_sparsity

import job_flags  # pylint: disable=g-bad-import-order
from job_flags import DATASETS, DEFAULT_EPSILON, DEFAULT_FAIRNESS, DEFAULT_OPTIMIZER  # pylint: disable=g-bad-import-order,unused-import
from job_flags import define_fairness_flags, FAIRNESS_FLAGS, METHODS, TF_KERAS_ONLY  # pylint: disable=unused-import
import bench_utils  # pylint: disable=g-bad-import-order
import job_flags  # pylint: disable=g-bad-import-order

# Levels that get the fairness terms in each bi-level method (the paper's ablations).
LEVELS = {"bifp": ("weights", "mask"), "bip": (), "bifp_no_mask_term": ("weights",),
          "bifp_no_weight_term": ("mask",), "bifp_layer": ("weights", "mask"),
          "bip_layer": ()}
# Bi-level methods that rank the scores per layer (each layer at the target sparsity, as
# TFMOT does) instead of globally.
PER_LAYER = ("bifp_layer", "bip_layer")
# Methods that train with a fairness constraint (the others ignore `fairness`).
CONSTRAINED = ("bifp", "bifp_layer", "bifp_no_mask_term", "bifp_no_weight_term", "ceag",
               "two_stage")
# The same method with fairness off: what a constrained method's fairness cost is measured
# against (the main job runs it beside, unless --nocompare_fairness_off).
FAIRNESS_OFF = {"bifp": "bip", "bifp_layer": "bip_layer", "bifp_no_mask_term": "bip",
                "bifp_no_weight_term": "bip", "ceag": "magnitude_ft", "two_stage": "gmp"}
# Methods whose mask is a fixed magnitude mask from the dense model; only the weights train.
FIXED_MASK = {"magnitude_ft": False, "ceag": True}  # -> with the fairness constraint?


def load_dataset(name, seed=0, label=None, group=None, image_train_size=None,
                 minority_fraction=0.05, correlation=0.0):
  """A `GroupDataset` by name: one of `DATASETS` or `csv:PATH` (then label and group).

  `group` ("race,sex": any number of columns) picks the sensitive attribute(s) of a
  built-in dataset named without one ("adult", "compas", "german", "colored-fmnist");
  several form one group per combination.

  Raises:
    ValueError: For an unknown name, a CSV without label/group columns, or a group given
      for a dataset whose name already fixes one.
  """
  if name.startswith("csv:"):
    if not label or not group:
      raise ValueError("--dataset=csv:PATH needs --label=COL and --group=COL.")
    return datasets.load_csv(name[4:], label, group, seed)
  base, sensitive = job_flags.builtin_group(name, group)
  if base == "colored-fmnist":
    return datasets.load_colored_fashion_mnist(
        minority_fraction=minority_fraction, correlation=correlation,
        train_size=image_train_size, seed=seed, sensitive=sensitive)
  loaders = {"adult": datasets.load_adult, "compas": datasets.load_compas,
             "german": datasets.load_german}
  return loaders[base](sensitive, seed=seed)




def keras_module(version):
  """`tf_keras` for "2", Keras 3's `keras` for "3".

  Raises:
    ValueError: For another version, or "3" without Keras 3 installed.
  """
  if str(version) == "2":
    return keras
  if str(version) == "3":
    module = tf_fairprune.flavours.keras3()
    if module is None:
      raise ValueError("--keras=3 needs Keras 3 (pip install 'keras>=3').")
    return module
  raise ValueError(f"--keras must be 3 or 2, got {version!r}.")


def default_keras(method):
  """Keras 3 wherever the method runs there; tf_keras for the TFMOT methods."""
  return "2" if method in TF_KERAS_ONLY or tf_fairprune.flavours.keras3() is None else "3"


def loss_for(data, k=keras):
  if data.num_classes == 2:
    return k.losses.BinaryCrossentropy(from_logits=True)
  return k.losses.SparseCategoricalCrossentropy(from_logits=True)


def build_model(data, arch="auto", width=None, k=keras):
  """The dense model for `data`: an MLP for tabular data, a CNN family model for images.

  `k` is the Keras module to build it with (`tf_keras` or Keras 3's `keras`).
  """
  outputs = 1 if data.num_classes == 2 else data.num_classes
  shape = data.train.x.shape[1:]
  if arch == "auto":
    arch = "mlp" if len(shape) == 1 else "cnn"
  if arch == "mlp":
    return models.mlp(shape[0], outputs=outputs, keras_module=k)
  builders = {"cnn": (models.cnn, 32), "resnet10": (models.resnet10, 64),
              "mobilenet_v2": (models.mobilenet_v2, 1.0)}
  if arch not in builders:
    raise ValueError(f"Unknown model {arch!r}: mlp, cnn, resnet10 or mobilenet_v2.")
  build, default_width = builders[arch]
  return build(shape, outputs, width or default_width, keras_module=k)


def train_dense(data, epochs, batch_size, arch="auto", width=None, jit_compile=False,
                patience=None, verbose=2, k=keras):
  """Trains the dense model (built with the Keras module `k`) with Adam(1e-3).

  With `patience`, `epochs` is a maximum: training stops once the validation loss has not
  improved for `patience` epochs and the best epoch's weights are kept; the model's
  `dense_epochs` attribute then holds (best epoch, epochs run).
  """
  model = build_model(data, arch, width, k)
  model.compile(k.optimizers.Adam(1e-3), loss_for(data, k), jit_compile=jit_compile)
  kwargs = {}
  if patience:
    stop = k.callbacks.EarlyStopping("val_loss", patience=patience, restore_best_weights=True)
    kwargs = {"validation_data": (data.validation.x, data.validation.y), "callbacks": [stop]}
  history = model.fit(data.train.x, data.train.y, batch_size=batch_size, epochs=epochs,
                      verbose=verbose, **kwargs)
  if patience:
    losses = history.history["val_loss"]
    model.dense_epochs = (int(np.argmin(losses)) + 1, len(losses))
  return model


def copy_to(model, data, k, arch="auto", width=None):
  """The same dense model built with the Keras module `k`, weights copied.

  Raises:
    ValueError: If the architectures differ (weights that do not line up).
  """
  copy = build_model(data, arch, width, k)
  weights = model.get_weights()
  if [w.shape for w in weights] != [tuple(w.shape) for w in copy.get_weights()]:
    raise ValueError("The model is not the one build_model makes: its weights do not line "
                     "up with a copy in the other Keras.")
  copy.set_weights(weights)
  copy.compile(k.optimizers.Adam(1e-3), loss_for(data, k))
  return copy




def make_optimizer(spec=DEFAULT_OPTIMIZER, k=keras):
  """An optimizer (of the Keras module `k`) from "sgd:LR" (momentum 0.9) or "adam:LR".

  Raises:
    ValueError: For another name or a learning rate that is not a positive number.
  """
  name, rate = job_flags.parse_optimizer(spec)
  if name == "adam":
    return k.optimizers.Adam(rate)
  return k.optimizers.SGD(rate, momentum=0.9)


def _frozen_mask_optimizer(k):
  return k.optimizers.SGD(0.0)


def gmp_schedule(sparsity, ramp_steps):
  """TFMOT's polynomial schedule over `ramp_steps`, pruning every 100 steps (its guide's
  default) or more often on small datasets (at least 10 pruning events).

  `end_step` is a multiple of the frequency from 0: TFMOT only prunes on steps where
  (step - begin_step) % frequency == 0, so another end step never reaches the target.
  """
  frequency = max(1, min(100, ramp_steps // 10))
  end = max(frequency, ramp_steps // frequency * frequency)
  return tfmot.sparsity.keras.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=end,
                                              frequency=frequency)


def audit(model, dense, split, data, batch_size=512):
  return evaluate_fairness(model, (split.x, split.y, split.groups), dense_model=dense,
                           from_logits=True, group_names=data.group_names,
                           num_groups=data.num_groups, batch_size=batch_size)


HISTORY_GAPS = ("performance_gap", "degradation_gap", "max_excess_gap")


class TargetTrackerLogic:
  """Records the training time and steps at which a run first reaches the target.

  The target (a fair sparse model): at the end of an epoch, on the validation split,
  `target_metric` (a gap) <= `target_gap` and accuracy >= dense accuracy - `tolerance`,
  with the sparsity already at its target. The time spent auditing is not counted.
  `offset_seconds` / `offset_steps` carry the time of an earlier stage (two-stage).
  """

  def __init__(self, data, dense, target_metric, target_gap, tolerance, dense_accuracy,
               sparse_from_epoch=1, offset_seconds=0.0, offset_steps=0, stop=False):
    super().__init__()
    self.data, self.dense = data, dense
    self.target_metric, self.target_gap, self.tolerance = target_metric, target_gap, tolerance
    self.dense_accuracy = dense_accuracy
    self.sparse_from_epoch = sparse_from_epoch
    self.offset_seconds, self.offset_steps = offset_seconds, offset_steps
    self.stop = stop
    self.seconds = self.steps = None
    self.train_seconds = 0.0
    self.history = []

  def on_train_begin(self, logs=None):
    self._start = time.perf_counter()
    self._audit_seconds = 0.0
    self._steps = 0

  def on_train_batch_end(self, batch, logs=None):
    self._steps += 1

  def on_epoch_end(self, epoch, logs=None):
    start = time.perf_counter()
    report = audit(self.model, self.dense, self.data.validation, self.data)
    self._audit_seconds += time.perf_counter() - start
    elapsed = start - self._start - self._audit_seconds + self.offset_seconds
    gap = report.gaps[self.target_metric]
    entry = {"epoch": epoch + 1, "seconds": elapsed, "steps": self._steps + self.offset_steps,
             "accuracy": report.accuracy}
    entry.update({k: report.gaps.get(k) for k in HISTORY_GAPS})
    self.history.append(entry)
    if (self.seconds is None and epoch + 1 >= self.sparse_from_epoch and gap is not None and
        gap <= self.target_gap and report.accuracy >= self.dense_accuracy - self.tolerance):
      self.seconds, self.steps = elapsed, self._steps + self.offset_steps
      if self.stop:
        self.model.stop_training = True

  def on_train_end(self, logs=None):
    self.train_seconds = time.perf_counter() - self._start - self._audit_seconds


class TargetTracker(TargetTrackerLogic, keras.callbacks.Callback):
  __doc__ = TargetTrackerLogic.__doc__


def target_tracker(k, *args, **kwargs):
  """A `TargetTracker` that is a callback of the Keras module `k`."""
  if k is keras:
    return TargetTracker(*args, **kwargs)
  cls = bench_utils.callback_class(TargetTrackerLogic, k, "TargetTracker")
  return cls(*args, **kwargs)


# --fairness names -> constraint classes (and the audit's name of the gap each bounds).
CONSTRAINTS = {
    "performance": constraints_lib.PerformanceFairness,
    "degradation": constraints_lib.DegradationFairness,
    "excess": constraints_lib.ExcessDegradation,
    "group_loss": constraints_lib.MaxGroupLoss,
    "demographic_parity": constraints_lib.DemographicParity,
    "equalized_odds": constraints_lib.EqualizedOdds,
    "equal_opportunity": constraints_lib.EqualOpportunity,
}
AUDIT_GAP = job_flags.AUDIT_GAP
# The flags' names are known before TensorFlow is imported (job_flags); they must agree.
assert tuple(CONSTRAINTS) == job_flags.CONSTRAINT_NAMES, (tuple(CONSTRAINTS),
                                                          job_flags.CONSTRAINT_NAMES)
assert tuple(enforcement_lib.RULES) == job_flags.MODES, tuple(enforcement_lib.RULES)


def make_constraints(names=DEFAULT_FAIRNESS, mode="lagrangian", epsilon=DEFAULT_EPSILON,
                     weight=1.0):
  """Constraints by name (see `CONSTRAINTS`), all with the same ε and rule: `mode` names
  it (--fairness_mode), `weight` is the `Penalty` rule's.

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


def fairness_from_flags(flags_values):
  """The constraints the fairness flags ask for.

  Raises:
    app.UsageError: Naming the flag whose value is bad.
  """
  from absl import app  # pylint: disable=g-import-not-at-top
  f = flags_values
  try:
    names = job_flags.fairness_names(f)
  except job_flags.FlagError as err:
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


def default_batch_size(data, largest=256):
  """The benchmarks' batch size: min(largest, max(32, training rows / 50)), so that
  small datasets still get at least 50 steps an epoch."""
  return int(min(largest, max(32, len(data.train) // 50)))


def default_seeds(name, image_train_size=None):
  """The benchmarks' seed count for a dataset: 5 below 10,000 test rows, else 3."""
  return 5 if len(load_dataset(name, 0, image_train_size=image_train_size).test) < 10000 else 3


def resolvable_gap(sizes):
  """The smallest gap between two groups' rates a split can tell from zero (95%, its two
  smallest groups; `HeldOutFairness`'s measure); None with fewer than two groups."""
  value = held_out_lib.resolvable_gap(sizes)
  return None if np.isinf(value) else value


def predicted_share(model, split, batch_size=1024):
  """The largest predicted class's share of the split's rows."""
  out = model.predict(split.x, batch_size=batch_size, verbose=0)
  labels = (out.reshape(-1) > 0) if out.shape[-1] == 1 or out.ndim == 1 else out.argmax(-1)
  return float(np.bincount(labels.astype(int)).max() / len(labels))


def _packed(split, dense):
  """A split's inputs with group ids and the dense model's outputs (for degradation)."""
  outputs = dense.predict(split.x, batch_size=1024, verbose=0)
  return tf_fairprune.pack_group_data(split.x, split.groups, dense_outputs=outputs)


def _packed_train(data, dense):
  return _packed(data.train, dense)


def prune(method, dense, data, sparsity, epochs, batch_size, fairness=None,
          target_metric="degradation_gap", target_gap=0.01, tolerance=0.01,
          jit_compile=False, verbose=2, structure=None, prepare=None,
          optimizer=DEFAULT_OPTIMIZER, ramp_epochs=None, held_out=True,
          max_accuracy_loss=None, mask_update_frequency=None):
  """Prunes `dense` with `method` and returns a result dict.

  Budgets (E = `epochs`, R = `ramp_epochs`, default max(1, E // 2)):
    - bi-level methods (bifp, bip, their `_layer` variants and ablations): E epochs, the
      mask at the target sparsity from the first step.
    - magnitude_ft / ceag: one-shot global magnitude mask of the dense model, then E
      epochs of weight training with the mask fixed (ceag: with the constraints).
    - gmp: TFMOT's `prune_low_magnitude`, per layer, polynomial ramp over R epochs,
      then E epochs of fine-tuning at the target (as many as the bi-level methods
      train at the target).
    - two_stage: GMP ramp over R epochs, then max(1, E - R) epochs of fine-tuning with
      the constraints and the GMP mask fixed: E epochs in all, as BiFP.

  Args:
    optimizer: The weights' optimizer, "sgd:LR" or "adam:LR" (see `make_optimizer`).
      The scores of the bi-level methods always use SGD(0.1, momentum 0.9).
    fairness: The constraints of the fair methods (`CONSTRAINED`; default
      `make_constraints()`, BiFP's default); the other methods ignore it.
    held_out: Constrained methods steer their Lagrangian multipliers on the validation
      split and return the iterate selected on it (`tf_fairprune.HeldOutFairness`);
      False: on the training batches (the earlier behaviour). The test split is
      never read.
    max_accuracy_loss: `HeldOutFairness`'s accuracy budget (None: no budget).
    mask_update_frequency: Steps between mask re-rankings of the bi-level methods
      (None: the library's default); fixed-mask methods never re-rank.
    structure: e.g. {"block_size": (4, 1)} or {"granularity": "channel"}, passed to
      `fair_prune_wrapper` for the bi-level methods; `prepare(dense)` may return a
      copy with `FairPruneWrapper`s on the layers to prune (selective pruning).

  Returns:
    {"model": the stripped model, "train_seconds", "train_steps",
     "seconds_to_target", "steps_to_target" (None if never reached), "history",
     "held_out": the HeldOutFairness selection and candidates, or None}.
  """
  k = tf_fairprune.flavours.of(dense).keras
  if method in TF_KERAS_ONLY and k is not keras:
    raise ValueError(f"{method} uses TFMOT, which works on tf_keras models only: run it "
                     "with --keras=2.")
  dense_val_accuracy = audit(dense, None, data.validation, data).accuracy
  if fairness is None:
    fairness = make_constraints()
  loss = loss_for(data, k)
  steps_per_epoch = -(-len(data.train) // batch_size)
  ramp_epochs = ramp_epochs or max(1, epochs // 2)

  def tracker(**kwargs):
    return target_tracker(k, data, dense, target_metric, target_gap, tolerance,
                          dense_val_accuracy, **kwargs)

  def bilevel(model, levels, constraints, frozen_mask=False, **kwargs):
    pruned = tf_fairprune.fair_prune_wrapper(
        model, sparsity, fairness=constraints if levels else [], fairness_on=levels,
        num_groups=data.num_groups,
        # A frozen mask never re-ranks (the cond skips the top-k), so these baselines
        # pay little for running on the bi-level engine.
        **(dict(implicit_gradient_scale=0.0, mask_update_frequency=2**30) if frozen_mask
           else {} if mask_update_frequency is None
           else dict(mask_update_frequency=mask_update_frequency)), **kwargs)
    pruned.set_reference_model(None)  # The dense outputs travel with the data.
    pruned.compile(optimizer=make_optimizer(optimizer, k),
                   mask_optimizer=(_frozen_mask_optimizer(k) if frozen_mask else
                                   k.optimizers.SGD(0.1, momentum=0.9)),
                   loss=loss, jit_compile=jit_compile)
    return pruned

  def fit_bilevel(pruned, fit_epochs, track):
    callbacks = [track]
    steer = None
    if held_out and any(c.enforcement.uses_held_out for c in pruned.fairness):
      steer = tf_fairprune.HeldOutFairness(
          (_packed(data.validation, dense), data.validation.y),
          max_accuracy_loss=max_accuracy_loss, verbose=0, group_names=data.group_names)
      callbacks.insert(0, steer)  # Before the tracker: it sees the multipliers' update.
    pruned.fit(_packed_train(data, dense), data.train.y, batch_size=batch_size,
               epochs=fit_epochs, verbose=verbose, callbacks=callbacks)
    return {"held_out": (None if steer is None else
                         {"selected": steer.selected,
                          "candidates": [c.to_dict() for c in steer.candidates],
                          "messages": list(steer.messages)}),
            "model": tf_fairprune.strip_fair_pruning(pruned),
            "pruned": pruned, "stopped_on_non_finite": pruned.stopped_on_non_finite_loss,
            "train_seconds": track.train_seconds,
            "train_steps": int(pruned.optimizer.iterations.numpy()),
            "seconds_to_target": track.seconds, "steps_to_target": track.steps,
            "history": track.history}

  def gmp(fit_epochs):
    model = keras.models.clone_model(dense)  # TFMOT reuses layers: never touch `dense`.
    model.set_weights(dense.get_weights())
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        model, pruning_schedule=gmp_schedule(sparsity, ramp_epochs * steps_per_epoch))
    pruned.compile(make_optimizer(optimizer), loss, jit_compile=jit_compile)
    track = tracker(sparse_from_epoch=ramp_epochs + 1)
    pruned.fit(data.train.x, data.train.y, batch_size=batch_size, epochs=fit_epochs,
               verbose=verbose, callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), track])
    return {"model": tfmot.sparsity.keras.strip_pruning(pruned),
            "train_seconds": track.train_seconds, "train_steps": fit_epochs * steps_per_epoch,
            "seconds_to_target": track.seconds, "steps_to_target": track.steps,
            "history": track.history}

  if method == "dense":
    return {"model": dense, "train_seconds": 0.0, "train_steps": 0, "seconds_to_target": None,
            "steps_to_target": None, "history": []}
  if method in LEVELS:
    pruned = bilevel(prepare(dense) if prepare else dense, LEVELS[method], fairness,
                     mask_scope="layer" if method in PER_LAYER else None, **(structure or {}))
    return fit_bilevel(pruned, epochs, tracker())
  if method in FIXED_MASK:
    # Scores start at |θ| and never move (lr 0, no implicit term): a fixed global
    # magnitude mask, rescaled like BiP's first mask, with only the weights trained.
    pruned = bilevel(dense, ("weights",) if FIXED_MASK[method] else (), fairness,
                     frozen_mask=True, mask_scope="global")
    return fit_bilevel(pruned, epochs, tracker())
  if method == "gmp":
    return gmp(ramp_epochs + epochs)
  if method == "two_stage":
    first = gmp(ramp_epochs)
    tuned = bilevel(first["model"], ("weights",), fairness, frozen_mask=True, rescale=False)
    track = tracker(offset_seconds=first["train_seconds"], offset_steps=first["train_steps"])
    second = fit_bilevel(tuned, max(1, epochs - ramp_epochs), track)
    for entry in second["history"]:
      entry["epoch"] += ramp_epochs
    # Epochs and steps of the whole run, as the history counts them.
    held_out = second.get("held_out") or {}
    for entry in (held_out.get("candidates") or []) + [held_out.get("selected") or {}]:
      if entry.get("epoch") is not None:
        entry["epoch"] += ramp_epochs
        entry["step"] += first["train_steps"]
    return dict(second, train_seconds=first["train_seconds"] + second["train_seconds"],
                train_steps=first["train_steps"] + second["train_steps"],
                history=first["history"] + second["history"])
  raise ValueError(f"Unknown method {method!r}: one of {', '.join(METHODS)}.")


def result_row(data, method, seed, sparsity, outcome, report):
  """The fields of results.json / results.jsonl for one run."""
  return {
      "dataset": data.name, "method": method, "seed": seed, "target_sparsity": sparsity,
      "semi_synthetic": data.semi_synthetic, "group_names": data.group_names,
      "sparsity": kernel_sparsity(outcome["model"]), "accuracy": report.accuracy,
      "dense_accuracy": report.dense_accuracy,
      "group_accuracy": {g["name"]: g["accuracy"] for g in report.groups},
      "group_size": {g["name"]: g["size"] for g in report.groups},
      "performance_gap": report.gaps["performance_gap"],
      "degradation_gap": report.gaps["degradation_gap"],
      "max_excess_gap": report.gaps["max_excess_gap"],
      "demographic_parity_difference": report.gaps["demographic_parity_difference"],
      "equalized_odds_difference": report.gaps["equalized_odds_difference"],
      "train_seconds": outcome["train_seconds"], "train_steps": outcome["train_steps"],
      "seconds_to_target": outcome["seconds_to_target"],
      "steps_to_target": outcome["steps_to_target"],
  }
