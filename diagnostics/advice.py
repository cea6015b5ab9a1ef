"""Turns a rule's advice into recommendations: config overrides for curvelab, plain words otherwise.

A rule states each alternative once, as (overrides, words). curvelab users get flags they can paste
onto the train.py command line; users of other frameworks get the same advice as a sentence, since
curvelab's config field names mean nothing to them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

# The curvelab config fields recommendations may override (docs/run_files.md, train.py flags).
CONFIG_FIELDS = frozenset({
    "optimizer.name", "optimizer.learning_rate", "optimizer.weight_decay",
    "optimizer.grad_clip_norm", "schedule.name", "schedule.warmup_epochs", "loop.num_epochs",
    "loop.batch_size", "task.label_smoothing", "stopping.patience", "stopping.min_delta",
    "model.dropout",
})


@dataclasses.dataclass
class Advice:
  """One alternative fix.

  Attributes:
    overrides: curvelab config field -> suggested value (may be empty when no flag expresses it).
    words: the advice in plain words, framework-neutral.
  """

  overrides: dict
  words: str


def format_value(value: Any) -> str:
  """Formats an override value the way a person types it: 1e-3, 0.3, 70, cosine."""
  if isinstance(value, bool):
    return str(value).lower()
  if isinstance(value, int):
    return str(value)
  if isinstance(value, float):
    # Integral floats keep their ".0" so a config field that defaults to None still parses as float.
    if value.is_integer() and abs(value) < 1e5:
      return f"{value:.1f}"
    if abs(value) < 1e-2 or abs(value) >= 1e5:
      mantissa, exponent = f"{value:.2e}".split("e")
      mantissa = mantissa.rstrip("0").rstrip(".")
      return f"{mantissa}e{int(exponent)}"
    return f"{value:.3g}"
  return str(value)


def flags(overrides: dict) -> str:
  """Renders overrides as train.py flags: --config.model.dropout=0.3 --config.optimizer.weight_decay=1e-3."""
  unknown = set(overrides) - CONFIG_FIELDS
  if unknown:
    raise ValueError(f"not a curvelab config field: {sorted(unknown)}")
  return " ".join(f"--config.{k}={format_value(v)}" for k, v in overrides.items())


def render(alternatives: list[Advice], is_curvelab: bool) -> tuple[list[str], list[dict]]:
  """Renders the alternatives for the audience.

  Args:
    alternatives: the rule's advice, most promising first.
    is_curvelab: True for curvelab workdirs (flags), False for other logs (words).

  Returns:
    (recommendations, overrides): recommendations are strings; overrides the matching dicts for
    curvelab runs (empty for other logs). Advice without any override is given in words for both.
  """
  recommendations, overrides = [], []
  for alt in alternatives:
    if is_curvelab and alt.overrides:
      recommendations.append(flags(alt.overrides))
      overrides.append(dict(alt.overrides))
    else:
      recommendations.append(alt.words)
  return recommendations, overrides


def scaled(current: float | None, factor: float, default: float) -> float:
  """`current * factor` rounded to one significant digit, or `default` when current is unknown."""
  if current is None or not math.isfinite(current) or current <= 0:
    return default
  return float(f"{current * factor:.0e}")


def round_epochs(value: float, step: int = 5) -> int:
  """Rounds an epoch count up to a multiple of `step` (suggested budgets read better round)."""
  return int(math.ceil(value / step) * step)
