"""Held-out fairness: multipliers that read data the weights never fit, and the iterate
that generalises.

A network can close a gap on its training rows by fitting those rows, while the gap on
new people stays where it was (measured: Adult/sex, ε = 3 points — training gap 4.3,
test gap 10.6). Cotter et al. (ICML 2019, "Training well-generalizing classifiers for
fairness metrics and other data-dependent constraints") fix it by letting the
multiplier player read a separate dataset. `HeldOutFairness` does that inside
`model.fit`:

* every `update_every` steps it measures every constraint's *hard* group rates on the
  held-out set and takes the multipliers' dual step on them (`FairnessObjective.
  apply_held_out`); the training step reads those rates instead of its own batches';
* each measurement at the target sparsity is a candidate; at the end the model is set
  to the candidate that meets every ε on the held-out set with the best held-out
  accuracy — else the one with the smallest violation within the accuracy budget;
* a floor: a collapsed candidate (one class for ≥ 99% of rows where the dense model,
  or the labels, were not) or one below the accuracy budget makes the multipliers back
  off instead of pushing further, and is never selected.

The selection reads the same held-out set the multipliers read: its figures are
optimistic. Report a separate test split (the main job does).
"""

import math
import warnings

import numpy as np
import tensorflow as tf

from tf_fairprune import groups as groups_lib
from tf_fairprune._compat import keras
from tf_fairprune.fairness import outcomes

COLLAPSE_SHARE = 0.99  # One class for this share of rows: a constant predictor.


def _class_counts(y_pred, from_logits):
  """[C] counts of the predicted classes (binary outputs: C = 2)."""
  if outcomes.is_multiclass(y_pred):
    num = y_pred.shape[-1]
    cls = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
  else:
    num = 2
    cls = tf.cast(outcomes.hard_positive(y_pred, from_logits), tf.int32)
  return tf.math.bincount(tf.reshape(cls, [-1]), minlength=num, maxlength=num,
                          dtype=tf.float32)


def _label_counts(y, y_pred):
  num = y_pred.shape[-1] if outcomes.is_multiclass(y_pred) else 2
  labels = tf.clip_by_value(outcomes.sparse_labels(y, y_pred), 0, num - 1)
  return tf.math.bincount(labels, minlength=num, maxlength=num, dtype=tf.float32)


class Measurement:
  """What one pass over the held-out set found (numpy values).

  Attributes:
    stats: Per constraint, (hard sums, counts) [T, K].
    gaps: Per constraint name, its hard gap (the constraint's `measure`).
    accuracy: Overall accuracy (sample-weighted).
    group_accuracy, group_counts: [K] each.
    class_shares: [C] shares of the predicted classes.
    dense_class_shares: [C] of the dense model (None when unknown).
    label_shares: [C] shares of the labels.
  """

  def __init__(self, stats, gaps, accuracy, group_accuracy, group_counts, class_shares,
               dense_class_shares, label_shares):
    self.stats, self.gaps, self.accuracy = stats, gaps, accuracy
    self.group_accuracy, self.group_counts = group_accuracy, group_counts
    self.class_shares, self.dense_class_shares = class_shares, dense_class_shares
    self.label_shares = label_shares

  @property
  def collapsed(self):
    """One predicted class for ≥ 99% of rows where the dense model (else the labels)
    did not have one."""
    if float(np.max(self.class_shares)) < COLLAPSE_SHARE:
      return False
    reference = (self.dense_class_shares if self.dense_class_shares is not None
                 else self.label_shares)
    return float(np.max(reference)) < COLLAPSE_SHARE


def _batches(data, batch_size):
  """A tf.data.Dataset of (x, y[, sample_weight]) batches from arrays or a dataset."""
  if isinstance(data, tf.data.Dataset):
    return data
  if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
    raise ValueError("HeldOutFairness data must be (x, y) or (x, y, sample_weight) with "
                     "the group ids packed in x (tf_fairprune.pack_group_data), or a "
                     f"tf.data.Dataset of such batches; got {type(data).__name__}.")
  x = data[0]
  if not isinstance(x, dict) or groups_lib.GROUP_KEY not in x:
    raise ValueError("HeldOutFairness data carries no group ids: pack them with "
                     "x = tf_fairprune.pack_group_data(x, groups).")
  return tf.data.Dataset.from_tensor_slices(tuple(data)).batch(batch_size)


def measurement_function(model):
  """A traced function: one batch → per-constraint (hard, counts), group accuracy sums,
  predicted / dense / label class counts, sample-weight total."""
  objective = model._objective  # pylint: disable=protected-access
  judged = model._judged  # pylint: disable=protected-access

  @tf.function(reduce_retracing=True)
  def measure(data):
    batch = model._unpack(data)  # pylint: disable=protected-access
    outputs = model(batch.x, training=False)
    stats = model._fairness_statistics(batch, outputs)  # pylint: disable=protected-access
    # Multi-output models: the output the constraints judge; labels as they read them.
    y_pred, labels = judged(outputs), batch.labels
    weights = outcomes.example_weights(judged(batch.sample_weight), batch.groups)
    fl = objective.metric_from_logits
    correct = outcomes.hard_correct(labels, y_pred, fl)
    group_correct = outcomes.group_sums(correct, batch.groups, weights, model.num_groups)
    group_counts = outcomes.group_sums(tf.ones_like(weights), batch.groups, weights,
                                       model.num_groups)
    dense_counts = tf.zeros([0])
    if batch.dense is not None and batch.dense.outputs is not None:
      dense_counts = _class_counts(batch.dense.outputs, fl)
    elif model._reference_model is not None:  # pylint: disable=protected-access
      dense_counts = _class_counts(
          judged(model._reference_model(batch.x, training=False)), fl)  # pylint: disable=protected-access
    return ([(hard, counts) for _, hard, counts in stats], group_correct, group_counts,
            _class_counts(y_pred, fl), dense_counts, _label_counts(labels, y_pred),
            tf.cast(batch.bad_ids, tf.float32))

  return measure


def reduction_function(model, dataset, function=None):
  """A traced function: the per-batch outputs of `function` (`measurement_function`)
  summed over every batch of `dataset`, in float64, in order — what a numpy loop over
  the batches adds up — and the number of batches. One call, one transfer to the host.

  The loop runs inside the function (an iterator, not a `tf.data` function, so the
  model's variables are read as in any other traced call, mirrored ones included).

  Raises:
    ValueError: If `dataset` is empty.
  """
  function = function or measurement_function(model)
  first = next(iter(dataset), None)
  if first is None:
    raise ValueError("HeldOutFairness data is empty.")
  # Static shapes of the outputs (bincount's length is dynamic when traced).
  shapes = tf.nest.map_structure(lambda t: t.shape, function(first))

  @tf.function
  def reduce_dataset():
    totals = tf.nest.map_structure(lambda shape: tf.zeros(shape, tf.float64), shapes)
    batches = tf.constant(0.0, tf.float64)
    for data in iter(dataset):
      out = function(data)
      totals = tf.nest.map_structure(
          lambda total, value, shape: total + tf.reshape(tf.cast(value, tf.float64), shape),
          totals, out, shapes)
      batches += 1.0
    return totals, batches

  return reduce_dataset


def measure(model, dataset, reduction=None):
  """One pass of `model` (inference mode) over `dataset`: a `Measurement`.

  Args:
    model: The fair-pruned model.
    dataset: A `tf.data.Dataset` of held-out batches.
    reduction: Its `reduction_function` (made here when None; pass it to measure
      again without tracing again).
  """
  reduction = reduction or reduction_function(model, dataset)
  totals, batches = tf.nest.map_structure(lambda t: t.numpy(), reduction())
  if batches == 0:
    raise ValueError("HeldOutFairness data is empty.")
  stats, group_correct, group_counts, classes, dense_classes, labels, bad_ids = totals
  if bad_ids > 0:
    raise ValueError(f"HeldOutFairness data holds group ids outside [0, num_groups="
                     f"{model.num_groups}) in {int(bad_ids)} batch(es): they would be merged "
                     "into a real group. Check the held-out ids.")
  gaps = {c.name: float(c.measure(tf.constant(h, tf.float32), tf.constant(n, tf.float32)))
          for c, (h, n) in zip(model.fairness, stats)}
  total = group_counts.sum()
  return Measurement(
      stats=stats, gaps=gaps, accuracy=float(group_correct.sum() / max(total, 1e-12)),
      group_accuracy=np.divide(group_correct, group_counts, out=np.full_like(group_counts, np.nan),
                               where=group_counts > 0),
      group_counts=group_counts, class_shares=classes / max(classes.sum(), 1e-12),
      dense_class_shares=(dense_classes / dense_classes.sum() if dense_classes.size and
                          dense_classes.sum() > 0 else None),
      label_shares=labels / max(labels.sum(), 1e-12))


def resolvable_gap(group_counts, z=1.96):
  """The smallest gap between two groups' rates the held-out set tells from zero (95%,
  rates near 0.5, its two smallest groups); inf with fewer than two groups."""
  sizes = sorted(float(n) for n in group_counts if n > 0)
  if len(sizes) < 2:
    return math.inf
  return z * math.sqrt(0.25 / sizes[0] + 0.25 / sizes[1])


def violation(gaps, tolerances):
  """The largest held-out excess over ε across constraints (≤ 0: every ε met)."""
  return max((gaps[name] - tol for name, tol in tolerances.items()), default=0.0)


def select(candidates, tolerances, max_accuracy_loss=None):
  """Picks the candidate to return; returns (index or None, reason).

  Args:
    candidates: Dicts with "accuracy", "gaps" (name → held-out gap), "collapsed".
    tolerances: Constraint name → ε.
    max_accuracy_loss: The accuracy (fraction) one may give up against the most
      accurate non-collapsed candidate; None for no budget.

  The rule: among non-collapsed candidates within the budget, those meeting every ε →
  the most accurate (ties: the smaller violation, then the earlier); none → the
  smallest violation (ties: the more accurate, then the earlier).
  """
  alive = [i for i, c in enumerate(candidates) if not c["collapsed"]]
  if not alive:
    return None, "every candidate collapsed to one class"
  best_accuracy = max(candidates[i]["accuracy"] for i in alive)
  budget = math.inf if max_accuracy_loss is None else max_accuracy_loss
  within = [i for i in alive if candidates[i]["accuracy"] >= best_accuracy - budget - 1e-12]
  met = [i for i in within if violation(candidates[i]["gaps"], tolerances) <= 0.0]
  def excess(j):
    return violation(candidates[j]["gaps"], tolerances)
  if met:
    i = max(met, key=lambda j: (candidates[j]["accuracy"], -excess(j), -j))
    return i, "meets every ε on the held-out set with the best held-out accuracy"
  i = min(within, key=lambda j: (excess(j), -candidates[j]["accuracy"], j))
  return i, ("no candidate met ε on the held-out set" +
             (" within the accuracy budget" if max_accuracy_loss is not None else "") +
             ": the smallest held-out violation")


class HeldOutFairness(keras.callbacks.Callback):
  """Steers the fairness multipliers on held-out data and returns the iterate that
  generalises.

  Pass it to `fit` of a model with Lagrangian constraints. While it is there, the
  multipliers read the held-out set's hard group rates (measured every
  `update_every` steps, the dual step covering the steps in between) instead of the
  training batches'. Every measurement at the target sparsity is a candidate; at the
  end of `fit` the model is set to the selected one (`restore=True`), and `selected`
  / `candidates` say which and why.

  Args:
    data: `(x, y)` or `(x, y, sample_weight)` with the group ids packed in `x`
      (`tf_fairprune.pack_group_data`; degradation constraints also need the dense
      outputs packed, or a reference model), or a `tf.data.Dataset` of such batches.
      Rows the weights never train on — a validation split. Keep a test split apart
      to report: this set both steers and selects.
    update_every: Steps between measurements (default: about 8 per epoch, at least
      every step).
    max_accuracy_loss: The held-out accuracy (a fraction, 0.02 = 2 points) you accept to
      lose for fairness, against the most accurate candidate of the run. Below it the
      multipliers back off instead of pushing, and no candidate below it is selected.
      None (default): no budget; collapsed models are still never selected.
    restore: Set the model to the selected candidate at the end of `fit`.
    batch_size: Batch size of the held-out passes (arrays only).
    verbose: 1 prints the selection; 0 is silent.

  Raises:
    ValueError: For bad arguments, data without group ids, or (at `fit`) a model
      without fairness constraints.

  Example:

  ```python
  val = (tf_fairprune.pack_group_data(x_val, g_val), y_val)
  held_out = tf_fairprune.HeldOutFairness(val, max_accuracy_loss=0.02)
  pruned.fit(tf_fairprune.pack_group_data(x, g), y, epochs=5, callbacks=[held_out])
  print(held_out.selected)   # the epoch/step returned, its held-out gap, and why
  ```
  """

  def __init__(self, data, update_every=None, max_accuracy_loss=None, restore=True,
               batch_size=1024, verbose=1):
    super().__init__()
    if update_every is not None and (isinstance(update_every, bool) or
                                     not isinstance(update_every, int) or update_every < 1):
      raise ValueError(f"update_every must be a positive integer, got {update_every!r}.")
    if max_accuracy_loss is not None and (
        isinstance(max_accuracy_loss, bool) or not isinstance(max_accuracy_loss, (int, float))
        or not 0.0 <= max_accuracy_loss <= 1.0):
      raise ValueError("max_accuracy_loss must be a fraction in [0, 1] (0.02 = 2 points) or "
                       f"None, got {max_accuracy_loss!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    self._dataset = _batches(data, batch_size)
    self.update_every = update_every
    self.max_accuracy_loss = max_accuracy_loss
    self.restore = restore
    self.verbose = verbose
    self.candidates = []
    self.selected = None
    self.last = None
    self.resolvable_gap = None
    self._snapshots = {}
    self._traced_key = self._traced_functions = None

  # ------------------------------------------------------------------ measuring
  def _check_model(self):
    model = self.model
    if not hasattr(model, "_objective") or not model.fairness:
      raise ValueError("HeldOutFairness needs a model from fair_prune_wrapper (or a "
                       "FairPruneModel) with fairness constraints; this one has none.")
    if (model._objective.needs_dense and model._reference_model is None):  # pylint: disable=protected-access
      element = self._dataset.element_spec[0]
      if not isinstance(element, dict) or not (
          groups_lib.DENSE_OUTPUTS_KEY in element or groups_lib.DENSE_CORRECT_KEY in element):
        raise ValueError(
            "HeldOutFairness: the degradation constraints compare against the dense model, "
            "and the held-out data carries neither its outputs nor a reference model is "
            "set. Pack them: pack_group_data(x_val, g_val, dense_outputs="
            "dense.predict(x_val)), or call model.set_reference_model(dense).")

  def _traced(self):
    """The traced functions this model needs: made on the first `fit`, kept while the
    model's traced steps stay valid (a `compile` or `set_reference_model` makes them
    anew), so that a `fit` after another traces nothing here.

    Returns (reduction over the held-out set, (schedule sparsity now, measured
    sparsity), final sparsity of the schedule)."""
    model = self.model
    key = (id(model), model.__dict__.get("_trace_generation", 0))
    if self._traced_key != key:
      self._traced_functions = (
          reduction_function(model, self._dataset),
          tf.function(lambda: (model.sparsity_at(), model.measured_sparsity())),
          float(model.sparsity_at(2**40)))
      self._traced_key = key
    return self._traced_functions

  def _measure(self):
    return measure(self.model, self._dataset, self._traced()[0])

  def _at_target(self):
    """The schedule is at its final sparsity and the masks are too (with a mask update
    frequency > 1 they follow the schedule a few steps late)."""
    _, sparsities, final = self._traced()
    now, measured = (float(t) for t in sparsities())
    return abs(now - final) < 1e-6 and abs(measured - final) < 0.01

  def _iterations(self):
    """Optimizer steps so far (one `on_train_batch_end` may cover several steps with
    `steps_per_execution > 1`)."""
    return int(self.model.optimizer.iterations.numpy())

  def _floor_hit(self, m):
    if m.collapsed:
      return True
    if self.max_accuracy_loss is None or not self.candidates:
      return False
    best = max((c["accuracy"] for c in self.candidates if not c["collapsed"]), default=None)
    return best is not None and m.accuracy < best - self.max_accuracy_loss

  def _record(self, m, steps, epoch):
    back_off = self._floor_hit(m)
    self.model._objective.apply_held_out([s for s in m.stats], steps, back_off=back_off)  # pylint: disable=protected-access
    self.last = m
    if self._at_target():
      self.candidates.append({
          "epoch": epoch + 1, "step": self._step, "accuracy": m.accuracy,
          "gaps": dict(m.gaps), "collapsed": m.collapsed, "backed_off": back_off,
          "group_accuracy": [float(a) for a in m.group_accuracy],
          "multipliers": [float(np.max(v.numpy())) for v in self.model.fairness_multipliers]})
      self._keep_front()

  def _keep_front(self):
    """Snapshots the newest candidate if no other beats it on both held-out accuracy and
    violation, and drops the snapshots it beats. The selected candidate is always on
    this front (whatever the budget's reference turns out to be), so only the front's
    weights are kept."""
    def key(i):
      c = self.candidates[i]
      return c["accuracy"], -violation(c["gaps"], self._tolerances)
    def beats(a, b):
      return all(x >= y for x, y in zip(key(a), key(b))) and key(a) != key(b)
    new = len(self.candidates) - 1
    if (not self.restore or self.candidates[new]["collapsed"] or
        any(beats(i, new) for i in self._snapshots)):
      return
    best = max(c["accuracy"] for c in self.candidates if not c["collapsed"])
    budget = math.inf if self.max_accuracy_loss is None else self.max_accuracy_loss
    for i in [i for i in self._snapshots if beats(new, i) or
              self.candidates[i]["accuracy"] < best - budget - 1e-12]:
      del self._snapshots[i]  # Beaten, or below the budget for good (best only rises).
    self._snapshots[new] = [w.copy() for w in self.model.get_weights()]

  # ------------------------------------------------------------------ callback hooks
  def on_train_begin(self, logs=None):
    self._check_model()
    model = self.model
    steps = (self.params or {}).get("steps")
    self._every = self.update_every or (max(1, round(steps / 8)) if steps else 20)
    self._tolerances = {c.name: c.tolerance for c in model.fairness}
    self._start = self._iterations()
    self._step = 0
    self._unread = 0  # Steps possibly run since `_step` was read (an upper bound).
    self._epoch_steps = 0  # Steps run this epoch, as the batch indices say.
    self._last_measured = 0
    self._epoch = 0
    self.candidates, self.selected, self._snapshots = [], None, {}
    m = self._measure()  # The starting rates: the first steps already read held-out data.
    model._objective.apply_held_out(m.stats, 0)  # pylint: disable=protected-access
    self.last = m
    self.resolvable_gap = resolvable_gap(m.group_counts)
    blind = [c.name for c in model.fairness if c.tolerance < self.resolvable_gap]
    if math.isinf(self.resolvable_gap):
      self._warn("the held-out set holds fewer than two groups: every gap on it is 0, so "
                 "it cannot steer or select. Give it rows of every group.")
    elif blind:
      self._warn(
          f"the held-out set cannot tell a gap of ε from zero for {', '.join(blind)}: its two "
          f"smallest groups ({int(sorted(n for n in m.group_counts if n)[0])} and "
          f"{int(sorted(n for n in m.group_counts if n)[1])} rows) resolve gaps of "
          f"{self.resolvable_gap:.3f} and more (95%). The multipliers and the selection then "
          "follow sampling noise, which can leave the gap on new data larger than without "
          "fairness: give it more held-out rows, merge small groups, or raise ε.")

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch
    self._epoch_steps = 0

  def on_train_batch_end(self, batch, logs=None):
    # `batch` is the index of the last step this call covers (several with
    # steps_per_execution > 1): the optimizer has taken at most that many steps more
    # (fewer when the guard skipped one). Reading its counter syncs with the device,
    # so it is read only once that bound reaches the next measurement.
    self._unread += max(batch + 1 - self._epoch_steps, 1)
    self._epoch_steps = batch + 1
    if self._step + self._unread - self._last_measured < self._every:
      return
    self._step = self._iterations() - self._start
    self._unread = 0
    if self._step - self._last_measured >= self._every:
      self._record(self._measure(), self._step - self._last_measured, self._epoch)
      self._last_measured = self._step

  def on_epoch_end(self, epoch, logs=None):
    if self._unread:
      self._step = self._iterations() - self._start
      self._unread = 0
    if self._step > self._last_measured:  # The epoch's last iterate is a candidate too.
      self._record(self._measure(), self._step - self._last_measured, epoch)
      self._last_measured = self._step
    if logs is not None and self.last is not None:
      logs["held_out_accuracy"] = self.last.accuracy
      for name, gap in self.last.gaps.items():
        logs[f"held_out_{name}"] = gap

  def on_train_end(self, logs=None):
    # Back to training rates for whatever runs next (train_on_batch, a plain fit).
    self.model._set_held_out_mode(False)  # pylint: disable=protected-access
    self._choose()

  def _choose(self):
    if not self.candidates:
      self.selected = {"reason": "no measurement at the target sparsity: the final weights "
                                 "are kept"}
      self._warn(self.selected["reason"])
      return
    i, reason = select(self.candidates, self._tolerances, self.max_accuracy_loss)
    if i is None:
      self.selected = {"reason": reason + ": the final weights are kept", "collapsed": True}
      self._warn(self.selected["reason"])
      return
    chosen = dict(self.candidates[i], index=i, reason=reason,
                  met=violation(self.candidates[i]["gaps"], self._tolerances) <= 0.0,
                  tolerances=dict(self._tolerances))
    self.selected = chosen
    if self.restore:
      self.model.set_weights(self._snapshots[i])
    self._snapshots = {}
    gaps = ", ".join(f"{k} {v:.4f} (ε {self._tolerances[k]:.4f})" for k, v in chosen["gaps"].items())
    if self.verbose:
      print(f"HeldOutFairness: returning epoch {chosen['epoch']}, step {chosen['step']} "
            f"({reason}): held-out accuracy {chosen['accuracy']:.4f}, {gaps}.")
    if not chosen["met"]:
      self._warn(f"ε was not met on the held-out set (selected: {gaps}); the constraint may "
                 "be out of reach at this sparsity and accuracy budget.")

  @staticmethod
  def _warn(message):
    warnings.warn(f"tf_fairprune.HeldOutFairness: {message}", UserWarning, stacklevel=2)
