"""Experiment tables: per-run numbers, mean ± std over seeds, one-factor significance marks.

One row per experiment (the seeds of an experiment share a row; reporting.seeds decides which
runs are seeds of one experiment). Numbers are kept in the metric's stored units; rendering
converts to display units (accuracy in %).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from typing import Sequence

from reporting import comparison, configs, seeds
from reporting.formatting import format_p, format_params, format_stat
from reporting.metrics import MetricSpec, is_number
from reporting.published import Match, Published
from reporting.runs import BrokenRun, RunData, natural_key
from reporting.stats import ALPHA, SeedStat, Separation, seed_stat, welch_separation

MIB = 2 ** 20

# Quantities summarised over seeds, in table order. "metric" marks ones in metric units.
QUANTITIES = ("num_params", "sec_per_epoch", "peak_mib", "best_train", "best_val",
              "best_epoch", "test", "last_test", "total_time_s")
_METRIC_QUANTITIES = frozenset({"best_train", "best_val", "test", "last_test"})


@dataclasses.dataclass(frozen=True)
class RunNumbers:
  """The table quantities of one run (one seed), metric values in stored units."""

  num_params: float | None
  sec_per_epoch: float | None
  peak_mib: float | None
  best_train: float | None
  best_val: float | None
  best_epoch: int | None
  test: float | None
  last_test: float | None
  total_time_s: float | None


def run_numbers(run: RunData, metric: MetricSpec) -> RunNumbers:
  """Computes one run's table quantities.

  Args:
    run: the run.
    metric: the metric the table is about.

  Returns:
    RunNumbers: seconds/epoch is the mean history `epoch_time_s` over all epochs (the
    trainer already excludes compilation, so nothing else is dropped); peak memory is the
    max non-null `peak_memory_bytes` in MiB; best train/val are the best values over epochs;
    best epoch is the first epoch reaching the best val value; test is summary.json's
    `test_<metric>` (best-val checkpoint), last test its `last_test_<metric>` (final model,
    None for runs written before the key existed); total time is summary.json's
    `total_time_s`, else the last `elapsed_s`.
  """
  rows = run.history
  summary = run.summary or {}
  train = [row.get(f"train_{metric.name}") for row in rows]
  val = [row.get(f"val_{metric.name}") for row in rows]
  best_train_i = metric.best_index(train)
  best_val_i = metric.best_index(val)
  return RunNumbers(
      num_params=_number(summary.get("num_params")),
      sec_per_epoch=_mean([row.get("epoch_time_s") for row in rows]),
      peak_mib=_max_over([row.get("peak_memory_bytes") for row in rows], scale=1 / MIB),
      best_train=None if best_train_i is None else float(train[best_train_i]),
      best_val=None if best_val_i is None else float(val[best_val_i]),
      best_epoch=None if best_val_i is None else _number(rows[best_val_i].get("epoch")),
      test=_number(summary.get(f"test_{metric.name}")),
      last_test=_number(summary.get(f"last_test_{metric.name}")),
      total_time_s=_total_time(rows, summary),
  )


def _number(value) -> float | None:
  return value if is_number(value) else None


def _mean(values) -> float | None:
  kept = [v for v in values if is_number(v)]
  return sum(kept) / len(kept) if kept else None


def _max_over(values, scale: float) -> float | None:
  kept = [v for v in values if is_number(v)]
  return max(kept) * scale if kept else None


def _total_time(rows: Sequence[dict], summary: dict) -> float | None:
  if is_number(summary.get("total_time_s")):
    return summary["total_time_s"]
  # Unfinished runs have no summary; the last cumulative time is the best available.
  return _number(rows[-1].get("elapsed_s")) if rows else None


@dataclasses.dataclass
class Comparison:
  """A one-factor comparison between two rows of a table.

  Attributes:
    other: name of the other experiment.
    factor: the one flattened config key the two differ in.
    values: (this row's value, other row's value) of that key.
    separation: Welch test outcome on per-seed test metrics, None without test metrics.
  """

  other: str
  factor: str
  values: tuple
  separation: Separation | None

  @property
  def not_separated(self) -> bool:
    return self.separation is not None and self.separation.separated is False

  def cell(self) -> str:
    """Returns the compact text for the table cell, e.g. "≈ exp2 [optimizer] p=0.41"."""
    sep = self.separation
    target = f"{self.other} [{self.factor}]"
    if sep is None:
      return f"{target}: no test metric: no test"
    if not sep.tested:
      return f"{target}: {sep.note}"
    mark = "≠" if sep.separated else "≈"
    p = format_p(sep.p_value) if sep.p_value is not None else sep.note
    return f"{mark} {target} {p}"


@dataclasses.dataclass
class ExperimentRow:
  """One table row: an experiment over its seeds.

  Attributes:
    grouped_by: how its runs were found to be seeds of one experiment (a seeds.GROUPED_BY_*
      or seeds.NOT_GROUPED_* string).
    study: the published entry its config matches, None without one (or without --published).
  """

  group: str
  name: str
  runs: list[RunData]
  numbers: list[RunNumbers]
  stats: dict[str, SeedStat]
  config: dict
  grouped_by: str
  comparisons: list[Comparison] = dataclasses.field(default_factory=list)
  study: Match | None = None

  @property
  def seeds(self) -> list:
    return [run.seed for run in self.runs]


@dataclasses.dataclass
class Table:
  """All rows of one set for one metric, plus what was left out of it.

  Attributes:
    grouping_notes: footnote lines on runs deliberately not grouped as seeds.
    published: the published numbers rows were matched against, None without --published.
  """

  group: str
  metric: MetricSpec
  rows: list[ExperimentRow]
  broken: list[BrokenRun] = dataclasses.field(default_factory=list)
  grouping_notes: list[str] = dataclasses.field(default_factory=list)
  published: Published | None = None

  @property
  def title(self) -> str:
    return f"{self.group}: {self.metric.name}"


def build_table(group: str, metric: MetricSpec, runs: Sequence[RunData],
                broken: Sequence[BrokenRun] = (), published: Published | None = None) -> Table:
  """Groups runs into experiment rows, summarises seeds and marks one-factor pairs.

  Seeds are grouped by seed_K folder names, else by configs equal except the seed
  (seeds.group_runs).

  Args:
    group: the set label.
    metric: the metric of the table.
    runs: the readable runs of the set judged by that metric.
    broken: the set's runs that could not be read (listed in the footnote).
    published: a study's numbers to match rows against by config settings, or None.

  Returns:
    The Table, rows in natural name order.
  """
  seed_groups, notes = seeds.group_runs(runs)
  rows = [_row(group, g.name, sorted(g.runs, key=_seed_key), metric, g.grouped_by)
          for g in sorted(seed_groups, key=lambda g: natural_key(g.name))]
  _mark_one_factor_pairs(rows)
  if published is not None:
    for row in rows:
      row.study = published.match(row.config, metric.name)
  return Table(group, metric, rows, list(broken), notes, published)


def _seed_key(run: RunData):
  return (run.seed is None, run.seed if run.seed is not None else 0, str(run.workdir))


def _row(group: str, name: str, runs: list[RunData], metric: MetricSpec,
         grouped_by: str) -> ExperimentRow:
  numbers = [run_numbers(run, metric) for run in runs]
  stats = {q: seed_stat([getattr(n, q) for n in numbers]) for q in QUANTITIES}
  return ExperimentRow(group, name, runs, numbers, stats, configs.comparable(runs[0].config),
                       grouped_by)


def _mark_one_factor_pairs(rows: list[ExperimentRow]) -> None:
  """Adds a Comparison to both rows of every pair whose configs differ in exactly one key."""
  for i, a in enumerate(rows):
    for b in rows[i + 1:]:
      keys = configs.differing_keys(a.config, b.config)
      if len(keys) != 1:
        continue
      key = keys[0]
      test_a, test_b = a.stats["test"], b.stats["test"]
      sep = None if not (test_a.n and test_b.n) else welch_separation(test_a.values, test_b.values)
      a.comparisons.append(Comparison(b.name, key, (a.config.get(key), b.config.get(key)), sep))
      b.comparisons.append(Comparison(a.name, key, (b.config.get(key), a.config.get(key)), sep))


# ----------------------------------------------------------------------------- rendering


def column_headers(metric: MetricSpec) -> list[str]:
  """Returns the markdown/html column headers for a table about `metric`."""
  best = "max" if metric.higher_is_better else "min"
  return ["experiment", "seeds", "seeds grouped by", "params", "train s/epoch",
          "peak memory (MiB)", f"{best} train {metric.header}", f"{best} val {metric.header}",
          "best epoch", f"test {metric.header}", "total time (s)", "one-factor comparisons"]


def row_cells(row: ExperimentRow, metric: MetricSpec) -> list[str]:
  """Returns the display strings of one row, in column_headers order."""
  s = row.stats
  return [
      row.name,
      str(len(row.runs)),
      row.grouped_by,
      format_params(s["num_params"]),
      format_stat(s["sec_per_epoch"]),
      format_stat(s["peak_mib"], decimals=1),
      format_stat(s["best_train"], scale=metric.scale),
      format_stat(s["best_val"], scale=metric.scale),
      format_stat(s["best_epoch"], decimals=0 if s["best_epoch"].n == 1 else 1),
      format_stat(s["test"], scale=metric.scale),
      format_stat(s["total_time_s"], decimals=1),
      "; ".join(c.cell() for c in row.comparisons) or "–",
  ]


def footnotes(table: Table) -> list[str]:
  """Returns the table's footnote lines: what the numbers are, the test used, what is missing."""
  m = table.metric
  direction = "higher" if m.higher_is_better else "lower"
  notes = [
      "Values are mean ± sample std (ddof=1) over seeds; a single seed shows its value alone.",
      f"Seeds grouped by \"{seeds.GROUPED_BY_FOLDER}\": runs in NAME/seed_K folders are the "
      f"seeds of NAME. \"{seeds.GROUPED_BY_CONFIG}\": other runs whose config.json are equal "
      "except seed, where outputs go (workdir, output_dir, log_dir, ...), "
      "dataset.data_dir/manual_dir and top-level name/label fields, whatever their folders "
      "are called; the row is named after their common folder, else the common start of "
      "their folder names. Runs without config.json, without a seed in it, or sharing "
      "config and seed with another run stay on their own rows.",
      f"{m.name}: {direction} is better; best epoch is the first epoch with the best val "
      f"{m.name}; test {m.name} is summary.json `test_{m.name}` (the best-val checkpoint).",
      "train s/epoch: mean history `epoch_time_s` (compilation excluded); peak memory: max "
      "`peak_memory_bytes` in MiB (n/a where the backend reports none); total time: "
      "summary.json `total_time_s` (last `elapsed_s` for unfinished runs).",
      "One-factor comparisons pair rows whose config.json (flattened; seed, workdir, "
      "path and run-label fields ignored) differ in exactly one field, named in brackets. "
      f"≈ marks a pair not separated by more than its seed spread: Welch's t-test "
      f"(scipy.stats.ttest_ind, equal_var=False) on the per-seed test {m.name} gives "
      f"p ≥ {ALPHA}; ≠ marks p < {ALPHA}. Where either row has fewer than 2 seeds: "
      "\"single seed: no test\".",
  ]
  notes += table.grouping_notes
  if table.broken:
    notes.append("Not in this table (could not be read): " +
                 "; ".join(b.describe() for b in table.broken) + ".")
  return notes


def _md_escape(text: str) -> str:
  return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(tables: Sequence[Table], broken: Sequence[BrokenRun] = (),
                    messages: Sequence[str] = ()) -> str:
  """Renders all tables, their footnotes and the list of runs left out as markdown."""
  out = ["# curvelab report", ""]
  for table in tables:
    out += [f"## {_md_escape(table.title)}", ""]
    out += _md_table(column_headers(table.metric),
                     [row_cells(row, table.metric) for row in table.rows], footnotes(table))
    if comparison.has_matches(table):
      out += [f"### {COMPARISON_TITLE}", ""]
      out += _md_table(comparison.headers(table),
                       [comparison.cells(table, row) for row in table.rows],
                       comparison.footnotes(table))
  if broken:
    out += ["## Runs left out", ""] + [f"- {_md_escape(b.describe())}" for b in broken] + [""]
  if messages:
    out += ["## Messages", ""] + [f"- {_md_escape(m)}" for m in messages] + [""]
  return "\n".join(out)


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]],
              notes: Sequence[str]) -> list[str]:
  """Returns the markdown lines of one table and its numbered footnotes."""
  out = ["| " + " | ".join(_md_escape(h) for h in headers) + " |",
         "|" + "|".join("---" for _ in headers) + "|"]
  out += ["| " + " | ".join(_md_escape(c) for c in cells) + " |" for cells in rows]
  out.append("")
  out += [f"{i}. {_md_escape(note)}" for i, note in enumerate(notes, start=1)]
  out.append("")
  return out


COMPARISON_TITLE = "Against the published study"

CSV_COLUMNS = (
    ["set", "experiment", "metric", "metric_unit", "best_mode", "seeds", "seed_list",
     "seeds_grouped_by"]
    + [f"{q}_{part}" for q in QUANTITIES for part in ("mean", "std")]
    + ["not_separated_from", "separated_from", "untested_with"])


def render_csv(tables: Sequence[Table]) -> str:
  """Renders one CSV line per experiment; metric columns in display units, full precision.

  With published numbers (any table built with some), comparison.CSV_COLUMNS follow: the
  matched entry's table, row and figures in the study's display units, blank without a match.
  """
  with_study = any(table.published is not None for table in tables)
  columns = CSV_COLUMNS + (comparison.CSV_COLUMNS if with_study else [])
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
  writer.writeheader()
  for table in tables:
    for row in table.rows:
      record = _csv_record(table, row)
      if with_study:
        record.update(comparison.csv_fields(row))
      writer.writerow(record)
  return buffer.getvalue()


def _csv_record(table: Table, row: ExperimentRow) -> dict:
  m = table.metric
  record = {"set": table.group, "experiment": row.name, "metric": m.name,
            "metric_unit": m.unit, "best_mode": m.mode, "seeds": len(row.runs),
            "seed_list": " ".join(str(s) for s in row.seeds if s is not None),
            "seeds_grouped_by": row.grouped_by}
  for q in QUANTITIES:
    scale = m.scale if q in _METRIC_QUANTITIES else 1.0
    stat = row.stats[q]
    record[f"{q}_mean"] = "" if stat.mean is None else repr(stat.mean * scale)
    record[f"{q}_std"] = "" if stat.std is None else repr(stat.std * scale)
  record["not_separated_from"] = " ".join(c.other for c in row.comparisons if c.not_separated)
  record["separated_from"] = " ".join(
      c.other for c in row.comparisons if c.separation and c.separation.separated)
  record["untested_with"] = " ".join(
      c.other for c in row.comparisons if c.separation is None or not c.separation.tested)
  return record
