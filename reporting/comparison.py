"""The "against the published study" table: a study's figures beside ours, in its protocol.

Shown under a report table when report.py gets --published and some row of that table matches
a published entry (reporting.published). Every row of the table appears, in the same order;
rows without a match keep blank study cells. Each published figure gets a "study" column and,
right beside it, an "ours" column measured the way the study measured it: best over epochs
for train/val, the FINAL model for test. Ours of the best-validation checkpoint follows, so
a reader sees both test protocols side by side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reporting.formatting import NOT_WRITTEN, format_params, format_stat
from reporting.metrics import MetricSpec
from reporting.published import FIGURE_KINDS, Match, PublishedSet

if TYPE_CHECKING:
  from reporting.tables import ExperimentRow, Table

# Our quantity (tables.QUANTITIES) measured like each published figure kind.
OURS = {"best_train": "best_train", "best_val": "best_val", "final_test": "last_test",
        "num_params": "num_params", "sec_per_epoch": "sec_per_epoch", "memory_mib": "peak_mib"}
# Published values are shown with the decimals the study prints them with.
_STUDY_DECIMALS = {"num_params": 0, "memory_mib": 1}

CSV_COLUMNS = ["study_table", "study_row"] + [f"study_{kind}" for kind in FIGURE_KINDS]


def matched(table: Table) -> list[Match]:
  """Returns the matches of the table's rows, in row order (rows without one left out)."""
  return [row.study for row in table.rows if row.study is not None]


def has_matches(table: Table) -> bool:
  """True when the table was built with published numbers and some row matches them."""
  return bool(matched(table))


def _shown_kinds(table: Table) -> list[str]:
  """Figure kinds some matched entry publishes; final_test always (ours exist regardless)."""
  published = {kind for m in matched(table) for kind in m.entry.figures}
  return [k for k in FIGURE_KINDS if k in published or k == "final_test"]


def _labels(kind: str, metric: MetricSpec) -> tuple[str, str]:
  """Returns the (study, ours) column headers of a figure kind."""
  best = "max" if metric.higher_is_better else "min"
  if kind == "sec_per_epoch":
    return "study train s/epoch (its GPU)", "ours train s/epoch"
  if kind == "memory_mib":
    return "study GPU memory (MiB, whole card)", "ours peak memory (MiB)"
  label = {"best_train": f"{best} train {metric.header}",
           "best_val": f"{best} val {metric.header}",
           "final_test": f"test {metric.header} (final model)",
           "num_params": "params"}[kind]
  return f"study {label}", f"ours {label}"


def best_checkpoint_header(metric: MetricSpec) -> str:
  """Header of our best-validation-checkpoint test column."""
  return f"ours test {metric.header} (best val checkpoint)"


def headers(table: Table) -> list[str]:
  """Returns the column headers of the table's comparison table."""
  out = ["experiment", f"study row ({', '.join(_tables_named(table))})"]
  for kind in _shown_kinds(table):
    out += list(_labels(kind, table.metric))
    if kind == "final_test":
      out.append(best_checkpoint_header(table.metric))
  return out


def _tables_named(table: Table) -> list[str]:
  names = []
  for m in matched(table):
    if m.set.table not in names:
      names.append(m.set.table)
  return names


def cells(table: Table, row: ExperimentRow) -> list[str]:
  """Returns one row's display strings, in headers order."""
  entry = row.study.entry if row.study is not None else None
  out = [row.name, "" if entry is None else str(entry.row)]
  for kind in _shown_kinds(table):
    value = None if entry is None else entry.figures.get(kind)
    out += [_study_cell(kind, value), _ours_cell(kind, row, table.metric)]
    if kind == "final_test":
      out.append(format_stat(row.stats["test"], scale=table.metric.scale))
  return out


def _study_cell(kind: str, value: float | None) -> str:
  if value is None:
    return ""
  return f"{value:,.{_STUDY_DECIMALS.get(kind, 2)}f}"


def _ours_cell(kind: str, row: ExperimentRow, metric: MetricSpec) -> str:
  stat = row.stats[OURS[kind]]
  if kind == "num_params":
    return format_params(stat)
  if kind == "sec_per_epoch":
    return format_stat(stat)
  if kind == "memory_mib":
    return format_stat(stat, decimals=1)
  if kind == "final_test":
    return _final_test_cell(row, metric)
  return format_stat(stat, scale=metric.scale)


def _final_test_cell(row: ExperimentRow, metric: MetricSpec) -> str:
  """Our final-model test value; a dash where no run wrote one, the count where some did."""
  stat = row.stats["last_test"]
  if not stat.n:
    return NOT_WRITTEN
  text = format_stat(stat, scale=metric.scale)
  # A mean over some seeds only must not pass for the mean over all of them.
  return text if stat.n == len(row.runs) else f"{text} ({stat.n} of {len(row.runs)} seeds)"


def footnotes(table: Table) -> list[str]:
  """Returns the comparison table's footnotes: source, protocol, device caveat, differences."""
  m = table.metric.name
  best = "max" if table.metric.higher_is_better else "min"
  sets = _matched_sets(table)
  notes = [f"Published numbers: {table.published.source}, read from {table.published.path}. "
           + " ".join(f"{s.name}: a row matches the entry with the same config.json "
                      f"{', '.join(s.settings)}." for s in sets)
           + " study row: the row (Exp) number in the study's table. Rows with blank study "
           "cells match no published entry."]
  notes += [s.note for s in sets if s.note]
  notes.append(
      "The study tests its final-epoch model and reports max-over-epochs train/val values; "
      f"ours beside them follow that protocol: {best} train and val are the best values "
      f"over epochs of history `train_{m}`/`val_{m}`; test (final model) is summary.json "
      f"`last_test_{m}` ({NOT_WRITTEN} where a run has none, e.g. runs written before it was "
      "recorded; \"k of n seeds\" where only some have it); test (best val checkpoint) is "
      f"`test_{m}`, the main table's test column.")
  notes.append(
      "Times and memory are not comparable across devices: the study's were measured on its "
      "GPU (memory: nvidia-smi's whole-card usage averaged over training), ours on "
      f"{_device_kinds(table)} (memory: the peak the backend reports).")
  differences = _protocol_differences(table)
  if differences:
    notes.append("Matched rows run differently from the study, so their numbers are not "
                 "like for like: " + "; ".join(differences) + ".")
  return notes


def _matched_sets(table: Table) -> list[PublishedSet]:
  out = []
  for m in matched(table):
    if all(m.set is not s for s in out):
      out.append(m.set)
  return out


def _device_kinds(table: Table) -> str:
  kinds = sorted({str((run.summary or {}).get("device_kind")) for row in table.rows
                  for run in row.runs if (run.summary or {}).get("device_kind")})
  return ", ".join(kinds) if kinds else "the devices of our runs (not recorded)"


def _protocol_differences(table: Table) -> list[str]:
  out = []
  for row in table.rows:
    if row.study is not None:
      differences = row.study.protocol_differences(row.config)
      if differences:
        out.append(f"{row.name}: {', '.join(differences)}")
  return out


def csv_fields(row: ExperimentRow) -> dict:
  """Returns the CSV_COLUMNS values of a row: published figures in display units, else ""."""
  record = {column: "" for column in CSV_COLUMNS}
  if row.study is not None:
    record["study_table"] = row.study.set.table
    record["study_row"] = row.study.entry.row
    for kind, value in row.study.entry.figures.items():
      record[f"study_{kind}"] = repr(value)
  return record
