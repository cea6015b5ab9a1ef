"""A run's history as the rules see it: curves, the objective curves, chance level, time, config.

`History` picks, once, which curve stands for "training" and which for "validation" (the loss when
logged, else the first metric available) so that every rule agrees on them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Sequence

import numpy as np

from diagnostics import curves
from diagnostics import schema
from diagnostics.curves import Curve

# Candidate keys for the training and validation objective, most informative first. Losses come
# first because they move smoothly where accuracies are quantised.
TRAIN_OBJECTIVES = ("train_loss", "train_perplexity", "train_accuracy", "train_wer", "train_cer",
                    "train_bleu", "train_error_rate", "train_map", "train_f1")
VAL_OBJECTIVES = ("val_loss", "val_perplexity", "val_accuracy", "val_wer", "val_cer", "val_bleu",
                  "val_map", "val_error_rate", "val_f1", "val_map50", "val_auc", "val_iou",
                  "val_dice", "val_mae", "val_rmse", "val_mse")
# Validation metrics other than the loss, in the order a report would lead with them.
VAL_METRICS = ("val_accuracy", "val_bleu", "val_wer", "val_cer", "val_perplexity", "val_map",
               "val_error_rate", "val_f1", "val_map50", "val_auc", "val_iou", "val_dice")


@dataclasses.dataclass
class RunInfo:
  """What is known about a run besides its rows.

  Attributes:
    num_params: model parameter count (summary.json).
    num_train_examples: training set size (summary.json).
    num_classes: classes of a classifier (config, CLI or pred_class_hist length).
    is_curvelab: True when recommendations should be curvelab config overrides.
    patience: patience of the early-stopping what-if.
    config: the run's config flattened to dotted keys ({} when unknown).
    status: summary.json status ("finished", "diverged", ...), if any.
    monitor: history key used to pick the best checkpoint (summary.json best_metric), if any.
    monitor_forced: the monitor was chosen by the user (`--monitor`): it is the validation curve
      even where a validation loss is logged.
  """

  num_params: int | None = None
  num_train_examples: int | None = None
  num_classes: int | None = None
  is_curvelab: bool = True
  patience: int | None = None
  config: dict = dataclasses.field(default_factory=dict)
  status: str | None = None
  monitor: str | None = None
  monitor_forced: bool = False


class History:
  """Rows plus run information, with cached curves for the rules."""

  def __init__(self, rows: Sequence[dict], info: RunInfo):
    self.rows = [row for row in rows if isinstance(row, dict)]
    self.info = info
    self._curves: dict[str, Curve | None] = {}

  def __len__(self) -> int:
    return len(self.rows)

  def curve(self, key: str) -> Curve | None:
    """The curve of a canonical key, or None when never logged."""
    if key not in self._curves:
      self._curves[key] = curves.extract(self.rows, key)
    return self._curves[key]

  def finite(self, key: str) -> Curve | None:
    """The curve of `key` up to its first NaN/Inf; None when that leaves nothing."""
    curve = self.curve(key)
    if curve is None:
      return None
    curve = curve.finite_prefix()
    return curve if len(curve) else None

  def _first(self, keys: Sequence[str]) -> str | None:
    for key in keys:
      if self.curve(key) is not None:
        return key
    return None

  @functools.cached_property
  def train_key(self) -> str | None:
    """Key of the training objective (train_loss when logged)."""
    return self._first(TRAIN_OBJECTIVES)

  @functools.cached_property
  def val_key(self) -> str | None:
    """Key of the validation objective: val_loss when logged, else the monitored metric."""
    keys = list(VAL_OBJECTIVES)
    monitor = self.info.monitor
    if isinstance(monitor, str) and self.info.monitor_forced:
      keys.insert(0, monitor)
    elif isinstance(monitor, str) and monitor.startswith("val_"):
      keys.insert(1, monitor)
    return self._first(keys)

  @functools.cached_property
  def monitor(self) -> dict:
    """The curve the verdicts rest on, its direction and why it was chosen."""
    key = self.val_key
    if key is None:
      key, why = self.train_key, "no validation curve: the training curve"
    elif self.info.monitor_forced and key == self.info.monitor:
      why = "chosen with --monitor"
    elif key == "val_loss":
      why = "the validation loss"
    else:
      why = "no validation loss: the primary validation metric"
    if key is None:
      return {}
    direction = "higher" if schema.higher_is_better(key) else "lower"
    return {"key": key, "direction": f"{direction} is better", "chosen": why}

  @property
  def train(self) -> Curve | None:
    """Finite prefix of the training objective."""
    return self.finite(self.train_key) if self.train_key else None

  @property
  def val(self) -> Curve | None:
    """Finite prefix of the validation objective."""
    return self.finite(self.val_key) if self.val_key else None

  @functools.cached_property
  def val_metric_key(self) -> str | None:
    """The main validation metric other than the loss (accuracy, BLEU, WER...), if logged."""
    monitor = self.info.monitor
    if monitor and monitor.startswith("val_") and monitor != "val_loss":
      if self.curve(monitor) is not None:
        return monitor
    return self._first(VAL_METRICS)

  def partner(self, key: str) -> str | None:
    """The same metric on the other split ('val_loss' <-> 'train_loss') when logged."""
    for a, b in (("val_", "train_"), ("train_", "val_")):
      if key.startswith(a):
        other = b + key[len(a):]
        return other if self.curve(other) is not None else None
    return None

  @functools.cached_property
  def num_classes(self) -> int | None:
    """Number of classes from the run info, else from the logged class histogram."""
    if self.info.num_classes and self.info.num_classes >= 2:
      return int(self.info.num_classes)
    for row in reversed(self.rows):
      hist = row.get("pred_class_hist")
      if isinstance(hist, (list, tuple)) and len(hist) >= 2:
        return len(hist)
    return None

  @property
  def chance_loss(self) -> float | None:
    """Cross-entropy of a uniform guess, ln(C), when the number of classes is known."""
    return math.log(self.num_classes) if self.num_classes else None

  @property
  def last_epoch(self) -> int | float:
    """Epoch label of the last row."""
    if not self.rows:
      return 0
    label = curves.to_float(self.rows[-1].get("epoch"))
    return curves.as_label(len(self.rows) if label is None else label)

  @functools.cached_property
  def epochs_run(self) -> int | float:
    """Epochs the log covers, which is not its row count when rows are evaluations (several per
    epoch) or when epochs were logged sparsely: the last epoch label, plus one when the log
    numbers epochs from 0 (Keras, Lightning); the row count for logs without epoch labels."""
    labels = [curves.to_float(r.get("epoch")) for r in self.rows]
    labels = [l for l in labels if l is not None]
    if not labels:
      return len(self.rows)
    integral = all(float(l).is_integer() for l in labels)
    return curves.as_label(labels[-1] + 1 if integral and min(labels) == 0 else labels[-1])

  def epoch_of_row(self, i: int) -> int | float:
    """Epoch label of row i."""
    label = curves.to_float(self.rows[i].get("epoch"))
    return curves.as_label(i + 1 if label is None else label)

  @functools.cached_property
  def elapsed(self) -> np.ndarray | None:
    """Cumulative wall time (s) at the end of each row, from elapsed_s or summed epoch times.

    Rows without a time are NaN. None when the log has no time at all.
    """
    elapsed = [curves.to_float(r.get("elapsed_s")) for r in self.rows]
    if any(v is not None for v in elapsed):
      return np.array([np.nan if v is None else v for v in elapsed])
    per_epoch = []
    for row in self.rows:
      parts = [curves.to_float(row.get(k)) for k in ("epoch_time_s", "eval_time_s")]
      parts = [p for p in parts if p is not None]
      per_epoch.append(sum(parts) if parts else np.nan)
    if all(math.isnan(p) for p in per_epoch):
      return None
    return np.cumsum(np.nan_to_num(np.array(per_epoch), nan=0.0))

  def value_at(self, curve: Curve | None, epoch_label: float) -> float | None:
    """The lower-better value of `curve` at an epoch label, or None when not logged then."""
    if curve is None:
      return None
    hits = np.nonzero(curve.epochs == epoch_label)[0]
    return float(curve.bad[hits[0]]) if hits.size else None

  def config_value(self, field: str) -> Any:
    """A config field (dotted), or None when unknown."""
    return self.info.config.get(field)

  def config_float(self, field: str) -> float | None:
    """A numeric config field, or None when unknown or not a number."""
    return curves.to_float(self.config_value(field))
