"""Rendering diagnoses: the JSON document of `diagnose.py --json` and the text report for people."""

from __future__ import annotations

import json
from typing import Sequence

from diagnostics.finding import Finding, json_safe
from diagnostics.readers import Run, describe_source
from diagnostics.thresholds import HEALTHY_MIN_EPOCHS

_MARK = {"error": "ERROR", "warning": "WARN ", "info": "info "}
# Evidence entries not repeated in the "numbers:" line of the text report.
_HIDDEN = {"text"}


def run_entry(run: Run, findings: Sequence[Finding], monitor: dict | None = None) -> dict:
  """One run of the --json document.

  `epochs` counts rows; `unit` says what a row is ("epoch", or "evaluation" when a log evaluates
  several times per epoch); `monitor` is the curve validation was judged on, with its direction.
  """
  entry = {"path": run.path, "source": run.source, "framework": run.framework,
           "epochs": len(run.rows), "unit": run.unit, "monitor": monitor or {},
           "findings": [f.to_json() for f in findings],
           "ignored_columns": list(run.ignored_columns)}
  if not findings:
    entry["silent_because"] = silence_reason(run)
  if run.notes:
    entry["notes"] = list(run.notes)
  return entry


def silence_reason(run: Run) -> str:
  """Why the doctor says nothing about a run: which curve is missing, or how short it is."""
  curves = sorted({k for r in run.rows for k, v in r.items()
                   if k.startswith(("train_", "val_")) and isinstance(v, (int, float))})
  if not curves:
    seen = ", ".join(run.columns[:20]) or "none"
    return ("no training or validation loss or metric was recognised, so there is no curve to "
            f"judge (columns seen: {seen})")
  unit = "evaluations" if run.unit == "evaluation" else "epochs"
  return (f"too few {unit} to judge: {len(run.rows)} logged, the rules need at least "
          f"{HEALTHY_MIN_EPOCHS} (curves: {', '.join(curves)})")


def to_json(entries: list[dict], comparison: dict | None) -> str:
  """The whole --json document as a string (strict JSON: no NaN)."""
  doc = {"runs": entries}
  if comparison is not None:
    doc["comparison"] = comparison
  return json.dumps(json_safe(doc), indent=2, allow_nan=False)


def _numbers(evidence: dict) -> str:
  parts = []
  for key, value in evidence.items():
    if key in _HIDDEN:
      continue
    if isinstance(value, list):
      value = ",".join(str(v) for v in value[:8]) + ("…" if len(value) > 8 else "")
    parts.append(f"{key}={value}")
  return " ".join(parts)


def render_finding(finding: Finding) -> list[str]:
  """Text lines for one finding: headline, evidence numbers, recommendations."""
  epochs = ""
  if finding.epochs:
    epochs = f" (epoch{'s' if len(finding.epochs) > 1 else ''} " \
             f"{', '.join(str(e) for e in finding.epochs)})"
  lines = [f"  [{_MARK.get(finding.severity, finding.severity)}] {finding.id}{epochs}: "
           f"{finding.text}"]
  numbers = _numbers(finding.evidence)
  if numbers:
    lines.append(f"      numbers: {numbers}")
  for rec in finding.recommendations:
    lines.append(f"      try: {rec}")
  return lines


def render_run(run: Run, findings: Sequence[Finding], monitor: dict | None = None) -> str:
  """The text report of one run."""
  lines = [f"== {run.path} ({describe_source(run)})"]
  if monitor:
    lines.append(f"  monitor: {monitor['key']} ({monitor['direction']}; {monitor['chosen']})")
  for finding in findings:
    lines.extend(render_finding(finding))
  if not findings:
    lines.append(f"  (nothing to say: {silence_reason(run)})")
  if run.ignored_columns:
    lines.append(f"  ignored columns: {', '.join(run.ignored_columns)}")
  for note in run.notes:
    lines.append(f"  note: {note}")
  return "\n".join(lines)


def render_comparison(comparison: dict) -> str:
  """The text report of a multi-run comparison."""
  lines = [f"== comparison on {comparison.get('metric') or 'no shared metric'}"]
  lines.extend(f"  {note}" for note in comparison.get("notes", []))
  return "\n".join(lines)
