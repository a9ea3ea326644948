"""The time (and steps) a pruning run takes to first reach a fair sparse model.

Example:

```python
track = target_tracker(keras, data, dense, "max_excess_gap", 0.01, 0.01, dense_accuracy)
model.fit(x, y, callbacks=[track])
track.seconds  # None if the target was never reached
```
"""

import time

import tf_keras as keras

from tf_fairprune.baselines import results

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
    report = results.audit(self.model, self.dense, self.data.validation, self.data)
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


_CALLBACK_CLASSES = {}


def callback_class(logic, k, name):
  """The class `name` with `logic` mixed into the Keras module `k`'s Callback, made
  once per pair (how one callback's logic runs under either flavour's fit)."""
  key = (logic, k)
  if key not in _CALLBACK_CLASSES:
    _CALLBACK_CLASSES[key] = type(name, (logic, k.callbacks.Callback), {})
  return _CALLBACK_CLASSES[key]


def target_tracker(k, *args, **kwargs):
  """A `TargetTracker` that is a callback of the Keras module `k` (`tf_keras` or Keras
  3's `keras`); the other arguments are `TargetTrackerLogic`'s."""
  if k is keras:
    return TargetTracker(*args, **kwargs)
  return callback_class(TargetTrackerLogic, k, "TargetTracker")(*args, **kwargs)
