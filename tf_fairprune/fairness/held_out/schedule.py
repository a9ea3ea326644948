"""The scheduler: when `HeldOutFairness` measures — every `every` optimizer steps, and at
the end of every epoch (the epoch's last iterate is a candidate too). While the
constraints are far from binding (`relaxed`: no multiplier up, every gap below half its
tolerance), every `2 · every` steps: steering then has nothing to do, and a run that
never binds returns its final iterate anyway, so half the held-out passes are saved
where they buy nothing.

A batch callback may cover several steps (`steps_per_execution > 1`), and a guarded step
that was skipped does not count: the optimizer's step counter is the truth. Reading it
syncs with the device, so it is read only once the batch indices say a measurement may
be due.
"""


class Schedule:
  """Measurement times of one `fit`.

  Args:
    every: Optimizer steps between measurements.
    read_steps: A function returning the optimizer's step counter (an int).
  """

  def __init__(self, every, read_steps):
    self.every = every
    self._read = read_steps
    self._start = read_steps()
    self.step = 0  # Steps of this fit at the last read.
    self._unread = 0  # Steps possibly run since `step` was read (an upper bound).
    self._epoch_steps = 0  # Steps this epoch as the batch indices say.
    self._last = 0  # Step of the last measurement.
    self.relaxed = False  # Measure every 2 · every steps.

  def epoch_begin(self):
    self._epoch_steps = 0

  def _advance(self):
    self.step = self._read() - self._start
    self._unread = 0

  def _due(self, minimum):
    steps = self.step - self._last
    if steps >= minimum:
      self._last = self.step
      return steps
    return 0

  def batch_end(self, batch):
    """After batch index `batch` of the epoch: the steps a measurement now covers, or 0
    when none is due."""
    self._unread += max(batch + 1 - self._epoch_steps, 1)
    self._epoch_steps = batch + 1
    every = self.every * (2 if self.relaxed else 1)
    if self.step + self._unread - self._last < every:
      return 0
    self._advance()
    return self._due(every)

  def epoch_end(self):
    """At the end of an epoch: the steps since the last measurement (0: none ran)."""
    if self._unread:
      self._advance()
    return self._due(1)
