"""The training doctor's findings for a run, from diagnosis.json or from the diagnostics library.

The doctor (diagnostics/, written separately) is optional: without it, or when it fails, the
report says so and goes on.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from typing import Any

from curvelab.runfiles import DIAGNOSIS
from reporting.configs import flatten
from reporting.runs import RunData

_FIELDS = ("id", "severity", "epochs", "evidence", "recommendations")


@dataclasses.dataclass
class DoctorReport:
  """Findings for one run.

  Attributes:
    source: "diagnosis.json", "diagnostics.diagnose_history" or "" when none was available.
    findings: one dict per finding with keys id, severity, epochs, evidence, recommendations.
    note: why there are no findings (doctor missing, failed, nothing found).
  """

  source: str
  findings: list[dict]
  note: str = ""


def findings_for_run(run: RunData) -> DoctorReport:
  """Returns the doctor's findings: the run's diagnosis.json if present, else a fresh diagnosis."""
  path = run.workdir / DIAGNOSIS
  if path.is_file():
    return _from_file(path)
  return _from_library(run)


def _from_file(path) -> DoctorReport:
  try:
    data = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    return DoctorReport(DIAGNOSIS, [], f"{DIAGNOSIS} is not valid JSON ({e})")
  items = data.get("findings", []) if isinstance(data, dict) else data
  if not isinstance(items, list):
    return DoctorReport(DIAGNOSIS, [], f"{DIAGNOSIS} has no 'findings' list")
  findings = [normalize(item) for item in items]
  return DoctorReport(DIAGNOSIS, findings, "" if findings else "no findings")


def _from_library(run: RunData) -> DoctorReport:
  try:
    from diagnostics import diagnose_history  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    return DoctorReport("", [], f"doctor not available (cannot import "
                        f"diagnostics.diagnose_history: {e})")
  summary = run.summary or {}
  extras = {"config": run.config or None, "status": summary.get("status"),
            "monitor": summary.get("best_metric")}
  try:
    found = diagnose_history(
        run.history,
        num_params=summary.get("num_params"),
        num_train_examples=summary.get("num_train_examples"),
        num_classes=_num_classes(run),
        # Runs with a config.json were written by curvelab; others come from other tools.
        is_curvelab=bool(run.config) or bool(summary),
        patience=None,
        **_accepted(diagnose_history, extras))
  except Exception as e:  # pylint: disable=broad-except
    # A doctor bug must not cost the user the report.
    return DoctorReport("diagnostics.diagnose_history", [],
                        f"doctor failed: {type(e).__name__}: {e}")
  findings = [normalize(f) for f in (found or [])]
  return DoctorReport("diagnostics.diagnose_history", findings, "" if findings else "no findings")


def _accepted(fn, candidates: dict) -> dict:
  """Keeps the keyword arguments `fn` accepts: newer doctors take more context, older less."""
  try:
    params = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return {}
  if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
    return dict(candidates)
  return {k: v for k, v in candidates.items() if k in params}


def _num_classes(run: RunData) -> int | None:
  """Finds the number of classes in the config, else from the logged class histogram."""
  for key, value in flatten(run.config).items():
    if key.rsplit(".", 1)[-1] == "num_classes" and isinstance(value, int):
      return value
  for row in reversed(run.history):
    hist = row.get("pred_class_hist")
    if isinstance(hist, list) and hist:
      return len(hist)
  return None


def normalize(finding: Any) -> dict:
  """Turns a Finding object or dict into a plain dict with the five known fields."""
  if isinstance(finding, dict):
    get = finding.get
  else:
    get = lambda name, default=None: getattr(finding, name, default)
  out = {name: get(name, None) for name in _FIELDS}
  if out["id"] is None:
    out["id"] = str(finding)
  severity = out["severity"]
  # Enum severities print as "Severity.WARNING"; the bare name reads better.
  out["severity"] = getattr(severity, "name", severity)
  return out
