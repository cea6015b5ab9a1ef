"""Statistics over seeds: mean ± sample std and Welch's t-test."""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Sequence

from reporting.metrics import is_number

# Two rows are "separated" when Welch's t-test rejects equal means at this level.
ALPHA = 0.05


@dataclasses.dataclass(frozen=True)
class SeedStat:
  """A quantity over the seeds of one experiment.

  Attributes:
    values: per-seed values that exist (None entries dropped).
    mean: mean of values, None when there are none.
    std: sample standard deviation (ddof=1), None with fewer than two values.
  """

  values: tuple[float, ...]
  mean: float | None
  std: float | None

  @property
  def n(self) -> int:
    return len(self.values)


def seed_stat(values: Sequence[float | None]) -> SeedStat:
  """Builds a SeedStat from per-seed values, ignoring missing ones."""
  kept = tuple(float(v) for v in values if is_number(v))
  if not kept:
    return SeedStat((), None, None)
  mean = sum(kept) / len(kept)
  if len(kept) < 2:
    return SeedStat(kept, mean, None)
  var = sum((v - mean) ** 2 for v in kept) / (len(kept) - 1)
  return SeedStat(kept, mean, math.sqrt(var))


@dataclasses.dataclass(frozen=True)
class Separation:
  """Outcome of comparing two rows' per-seed values.

  Attributes:
    tested: whether a test was run (both rows need at least two seeds).
    p_value: Welch's two-sided p-value, None when not tested or undefined.
    separated: True when p < ALPHA; None when not tested.
    note: why no test was run, or why the p-value is undefined.
  """

  tested: bool
  p_value: float | None
  separated: bool | None
  note: str = ""


def welch_separation(a: Sequence[float], b: Sequence[float]) -> Separation:
  """Compares two samples with Welch's t-test (scipy.stats.ttest_ind, equal_var=False).

  Args:
    a: per-seed values of one row.
    b: per-seed values of the other row.

  Returns:
    The Separation. With fewer than two values on either side no test is run. When both
    samples have zero spread the t statistic is undefined: equal means count as not
    separated, different means as separated (there is no noise to overlap).
  """
  if len(a) < 2 or len(b) < 2:
    return Separation(False, None, None, "single seed: no test")
  from scipy import stats  # Imported here so loading runs does not pay for scipy.
  with warnings.catch_warnings():
    # Near-identical seeds trigger a precision warning; the p-value is still what we report.
    warnings.simplefilter("ignore", RuntimeWarning)
    p_value = float(stats.ttest_ind(list(a), list(b), equal_var=False).pvalue)
  if math.isnan(p_value):
    same = math.isclose(sum(a) / len(a), sum(b) / len(b))
    return Separation(True, None, not same, "no spread in either row")
  return Separation(True, p_value, p_value < ALPHA)
