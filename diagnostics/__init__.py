"""curvelab's training doctor: diagnoses train/validation curves and recommends fixes.

Library use (the training loop calls it after every epoch):

  from diagnostics import diagnose_history, Finding, OnlineDoctor
  findings = diagnose_history(rows, num_classes=10)
  doc = OnlineDoctor(stop_on=("diverged", "overfitting"), patience=3)
  new = doc.update(rows); doc.should_stop; doc.to_json()

Command line: `python diagnose.py PATH [PATH ...] [--json]` (see docs/doctor.md).
"""

from diagnostics import schema
from diagnostics.doctor import OnlineDoctor, diagnose_history, make_history
from diagnostics.finding import FINDING_IDS, Finding
from diagnostics.readers import ReadError, Run, load

__all__ = ["FINDING_IDS", "Finding", "OnlineDoctor", "ReadError", "Run", "diagnose_history", "load",
           "diagnose_run", "monitor_of", "resolve_monitor"]


def _run_info(run: Run, num_classes: int | None, patience: int | None,
              monitor: str | None) -> dict:
  """The run's facts for the rules: sizes, classes and status from a curvelab summary."""
  summary = run.summary if run.is_curvelab else {}
  return dict(num_params=summary.get("num_params"),
              num_train_examples=summary.get("num_train_examples"),
              num_classes=num_classes or run.num_classes, is_curvelab=run.is_curvelab,
              patience=patience, config=run.config, status=summary.get("status"),
              monitor=monitor or summary.get("best_metric"), monitor_forced=bool(monitor))


def diagnose_run(run: Run, *, num_classes: int | None = None, patience: int | None = None,
                 monitor: str | None = None) -> list[Finding]:
  """Diagnoses a loaded Run, taking sizes, classes and status from its summary and config.

  Args:
    run: a Run from `load`.
    num_classes: overrides the number of classes found in the run's config.
    patience: patience of the early-stopping what-if.
    monitor: canonical key of the validation curve to judge (`--monitor`); by default the
      validation loss, else the primary validation metric (`monitor_of` says which).
  """
  return diagnose_history(run.rows, **_run_info(run, num_classes, patience, monitor))


def monitor_of(run: Run, monitor: str | None = None) -> dict:
  """{"key", "direction", "chosen"}: the curve `diagnose_run` judges validation on, and why."""
  return make_history(run.rows, **_run_info(run, None, None, monitor)).monitor


def resolve_monitor(run: Run, name: str) -> str:
  """The canonical key of a `--monitor` name ('val_acc', 'eval_accuracy', 'mAP50-95(B)').

  Raises:
    ReadError: the run logs no such curve; the message lists the curves it has.
  """
  # YOLO's column names ('metrics/mAP50-95(B)') are validation metrics under a 'metrics/' prefix.
  bare = schema.normalize_name(name)
  bare = bare[len("metrics_"):] if bare.startswith("metrics_") else bare
  key = schema.canonical_key(bare)
  if key is not None and key.startswith("train_") and schema.is_bare_metric(bare):
    key = "val_" + key[len("train_"):]  # A bare metric name means its validation curve.
  logged = sorted({k for r in run.rows for k in r
                   if k.startswith(("val_", "train_")) and isinstance(r[k], (int, float))})
  if key not in logged:
    raise ReadError(f"{run.path}: --monitor {name}: no such curve in this log (curves: "
                    f"{', '.join(logged) or 'none'})")
  return key
