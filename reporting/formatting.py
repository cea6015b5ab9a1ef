"""Display strings for table cells: mean ± std, p-values, parameter counts, missing values."""

from __future__ import annotations

from reporting.stats import SeedStat

# Cell text for a number a run never wrote (e.g. `last_test_*` of runs older than the key).
NOT_WRITTEN = "—"


def format_p(p: float) -> str:
  """Formats a p-value compactly with its relation: "p=0.41", "p=0.012", "p<0.001"."""
  return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def format_stat(stat: SeedStat, scale: float = 1.0, decimals: int | None = None) -> str:
  """Formats "mean ± std" in display units; "n/a" without values, no ± for a single seed."""
  if stat.mean is None:
    return "n/a"
  mean = stat.mean * scale
  d = auto_decimals(mean) if decimals is None else decimals
  if stat.std is None:
    return f"{mean:.{d}f}"
  return f"{mean:.{d}f} ± {stat.std * scale:.{d}f}"


def auto_decimals(x: float) -> int:
  """Chooses decimals so values keep about three significant digits."""
  a = abs(x)
  if a >= 100:
    return 1
  if a >= 1 or a == 0:
    return 2
  if a >= 0.01:
    return 3
  return 5


def format_params(stat: SeedStat) -> str:
  """Formats a mean parameter count as a whole number with thousands separators."""
  if stat.mean is None:
    return "n/a"
  return f"{round(stat.mean):,}"
