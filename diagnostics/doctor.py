"""The doctor: runs every rule over a history (diagnose_history) or epoch by epoch (OnlineDoctor).
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np

from curvelab import configdicts
from curvelab.configdicts import flatten
from diagnostics import rules, signals
from diagnostics import thresholds as T
from diagnostics.common import describe, make, num
from diagnostics.finding import INFO, Finding, sort_findings
from diagnostics.history import History, RunInfo

Rule = Callable[[History, set], "Finding | None"]

# Order matters: later rules see the ids found by earlier ones (e.g. underfitting defers to
# no_learning, not_converged to overfitting, capacity_vs_data explains over/underfitting).
RULES: tuple[Rule, ...] = (
    rules.diverged,
    rules.no_learning,
    rules.lr_too_high,
    rules.lr_collapsed,
    signals.gradient_problem,
    signals.degenerate_predictions,
    rules.overfitting,
    rules.underfitting,
    signals.capacity_vs_data,
    rules.lr_too_low,
    rules.not_converged,
    rules.early_stopping,
)


def diagnose(history: History) -> list[Finding]:
  """Runs all rules on a History; adds a `healthy` line when no warning or error was found."""
  findings: list[Finding] = []
  found: set[str] = set()
  for rule in RULES:
    finding = rule(history, found)
    if finding is not None:
      findings.append(finding)
      found.add(finding.id)
  judged = history.val or history.train
  if not any(f.is_problem for f in findings) and judged is not None and \
      len(judged) >= T.HEALTHY_MIN_EPOCHS:
    findings.append(_healthy(history))
  return sort_findings(findings)


def _healthy(h: History) -> Finding:
  """The summary line for a run without problems, with the numbers a reader checks first."""
  numbers = {"epochs": len(h)}
  parts = [f"No problems found in {len(h)} epochs"]
  val = h.val
  if val is not None and len(val):
    b = int(np.argmin(val.bad))
    numbers.update(best_epoch=val.epoch(b), best_value=float(val.raw[b]), monitor=val.key)
    parts.append(f"best {describe(val.key)} {num(val.raw[b])} at epoch {val.epoch(b)}")
  return make(h, "healthy", INFO, [], "; ".join(parts) + ".", numbers, [])


def diagnose_history(rows: Sequence[dict], *, num_params: int | None = None,
                     num_train_examples: int | None = None, num_classes: int | None = None,
                     is_curvelab: bool = True, patience: int | None = None,
                     config: dict | None = None, status: str | None = None,
                     monitor: str | None = None, monitor_forced: bool = False) -> list[Finding]:
  """Diagnoses a training history.

  Args:
    rows: one dict per epoch with canonical keys (docs/run_files.md): epoch, train_loss, val_loss,
      learning_rate, val_accuracy, ... Missing keys are fine; rules without their inputs stay quiet.
    num_params: model parameter count, for capacity_vs_data.
    num_train_examples: training set size, for capacity_vs_data.
    num_classes: number of classes, for chance-level checks (no_learning, lr_too_high).
    is_curvelab: recommend curvelab `--config.` overrides (True) or plain words (False).
    patience: patience of the early-stopping what-if (default thresholds.DEFAULT_PATIENCE).
    config: the run's config (nested or dotted), so advice can scale current values.
    status: summary.json status, if known.
    monitor: history key of the run's best checkpoint metric (summary.json best_metric).
    monitor_forced: judge validation on `monitor` even where a validation loss is logged.

  Returns:
    Findings, most fundamental first; a `healthy` info finding when nothing is wrong.
  """
  return diagnose(make_history(rows, num_params=num_params, num_train_examples=num_train_examples,
                              num_classes=num_classes, is_curvelab=is_curvelab, patience=patience,
                              config=config, status=status, monitor=monitor,
                              monitor_forced=monitor_forced))


def make_history(rows: Sequence[dict], *, config: dict | None = None, **info) -> History:
  """The History the rules see; `info` are RunInfo's fields, `config` nested or dotted."""
  # Earlier versions' top-level names, in today's sections, so advice reads the current value.
  flat = flatten(configdicts.upgrade(config)) if config else {}
  if config:
    flat.update({k: v for k, v in config.items() if "." in str(k)})
  return History(list(rows or []), RunInfo(config=flat, **info))


class OnlineDoctor:
  """Diagnoses a run while it trains and decides when to stop it.

  Call `update(rows)` after every epoch with the full history so far. A finding whose id is in
  `stop_on` that is present in `patience` consecutive updates sets `should_stop`.
  """

  def __init__(self, stop_on: Sequence[str] = ("diverged", "overfitting"), patience: int = 3,
               num_params: int | None = None, num_train_examples: int | None = None,
               num_classes: int | None = None, is_curvelab: bool = True,
               early_stopping_patience: int | None = None, config: dict | None = None,
               path: str = ""):
    """Initialises the doctor.

    Args:
      stop_on: finding ids that justify stopping the run.
      patience: consecutive epochs a stop_on finding must persist before should_stop is set.
      num_params: model parameter count.
      num_train_examples: training set size.
      num_classes: number of classes.
      is_curvelab: recommend config overrides (True) or plain words.
      early_stopping_patience: patience of the early-stopping what-if finding.
      config: the run's config, for advice relative to current values.
      path: reported as "path" in to_json().
    """
    if patience < 1:
      raise ValueError(f"patience must be >= 1, got {patience}")
    self.stop_on = tuple(stop_on)
    self.patience = int(patience)
    self.path = path
    self._kwargs = dict(num_params=num_params, num_train_examples=num_train_examples,
                        num_classes=num_classes, is_curvelab=is_curvelab,
                        patience=early_stopping_patience, config=config)
    self._reported: set[str] = set()
    self._streak: dict[str, int] = {}
    self._last_len = -1
    self.findings: list[Finding] = []
    self.epochs = 0
    self.error: str | None = None
    self.should_stop = False
    self.stop_reason: str | None = None

  def update(self, rows: Sequence[dict]) -> list[Finding]:
    """Re-diagnoses the history so far.

    Args:
      rows: every epoch's row up to now (canonical keys).

    Returns:
      The findings whose id was not reported by an earlier update.
    """
    rows = list(rows)
    self.epochs = len(rows)
    try:
      self.findings = diagnose_history(rows, **self._kwargs)
    except Exception as e:  # pylint: disable=broad-except
      # A doctor bug must not end a training run; it is reported and the last diagnosis kept.
      self.error = f"{type(e).__name__}: {e}"
      warnings.warn(f"diagnostics.OnlineDoctor failed at epoch {len(rows)}: {self.error}")
      return []
    present = {f.id: f for f in self.findings}
    if len(rows) != self._last_len:  # count each epoch once, even if update is repeated
      self._last_len = len(rows)
      for fid in self.stop_on:
        self._streak[fid] = self._streak.get(fid, 0) + 1 if fid in present else 0
    if not self.should_stop:
      for fid in self.stop_on:
        if self._streak.get(fid, 0) >= self.patience:
          self.should_stop = True
          self.stop_reason = (f"{fid} for {self._streak[fid]} consecutive epochs: "
                              f"{present[fid].text}")
          break
    new = [f for f in self.findings if f.id not in self._reported]
    self._reported.update(f.id for f in new)
    return new

  def to_json(self) -> dict:
    """The diagnosis as a run entry of `diagnose.py --json`, for WORKDIR/diagnosis.json."""
    return {"path": self.path, "source": "curvelab", "epochs": self.epochs,
            "findings": [f.to_json() for f in self.findings],
            "should_stop": self.should_stop, "stop_reason": self.stop_reason,
            **({"error": self.error} if self.error else {})}

