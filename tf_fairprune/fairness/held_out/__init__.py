"""Held-out fairness: multipliers steered on data the weights never fit, the iterate that
generalises, and verdicts on it.

* `measure.py` — the measurer: one traced pass over the held-out set (`Measurement`:
  gaps with simultaneous intervals, the tolerances the steering uses, verdicts);
* `select.py` — the selector: `Candidate` and the rule that picks the one returned;
* `schedule.py` — the scheduler: when to measure;
* `callback.py` — `HeldOutFairness`, the Keras callback that wires them into `fit`.
"""

from tf_fairprune.fairness.held_out.callback import batched
from tf_fairprune.fairness.held_out.callback import check_arrays
from tf_fairprune.fairness.held_out.callback import HeldOutFairness
from tf_fairprune.fairness.held_out.measure import batch_statistics
from tf_fairprune.fairness.held_out.measure import BatchStatistics
from tf_fairprune.fairness.held_out.measure import COLLAPSE_SHARE
from tf_fairprune.fairness.held_out.measure import measure
from tf_fairprune.fairness.held_out.measure import Measurement
from tf_fairprune.fairness.held_out.measure import reduction_function
from tf_fairprune.fairness.held_out.measure import resolvable_gap
from tf_fairprune.fairness.held_out.schedule import Schedule
from tf_fairprune.fairness.held_out.select import Candidate
from tf_fairprune.fairness.held_out.select import select

__all__ = ["BatchStatistics", "COLLAPSE_SHARE", "Candidate", "HeldOutFairness", "Measurement",
           "Schedule", "batch_statistics", "batched", "check_arrays", "measure",
           "reduction_function", "resolvable_gap", "select"]
