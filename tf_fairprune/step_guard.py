"""What makes a bad step change nothing, and how fit / evaluate report it.

A step is *bad* when its loss or gradients are not finite, or its batch holds a group id
outside [0, num_groups). `StepGuard` decides per step (the same on every replica)
whether the updates may be applied, puts back the layer state the forward pass already
changed (BatchNormalization's moving statistics), and once a step was bad, skips every
later step of the same `fit` (with `steps_per_execution > 1` they run before `fit`
can stop). `GuardCallback` (one class for both flavours, see `callback_base.py`) turns
the counters into a message naming the batch.
"""

import tensorflow as tf

from tf_fairprune import callback_base


class StepGuard:
  """Counters of one compiled model, kept out of Keras attribute tracking."""

  def __init__(self):
    def counter(name, value=0):
      # Every replica assigns the same (agreed) values: read one copy.
      return tf.Variable(value, dtype=tf.int64, trainable=False, name=name,
                         aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.steps = counter("steps")                # Steps run in this fit().
    self.halted = counter("halted")              # 1 once a step was bad.
    self.first_bad_step = counter("first_bad_step", -1)
    self.bad_id_batches = counter("bad_id_batches")
    self.non_finite_steps = counter("non_finite_steps")
    self.bad_label_batches = counter("bad_label_batches")

  def running(self, bad_ids):
    """True while no step of this fit was bad and this batch's ids are valid."""
    return tf.logical_and(tf.equal(self.halted, 0), tf.logical_not(bad_ids))

  @staticmethod
  def snapshot(variables):
    """Values to put back if the step turns out bad."""
    return [tf.identity(v) for v in variables]

  def finish(self, ok, finite, bad_ids, variables, saved):
    """After the updates: restore `variables` unless `ok`, count what went wrong."""
    for var, value in zip(variables, saved):
      var.assign(tf.where(ok, var, value))
    was_running = tf.equal(self.halted, 0)
    newly_non_finite = tf.logical_and(tf.logical_and(was_running, tf.logical_not(bad_ids)),
                                      tf.logical_not(finite))
    newly_bad_ids = tf.logical_and(was_running, bad_ids)
    stop = tf.logical_or(newly_non_finite, newly_bad_ids)
    self.first_bad_step.assign(tf.where(stop, self.steps, self.first_bad_step))
    self.halted.assign(tf.maximum(self.halted, tf.cast(stop, tf.int64)))
    self.non_finite_steps.assign_add(tf.cast(newly_non_finite, tf.int64))
    self.bad_id_batches.assign_add(tf.cast(newly_bad_ids, tf.int64))
    self.steps.assign_add(1)

  def count_bad_ids(self, bad_ids):
    """In evaluation: count a batch with invalid ids (nothing to undo)."""
    self.bad_id_batches.assign_add(tf.cast(bad_ids, tf.int64))

  def count_bad_labels(self, bad_labels, halt=True):
    """Counts a batch whose labels the group statistics cannot read; in training, every
    later step of this fit is skipped (the callback then raises)."""
    self.bad_label_batches.assign_add(tf.cast(bad_labels, tf.int64))
    if halt:
      self.halted.assign(tf.maximum(self.halted, tf.cast(bad_labels, tf.int64)))

  def reset(self):
    self.steps.assign(0)
    self.halted.assign(0)
    self.first_bad_step.assign(-1)


def forward_state_variables(model, wrappers, objective_variables):
  """Non-trainable variables of `model` that a training forward pass may change (e.g.
  BatchNormalization's moving statistics), which a bad step puts back: not the masks
  of `wrappers` nor the fairness state (`objective_variables`)."""
  own = {id(v) for w in wrappers for v in w.mask_variables}
  own |= {id(v) for v in objective_variables}
  return [v for v in model.non_trainable_variables if id(v) not in own]


class GuardCallback(callback_base.Callback):
  """Stops `fit` after a bad step and says which batch it was; raises for bad ids.

  The step itself already changed nothing; this reports it. Added by the model's `fit`
  and `evaluate`.
  """

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    # tf_keras: the guard reads none of the logs, so batch hooks need not turn them into
    # numpy values on its account (a host copy of every metric after every batch). Set on
    # the instance: tf_keras' Callback.__init__ sets it False there, hiding a class value.
    self._supports_tf_logs = True

  def _guard(self):
    return self.model._step_guard  # pylint: disable=protected-access

  def _check_ids(self, where):
    count = int(self._guard().bad_id_batches.numpy())
    if count > self._bad_ids_seen:
      self._bad_ids_seen = count
      self.model.stop_training = True
      raise ValueError(
          f"Group ids outside [0, num_groups={self.model.num_groups}) {where}; that step "
          "changed nothing. Check the ids (pack_group_data(..., num_groups=K) checks "
          "arrays when they are packed) or build the model with a larger num_groups.")

  def _check_labels(self, where):
    count = int(self._guard().bad_label_batches.numpy())
    if count > self._bad_labels_seen:
      self._bad_labels_seen = count
      self.model.stop_training = True
      signed = getattr(self.model, "_signed_labels", False)
      raise ValueError(
          f"Labels the per-group statistics cannot read {where}: a binary model (one "
          f"output) reads labels 0 and 1{' (-1 and 1 with its hinge loss)' if signed else ''}, "
          "a C-class model sparse class ids in [0, C) or one-hot rows. Map the labels "
          "first, e.g. y = (y == positive_value) for a binary task. Training stopped.")

  def on_test_begin(self, logs=None):
    guard = self._guard()
    self._bad_ids_seen = int(guard.bad_id_batches.numpy())
    self._bad_labels_seen = int(guard.bad_label_batches.numpy())

  def on_test_batch_end(self, batch, logs=None):
    self._check_ids(f"in evaluation batch {batch}")
    self._check_labels(f"in evaluation batch {batch}")

  def on_train_begin(self, logs=None):
    guard = self._guard()
    self._bad_ids_seen = int(guard.bad_id_batches.numpy())
    self._bad_labels_seen = int(guard.bad_label_batches.numpy())
    self._seen = int(guard.non_finite_steps.numpy())
    guard.reset()

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch
    self._epoch_start = int(self._guard().steps.numpy())

  def on_train_batch_end(self, batch, logs=None):
    guard = self._guard()
    # Every bad training step sets `halted` (bad ids, non-finite values, unreadable
    # labels), and nothing else moves the counters while it is 0: one read per batch
    # when all is well, instead of four.
    if not int(guard.halted.numpy()):
      return
    where = int(guard.first_bad_step.numpy()) - self._epoch_start
    self._check_ids(f"at batch {where} of epoch {self._epoch} (counting from 0)")
    self._check_labels(f"by batch {batch} of epoch {self._epoch} (counting from 0)")
    count = int(guard.non_finite_steps.numpy())
    if count > self._seen:
      tf.get_logger().error(
          "tf_fairprune: the loss or its gradients became NaN/inf at batch %d of epoch %d "
          "(counting from 0); that step and every later one were skipped and training "
          "stopped. The model keeps all of its state from the last finite step: weights, "
          "scores, masks, optimizer slots, multipliers and layer statistics such as "
          "BatchNormalization's moving mean and variance. Lower the learning rates or "
          "check the data for NaN/inf.", where, self._epoch)
      self.model.stop_training = True
      self.model.stopped_on_non_finite_loss = True
      self._seen = count


def is_callback_list(callbacks):
  """A Keras `CallbackList` (Keras 3's fit passes its own, guard included, to its
  validation), not a list of callbacks."""
  return (callbacks is not None and not isinstance(callbacks, (list, tuple)) and
          isinstance(getattr(callbacks, "callbacks", None), list))


def listed(callbacks):
  """The callbacks `fit` got, as a list: None, one callback, a list or tuple, or the
  callbacks of a `CallbackList` (Keras accepts each)."""
  if callbacks is None:
    return []
  if is_callback_list(callbacks):
    return list(callbacks.callbacks)
  if isinstance(callbacks, (list, tuple)):
    return list(callbacks)
  return [callbacks]


def with_guard(callbacks):
  """`callbacks` plus a `GuardCallback()` if it has no guard."""
  if is_callback_list(callbacks):
    return callbacks
  callbacks = listed(callbacks)
  if not any(isinstance(c, GuardCallback) for c in callbacks):
    callbacks.append(GuardCallback())
  return callbacks
