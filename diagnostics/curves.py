"""Per-epoch curves and the small numeric tools the rules share (trend, noise, plateau fit).

Rules never look at raw rows: they take a `Curve`, whose `bad` values are oriented so that lower is
better (accuracy becomes error rate, perplexity becomes log-perplexity). That way every rule is
written once for "a lower-better curve" and works for loss, accuracy, WER or BLEU alike.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from diagnostics import schema


@dataclasses.dataclass
class Curve:
  """One scalar history key over the epochs where it was logged.

  Attributes:
    key: canonical history key, e.g. "val_loss".
    epochs: epoch label of each point (as written in the log), float array.
    raw: values as logged (may contain NaN/Inf).
    bad: lower-is-better view of `raw` (error rate for accuracy, log for perplexity).
    rows: index of each point's row in the history.
  """

  key: str
  epochs: np.ndarray
  raw: np.ndarray
  bad: np.ndarray
  rows: np.ndarray

  def __len__(self) -> int:
    return len(self.raw)

  def finite_prefix(self) -> "Curve":
    """Returns the curve up to (excluding) its first non-finite value."""
    bad = ~np.isfinite(self.raw)
    if not bad.any():
      return self
    cut = int(np.argmax(bad))
    return self.take(slice(0, cut))

  def take(self, index) -> "Curve":
    """Returns the sub-curve selected by a slice or index array."""
    return Curve(self.key, self.epochs[index], self.raw[index], self.bad[index], self.rows[index])

  def to_raw(self, bad_value: float) -> float:
    """Inverts `badness` for one value (an error rate back to accuracy, log-perplexity back)."""
    metric = schema.metric_of(self.key)
    if metric in schema.HIGHER_IS_BETTER:
      finite = self.raw[np.isfinite(self.raw)]
      top = 100.0 if finite.size and np.max(finite) > 1.0 else 1.0
      return float(top - bad_value)
    if metric == "perplexity":
      return float(math.exp(bad_value))
    return float(bad_value)

  def epoch(self, i: int) -> int | float:
    """The epoch label of point i as a plain int when it is integral."""
    return as_label(self.epochs[i])


def as_label(value: float) -> int | float:
  """Turns an epoch label into an int when integral (JSON reads better without '.0')."""
  value = float(value)
  return int(value) if value.is_integer() else round(value, 3)


def to_float(value: Any) -> float | None:
  """Converts a logged value to float; None for missing, booleans, strings that are not numbers."""
  if value is None or isinstance(value, (bool, dict, list)):
    return None
  try:
    return float(value)
  except (TypeError, ValueError):
    return None


def badness(key: str, raw: np.ndarray) -> np.ndarray:
  """Orients a metric so that lower is better and the scale is linear in "how wrong".

  Args:
    key: canonical key; its metric part chooses the transform.
    raw: logged values.

  Returns:
    error rate for accuracy (percent or fraction), 100 - BLEU (or 1 - BLEU), log of perplexity, the
    raw values otherwise.
  """
  metric = schema.metric_of(key)
  with np.errstate(all="ignore"):
    if metric in schema.HIGHER_IS_BETTER:
      finite = raw[np.isfinite(raw)]
      top = 100.0 if finite.size and np.max(finite) > 1.0 else 1.0
      return top - raw
    if metric == "perplexity":
      return np.log(np.where(raw > 0, raw, np.nan))
  return raw.astype(float)


def extract(rows: Sequence[dict], key: str) -> Curve | None:
  """Builds the curve of `key` from history rows; None when it was never logged as a number."""
  epochs, values, idx = [], [], []
  for i, row in enumerate(rows):
    value = to_float(row.get(key))
    if value is None:
      continue
    label = to_float(row.get("epoch"))
    epochs.append(i + 1 if label is None else label)
    values.append(value)
    idx.append(i)
  if not values:
    return None
  raw = np.asarray(values, dtype=float)
  return Curve(key, np.asarray(epochs, dtype=float), raw, badness(key, raw), np.asarray(idx))


def noise_sigma(y: np.ndarray) -> float | None:
  """Robust epoch-to-epoch noise (standard deviation) of a curve.

  Second differences cancel any locally linear trend, and for white noise of deviation s they have
  deviation s * sqrt(6); the median absolute value (scaled by 1.4826) ignores the few large
  second differences at the curve's bends.

  Returns:
    The estimate, or None when fewer than 4 points make it meaningless.
  """
  y = np.asarray(y, dtype=float)
  if y.size < 4:
    return None
  d2 = np.diff(y, n=2)
  return float(1.4826 * np.median(np.abs(d2)) / math.sqrt(6.0))


def smooth3(y: np.ndarray) -> np.ndarray:
  """Centred 3-point moving average (2 points at the ends).

  Used where a rule compares against "the best value": the minimum of a noisy curve is biased low
  by about 2-2.5 noise deviations over tens of epochs, the minimum of its 3-point mean by less
  than 1.5, so fewer noisy plateaus look like a rise.
  """
  y = np.asarray(y, dtype=float)
  if y.size < 3:
    return y.copy()
  padded = np.concatenate([[np.nan], y, [np.nan]])
  windows = np.stack([padded[:-2], padded[1:-1], padded[2:]])
  return np.nanmean(windows, axis=0)


def slope(x: np.ndarray, y: np.ndarray) -> float:
  """Least-squares slope of y over x (per unit of x); 0 for fewer than 2 points."""
  x = np.asarray(x, dtype=float)
  y = np.asarray(y, dtype=float)
  if x.size < 2 or np.ptp(x) == 0:
    return 0.0
  xc = x - x.mean()
  return float(np.dot(xc, y - y.mean()) / np.dot(xc, xc))


def recent_slope(curve: Curve, window: int) -> float:
  """Slope of the lower-better values over the last `window` points, per epoch."""
  part = curve.take(slice(-window, None))
  return slope(part.epochs, part.bad)


def sum_of_rises(y: np.ndarray, skip: Sequence[int] = ()) -> float:
  """Total of the epoch-to-epoch increases of y; `skip` lists indices i whose rise y[i]-y[i-1]
  must not count (e.g. a scheduled learning-rate restart)."""
  diffs = np.diff(np.asarray(y, dtype=float))
  keep = np.ones_like(diffs, dtype=bool)
  for i in skip:
    if 1 <= i <= diffs.size:
      keep[i - 1] = False
  return float(np.sum(np.clip(diffs[keep], 0.0, None)))


@dataclasses.dataclass
class ExpFit:
  """y(x) = asymptote + scale * exp(-rate * x), fitted to a decreasing curve."""

  asymptote: float
  scale: float
  rate: float

  def __call__(self, x):
    return self.asymptote + self.scale * np.exp(-self.rate * np.asarray(x, dtype=float))


def fit_exponential(x: np.ndarray, y: np.ndarray) -> ExpFit | None:
  """Fits a decaying exponential by a grid over the rate and linear least squares for the rest.

  A grid is robust where a nonlinear optimiser would need good starting values, and it is cheap for
  the tens of points a history has.

  Returns:
    The best fit with positive scale (a decreasing curve), or None when none fits.
  """
  x = np.asarray(x, dtype=float)
  y = np.asarray(y, dtype=float)
  if x.size < 3:
    return None
  x0 = x - x[0]
  span = max(float(np.ptp(x0)), 1.0)
  best, best_sse = None, math.inf
  for rate in np.geomspace(0.01 / span, 5.0, 80):
    basis = np.stack([np.ones_like(x0), np.exp(-rate * x0)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    if coef[1] <= 0:
      continue
    sse = float(np.sum((basis @ coef - y) ** 2))
    if sse < best_sse:
      best_sse = sse
      # Re-express the scale relative to x instead of x - x[0].
      best = ExpFit(float(coef[0]), float(coef[1] * math.exp(rate * x[0])), float(rate))
  return best


def epochs_to_plateau(fit: ExpFit, x_last: float, rel_slope: float, cap: int) -> tuple[int, bool]:
  """Further epochs until the fitted curve improves by less than `rel_slope` of its value per epoch.

  Args:
    fit: the exponential fit.
    x_last: last epoch run.
    rel_slope: per-epoch relative improvement that counts as a plateau.
    cap: give up after this many further epochs.

  Returns:
    (epochs, capped): capped is True when the plateau is not reached within `cap`.
  """
  for extra in range(0, cap + 1):
    x = x_last + extra
    now, nxt = float(fit(x)), float(fit(x + 1))
    if now - nxt <= rel_slope * max(abs(nxt), 1e-12):
      return extra, False
  return cap, True


def rnd(value: float | None, digits: int = 4) -> float | None:
  """Rounds to `digits` significant digits for evidence a person reads; keeps None."""
  if value is None:
    return None
  value = float(value)
  if not math.isfinite(value) or value == 0:
    return value
  return float(f"{value:.{digits}g}")
