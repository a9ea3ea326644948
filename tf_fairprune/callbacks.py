"""`FairPruningSummaries`: TensorBoard logs of sparsity, gaps and multipliers.

The counterpart of TFMOT's `PruningSummaries`. TF 2.21 no longer installs TensorBoard;
without it this callback fails at construction with the command that installs it
(TFMOT's crashes mid-training instead).
"""

import tensorflow as tf

from tf_fairprune import callback_base
from tf_fairprune import checks


def _require_tensorboard():
  try:
    import tensorboard  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as err:
    raise ImportError(
        "FairPruningSummaries writes TensorBoard summaries, but the `tensorboard` "
        "package is not installed. Install it with `pip install tensorboard` "
        "(or, from a checkout, `pip install -e \".[tensorboard]\"`).") from err


class FairPruningSummaries(callback_base.Callback):  # Both flavours: callback_base.py.
  """Logs per-layer sparsity, fairness gaps and Lagrange multipliers to TensorBoard.

  Args:
    log_dir: Directory for the event files.
    update_freq: `"epoch"` (default) or an integer number of batches.

  Raises:
    ImportError: If `tensorboard` is not installed (with the install command).

  Example:

  ```python
  pruned.fit(x, y, callbacks=[tf_fairprune.FairPruningSummaries("/tmp/logs")])
  ```
  """

  def __init__(self, log_dir, update_freq="epoch"):
    super().__init__()
    _require_tensorboard()
    if not (isinstance(update_freq, str) and update_freq == "epoch"):
      if not checks.is_integer(update_freq) or update_freq < 1:
        raise ValueError(f"update_freq must be 'epoch' or a positive integer, got "
                         f"{update_freq!r}.")
      update_freq = int(update_freq)
    self.log_dir = log_dir
    self.update_freq = update_freq
    self._writer = None
    self._batches = 0

  def on_train_begin(self, logs=None):
    if not hasattr(self.model, "fair_prune_wrappers"):
      raise ValueError("FairPruningSummaries needs a model from fair_prune_wrapper "
                       "(or a FairPruneModel).")
    self._writer = tf.summary.create_file_writer(self.log_dir)

  def _write(self, step, logs):
    with self._writer.as_default(step=int(step)):
      for wrapper in self.model.fair_prune_wrappers:
        for var, mask in zip(wrapper.prunable_weights, wrapper.mask_variables):
          sparsity = 1.0 - float(tf.reduce_mean(mask))
          tf.summary.scalar(f"sparsity/{wrapper.name}/{var.name.split('/')[-1].split(':')[0]}",
                            sparsity)
      tf.summary.scalar("sparsity/model", float(self.model.measured_sparsity()))
      for c, multiplier in zip(self.model.fairness, self.model.fairness_multipliers):
        if c.name in (logs or {}):
          tf.summary.scalar(f"fairness/{c.name}", float(logs[c.name]))
        tf.summary.scalar(f"fairness/{c.name}_multiplier", float(tf.reduce_max(multiplier)))
      for key, value in (logs or {}).items():
        if key.startswith("accuracy_g") or key.startswith(("accuracy_worst", "accuracy_best")):
          tf.summary.scalar(f"group_accuracy/{key}", float(value))
    self._writer.flush()

  def on_train_batch_end(self, batch, logs=None):
    self._batches += 1
    if self.update_freq != "epoch" and self._batches % self.update_freq == 0:
      self._write(self.model.optimizer.iterations, logs)

  def on_epoch_end(self, epoch, logs=None):
    if self.update_freq == "epoch":
      self._write(epoch, logs)

  def on_train_end(self, logs=None):
    if self._writer is not None:
      self._writer.close()
