"""Metric conventions: which direction is better, display units and axis labels.

History files store task metrics as `train_<name>` / `val_<name>` and summaries store
`test_<name>` (see docs/run_files.md). This module turns a bare metric name into the
conventions a report needs, so tables and figures agree on units and on what "best" means.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence

# Metrics where a smaller number is better. Anything containing "loss" or "error" is too.
LOWER_IS_BETTER = frozenset(
    {"loss", "perplexity", "ppl", "wer", "cer", "nll", "bpc", "bits_per_char", "error", "mse", "mae"})

# Preferred order when a run does not say which metric chose its best checkpoint.
PREFERRED_METRICS = ("accuracy", "perplexity", "wer", "cer", "bleu")

_SPLIT_PREFIXES = ("train_", "val_", "test_", "best_val_")


@dataclasses.dataclass(frozen=True)
class MetricSpec:
  """How one metric is compared and displayed.

  Attributes:
    name: bare metric name, e.g. "accuracy" (history keys are `train_<name>`, `val_<name>`).
    higher_is_better: direction used to pick the best epoch and the best value.
    scale: multiplier from stored values to displayed values (100 for fractions shown in %).
    unit: unit suffix for column headers ("%", "nats" or "").
    axis_label: y-axis label for figures, with unit.
  """

  name: str
  higher_is_better: bool
  scale: float
  unit: str
  axis_label: str

  @property
  def mode(self) -> str:
    """Returns "max" or "min", the spelling summary.json uses for `best_mode`."""
    return "max" if self.higher_is_better else "min"

  @property
  def header(self) -> str:
    """Returns the metric name with its unit for table headers, e.g. "accuracy (%)"."""
    return f"{self.name} ({self.unit})" if self.unit else self.name

  def display(self, value: float | None) -> float | None:
    """Converts a stored value to display units; None stays None."""
    return None if value is None else value * self.scale

  def best_index(self, values: Sequence[float | None]) -> int | None:
    """Returns the index of the first best finite value, or None when there is none.

    Ties go to the earliest index, matching "first epoch that reached the best value".
    """
    best_i = None
    for i, value in enumerate(values):
      if not is_number(value):
        continue
      if best_i is None or self._better(value, values[best_i]):
        best_i = i
    return best_i

  def _better(self, a: float, b: float) -> bool:
    return a > b if self.higher_is_better else a < b


def is_number(value) -> bool:
  """Returns True for finite ints/floats (bools and NaN/inf are not usable metric values)."""
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))


def bare_name(metric: str) -> str:
  """Strips a split prefix: "val_accuracy" -> "accuracy", "accuracy" -> "accuracy"."""
  for prefix in _SPLIT_PREFIXES:
    if metric.startswith(prefix):
      return metric[len(prefix):]
  return metric


def metric_spec(name: str, mode: str | None = None) -> MetricSpec:
  """Builds the MetricSpec for a metric name.

  Args:
    name: metric name, bare or with a split prefix.
    mode: "max" or "min" when a run's summary.json says so (`best_mode`); it wins over the
      name-based guess because the run itself chose its checkpoint that way.

  Returns:
    The MetricSpec.
  """
  name = bare_name(name)
  if mode in ("max", "min"):
    higher = mode == "max"
  else:
    higher = not (name in LOWER_IS_BETTER or "loss" in name or "error" in name)
  if name == "accuracy" or name.endswith("_accuracy"):
    # docs/run_files.md: accuracy is a fraction in [0, 1]; people read it in percent.
    return MetricSpec(name, higher, 100.0, "%", f"{name} (%)")
  if name == "loss" or name.endswith("_loss"):
    return MetricSpec(name, higher, 1.0, "nats", f"{name} (nats)")
  return MetricSpec(name, higher, 1.0, "", name)


def metrics_in_history(rows: Iterable[dict]) -> list[str]:
  """Returns bare metric names present as `train_<m>` or `val_<m>` keys, loss included."""
  found = set()
  for row in rows:
    for key in row:
      if key.startswith(("train_", "val_")):
        found.add(bare_name(key))
  return sorted(found)


def default_metric(rows: Sequence[dict], summary: dict | None) -> str:
  """Picks the metric a run is judged by when the user did not ask for one.

  Order: the summary's `best_metric` (the run chose its checkpoint by it), then the first of
  PREFERRED_METRICS with a `val_` key, then any other `val_` metric, then loss.

  Args:
    rows: history rows.
    summary: summary.json contents or None.

  Returns:
    A bare metric name.
  """
  val_metrics = {bare_name(k) for row in rows for k in row if k.startswith("val_")}
  if summary and isinstance(summary.get("best_metric"), str):
    chosen = bare_name(summary["best_metric"])
    if chosen in val_metrics:
      return chosen
  for name in PREFERRED_METRICS:
    if name in val_metrics:
      return name
  others = sorted(val_metrics - {"loss"})
  return others[0] if others else "loss"
