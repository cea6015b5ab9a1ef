"""build_report: from run directories to table.md, table.csv, figures and report.html."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Callable, Iterable, Sequence

from reporting import doctor as doctor_lib
from reporting import figures, html_page, tables
from reporting.metrics import MetricSpec, bare_name, default_metric, metric_spec, metrics_in_history
from reporting.published import Published
from reporting.runs import (BrokenRun, RunData, RunLoadError, RunLocation, discover, load_run,
                            natural_key, sweep_error_line)

Warn = Callable[[str], None]


def warn_stderr(message: str) -> None:
  """Prints one report message as one line on stderr."""
  print(f"report: {message}", file=sys.stderr)


@dataclasses.dataclass
class ReportResult:
  """What build_report read and wrote.

  Attributes:
    out_dir: the output directory.
    tables: one per (set, metric).
    runs: runs in the tables.
    broken: runs left out, with reasons.
    messages: every warning emitted (one line each).
    files: files written.
  """

  out_dir: Path
  tables: list[tables.Table]
  runs: list[RunData]
  broken: list[BrokenRun]
  messages: list[str]
  files: list[Path]

  @property
  def ok(self) -> bool:
    """True when at least one run could be read."""
    return bool(self.runs)


def build_report(paths: Iterable[str | Path], out_dir: str | Path, metric: str | None = None,
                 warn: Warn = warn_stderr, run_doctor: bool = True,
                 published: Published | None = None,
                 set_label: str | None = None) -> ReportResult:
  """Reads all runs under `paths` and writes the report into `out_dir`.

  Unreadable paths and runs produce one warning line each and are listed in the report; the
  report is written even when nothing could be read (then ReportResult.ok is False).

  Args:
    paths: run workdirs or sweep roots (searched recursively for history.jsonl).
    out_dir: output directory, created if needed.
    metric: metric to report (bare, e.g. "accuracy", or "val_accuracy"); None picks each
      run's own (summary.json `best_metric`, else accuracy/perplexity/... as logged).
    warn: receives each warning line.
    run_doctor: whether to include the doctor's findings in the html.
    published: a study's numbers (published.load_published) to show beside the rows whose
      config matches one of its entries; None for none.
    set_label: report the runs of all `paths` as one set of this name (runs.discover).

  Returns:
    The ReportResult.
  """
  paths = [str(p) for p in paths]
  out_dir = Path(out_dir)
  messages: list[str] = []

  def note(message: str) -> None:
    messages.append(message)
    warn(message)

  locations, without_history, path_messages = discover(paths, set_label)
  for message in path_messages:
    note(message)
  runs, broken = _load_all(locations, without_history, note)
  metric_of = _choose_metrics(runs, metric, broken, note)
  runs = [run for run in runs if run.workdir in metric_of]
  all_tables = _build_tables(runs, metric_of, broken, published)
  if not runs:
    note(f"no run could be read from {', '.join(paths)}")
  elif published is not None and not any(row.study for t in all_tables for row in t.rows):
    note(f"no row matches an entry of {published.path} (matched on config.json "
         f"{_settings_text(published)} and the table's metric)")

  out_dir.mkdir(parents=True, exist_ok=True)
  files = _write_tables(all_tables, broken, messages, out_dir)
  sections = [_figures_for(table, i, out_dir, run_doctor) for i, table in enumerate(all_tables)]
  for section in sections:
    files += section.overlays + list(section.run_figures.values())
  page = out_dir / "report.html"
  page.write_text(html_page.render(sections, broken, messages, paths))
  files.append(page)
  return ReportResult(out_dir, all_tables, runs, broken, messages, files)


def _load_all(locations: Sequence[RunLocation], without_history: Sequence[RunLocation],
              note: Callable[[str], None]) -> tuple[list[RunData], list[BrokenRun]]:
  runs, broken = [], []
  for location in locations:
    try:
      run = load_run(location)
    except RunLoadError as e:
      broken.append(BrokenRun(location, str(e)))
      continue
    runs.append(run)
    for message in run.notes:  # The run is reported, and the reader says what it dropped.
      note(f"{run.workdir}: {message}")
  for location in without_history:
    reason = "no history.jsonl (no finished epoch, or the run failed before its first)"
    sweep_error = sweep_error_line(location.workdir)
    broken.append(BrokenRun(location, reason + (f"; {sweep_error}" if sweep_error else "")))
  for b in broken:
    note(f"left out {b.describe()}")
  return runs, broken


def _choose_metrics(runs: Sequence[RunData], requested: str | None, broken: list[BrokenRun],
                    note: Callable[[str], None]) -> dict[Path, str]:
  """Maps each run's workdir to the metric it is reported by.

  With a requested metric that some runs lack, those runs move to `broken`; when no run has
  it, each run falls back to its own metric so the report is still useful.
  """
  if requested:
    wanted = bare_name(requested)
    having = [run for run in runs if wanted in metrics_in_history(run.history)]
    if having:
      kept = {run.workdir for run in having}
      for run in runs:
        if run.workdir not in kept:
          reason = (f"no '{wanted}' metric in history.jsonl (it has: "
                    f"{', '.join(metrics_in_history(run.history)) or 'none'})")
          broken.append(BrokenRun(run.location, reason))
          note(f"left out {run.workdir}: {reason}")
      return {run.workdir: wanted for run in having}
    if runs:
      available = sorted({m for run in runs for m in metrics_in_history(run.history)})
      note(f"no run has metric '{wanted}' (train_{wanted}/val_{wanted} in history.jsonl); "
           f"available: {', '.join(available) or 'none'}; reporting each run's own metric")
  return {run.workdir: default_metric(run.history, run.summary) for run in runs}


def _settings_text(published: Published) -> str:
  return "; ".join(f"{', '.join(s.settings)} for {s.metric}" for s in published.sets)


def _build_tables(runs: Sequence[RunData], metric_of: dict[Path, str],
                  broken: Sequence[BrokenRun],
                  published: Published | None = None) -> list[tables.Table]:
  """Builds one table per (set, metric), sets in discovery order."""
  keyed: dict[tuple[str, str], list[RunData]] = {}
  for run in runs:
    keyed.setdefault((run.group, metric_of[run.workdir]), []).append(run)
  out = []
  for (group, name), members in keyed.items():
    spec = _spec_from_summaries(name, members)
    group_broken = [b for b in broken if b.location.group == group]
    out.append(tables.build_table(group, spec, members, group_broken, published))
  return out


def _spec_from_summaries(name: str, runs: Sequence[RunData]) -> MetricSpec:
  """Uses a summary's `best_mode` for this metric when one exists (the run's own choice)."""
  for run in runs:
    summary = run.summary or {}
    if bare_name(str(summary.get("best_metric", ""))) == name and summary.get("best_mode"):
      return metric_spec(name, summary["best_mode"])
  return metric_spec(name)


def _write_tables(all_tables, broken, messages, out_dir: Path) -> list[Path]:
  md = out_dir / "table.md"
  md.write_text(tables.render_markdown(all_tables, broken, messages))
  csv_path = out_dir / "table.csv"
  csv_path.write_text(tables.render_csv(all_tables))
  return [md, csv_path]


def slug(text: str) -> str:
  """Makes a file-name-safe slug: "runs/vit a" -> "runs_vit_a"."""
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _figures_for(table: tables.Table, index: int, out_dir: Path,
                 run_doctor: bool) -> html_page.SetSection:
  """Draws the overlays and per-run figures of one table and collects doctor findings."""
  set_slug = f"set{index + 1}_{slug(Path(table.group).name)}_{table.metric.name}"
  fig_dir = out_dir / "figures" / set_slug
  groups = [(row.name, row.runs) for row in table.rows]
  overlays = []
  for key, spec in _overlay_keys(table.metric):
    path = fig_dir / f"overlay_{key}.png"
    overlays.append(figures.plot_overlay(groups, key, spec, f"{table.group}: {key}", path))
  run_figures, doctor = {}, {}
  used: set[str] = set()
  for row in table.rows:
    for run in sorted(row.runs, key=lambda r: natural_key(str(r.workdir))):
      name = _unique(slug(run.label), used)
      run_figures[run.workdir] = figures.plot_run(run, table.metric, fig_dir / f"{name}.png")
      if run_doctor:
        doctor[run.workdir] = doctor_lib.findings_for_run(run)
  return html_page.SetSection(table, overlays, run_figures, doctor)


def _overlay_keys(metric: MetricSpec) -> list[tuple[str, MetricSpec]]:
  """History keys overlaid for a set: val and train metric, and val loss."""
  keys = [(f"val_{metric.name}", metric), (f"train_{metric.name}", metric)]
  if metric.name != "loss":
    keys.append(("val_loss", metric_spec("loss")))
  return keys


def _unique(name: str, used: set[str]) -> str:
  candidate, i = name, 2
  while candidate in used:
    candidate, i = f"{name}_{i}", i + 1
  used.add(candidate)
  return candidate
