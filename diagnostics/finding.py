"""The Finding record every rule returns, and its JSON form."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

INFO = "info"
WARNING = "warning"
ERROR = "error"
SEVERITIES = (INFO, WARNING, ERROR)
# Severities that mean "something is wrong"; info findings are advice (e.g. a shorter schedule).
PROBLEM_SEVERITIES = frozenset({WARNING, ERROR})

# Every finding id the doctor can emit, in the order findings are reported.
FINDING_IDS = (
    "diverged",
    "no_learning",
    "lr_too_high",
    "lr_collapsed",
    "gradient_problem",
    "degenerate_predictions",
    "overfitting",
    "underfitting",
    "capacity_vs_data",
    "lr_too_low",
    "not_converged",
    "early_stopping",
    "healthy",
)


@dataclasses.dataclass
class Finding:
  """One diagnosis about a run.

  Attributes:
    id: one of FINDING_IDS.
    severity: "info", "warning" or "error".
    epochs: epoch labels involved (e.g. [best_epoch, last_epoch]); empty when not tied to epochs.
    evidence: named numbers the finding rests on plus "text", a one-sentence summary.
    recommendations: for curvelab runs, ready-to-paste `--config.` overrides (one alternative per
      string); for other logs the same advice in plain words.
    overrides: for curvelab runs, the overrides of each recommendation as {field: value}.
  """

  id: str
  severity: str
  epochs: list = dataclasses.field(default_factory=list)
  evidence: dict = dataclasses.field(default_factory=dict)
  recommendations: list = dataclasses.field(default_factory=list)
  overrides: list = dataclasses.field(default_factory=list)

  @property
  def text(self) -> str:
    """The one-sentence evidence summary."""
    return str(self.evidence.get("text", ""))

  @property
  def is_problem(self) -> bool:
    """True for warnings and errors."""
    return self.severity in PROBLEM_SEVERITIES

  def to_json(self) -> dict:
    """A JSON-safe dict with the fields id, severity, epochs, evidence, recommendations."""
    out = {
        "id": self.id,
        "severity": self.severity,
        "epochs": json_safe(list(self.epochs)),
        "evidence": json_safe(dict(self.evidence)),
        "recommendations": list(self.recommendations),
    }
    if self.overrides:
      out["overrides"] = json_safe(list(self.overrides))
    return out


def json_safe(value: Any) -> Any:
  """Converts numpy scalars and non-finite floats so json.dumps(allow_nan=False) accepts them.

  NaN and infinities become the strings "nan", "inf", "-inf": they are evidence (a diverged loss)
  and must survive, but bare NaN is not valid JSON.
  """
  if isinstance(value, dict):
    return {str(k): json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v) for v in value]
  if isinstance(value, bool) or value is None or isinstance(value, str):
    return value
  if hasattr(value, "item") and not isinstance(value, (int, float)):
    value = value.item()  # numpy scalar
  if isinstance(value, float) and not math.isfinite(value):
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
  return value


def sort_findings(findings: list[Finding]) -> list[Finding]:
  """Orders findings by FINDING_IDS (most fundamental first)."""
  order = {fid: i for i, fid in enumerate(FINDING_IDS)}
  return sorted(findings, key=lambda f: order.get(f.id, len(order)))
