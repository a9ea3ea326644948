"""tradeoff.png of the main job: each group's accuracy (dense, fairness off, pruned) and
every gap, with ε and the fairness-off model's gaps.

No flags and no TensorFlow, so that it can be tested alone. matplotlib is optional
(`pip install tf_fairprune[plots]`): it is imported only when a figure is drawn.

Example:

```python
plot(results, report, "tradeoff.png")  # results: the job's results.json dict
```
"""

import textwrap

import numpy as np

# Entries of a report's `gaps` that are not gaps between groups (`degradation` is the
# overall accuracy lost).
NOT_GAPS = ("degradation",)
# Preferred order; any other gap the report holds follows.
ORDER = ("performance_gap", "degradation_gap", "max_excess_gap",
         "demographic_parity_difference", "equalized_odds_difference",
         "equal_opportunity_difference")
NAME_WIDTH = 12  # Characters per line of a group name under its bars.


def gap_names(gaps):
  """Every gap of the report with a value, in `ORDER` first."""
  names = [k for k in ORDER if gaps.get(k) is not None]
  return names + [k for k, v in gaps.items()
                  if v is not None and k not in names and k not in NOT_GAPS]


def group_label(name, size):
  return "\n".join(textwrap.wrap(str(name), NAME_WIDTH) or [""]) + f"\n(n={size})"


def draw(results, report, off_report=None):
  """The figure (matplotlib, Agg); `plot` writes it. `off_report`: the fairness-off
  model's test report (its group accuracies), or None."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  groups = [g for g in report.groups if g["size"]]
  names = gap_names(report.gaps)
  off = results.get("fairness_off")
  off_groups = {g["name"]: g for g in off_report.groups} if off_report is not None else {}
  # Wide enough for every group's bars and every gap's row.
  width = max(11.0, 4.0 + 1.25 * (len(groups) + 1))
  fig, (left, right) = plt.subplots(
      1, 2, figsize=(width, max(4.2, 2.2 + 0.45 * len(names))),
      gridspec_kw={"width_ratios": [max(1.0, (len(groups) + 1) / 3), 1.0]})
  xs = np.arange(len(groups) + 1)
  dense = [g["dense_accuracy"] * 100 for g in groups] + [results["dense_accuracy"] * 100]
  pruned = [g["accuracy"] * 100 for g in groups] + [results["accuracy"] * 100]
  series = [("dense", dense, "#9aa5b1")]
  if off is not None and off_groups:
    series.append((f"{off['method']} (fairness off)",
                   [off_groups[g["name"]]["accuracy"] * 100 for g in groups]
                   + [off["accuracy"] * 100], "#edae49"))
  series.append((f"{results['method']} ({results['sparsity']:.1%} sparse)", pruned, "#d1495b"))
  bar = 0.8 / len(series)
  for i, (label, values, color) in enumerate(series):
    bars = left.bar(xs + (i - (len(series) - 1) / 2) * bar, values, bar, label=label,
                    color=color)
    if i == len(series) - 1:
      left.bar_label(bars, fmt="%.1f", fontsize=8)
  # Names wrapped (never rotated: rotated boxes overlap) under bars spaced for them.
  left.set_xticks(xs, [group_label(g["name"], g["size"]) for g in groups] + ["all"],
                  fontsize=8)
  left.set_ylim(0, 105)  # The full scale: a 0.2-point difference must look like one.
  left.set_ylabel("test accuracy (points)")
  lines = max(label.count("\n") for label in [group_label(g["name"], g["size"]) for g in groups]
              + ["all"]) + 1
  left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08 - 0.05 * lines),
              ncol=len(series), fontsize=8)

  values = [report.gaps[k] * 100 for k in names]
  rows = np.arange(len(names))
  right.barh(rows, values, color="#d1495b", label=f"{results['method']}")
  # The dense model's accuracy gap, a tick on the performance-gap row.
  dense_gap = max(dense[:-1]) - min(dense[:-1]) if len(groups) > 1 else 0.0
  row = names.index("performance_gap") if "performance_gap" in names else None
  if row is not None:
    right.scatter([dense_gap], [row], marker="|", s=400, color="black", zorder=3,
                  label=f"dense model's accuracy gap ({dense_gap:.1f})")
  marks = [dense_gap] if row is not None else []
  if off is not None:
    off_values = [(i, off["gaps"][k] * 100) for i, k in enumerate(names)
                  if off["gaps"].get(k) is not None]
    if off_values:
      right.scatter([v for _, v in off_values], [i for i, _ in off_values], marker="o",
                    s=30, facecolors="none", edgecolors="#b07d1a", zorder=3,
                    label=f"{off['method']} (fairness off)")
      marks += [v for _, v in off_values]
  eps_rows = [(names.index(c["gap"]), c["epsilon"] * 100)
              for c in results.get("constraints") or [] if c["gap"] in names]
  for j, (i, eps) in enumerate(eps_rows):
    right.plot([eps, eps], [i - 0.45, i + 0.45], color="#2e4057", linestyle="--", zorder=4,
               label="ε" if j == 0 else None)
    marks.append(eps)
  top = max(values + marks + [1.0])
  pad = 0.02 * top
  for i, v in enumerate(values):
    # Right of the bar, and right of the dense tick on its row: never under it.
    at = max(v, dense_gap) if i == row else v
    right.text(at + pad + (0.02 * top if i == row else 0.0), i, f"{v:.1f}", va="center",
               fontsize=8)
  right.set_yticks(rows, [n.replace("_", " ") for n in names], fontsize=8)
  right.set_xlabel("gap between groups (points)")
  right.set_xlim(0, top * 1.3)
  right.set_ylim(len(names) - 0.5, -0.5)  # First gap on top.
  right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8)
  title = results["dataset"] + (" (SEMI-SYNTHETIC groups)" if results["semi_synthetic"] else "")
  fig.suptitle(title)
  fig.tight_layout()
  return fig


def plot(results, report, path, off_report=None):
  """Writes the figure to `path` (PNG)."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig = draw(results, report, off_report)
  fig.savefig(path, dpi=100)
  plt.close(fig)
