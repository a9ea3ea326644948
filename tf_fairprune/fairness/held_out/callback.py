"""`HeldOutFairness`: multipliers that read data the weights never fit, and the iterate
that generalises.

A network can close a gap on its training rows by fitting those rows, while the gap on
new people stays where it was (BENCHMARKS.md, "Fairness controls": training-rate
steering). Cotter et al. (ICML 2019, "Training well-generalizing classifiers for
fairness metrics and other data-dependent constraints") fix it by letting the
multiplier player read a separate dataset. The callback wires three parts together:

* the scheduler (`schedule.py`) says when to measure: every `update_every` steps and at
  every epoch's end;
* the measurer (`measure.py`) runs one traced pass over the held-out set: each
  constraint's hard group rates with simultaneous 95% intervals. The multipliers take
  their dual step on them (`model.apply_held_out`), each one-sided constraint held to ε
  where the set resolves ε and to the half-width of its interval where it does not — a
  small group's sampling noise never drives them;
* the selector (`select.py`) picks, at the end of `fit`, the candidate to return — the
  final iterate when the constraints never bound (then training was exactly that of
  fairness off), else the most accurate one that meets ε as far as the set can tell.
  A collapsed candidate (one class for ≥ 99% of rows where the dense model, or the
  labels, were not), or one below the accuracy budget, makes the multipliers back off
  and is never selected.

The model returned is the selected iterate whatever other callbacks do at the end of
training (the model's `fit` restores it after every callback's `on_train_end`), and the
verdicts in `selected` are measured on it, on the whole set. The selection reads the
same set the multipliers read: its figures are optimistic. Report a separate test split.
"""

import dataclasses
import warnings

import numpy as np
import tensorflow as tf

from tf_fairprune import callback_base
from tf_fairprune import checks
from tf_fairprune import groups as groups_lib
from tf_fairprune.fairness import intervals as intervals_lib
from tf_fairprune.fairness import verdict as verdict_lib
from tf_fairprune.fairness.held_out import measure as measure_lib
from tf_fairprune.fairness.held_out import schedule as schedule_lib
from tf_fairprune.fairness.held_out import select as select_lib

MEASUREMENTS_PER_EPOCH = 8  # Default measurement rate (`update_every`): see BENCHMARKS.md.


MAX_PASS_BATCHES = 100_000  # A dataset of unknown size longer than this never ends.


def _as_tuples(value):
  """Lists (one array per output, as `fit` takes them) as tuples: `from_tensor_slices`
  would stack a list into one tensor."""
  if isinstance(value, list):
    return tuple(_as_tuples(v) for v in value)
  if isinstance(value, dict):
    return {k: _as_tuples(v) for k, v in value.items()}
  return value


def check_arrays(data):
  """Checks array held-out data the way `fit` checks training data, before any pass.

  Raises:
    ValueError: For a wrong structure, missing group ids, rows that do not line up,
      NaN/inf inputs, or sample weights that are not finite and >= 0.
  """
  if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
    raise ValueError("HeldOutFairness data must be (x, y) or (x, y, sample_weight) with "
                     "the group ids packed in x (tf_fairprune.pack_group_data), or a "
                     f"tf.data.Dataset of such batches; got {type(data).__name__}.")
  x = data[0]
  if not isinstance(x, dict) or groups_lib.GROUP_KEY not in x:
    raise ValueError("HeldOutFairness data carries no group ids: pack them with "
                     "x = tf_fairprune.pack_group_data(x, groups).")
  groups_lib.check_ids(x[groups_lib.GROUP_KEY], None, what="HeldOutFairness group ids")
  n = len(np.asarray(x[groups_lib.GROUP_KEY]))
  if n == 0:
    raise ValueError("HeldOutFairness data is empty.")
  for what, value in (("x", x), ("y", data[1])) + (
      (("sample_weight", data[2]),) if len(data) == 3 and data[2] is not None else ()):
    for leaf in tf.nest.flatten(value):
      rows = len(leaf)
      if rows != n:
        raise ValueError(f"HeldOutFairness data: {what} has {rows} rows but the group ids "
                         f"{n}; every row needs its inputs, label, group id (and weight).")
  inputs, _, _ = groups_lib.unpack_group_data(x)
  for array in tf.nest.flatten(inputs):
    array = np.asarray(array)
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
      bad = int(np.sum(~np.all(np.isfinite(array.reshape(len(array), -1)), axis=1)))
      raise ValueError(f"HeldOutFairness data has NaN or inf inputs in {bad} row(s): its "
                       "gaps would be measured on garbage. Clean or drop those rows.")
  if len(data) == 3 and data[2] is not None:
    w = np.asarray(data[2], np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
      raise ValueError("HeldOutFairness sample weights must be finite, >= 0 and not all 0.")


def batched(data, batch_size, steps=None):
  """A `tf.data.Dataset` of (x, y[, sample_weight]) batches from arrays or a dataset.

  Raises:
    ValueError: For bad arrays (`check_arrays`), a dataset of single rows (unbatched), a
      dataset without group ids, or one that repeats forever without `steps`.
  """
  if not isinstance(data, tf.data.Dataset):
    check_arrays(data)
    data = tuple(_as_tuples(d) for d in data if d is not None)
    return tf.data.Dataset.from_tensor_slices(data).batch(batch_size)
  spec = data.element_spec
  x_spec = spec[0] if isinstance(spec, tuple) else spec
  if not isinstance(x_spec, dict) or groups_lib.GROUP_KEY not in x_spec:
    raise ValueError("HeldOutFairness data carries no group ids: pack them with "
                     "tf_fairprune.pack_group_data(dataset, groups).")
  if not isinstance(spec, tuple) or len(spec) < 2:
    raise ValueError("HeldOutFairness dataset elements must be (x, y) or (x, y, "
                     "sample_weight) batches.")
  if x_spec[groups_lib.GROUP_KEY].shape.rank == 0:
    raise ValueError("HeldOutFairness got a dataset of single rows (unbatched): call "
                     ".batch(n) on it first.")
  if steps is not None:
    return data.take(steps)
  forever = ("HeldOutFairness got a dataset that repeats forever: each held-out pass must "
             "end. Drop the .repeat(), or pass steps=N (batches per pass).")
  cardinality = int(data.cardinality())
  if cardinality == tf.data.INFINITE_CARDINALITY:
    raise ValueError(forever)
  if cardinality == tf.data.UNKNOWN_CARDINALITY:  # E.g. .repeat().filter(): count once.
    if sum(1 for _ in data.take(MAX_PASS_BATCHES + 1)) > MAX_PASS_BATCHES:
      raise ValueError(forever.replace("repeats forever", f"does not end within "
                                       f"{MAX_PASS_BATCHES:,} batches"))
  return data


class HeldOutFairness(callback_base.Callback):  # Both flavours: callback_base.py.
  """Steers the fairness multipliers on held-out data and returns the iterate that
  generalises, with verdicts a practitioner can sign.

  Pass it to `fit` of a model with Lagrangian constraints. While it is there, the
  multipliers read the held-out set's hard group rates (measured every `update_every`
  steps, the dual step covering the steps in between) instead of the training batches'.
  A violation counts only where the held-out set can tell it from sampling noise: each
  one-sided constraint is held to ε where the set resolves ε, and to the half-width of
  its simultaneous 95% interval where it does not. If nothing ever binds, training is
  exactly that of fairness off and the final iterate is returned. Every measurement at
  the target sparsity is a candidate; at the end of `fit` the model is set to the
  selected one (`restore=True`), re-measured on the whole set, and `selected` says which,
  why, and each constraint's verdict: "met", "not met" or "cannot tell".

  Args:
    data: `(x, y)` or `(x, y, sample_weight)` with the group ids packed in `x`
      (`tf_fairprune.pack_group_data`; degradation constraints also need the dense
      outputs packed, or a reference model), or a `tf.data.Dataset` of such batches.
      Rows the weights never train on — a validation split. Keep a test split apart
      to report: this set both steers and selects.
    update_every: Steps between measurements (default: about 8 per epoch, at least every
      step); twice as many while no multiplier is up and every gap is below half its
      tolerance (nothing to steer; a run that never binds returns its final iterate).
    max_accuracy_loss: The held-out accuracy (a fraction, 0.02 = 2 points) you accept to
      lose for fairness, against the most accurate candidate of the run. Below it the
      multipliers back off instead of pushing, and no candidate below it is selected.
      None (default): no budget; collapsed models are still never selected.
    restore: Set the model to the selected candidate at the end of `fit`.
    batch_size: Batch size of the held-out passes (arrays only).
    verbose: 1 prints the selection; 0 is silent.
    steps: Batches per held-out pass (datasets only; required for one that repeats).
    harm_tolerance: A group losing more than this accuracy (a fraction) against the
      dense model on the held-out set, beyond its interval, while a parity gap closed,
      is named as levelled down in `selected` and in a warning.
    group_names: Names of the groups (by id) for messages; default the ids.

  Attributes:
    candidates: The `Candidate`s measured at the target sparsity.
    selection: A `Selection`: the candidate the model was set to (or None: the final
      weights), why, and the returned model measured on the whole set — its `verdicts`
      ("met" / "not met" / "cannot tell" per constraint), `intervals`, `gaps`,
      `accuracy`, `met` (every verdict "met"), `within_tolerance`, `bound` (whether the
      constraints ever bound), `bound_at`, `largest_multiplier`, `levelled_down`.
    selected: The same as a JSON-ready dict (with the candidate's `index`, `epoch`,
      `step` and `multipliers`).
    final: The `Measurement` of the returned model on the whole set.
    resolution: Constraint name → the smallest ε the held-out set could show met, at the
      rates of the freshly pruned model (`selected["resolution"]`: of the returned one).
    bound_at: The steps (of this `fit`) of the measurements whose violations bound.
    messages: Every warning this callback gave (also issued as `UserWarning`s).

  Raises:
    ValueError: For bad arguments or data, or (at `fit`) a model without fairness
      constraints.

  Example:

  ```python
  val = (tf_fairprune.pack_group_data(x_val, g_val), y_val)
  held_out = tf_fairprune.HeldOutFairness(val, max_accuracy_loss=0.02)
  pruned.fit(tf_fairprune.pack_group_data(x, g), y, epochs=5, callbacks=[held_out])
  print(held_out.selected["verdicts"])   # e.g. {"performance_gap": "met"}
  ```
  """

  def __init__(self, data, update_every=None, max_accuracy_loss=None, restore=True,
               batch_size=1024, verbose=1, steps=None,
               harm_tolerance=verdict_lib.HARM_TOLERANCE, group_names=None):
    super().__init__()
    self.group_names = None if group_names is None else [str(n) for n in group_names]
    if update_every is not None:
      update_every = checks.positive_int("update_every", update_every)
    if max_accuracy_loss is not None:
      max_accuracy_loss = checks.number("max_accuracy_loss", max_accuracy_loss, 0.0, 1.0,
                                        high_open=False, what="a fraction: 0.02 = 2 points")
    batch_size = checks.positive_int("batch_size", batch_size)
    if steps is not None:
      steps = checks.positive_int("steps", steps)
    self.harm_tolerance = checks.number("harm_tolerance", harm_tolerance, 0.0, 1.0,
                                        what="a fraction: 0.01 = 1 point")
    self._raw = data if not isinstance(data, tf.data.Dataset) else None
    self._dataset = batched(data, batch_size, steps)
    self.update_every = update_every
    self.max_accuracy_loss = max_accuracy_loss
    self.restore = restore
    self.verbose = verbose
    self.candidates, self.selected, self.selection, self.final, self.last = (
        [], None, None, None, None)
    self.resolution, self.messages = {}, []
    self._snapshots, self._returned, self._settled = {}, None, None

  # ------------------------------------------------------------------ measuring
  def _check_model(self):
    model = self.model
    if not hasattr(model, "held_out_pass") or not model.fairness:
      raise ValueError("HeldOutFairness needs a model from fair_prune_wrapper (or a "
                       "FairPruneModel) with fairness constraints; this one has none.")
    if self._raw is not None:  # The checks `fit` makes on training arrays.
      try:
        model.check_data(self._raw[0], self._raw[1])
      except ValueError as err:
        raise ValueError(f"HeldOutFairness data (not the training data): {err}") from None
    needs_dense = any(c.needs_dense for c in model.fairness)
    if needs_dense and model.reference_model is None:
      element = self._dataset.element_spec[0]
      if not (groups_lib.DENSE_OUTPUTS_KEY in element or
              groups_lib.DENSE_CORRECT_KEY in element):
        raise ValueError(
            "HeldOutFairness: the degradation constraints compare against the dense model, "
            "and the held-out data carries neither its outputs nor a reference model is "
            "set. Pack them: pack_group_data(x_val, g_val, dense_outputs="
            "dense.predict(x_val)), or call model.set_reference_model(dense).")

  def _measure(self):
    return measure_lib.measure(self.model, self._dataset)

  def _at_target(self):
    """The schedule is at its final sparsity and the masks have been ranked at it: within
    1% of it, or (block, N:M and channel masks, which cannot hit it exactly) as sparse as
    at the previous measurement at the final sparsity."""
    now, final, measured = self.model.sparsity_status()
    if abs(now - final) > 1e-6:
      self._settled = None
      return False
    settled = abs(measured - final) < 0.01 or (
        self._settled is not None and abs(measured - self._settled) < 1e-9)
    self._settled = measured
    return settled

  def _below_accuracy_floor(self, m):
    """Whether measurement `m` fell under the accuracy floor (the best candidate's
    accuracy minus `max_accuracy_loss`) or collapsed: the multipliers then back off.
    Not the layer floor, which is the density each layer keeps (`layer_floor`)."""
    if m.collapsed:
      return True
    if self.max_accuracy_loss is None:
      return False
    best = max((c.accuracy for c in self.candidates if not c.collapsed), default=None)
    return best is not None and m.accuracy < best - self.max_accuracy_loss

  def _apply(self, m, steps, back_off=False):
    """The multipliers' dual step on `m`; returns whether a violation bound."""
    bound = not back_off and m.violation() > 0.0
    self.model.apply_held_out(m.stats, steps, back_off=back_off, tolerances=m.tolerances())
    self._bound = self._bound or bound
    self._measured += 1
    if bound:
      self.bound_at.append(self._schedule.step)
    multipliers = [float(np.max(v.numpy())) for v in self.model.fairness_multipliers]
    self._largest = max([self._largest] + multipliers)
    self._schedule.relaxed = self._far_from_binding(m, multipliers)
    return bound, multipliers

  @staticmethod
  def _far_from_binding(m, multipliers):
    """No multiplier is up and every one-sided gap is below half its tolerance: the
    scheduler may measure half as often (`Schedule.relaxed`)."""
    return max(multipliers, default=0.0) == 0.0 and m.violation(scale=0.5) < 0.0

  def _record(self, m, steps, epoch):
    back_off = self._below_accuracy_floor(m)
    bound, multipliers = self._apply(m, steps, back_off)
    self.last = m
    if not self._at_target():
      return
    self.candidates.append(select_lib.Candidate(
        epoch=epoch + 1, step=self._schedule.step, accuracy=m.accuracy, gaps=m.gaps,
        violation=m.violation(), collapsed=m.collapsed, verdicts=m.verdicts(),
        intervals={n: [i.lower, i.upper] for n, i in m.intervals.items()},
        backed_off=back_off, group_accuracy=[float(a) for a in m.group_accuracy],
        multipliers=multipliers, bound=bound))
    if not self.restore:
      return
    keep = select_lib.front(self.candidates, self._snapshots, self.max_accuracy_loss)
    new = len(self.candidates) - 1
    self._snapshots = {i: self._snapshots[i] for i in keep if i != new}
    if new in keep:
      self._snapshots[new] = self.model.get_weights()

  # ------------------------------------------------------------------ callback hooks
  def on_train_begin(self, logs=None):
    self._check_model()
    model = self.model
    steps = (self.params or {}).get("steps")
    every = self.update_every or (max(1, round(steps / MEASUREMENTS_PER_EPOCH)) if steps
                                  else 20)
    self._schedule = schedule_lib.Schedule(
        every, lambda: int(self.model.optimizer.iterations.numpy()))
    self._epoch = 0
    self.candidates, self.selected, self.selection, self.final = [], None, None, None
    self._snapshots, self._returned, self._settled = {}, None, None
    self.messages = []
    # A run resumed with multipliers already up has bound before.
    self._bound = any(float(np.max(v.numpy())) > 0 for v in model.fairness_multipliers)
    self.bound_at, self._measured, self._largest = [], 0, 0.0
    m = self._measure()
    self._schedule.relaxed = self._far_from_binding(
        m, [float(np.max(v.numpy())) for v in model.fairness_multipliers])
    # No held-out rates yet for the step: right after the masks are applied the model is
    # in a transient that training repairs, and steering on it would make every run
    # "bind" at step 0. The multipliers hold until the first scheduled measurement.
    model.apply_held_out([(np.zeros_like(h), np.zeros_like(n)) for h, n in m.stats], 0)
    self.last = m
    self.resolution = m.resolution()
    self._warn_resolution(m)

  def _warn_resolution(self, m):
    names = self.group_names or [str(i) for i in range(len(m.group_rows))]
    rows = sorted((int(n), names[i] if i < len(names) else str(i))
                  for i, n in enumerate(m.group_rows) if n > 0)
    if len(rows) < 2:
      self._warn("the held-out set holds fewer than two groups: every gap on it is 0, so "
                 "it cannot steer or select. Give it rows of every group.")
      return
    blind = [f"{c.name} (ε = {verdict_lib.points(c.tolerance)}, resolves "
             f"{verdict_lib.points(self.resolution[c.name])})"
             for c in self.model.fairness if self.resolution[c.name] > c.tolerance]
    if blind:
      self._warn(
          f"the held-out set cannot show ε met for {', '.join(blind)} (points; 95%, "
          f"simultaneous over the groups; at the rates of the freshly pruned model): its "
          f"smallest groups have {rows[0][0]} and {rows[1][0]} rows ({rows[0][1]!r}, "
          f"{rows[1][1]!r}). Violations it cannot tell from noise do not move the "
          "multipliers (where nothing else binds, the run is fairness off) and its verdicts "
          "there will be 'cannot tell': give it more rows, merge small groups, or raise ε.")

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch
    self._schedule.epoch_begin()

  def on_train_batch_end(self, batch, logs=None):
    steps = self._schedule.batch_end(batch)
    if steps:
      self._record(self._measure(), steps, self._epoch)

  def on_epoch_end(self, epoch, logs=None):
    steps = self._schedule.epoch_end()
    if steps:  # The epoch's last iterate is a candidate too.
      self._record(self._measure(), steps, epoch)
    if logs is not None and self.last is not None:
      logs["held_out_accuracy"] = self.last.accuracy
      for name, gap in self.last.gaps.items():
        if gap is not None:
          logs[f"held_out_{name}"] = gap

  def on_train_end(self, logs=None):
    """Selects the iterate to return, sets the model to it (`restore=True`), measures it
    on the whole set and fills `selected`."""
    if not self.candidates:
      i, reason = None, "no measurement at the target sparsity: the final weights are kept"
    else:
      i, reason = select_lib.select(self.candidates, self.max_accuracy_loss,
                                    never_bound=not self._bound)
      if i is None:
        reason += ": the final weights are kept"
    would_select = None
    final_step = self._schedule.step
    if i is not None and not self.restore:
      would_select = self.candidates[i]
      last = len(self.candidates) - 1
      i = last if self.candidates[last].step == final_step else None
      reason = ("restore=False: the final iterate (the rule would have returned epoch "
                f"{would_select.epoch}, step {would_select.step}: {reason})")
    if i is not None and self.restore:
      self.model.set_weights(self._snapshots[i])
    self._snapshots = {}
    self.final = m = self._measure()
    self.selection = select_lib.Selection(
        candidate=None if i is None else self.candidates[i], index=i, reason=reason,
        restored=bool(i is not None and self.restore), final_step=final_step,
        accuracy=m.accuracy, gaps=m.gaps, verdicts=m.verdicts(),
        intervals={n: [v.lower, v.upper] for n, v in m.intervals.items()},
        resolution=m.resolution(), collapsed=m.collapsed, met=m.met,
        within_tolerance=m.violation() <= 0.0, bound=self._bound,
        bound_at=list(self.bound_at), measurements=self._measured,
        largest_multiplier=self._largest,
        tolerances={c.name: c.tolerance for c in self.model.fairness},
        levelled_down=self._levelled_down(m), would_select=would_select)
    self.selected = self.selection.to_dict()
    self._returned = self.model.get_weights()
    self._report()

  def finish(self):
    """After every callback's `on_train_end` (the model's `fit` calls it): if a later
    callback changed the weights (e.g. `EarlyStopping(restore_best_weights=True)`), sets
    them back to the iterate `selected` describes, and says so."""
    returned, self._returned = self._returned, None
    if returned is None:
      return
    if any(not np.array_equal(a, b) for a, b in zip(returned, self.model.get_weights())):
      self.model.set_weights(returned)
      self._warn("another callback changed the weights at the end of fit (e.g. "
                 "EarlyStopping(restore_best_weights=True)); the model is set back to the "
                 "iterate HeldOutFairness selected, which `selected` describes.")

  def _report(self):
    chosen, m = self.selected, self.final
    gaps = ", ".join(
        f"{name} {verdict_lib.points(gap)} {verdict_lib.interval_text(*chosen['intervals'][name])}"
        f" (ε {verdict_lib.points(chosen['tolerances'][name])}): {chosen['verdicts'][name]}"
        for name, gap in m.gaps.items())
    if chosen["index"] is None and self.restore:
      self._warn(chosen["reason"])
    if self.verbose:
      where = (f"epoch {chosen['epoch']}, step {chosen['step']}" if chosen["index"] is not None
               else "the final weights")
      print(f"HeldOutFairness: returning {where} ({chosen['reason']}); held-out accuracy "
            f"{verdict_lib.points(m.accuracy)} points; gaps in points with 95% intervals: "
            f"{gaps}.")
    not_met = [n for n, v in chosen["verdicts"].items() if v == verdict_lib.NOT_MET]
    if not_met:
      self._warn(f"ε was not met on the held-out set for {', '.join(not_met)} (gaps in "
                 f"points: {gaps}); the constraint may be out of reach at this sparsity and "
                 "accuracy budget.")
    for name, groups in chosen["levelled_down"].items():
      self._warn(f"{name} closed on the held-out set while "
                 + "; ".join(g["text"] for g in groups)
                 + f" against the dense model: levelling down — {verdict_lib.REMEDIES}.")

  def _levelled_down(self, m):
    """Performance-gap constraint name → the groups that lost more than `harm_tolerance`
    against the dense model (beyond their interval, and more than average) while the
    accuracy gap closed against the dense model's beyond noise. (The dense model's other
    gaps are not measured here: judge those on a test split, `FairnessReport.verdict`.)"""
    if m.loss_sums is None:
      return {}
    present = m.accuracy_sums.present[0]
    if present.sum() < 2:
      return {}
    # The dense model's correctness is the pruned one's plus the loss, row for row.
    dense = intervals_lib.GroupSums(
        m.accuracy_sums.sums + m.loss_sums.sums, m.accuracy_sums.sums + m.loss_sums.sums,
        m.accuracy_sums.weights, m.accuracy_sums.weight_squares, m.accuracy_sums.rows)
    dense_gap = intervals_lib.pairwise_gap(dense)
    losses = verdict_lib.group_losses(m.loss_sums, self.group_names)
    out = {}
    for c in self.model.fairness:
      if c.audit_gap != "performance_gap":
        continue
      interval = m.intervals[c.name]
      v = verdict_lib.decide(
          c.audit_gap, c.tolerance, interval.value, (interval.lower, interval.upper),
          reference=dense_gap.value, reference_interval=(dense_gap.lower, dense_gap.upper),
          losses=losses, harm_tolerance=self.harm_tolerance, reference_name="the dense model")
      if v.harmed:
        out[c.name] = [dict(dataclasses.asdict(g), text=g.text()) for g in v.harmed]
    return out

  def _warn(self, message):
    self.messages.append(message)
    warnings.warn(f"tf_fairprune.HeldOutFairness: {message}", UserWarning, stacklevel=2)
