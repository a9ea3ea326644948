"""The pruning methods the job compares, by name, with the same budget.

`prune(method, dense, data, ...)` runs any of `METHODS` on a `datasets.GroupDataset`:
the bi-level methods (BiFP "bifp", BiP "bip", their per-layer variants and the paper's
ablations) and the baselines — TFMOT's gradual magnitude pruning ("gmp"), a one-shot
global magnitude mask with fine-tuning ("magnitude_ft"), Balancing Act's CEAG ("ceag")
and GMP followed by fair fine-tuning ("two_stage"). Each run records when it first
reaches a fair sparse model (`TargetTracker`).

```python
from tf_fairprune import baselines, datasets

data = datasets.load_adult("sex")
outcome = baselines.prune("ceag", dense, data, sparsity=0.9, epochs=5, batch_size=256)
report = baselines.audit(outcome["model"], dense, data.test, data)
```
"""

from tf_fairprune.baselines.named_constraints import CONSTRAINTS
from tf_fairprune.baselines.named_constraints import make_constraints
from tf_fairprune.baselines.names import AUDIT_GAP
from tf_fairprune.baselines.names import CONSTRAINED
from tf_fairprune.baselines.names import DEFAULT_EPSILON
from tf_fairprune.baselines.names import DEFAULT_FAIRNESS
from tf_fairprune.baselines.names import DEFAULT_OPTIMIZER
from tf_fairprune.baselines.names import FAIRNESS_OFF
from tf_fairprune.baselines.names import LEVELS
from tf_fairprune.baselines.names import METHODS
from tf_fairprune.baselines.names import TF_KERAS_ONLY
from tf_fairprune.baselines.pruning import gmp_schedule
from tf_fairprune.baselines.pruning import loss_for
from tf_fairprune.baselines.pruning import make_optimizer
from tf_fairprune.baselines.pruning import prune
from tf_fairprune.baselines.results import audit
from tf_fairprune.baselines.results import predicted_share
from tf_fairprune.baselines.results import result_row
from tf_fairprune.baselines.tracking import target_tracker
from tf_fairprune.baselines.tracking import TargetTracker

__all__ = [
    "AUDIT_GAP", "CONSTRAINED", "CONSTRAINTS", "DEFAULT_EPSILON", "DEFAULT_FAIRNESS",
    "DEFAULT_OPTIMIZER", "FAIRNESS_OFF", "LEVELS", "METHODS", "TF_KERAS_ONLY", "TargetTracker",
    "audit", "gmp_schedule", "loss_for", "make_constraints", "make_optimizer",
    "predicted_share", "prune", "result_row", "target_tracker",
]
