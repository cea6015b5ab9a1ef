"""curvelab's training doctor: diagnoses train/validation curves and recommends fixes.

Library use (the training loop calls it after every epoch):

  from diagnostics import diagnose_history, Finding, OnlineDoctor
  findings = diagnose_history(rows, num_classes=10)
  doc = OnlineDoctor(stop_on=("diverged", "overfitting"), patience=3)
  new = doc.update(rows); doc.should_stop; doc.to_json()

Command line: `python diagnose.py PATH [PATH ...] [--json]` (see docs/doctor.md).
"""

from diagnostics.doctor import OnlineDoctor, diagnose_history
from diagnostics.finding import FINDING_IDS, Finding
from diagnostics.readers import ReadError, Run, load

__all__ = ["FINDING_IDS", "Finding", "OnlineDoctor", "ReadError", "Run", "diagnose_history", "load",
           "diagnose_run"]


def diagnose_run(run: Run, *, num_classes: int | None = None,
                 patience: int | None = None) -> list[Finding]:
  """Diagnoses a loaded Run, taking sizes, classes and status from its summary and config.

  Args:
    run: a Run from `load`.
    num_classes: overrides the number of classes found in the run's config.
    patience: patience of the early-stopping what-if.
  """
  summary = run.summary or {}
  return diagnose_history(
      run.rows,
      num_params=summary.get("num_params"),
      num_train_examples=summary.get("num_train_examples"),
      num_classes=num_classes or run.num_classes,
      is_curvelab=run.is_curvelab,
      patience=patience,
      config=run.config,
      status=summary.get("status"),
      monitor=summary.get("best_metric"))
