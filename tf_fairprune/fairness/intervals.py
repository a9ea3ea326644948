"""Confidence intervals for group rates and the gaps between them (numpy, host side).

A gap between groups is the largest of a set of *contrasts*, each a linear combination
of per-group means: rate_i − rate_j for every ordered pair of groups (accuracy, selection
rate, TPR, FPR, or accuracy lost against the dense model), or ψ_g = R_g − R for "do no
harm". The gap is within ε exactly when every contrast is. So a gap is judged through
intervals for its contrasts that hold *simultaneously* (Bonferroni over the m distinct
contrasts, each at level 1 − α/m):

* the gap's interval is [max_k L_k, max_k U_k] (every L_k ≤ v_k ≤ U_k ⇒ max L ≤ max v ≤
  max U), clipped at 0 (the gaps here are never negative);
* "met" when every U_k ≤ ε, "not met" when some L_k > ε, otherwise "cannot tell" —
  each wrong with probability at most α (asymptotically), however many groups there are.

Per-group intervals:

* rates of 0/1 outcomes (accuracy, selection rate, TPR, FPR): Wilson's score interval;
  their differences and other linear combinations by MOVER (Zou & Donner 2008), which
  for a difference of two proportions is Newcombe's hybrid score interval (Newcombe
  1998, method 10);
* the accuracy a group lost against the dense model, a mean of per-row values in
  {−1, 0, 1} over the same rows (paired): Wilson intervals for the shares of rows it
  gained and lost, combined by MOVER with their multinomial correlation (Newcombe 1998,
  paired method 10), and combined with other groups the same way.

With sample weights, sizes are Kish's effective sizes (Σw)² / Σw².

The inputs are per-group sufficient statistics `GroupSums` [T, K]: T terms (equalized
odds has two: TPR and FPR), K groups.
"""

import dataclasses
import math
import statistics

import numpy as np

ALPHA = 0.05  # 95% intervals, simultaneous over a gap's contrasts.
MET, NOT_MET, CANNOT_TELL = "met", "not met", "cannot tell"


def z_value(alpha=ALPHA, comparisons=1):
  """The two-sided normal quantile for `comparisons` simultaneous intervals (Bonferroni)."""
  comparisons = max(int(comparisons), 1)
  return statistics.NormalDist().inv_cdf(1.0 - alpha / (2.0 * comparisons))


def wilson(rate, n, z):
  """Wilson's score interval of a proportion (arrays broadcast); (nan, nan) where n = 0."""
  rate, n = np.asarray(rate, np.float64), np.asarray(n, np.float64)
  safe = np.maximum(n, 1e-12)
  denominator = 1.0 + z * z / safe
  centre = (rate + z * z / (2 * safe)) / denominator
  half = z * np.sqrt(np.clip(rate * (1 - rate), 0, None) / safe + z * z / (4 * safe * safe))
  half = half / denominator
  lower = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
  upper = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
  return lower, upper


def paired_difference(mean, second_moment, n, z):
  """Interval of a mean of per-row values in {−1, 0, 1} (a paired difference of two
  proportions, e.g. dense correct − pruned correct), from its mean and the mean of its
  squares (the discordant share); (nan, nan) where n = 0.

  The mean is p₊ − p₋ (the shares of +1 and −1 rows). Each share gets Wilson's
  interval and the difference MOVER's, with the correlation of the two multinomial
  shares, −√(p₊p₋ / ((1 − p₊)(1 − p₋))) (Newcombe 1998's paired method 10 in MOVER form;
  Tang, Ling & Tian 2010). Unlike a Wald interval it keeps its level at the small
  discordant shares and large Bonferroni z of many groups.
  """
  mean, second, n = (np.asarray(v, np.float64) for v in (mean, second_moment, n))
  up = np.clip((second + mean) / 2, 0, 1)  # Share of +1 rows (e.g. only dense correct).
  down = np.clip((second - mean) / 2, 0, 1)  # Share of −1 rows.
  up_lower, up_upper = wilson(up, n, z)
  down_lower, down_upper = wilson(down, n, z)
  # Where a share is 1 every row moved one way: the correlation's limit there is −1.
  rho = -np.sqrt(np.divide(up * down, (1 - up) * (1 - down),
                           out=np.ones_like(up), where=(up < 1) & (down < 1)))
  centre = up - down
  def reach(a, b):  # MOVER's half-width from the two one-sided distances.
    return np.sqrt(np.clip(a * a + b * b - 2 * rho * a * b, 0, None))
  lower = centre - reach(up - up_lower, down_upper - down)
  upper = centre + reach(up_upper - up, down - down_lower)
  lower = np.where(n > 0, np.clip(lower, -1.0, 1.0), np.nan)
  upper = np.where(n > 0, np.clip(upper, -1.0, 1.0), np.nan)
  return lower, upper


@dataclasses.dataclass
class GroupSums:
  """Per-group sufficient statistics of one gap's outcome, each [T, K].

  Attributes:
    sums: Σ w·v of the per-row outcome v (0/1, or −1/0/1 when `paired`).
    squares: Σ w·v² (equal to `sums` for 0/1 outcomes).
    weights: Σ w over the rows that count (eligible rows: positives for TPR, ...).
    weight_squares: Σ w² (equal to `weights` without sample weights).
    rows: How many rows count (unweighted).
    paired: The outcome is a paired difference in {−1, 0, 1} (degradation).
  """
  sums: np.ndarray
  squares: np.ndarray
  weights: np.ndarray
  weight_squares: np.ndarray
  rows: np.ndarray
  paired: bool = False

  def __post_init__(self):
    for field in ("sums", "squares", "weights", "weight_squares", "rows"):
      value = np.asarray(getattr(self, field), np.float64)
      setattr(self, field, value.reshape(1, -1) if value.ndim == 1 else value)

  @classmethod
  def of_values(cls, values, eligible, groups, num_groups, sample_weight=None, paired=False):
    """From per-row arrays: `values` [T, n] outcomes, `eligible` [T, n] 0/1, `groups` [n]."""
    values = np.atleast_2d(np.asarray(values, np.float64))
    eligible = np.atleast_2d(np.asarray(eligible, np.float64))
    w = np.ones(values.shape[-1]) if sample_weight is None else np.asarray(
        sample_weight, np.float64).reshape(-1)
    groups = np.asarray(groups).reshape(-1)
    out = {k: np.zeros((values.shape[0], num_groups)) for k in
           ("sums", "squares", "weights", "weight_squares", "rows")}
    for t in range(values.shape[0]):
      we = w * eligible[t]
      for name, per_row in (("sums", we * values[t]), ("squares", we * values[t] ** 2),
                            ("weights", we), ("weight_squares", we * we),
                            ("rows", (eligible[t] > 0).astype(np.float64))):
        out[name][t] = np.bincount(groups, per_row, minlength=num_groups)[:num_groups]
    return cls(paired=paired, **out)

  @property
  def present(self):
    """[T, K]: the group has rows for the term."""
    return self.weights > 0

  @property
  def means(self):
    return np.divide(self.sums, self.weights, out=np.zeros_like(self.sums),
                     where=self.weights > 0)

  @property
  def effective_sizes(self):
    """Kish's effective sample sizes, [T, K] (the row counts without weights)."""
    return np.divide(self.weights ** 2, self.weight_squares,
                     out=np.zeros_like(self.weights), where=self.weight_squares > 0)

  def group_intervals(self, z):
    """([T, K] lower, [T, K] upper) of each group's mean."""
    n = self.effective_sizes
    if self.paired:
      second = np.divide(self.squares, self.weights, out=np.zeros_like(self.squares),
                         where=self.weights > 0)
      lower, upper = paired_difference(self.means, second, n, z)
    else:
      lower, upper = wilson(self.means, n, z)
    # MOVER needs the estimate inside its interval (the adjusted centres shrink). An
    # undefined bound (no effective size) stays NaN: that comparison cannot be judged.
    return (np.where(np.isnan(lower), np.nan, np.minimum(lower, self.means)),
            np.where(np.isnan(upper), np.nan, np.maximum(upper, self.means)))


def mover(coefficients, estimates, lower, upper):
  """MOVER interval of Σ c·θ from independent estimates θ̂ and their intervals (last axis
  summed): (value, lower, upper)."""
  c = np.asarray(coefficients, np.float64)
  term, lo, hi = c * estimates, np.minimum(c * lower, c * upper), np.maximum(c * lower,
                                                                             c * upper)
  value = term.sum(-1)
  return (value, value - np.sqrt(np.square(term - lo).sum(-1)),
          value + np.sqrt(np.square(hi - term).sum(-1)))


@dataclasses.dataclass
class GapInterval:
  """A gap with its simultaneous interval, and the contrasts it is the largest of.

  Attributes:
    value: The gap (largest contrast over the groups present; None if none is defined).
    lower, upper: Its interval (95% by default, simultaneous over the contrasts).
    contrasts, contrast_lower, contrast_upper: Every one-sided contrast and its interval,
      shaped like the constraint's multipliers ([T, K, K] pairwise, [T, K] excess); NaN
      where undefined.
    valid: Where a contrast is defined (its groups present).
    comparisons: m, the number of distinct contrasts the level is shared by.
    z: The normal quantile used for each contrast (Bonferroni-adjusted).
  """
  value: float
  lower: float
  upper: float
  contrasts: np.ndarray
  contrast_lower: np.ndarray
  contrast_upper: np.ndarray
  valid: np.ndarray
  comparisons: int
  z: float

  @property
  def half_widths(self):
    """Each contrast's half-width (U − L) / 2: the smallest departure from it the data
    can tell from noise; +inf where undefined."""
    return np.where(self.valid, (self.contrast_upper - self.contrast_lower) / 2, np.inf)

  def verdict(self, epsilon):
    """`MET`, `NOT_MET` or `CANNOT_TELL` for the statement "gap ≤ ε"."""
    return judge(self.lower, self.upper, epsilon) if self.value is not None else CANNOT_TELL

  @property
  def resolution(self):
    """The smallest ε these data could show to be met at the rates measured: the largest
    half-width of the gap's contrasts (inf when none is defined, or one is undefined)."""
    widths = self.half_widths[self.valid]
    if not widths.size or np.isnan(widths).any():
      return math.inf
    return float(widths.max())


def judge(lower, upper, epsilon):
  """The three-valued verdict of "value ≤ ε" from an interval [lower, upper]."""
  if upper is None or lower is None or not (np.isfinite(lower) and np.isfinite(upper)):
    return CANNOT_TELL
  if upper <= epsilon + 1e-12:
    return MET
  if lower > epsilon + 1e-12:
    return NOT_MET
  return CANNOT_TELL


def _finish(values, lower, upper, valid, comparisons, z):
  values = np.where(valid, values, np.nan)
  lower, upper = np.where(valid, lower, np.nan), np.where(valid, upper, np.nan)
  if not valid.any():
    return GapInterval(None, None, None, values, lower, upper, valid, comparisons, z)
  value = float(max(np.nanmax(values), 0.0))
  if np.isnan(lower[valid]).any() or np.isnan(upper[valid]).any():
    # A comparison without an interval (no effective size): the gap's is undefined too.
    return GapInterval(value, None, None, values, lower, upper, valid, comparisons, z)
  return GapInterval(value, float(max(np.nanmax(lower), 0.0)), float(max(np.nanmax(upper), 0.0)),
                     values, lower, upper, valid, comparisons, z)


def pairwise_gap(stats, alpha=ALPHA):
  """The worst-pair gap max_{t, i, j} (mean_ti − mean_tj) with its simultaneous interval
  (Bonferroni over the T · K'(K'−1)/2 pairs of groups present)."""
  present = stats.present
  comparisons = int(sum(n * (n - 1) // 2 for n in present.sum(-1)))
  z = z_value(alpha, comparisons)
  means = stats.means
  lo, hi = stats.group_intervals(z)
  values, lower, upper = mover(
      np.array([1.0, -1.0]),
      np.stack(np.broadcast_arrays(means[..., :, None], means[..., None, :]), -1),
      np.stack(np.broadcast_arrays(lo[..., :, None], lo[..., None, :]), -1),
      np.stack(np.broadcast_arrays(hi[..., :, None], hi[..., None, :]), -1))
  k = means.shape[-1]
  valid = present[..., :, None] & present[..., None, :] & ~np.eye(k, dtype=bool)
  return _finish(values, lower, upper, valid, comparisons, z)


def excess_gap(stats, alpha=ALPHA):
  """max_g ψ_g, ψ_g = R_g − R (R the weighted mean over all rows) with its simultaneous
  interval (Bonferroni over the T · K' groups present)."""
  present = stats.present
  comparisons = int(present.sum())
  z = z_value(alpha, comparisons)
  means = stats.means
  lo, hi = stats.group_intervals(z)
  total = stats.weights.sum(-1, keepdims=True)
  share = np.divide(stats.weights, total, out=np.zeros_like(stats.weights), where=total > 0)
  k = means.shape[-1]
  # ψ_g = Σ_h (δ_gh − share_h) R_h: coefficients [T, K (g), K (h)].
  coefficients = np.eye(k)[None] - share[:, None, :]
  expand = lambda a: np.broadcast_to(a[:, None, :], coefficients.shape)
  values, lower, upper = mover(coefficients, expand(np.where(present, means, 0.0)),
                               expand(np.where(present, lo, 0.0)),
                               expand(np.where(present, hi, 0.0)))
  valid = present & (present.sum(-1, keepdims=True) >= 2)
  return _finish(values, lower, upper, valid, comparisons, z)


def largest_group(stats, alpha=ALPHA):
  """max_g mean_g (e.g. the largest accuracy a group lost against the dense model) with
  its simultaneous interval (Bonferroni over the T · K' groups present)."""
  present = stats.present
  comparisons = int(present.sum())
  z = z_value(alpha, comparisons)
  lo, hi = stats.group_intervals(z)
  interval = _finish(stats.means, lo, hi, present, comparisons, z)
  if interval.value is not None:  # A loss can be negative (a gain): no clipping at 0.
    interval.value = float(np.nanmax(interval.contrasts))
  if interval.lower is not None:
    interval.lower = float(np.nanmax(interval.contrast_lower))
    interval.upper = float(np.nanmax(interval.contrast_upper))
  return interval


KINDS = {"pairwise": pairwise_gap, "excess": excess_gap, "group": largest_group}


def gap_interval(kind, stats, alpha=ALPHA):
  """The gap of `kind` ("pairwise", "excess" or "group") with its interval."""
  if kind not in KINDS:
    raise ValueError(f"Unknown gap kind {kind!r}: one of {sorted(KINDS)}.")
  return KINDS[kind](stats, alpha)


def resolution(stats, kind="pairwise", alpha=ALPHA):
  """The smallest gap these groups can show to be within ε (`GapInterval.resolution`)."""
  return gap_interval(kind, stats, alpha).resolution
