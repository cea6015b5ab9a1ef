"""From logged records to the rows the rules judge: one per epoch, or one per evaluation.

Frameworks log at several rates at once. Lightning writes a row every `log_every_n_steps` with the
batch's training loss and another at each validation; Hugging Face logs `loss` every
`logging_steps` and evaluates every `eval_steps` or epoch; TensorBoard scalars are often per step.
A single batch's loss is noise around the epoch's mean, so judging the last batch of each epoch
mistakes noise for divergence. Here:

* a training value of a row is the **mean of every value logged in it** (weighted by the logged
  example or token counts when the log has them); validation values are the row's last;
* the unit is the **epoch** when evaluations happen at most once per epoch, else the
  **evaluation**: each evaluation is a row, holding the training values logged since the one
  before, with its step and fractional epoch;
* evaluations after training ended (Lightning's `trainer.validate()` / `trainer.test()` after
  `fit`, a repeated final `evaluate()`) are not epochs: they are left out with a note.

Every choice is stated in the run's notes, so a reader knows what a row is.
"""

from __future__ import annotations

import math

from diagnostics.curves import to_float

# Per-step quantities averaged over a row; everything else keeps the row's last value.
_MEAN_KEYS = ("grad_norm", "update_ratio")
# Per-row example or token counts (weights) and cumulative counters (weights are differences).
WEIGHT = "weight"
CUMULATIVE_WEIGHT = "tokens_seen"


def _numeric_keys(record: dict, prefix: str) -> list[str]:
  return [k for k, v in record.items() if k.startswith(prefix) and to_float(v) is not None]


def has_train(record: dict) -> bool:
  return bool(_numeric_keys(record, "train_"))


def has_val(record: dict) -> bool:
  return bool(_numeric_keys(record, "val_"))


def _label(record: dict) -> float | None:
  return to_float(record.get("epoch"))


def _is_integral(value: float) -> bool:
  return abs(value - round(value)) < 1e-6


def _averaged(key: str) -> bool:
  return key.startswith("train_") or key in _MEAN_KEYS


# --- restarts -----------------------------------------------------------------------------------


def drop_superseded(records: list[dict], notes: list) -> list[dict]:
  """Keeps the latest training where the log restarts its epoch count.

  Keras' `CSVLogger(append=True)`, or any logger appending to one file, writes a second run (or a
  resumed one) after the first: epochs go 0, 1, 0, 1, 2, ... Rows from the restart on replace the
  earlier rows of the same and later epochs, as the resumed run's history does.
  """
  kept: list[dict] = []
  restarts = []
  last = None
  for record in records:
    label = _label(record)
    if label is not None and last is not None and _epoch_key(label) < last:
      restarts.append(label)
      cut = _epoch_key(label)
      kept = [r for r in kept if _label(r) is None or _epoch_key(_label(r)) < cut]
    if label is not None:
      last = _epoch_key(label)
    kept.append(record)
  if restarts:
    where = ", ".join(f"{r:g}" for r in restarts)
    notes.append(f"the epoch count restarts (at epoch {where}): a re-run or resumed training "
                 "appended to the same log; its rows replace the earlier ones from there on")
  return kept


# --- post-fit evaluations -----------------------------------------------------------------------


def drop_post_fit(records: list[dict], notes: list) -> list[dict]:
  """Removes evaluations logged after training ended.

  After the last record with training values, a record with an epoch label past the last
  training epoch (Lightning numbers `trainer.validate()` / `trainer.test()` after `fit` with the
  next epoch index), or an evaluation at the step of an earlier evaluation (a final
  `trainer.evaluate()` of the same model), is not a training epoch.
  """
  train_idx = [i for i, r in enumerate(records) if has_train(r)]
  if not train_idx:
    return records
  last = train_idx[-1]
  # Compared as whole epochs: an evaluation at epoch 3.0 ends the epoch of a log at 2.88.
  train_labels = [_epoch_key(_label(records[i])) for i in train_idx
                  if _label(records[i]) is not None]
  last_epoch = max(train_labels) if train_labels else None
  seen_eval_steps = {to_float(r.get("step")) for r in records[:last + 1] if has_val(r)}
  kept, dropped = records[:last + 1], []
  for record in records[last + 1:]:
    label, step = _label(record), to_float(record.get("step"))
    past_end = label is not None and last_epoch is not None and _epoch_key(label) > last_epoch
    repeated = has_val(record) and step is not None and step in seen_eval_steps
    if past_end or repeated:
      dropped.append(record)
      continue
    if has_val(record):
      seen_eval_steps.add(step)
    kept.append(record)
  evaluations = [r for r in dropped if _numeric_keys(r, "val_") or _numeric_keys(r, "test_")]
  if evaluations:
    values = "; ".join(
        ", ".join(f"{k} {to_float(r[k]):.4g}" for k in sorted(r)
                  if k.startswith(("val_", "test_")) and to_float(r[k]) is not None)
        for r in evaluations)
    notes.append(f"{len(evaluations)} evaluation row(s) logged after training ended (e.g. "
                 f"trainer.validate/test after fit) are not epochs and were left out: {values}")
  return kept


# --- the unit -----------------------------------------------------------------------------------


def choose_unit(records: list[dict]) -> str:
  """'epoch', 'evaluation' or 'row' (each record is a row: a plain per-epoch log).

  Evaluations at fractional epochs, or several in one epoch, make each evaluation a row. Without
  epoch labels, evaluations much sparser than the other records (TensorBoard per-step training
  scalars) mark the rows; otherwise every record is one.
  """
  evals = [r for r in records if has_val(r)]
  labels = [_label(r) for r in evals]
  if evals and all(l is not None for l in labels):
    if any(not _is_integral(l) for l in labels):
      return "evaluation"
    per_epoch: dict[int, set] = {}
    for record, label in zip(evals, labels):
      per_epoch.setdefault(round(label), set()).add(to_float(record.get("step")))
    if any(len(steps) > 1 and None not in steps for steps in per_epoch.values()):
      return "evaluation"
    return "epoch"
  if any(_label(r) is not None for r in records):
    return "epoch"
  if evals and len(evals) * 2 <= len(records) and all("step" in r for r in records):
    return "evaluation"
  return "row"


# --- merging ------------------------------------------------------------------------------------


def _weights(bucket: list[dict], previous_total: float | None) -> tuple[list[float], float | None]:
  """Each record's weight: its logged count, the growth of a cumulative counter, or 1."""
  weights, total = [], previous_total
  for record in bucket:
    count, seen = to_float(record.get(WEIGHT)), to_float(record.get(CUMULATIVE_WEIGHT))
    if count is not None and count > 0:
      weights.append(count)
    elif seen is not None and total is not None and seen > total:
      weights.append(seen - total)
    else:
      weights.append(1.0)
    if seen is not None:
      total = seen
  return weights, total


def _merge(bucket: list[dict], weights: list[float]) -> tuple[dict, int]:
  """One row from a bucket: weighted means of training values, last values of the rest.

  Returns:
    (row, the largest number of values averaged into one key).
  """
  row: dict = {}
  sums: dict[str, list[float]] = {}
  for record, weight in zip(bucket, weights):
    for key, value in record.items():
      if value is None or key in (WEIGHT, CUMULATIVE_WEIGHT):
        continue
      number = to_float(value)
      if _averaged(key) and number is not None:
        sums.setdefault(key, []).extend((number * weight, weight))
      elif key == "grad_norm_max" and number is not None:
        row[key] = max(number, to_float(row.get(key)) or -math.inf)
      else:
        row[key] = value
  most = 0
  for key, parts in sums.items():
    total_weight = sum(parts[1::2])
    row[key] = sum(parts[0::2]) / total_weight if total_weight else math.nan
    most = max(most, len(parts) // 2)
  return row, most


def _epoch_key(label: float) -> float:
  """Fractional epochs (a log at epoch 2.4) belong to the epoch they end in (3)."""
  return float(round(label)) if _is_integral(label) else float(math.ceil(label))


def by_epoch(records: list[dict]) -> tuple[list[dict], list[int]]:
  """Rows per epoch label; records without a label join the epoch before them."""
  buckets: dict[float, list[dict]] = {}
  current = None
  for record in records:
    label = _label(record)
    if label is not None:
      current = _epoch_key(label)
    if current is not None:
      buckets.setdefault(current, []).append(record)
  rows, counts, seen = [], [], None
  for key in sorted(buckets):
    weights, seen = _weights(buckets[key], seen)
    row, most = _merge(buckets[key], weights)
    row["epoch"] = int(key)
    rows.append(row)
    counts.append(most)
  return rows, counts


def by_evaluation(records: list[dict]) -> tuple[list[dict], list[int]]:
  """One row per evaluation, holding the training values logged since the previous one."""
  rows, counts, bucket, seen = [], [], [], None
  for record in records:
    bucket.append(record)
    if has_val(record):
      weights, seen = _weights(bucket, seen)
      row, most = _merge(bucket, weights)
      label = _label(record)
      row["epoch"] = round(label, 4) if label is not None else None
      rows.append(row)
      counts.append(most)
      bucket = []
  if any(has_train(r) for r in bucket):  # Training logged after the last evaluation.
    weights, seen = _weights(bucket, seen)
    row, most = _merge(bucket, weights)
    labels = [_label(r) for r in bucket if _label(r) is not None]
    row["epoch"] = round(labels[-1], 4) if labels else None
    rows.append(row)
    counts.append(most)
  if any(r["epoch"] is None for r in rows):
    for i, row in enumerate(rows):
      row["epoch"] = i + 1
  return rows, counts


def _describe(unit: str, rows: list[dict], counts: list[int], weighted: bool) -> list[str]:
  notes = []
  if unit == "evaluation" and rows:
    steps = [to_float(r.get("step")) for r in rows if has_val(r)]
    steps = [s for s in steps if s is not None]
    every = f" every ~{(steps[-1] - steps[0]) / (len(steps) - 1):.4g} steps" \
        if len(steps) > 1 else ""
    labels = [to_float(r.get("epoch")) for r in rows]
    fractional = any(l is not None and not _is_integral(l) for l in labels)
    notes.append(f"rows are the {len(steps)} evaluations{every}, not epochs"
                 + ("; epoch numbers are fractional" if fractional else
                    "; the log has no epoch numbers, so rows are numbered 1.."
                    f"{len(rows)}"))
  averaged = [c for c in counts if c > 1]
  if averaged:
    what = "epoch" if unit == "epoch" else "row"
    how = "weighted means" if weighted else "means"
    count = f"{min(averaged)}" if min(averaged) == max(averaged) else \
        f"{min(averaged)}-{max(averaged)}"
    notes.append(f"training values are {how} of the {count} values logged per {what} "
                 "(per-step logging), not the last batch's")
  return notes


def aggregate(records: list[dict], notes: list) -> tuple[list[dict], str]:
  """Turns canonical records into the rows the rules judge; notes say what was done.

  Args:
    records: records with canonical keys, in the order they were logged (`epoch`, `step` where
      the log has them).
    notes: list to which remarks about the aggregation are appended.

  Returns:
    (rows with `epoch` labels, fractional for evaluations inside an epoch, in order; the unit of
    a row: "epoch", "evaluation", or "row" for a plain log whose rows are its epochs).
  """
  records = drop_post_fit(drop_superseded(records, notes), notes)
  unit = choose_unit(records)
  weighted = any(to_float(r.get(WEIGHT)) is not None or to_float(r.get(CUMULATIVE_WEIGHT))
                 is not None for r in records)
  if unit == "epoch":
    rows, counts = by_epoch(records)
  elif unit == "evaluation":
    rows, counts = by_evaluation(records)
  else:
    rows, counts = [dict(r) for r in records], [1] * len(records)
    if all(_label(r) is None for r in rows):
      for i, row in enumerate(rows):
        row["epoch"] = i + 1
    for row in rows:
      row.pop(WEIGHT, None)
      row.pop(CUMULATIVE_WEIGHT, None)
  notes.extend(_describe(unit, rows, counts, weighted))
  return rows, unit
