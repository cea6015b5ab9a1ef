"""Helpers shared by the rule modules: building a Finding, naming keys, formatting numbers."""

from __future__ import annotations

from typing import Any

from diagnostics import advice
from diagnostics.curves import rnd
from diagnostics.finding import Finding
from diagnostics.history import History

_SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test"}
_METRIC_WORDS = {"wer": "WER", "cer": "CER", "bleu": "BLEU"}


def describe(key: str | None) -> str:
  """Human name of a canonical key: 'val_loss' -> 'validation loss'."""
  if not key:
    return "?"
  split, _, metric = key.partition("_")
  if split in _SPLIT_WORDS and metric:
    return f"{_SPLIT_WORDS[split]} {_METRIC_WORDS.get(metric, metric.replace('_', ' '))}"
  return key.replace("_", " ")


def num(value: float | None) -> str:
  """Formats a number for evidence text with 4 significant digits."""
  if value is None:
    return "?"
  return f"{value:.4g}"


def pct(fraction: float) -> str:
  """Formats a fraction as a signed percentage: 0.123 -> '+12%'."""
  return f"{fraction * 100:+.0f}%"


def make(h: History, fid: str, severity: str, epochs: list, text: str, numbers: dict[str, Any],
         alternatives: list[advice.Advice]) -> Finding:
  """Builds a Finding with rounded evidence numbers and audience-appropriate recommendations.

  Args:
    h: the history (decides curvelab flags vs plain words).
    fid: finding id.
    severity: info, warning or error.
    epochs: epoch labels involved.
    text: the one-sentence evidence.
    numbers: named numbers behind the text (floats are rounded to 4 significant digits).
    alternatives: the advice, most promising first.
  """
  evidence = {}
  for name, value in numbers.items():
    evidence[name] = rnd(value) if isinstance(value, float) else value
  evidence["text"] = text
  recommendations, overrides = advice.render(alternatives, h.info.is_curvelab)
  return Finding(fid, severity, list(epochs), evidence, recommendations, overrides)
