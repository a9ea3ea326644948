"""What a pruning run measured on a `GroupDataset`: its audit, the share of its largest
predicted class and the fields of one results row.

Example:

```python
report = audit(model, dense, data.test, data)
row = result_row(data, "bifp", seed, 0.9, outcome, report)
```
"""

import numpy as np

from tf_fairprune.fairness import evaluate_fairness
from tf_fairprune.quantization import kernel_sparsity


def audit(model, dense, split, data, batch_size=512):
  """`evaluate_fairness` of `model` on one split of `data` (logits), against `dense`.

  Args:
    model: The model audited (logits out).
    dense: The dense reference model, or None.
    split: A `datasets.Split` of `data` (x, y, groups).
    data: The `GroupDataset` (its group names and count).
    batch_size: Rows per prediction batch.

  Returns:
    The `FairnessReport`.
  """
  return evaluate_fairness(model, (split.x, split.y, split.groups), dense_model=dense,
                           from_logits=True, group_names=data.group_names,
                           num_groups=data.num_groups, batch_size=batch_size)


def predicted_share(model, split, batch_size=1024):
  """The largest predicted class's share of the split's rows (1.0: a constant predictor)."""
  out = model.predict(split.x, batch_size=batch_size, verbose=0)
  labels = (out.reshape(-1) > 0) if out.shape[-1] == 1 or out.ndim == 1 else out.argmax(-1)
  return float(np.bincount(labels.astype(int)).max() / len(labels))


def result_row(data, method, seed, sparsity, outcome, report):
  """The fields of results.json / results.jsonl for one run.

  Args:
    data: The `GroupDataset`.
    method: The method's name.
    seed: The run's seed.
    sparsity: The target sparsity.
    outcome: What `baselines.prune` returned.
    report: The pruned model's test `FairnessReport`.
  """
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
