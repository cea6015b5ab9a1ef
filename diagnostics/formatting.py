"""Rendering diagnoses: the JSON document of `diagnose.py --json` and the text report for people."""

from __future__ import annotations

import json
from typing import Sequence

from diagnostics.finding import Finding, json_safe
from diagnostics.readers import Run, describe_source

_MARK = {"error": "ERROR", "warning": "WARN ", "info": "info "}
# Evidence entries not repeated in the "numbers:" line of the text report.
_HIDDEN = {"text"}


def run_entry(run: Run, findings: Sequence[Finding]) -> dict:
  """One run of the --json document."""
  entry = {"path": run.path, "source": run.source, "epochs": len(run.rows),
           "findings": [f.to_json() for f in findings],
           "ignored_columns": list(run.ignored_columns)}
  if run.notes:
    entry["notes"] = list(run.notes)
  return entry


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


def render_run(run: Run, findings: Sequence[Finding]) -> str:
  """The text report of one run."""
  lines = [f"== {run.path} ({describe_source(run)})"]
  for finding in findings:
    lines.extend(render_finding(finding))
  if not findings:
    lines.append("  (too few epochs to judge)")
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
