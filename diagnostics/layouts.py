"""What other frameworks' log files mean: one interpreter per documented layout.

A column name alone does not say what a value is. fastai's `accuracy` is measured on the
validation set, Keras' on the training set; Hugging Face's `trainer_state.json` ends with a
summary entry that is not a training step; a YOLO run logs its loss as three components. Each
interpreter here recognises one framework's layout and rewrites its raw records into columns the
generic mapping (`schema.canonical_key`) reads unambiguously, with a note for every choice it made.
Files no interpreter claims are read by the generic mapping alone.

Interpreters only rename and reshape. Turning per-step rows into per-epoch or per-evaluation rows
is `aggregate.py`'s job, the same for every framework.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

from diagnostics import schema
from diagnostics.curves import to_float


@dataclasses.dataclass
class Layout:
  """A file's records as read under one framework's semantics.

  Attributes:
    framework: "huggingface", "yolov5", "ultralytics", "fastai", "lightning", "keras", "timm" or
      "generic".
    records: raw records, renamed where the framework's semantics differ from the generic mapping.
    notes: what the interpreter decided (which entries it dropped, how columns were combined).
    summary: run-level facts the file states besides its rows (total time, the trainer's own best
      metric), kept out of the curves.
    used: raw column names the interpreter consumed (not "ignored", though they are not curves).
  """

  framework: str
  records: list
  notes: list = dataclasses.field(default_factory=list)
  summary: dict = dataclasses.field(default_factory=dict)
  used: list = dataclasses.field(default_factory=list)


def _columns(records: list[dict]) -> list[str]:
  return list(dict.fromkeys(k for r in records for k in r))


def _normalized(records: list[dict]) -> dict[str, str]:
  """{normalised name: raw name} of every column (YOLO headers carry padding spaces)."""
  return {schema.normalize_name(c): c for c in _columns(records)}


# --- Hugging Face Trainer -----------------------------------------------------------------------

# Entries of `log_history` that summarise the whole run (Trainer.train's return value, logged
# once at the end), not a training step.
_HF_SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second",
                    "total_flos", "train_loss")
# Evaluation-entry keys that are throughput, not metrics.
_HF_EVAL_THROUGHPUT = ("eval_samples_per_second", "eval_steps_per_second")


def is_trainer_state(data: Any) -> bool:
  """True for a Hugging Face `trainer_state.json` document."""
  return isinstance(data, dict) and isinstance(data.get("log_history"), list) and (
      "global_step" in data or "best_metric" in data or "trial_name" in data
      or any(isinstance(e, dict) and "step" in e for e in data["log_history"]))


def huggingface(data: dict) -> Layout:
  """Reads `trainer_state.json`: training logs, evaluations and the final run summary.

  Training entries (`loss`, `learning_rate`, `grad_norm` every `logging_steps`) and evaluation
  entries (`eval_*` every `eval_steps` or epoch) stay separate records at their step and
  fractional epoch, read by the generic mapping; the summary entry written once at the end (`train_loss` = the whole run's
  average, `train_runtime`, `total_flos`) is taken out of the curves into `summary`.
  """
  records, notes, summary, used = [], [], {}, set()
  for entry in data["log_history"]:
    if not isinstance(entry, dict):
      continue
    if "train_runtime" in entry or "total_flos" in entry:
      summary.update({k: entry[k] for k in _HF_SUMMARY_KEYS if k in entry})
      used.update(entry)
      continue
    # Everything else reads through the generic mapping: `loss` is training's, `eval_*` are
    # validation's, `eval_runtime` the evaluation time; throughput is no curve.
    used.update(k for k in entry if k in _HF_EVAL_THROUGHPUT)
    records.append({k: v for k, v in entry.items() if k not in _HF_EVAL_THROUGHPUT})
  if summary:
    notes.append("the Trainer's final summary entry (train_loss = the run's average"
                 + (f", train_runtime {to_float(summary.get('train_runtime')):.4g} s"
                    if to_float(summary.get("train_runtime")) is not None else "")
                 + ") is not a training step and was left out of the curves")
    if to_float(summary.get("train_runtime")) is not None:
      summary["total_time_s"] = to_float(summary["train_runtime"])
  # The Trainer's own facts, under their own key: `best_metric` there is a value, not a name.
  keys = ("best_metric", "best_model_checkpoint", "logging_steps", "eval_steps",
          "num_train_epochs", "max_steps", "train_batch_size", "global_step")
  state = {key: data[key] for key in keys if data.get(key) is not None}
  if state:
    summary["trainer_state"] = state
  return Layout("huggingface", records, notes, summary, sorted(used))


# --- YOLOv5 and Ultralytics ---------------------------------------------------------------------

_YOLO_LOSS = re.compile(r"^(train|val)_(box|obj|cls|dfl|seg|pose|kobj|rle)_loss$")
# Metric columns, normalised: YOLOv5 ('metrics/mAP_0.5:0.95') and Ultralytics
# ('metrics/mAP50-95(B)'; '(M)' for masks, '(P)' for poses).
_YOLO_METRICS = (
    (re.compile(r"^metrics_map_0_5_0_95$|^metrics_map50_95(_b)?$"), "val_map"),
    (re.compile(r"^metrics_map_0_5$|^metrics_map50(_b)?$"), "val_map50"),
    (re.compile(r"^metrics_precision(_b)?$"), "val_precision"),
    (re.compile(r"^metrics_recall(_b)?$"), "val_recall"),
)
# Learning rates: YOLOv5 'x/lr0..2', Ultralytics 'lr/pg0..2'. Both frameworks put the biases in
# parameter group 0 (its warm-up starts at warmup_bias_lr = 0.1 and falls) and the weights with
# weight decay in group 1: group 1 is the learning rate the schedule describes.
_YOLO_LR = re.compile(r"^(x_lr|lr_pg)([0-9])$")


def is_yolo(records: list[dict]) -> bool:
  names = _normalized(records)
  return any(_YOLO_LOSS.match(n) for n in names) and any(n.startswith("metrics_") for n in names)


def yolo(records: list[dict]) -> Layout:
  """Reads a YOLOv5 or Ultralytics `results.csv`.

  A split's loss is the sum of its components (box + objectness/DFL + class), as the
  frameworks' own loss is; mAP@0.5:0.95 is the primary validation metric (higher is better).
  Ultralytics' `time` column is the cumulative training time in seconds.
  """
  names = _normalized(records)
  framework = "yolov5" if any(n.startswith("x_lr") or n == "metrics_map_0_5" for n in names) \
      else "ultralytics"
  losses = {split: [raw for n, raw in names.items()
                    if (m := _YOLO_LOSS.match(n)) and m.group(1) == split]
            for split in ("train", "val")}
  metrics = {}
  for pattern, key in _YOLO_METRICS:
    raw = next((raw for n, raw in names.items() if pattern.match(n)), None)
    if raw is not None:
      metrics[raw] = key
  lrs = {int(m.group(2)): raw for n, raw in names.items() if (m := _YOLO_LR.match(n))}
  lr_column = lrs.get(1, lrs.get(0))
  time_column = names.get("time")
  out = []
  for record in records:
    row = {"epoch": record.get(names.get("epoch", "epoch"))}
    for split, columns in losses.items():
      parts = [to_float(record.get(c)) for c in columns]
      if columns and all(p is not None for p in parts):
        row[f"{split}_loss"] = sum(parts)
    for raw, key in metrics.items():
      row[key] = record.get(raw)
    if lr_column is not None:
      row["learning_rate"] = record.get(lr_column)
    if time_column is not None:
      row["elapsed_s"] = record.get(time_column)
    out.append(row)
  notes = []
  for split, columns in losses.items():
    if columns:
      notes.append(f"{split}_loss is the sum of " + " + ".join(c.strip() for c in columns))
  if lr_column is not None:
    notes.append(f"learning rate from {lr_column.strip()} (the weights' parameter group)")
  used = [c for cs in losses.values() for c in cs] + list(metrics) + list(lrs.values()) + [
      names.get("epoch", "epoch")] + ([time_column] if time_column else [])
  return Layout(framework, out, notes, {}, used)


# --- fastai -------------------------------------------------------------------------------------

_MMSS = re.compile(r"^(?:(\d+):)?(\d+):(\d{2})$")


def _clock_seconds(value: Any) -> float | None:
  """fastai's `time` column: 'mm:ss' or 'hh:mm:ss' per epoch."""
  match = _MMSS.match(str(value).strip())
  if not match:
    return to_float(value)
  hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
  return float(hours * 3600 + minutes * 60 + seconds)


def is_fastai(records: list[dict]) -> bool:
  """fastai's Recorder writes `epoch, train_loss, valid_loss, <metrics...>, time`."""
  names = list(_normalized(records))
  return names[:3] == ["epoch", "train_loss", "valid_loss"] and names[-1] == "time"


def fastai(records: list[dict]) -> Layout:
  """Reads a fastai `CSVLogger` history: every metric column is computed on the validation set.

  `accuracy`, `error_rate` and any other metric fastai logs beside `train_loss`/`valid_loss`
  come from `Learner.validate`, so they are validation metrics; `time` is the epoch's duration.
  """
  names = _normalized(records)
  rename = {}
  for norm, raw in names.items():
    if norm in ("epoch", "train_loss", "valid_loss"):
      continue
    if norm == "time":
      rename[raw] = "epoch_time_s"
    elif (schema.canonical_key(norm) or "").startswith("train_"):  # An unprefixed metric.
      rename[raw] = "valid_" + norm
  out = []
  for record in records:
    row = {}
    for key, value in record.items():
      target = rename.get(key, key)
      row[target] = _clock_seconds(value) if target == "epoch_time_s" else value
    out.append(row)
  moved = [raw for raw, new in rename.items() if new.startswith("valid_")]
  notes = []
  if moved:
    notes.append(f"fastai computes {', '.join(moved)} on the validation set")
  return Layout("fastai", out, notes)


# --- column-name layouts without reshaping ------------------------------------------------------


def is_timm(records: list[dict]) -> bool:
  names = set(_normalized(records))
  return "eval_top1" in names and "epoch" in names


def is_lightning(records: list[dict]) -> bool:
  """Lightning's CSVLogger: `epoch` and `step` columns, with train and validation values on
  separate rows (each row holds only what was logged at that moment)."""
  names = set(_normalized(records))
  if not {"epoch", "step"} <= names:
    return False
  sparse = sum(1 for r in records if any(v in (None, "") for v in r.values()))
  return sparse > 0


def is_keras(records: list[dict]) -> bool:
  names = set(_normalized(records))
  return "epoch" in names and "loss" in names and any(n.startswith("val_") for n in names)


_DETECTORS: tuple[tuple[str, Callable[[list], bool], Callable[[list], Layout] | None], ...] = (
    ("yolo", is_yolo, yolo),
    ("fastai", is_fastai, fastai),
    ("timm", is_timm, None),
    ("lightning", is_lightning, None),
    ("keras", is_keras, None),
)


def interpret(records: list[dict]) -> Layout:
  """The layout of tabular records (CSV rows, JSON rows): the first framework that claims them."""
  for name, detect, reader in _DETECTORS:
    if detect(records):
      return reader(records) if reader is not None else Layout(name, records)
  return Layout("generic", records)
