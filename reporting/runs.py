"""Finding run workdirs and reading the files a run writes (docs/run_files.md).

A run is a directory holding `history.jsonl`; `config.json` and `summary.json` are optional
so that logs from unfinished runs or from other frameworks still load. Anything unreadable is
returned as a BrokenRun with a one-line reason instead of raising, so one bad run never
prevents a report on the others. The files are named and parsed by curvelab/runfiles.py, whose
policy for a torn last line of `history.jsonl` (dropped, with a note) the report follows.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Iterable

from curvelab import configdicts
from curvelab import runfiles
from curvelab.runfiles import CONFIG, HISTORY, SUMMARY, SWEEP_ERROR

# Sweeps lay out several seeds of one experiment as NAME/seed_K (see sweeps/).
_SEED_DIR = re.compile(r"^seed_(\d+)$")
# Directories that never hold runs but may hold many files; skipping them keeps discovery fast.
_SKIP_DIRS = frozenset({"checkpoints", "report", "__pycache__", ".git"})
# Files whose presence marks a run directory even when history.jsonl is missing.
_RUN_MARKERS = (CONFIG, SUMMARY, SWEEP_ERROR)


@dataclasses.dataclass
class RunLocation:
  """Where a run lives and how it is labelled in a report.

  Attributes:
    workdir: the run directory.
    group: label of the set the run belongs to (the DIR argument it was found under).
    experiment: experiment name; seeds of one experiment share it.
  """

  workdir: Path
  group: str
  experiment: str


@dataclasses.dataclass
class RunData:
  """A run whose files could be read.

  Attributes:
    location: where the run lives.
    config: config.json contents ({} when absent).
    history: history rows in file order.
    summary: summary.json contents, or None for unfinished runs.
    config_source: the file `config` was read from: CONFIG, SUMMARY (its "config" entry) or
      "" when neither holds one.
    notes: one line each about how the files were read (a torn last history line dropped).
  """

  location: RunLocation
  config: dict
  history: list[dict]
  summary: dict | None
  config_source: str = ""
  notes: list[str] = dataclasses.field(default_factory=list)

  @property
  def workdir(self) -> Path:
    return self.location.workdir

  @property
  def experiment(self) -> str:
    return self.location.experiment

  @property
  def group(self) -> str:
    return self.location.group

  @property
  def seed(self) -> int | None:
    """The seed from config.json, else from a `seed_K` directory name, else None."""
    seed = self.config.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
      return seed
    match = _SEED_DIR.match(self.workdir.name)
    return int(match.group(1)) if match else None

  @property
  def label(self) -> str:
    """A short label: the experiment name, plus the seed when the directory is per seed."""
    if is_seed_dir(self.workdir):
      return f"{self.experiment} seed {self.seed}"
    return self.experiment


@dataclasses.dataclass
class BrokenRun:
  """A run that could not be read, with a one-line reason."""

  location: RunLocation
  reason: str

  def describe(self) -> str:
    """Returns "<workdir>: <reason>" for messages and footnotes."""
    return f"{self.location.workdir}: {self.reason}"


class RunLoadError(Exception):
  """Raised by load_run with a one-line reason naming the file at fault."""


def discover(paths: Iterable[str | Path], set_label: str | None = None,
             ) -> tuple[list[RunLocation], list[RunLocation], list[str]]:
  """Finds run workdirs under the given paths.

  A path may be a run workdir, a sweep root or any directory above runs; runs are found by
  looking for history.jsonl recursively. Directories that look like runs (config.json,
  summary.json or sweep_error.txt) but have no history.jsonl are returned separately, so the
  report can list runs that failed before their first epoch.

  Args:
    paths: directories given by the user.
    set_label: put the runs of every path into one set of this name (one table, one set of
      overlays), e.g. ViTs and a CNN from two result folders side by side; None: one set per
      path.

  Returns:
    (runs, runs_without_history, messages): messages are one line per unusable path.
  """
  runs: list[RunLocation] = []
  no_history: list[RunLocation] = []
  messages: list[str] = []
  seen: set[Path] = set()
  for raw in paths:
    path = Path(raw)
    if not path.exists():
      messages.append(f"no such directory: {raw}")
      continue
    if path.is_file():
      if path.name != HISTORY:
        messages.append(f"not a directory (expected a run workdir or sweep root): {raw}")
        continue
      path = path.parent
    found, missing = _scan(path)
    if not found and not missing:
      messages.append(f"no run found under {raw} (no {HISTORY} anywhere below it)")
      continue
    group = set_label or _group_label(raw, path)
    for workdir in found:
      if workdir.resolve() not in seen:
        seen.add(workdir.resolve())
        runs.append(RunLocation(workdir, group, experiment_name(workdir, path)))
    for workdir in missing:
      if workdir.resolve() not in seen:
        seen.add(workdir.resolve())
        no_history.append(RunLocation(workdir, group, experiment_name(workdir, path)))
  return runs, no_history, messages


def _scan(root: Path) -> tuple[list[Path], list[Path]]:
  """Returns (dirs with history.jsonl, run-like dirs without it) below root, sorted."""
  with_history, without = [], []
  for directory in _walk(root):
    if (directory / HISTORY).is_file():
      with_history.append(directory)
    elif any((directory / marker).is_file() for marker in _RUN_MARKERS):
      without.append(directory)
  key = lambda p: natural_key(str(p))
  return sorted(with_history, key=key), sorted(without, key=key)


def _walk(root: Path):
  """Yields root and every directory below it, skipping checkpoint and report folders."""
  stack = [root]
  while stack:
    directory = stack.pop()
    yield directory
    try:
      children = [c for c in directory.iterdir() if c.is_dir() and c.name not in _SKIP_DIRS]
    except OSError:
      continue
    stack.extend(children)


def _group_label(raw, path: Path) -> str:
  """Labels the set of runs found under one user-given path.

  Paths that are themselves single runs are pooled into one set called "runs", so that
  `report.py runs/a runs/b` overlays a and b in one set.
  """
  if (path / HISTORY).is_file() or _SEED_DIR.match(path.name):
    return "runs"
  return str(raw).rstrip("/") or str(raw)


def experiment_name(workdir: Path, root: Path) -> str:
  """Names the experiment of a workdir: its path below root without a trailing seed_K.

  Args:
    workdir: the run directory.
    root: the user-given directory it was found under.

  Returns:
    e.g. "exp1_l2_adam" for ROOT/exp1_l2_adam/seed_2 or ROOT/exp1_l2_adam.
  """
  parts = list(workdir.relative_to(root).parts) if workdir != root else []
  if not parts:
    parts = [workdir.name]
  if _SEED_DIR.match(parts[-1]):
    parts = parts[:-1] or [workdir.parent.name]
  return "/".join(parts)


def is_seed_dir(workdir: Path) -> bool:
  """Returns True for a directory named like the sweep's per-seed folders (`seed_K`)."""
  return bool(_SEED_DIR.match(workdir.name))


def natural_key(text: str) -> list:
  """Sort key that orders "exp2" before "exp10"."""
  return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", text)]


def load_run(location: RunLocation) -> RunData:
  """Reads a run's history, config and summary.

  Args:
    location: where the run lives.

  Returns:
    The RunData; its notes say when a torn last history line was dropped.

  Raises:
    RunLoadError: the history is missing, has no complete row or is malformed, or
      config.json/summary.json exist but are not valid JSON objects.
  """
  workdir = location.workdir
  history, notes = read_history(workdir)
  summary = _read_json_object(workdir / SUMMARY)
  config, source = _read_json_object(workdir / CONFIG), CONFIG
  if config is None:
    # Runs without config.json may still carry their config in the summary.
    has_copy = bool(summary) and isinstance(summary.get("config"), dict)
    config, source = (summary["config"], SUMMARY) if has_copy else ({}, "")
  config = configdicts.upgrade(config)  # Earlier versions' field names, in today's sections.
  return RunData(location, config, history, summary, source, notes)


def read_history(workdir: Path) -> tuple[list[dict], list[str]]:
  """Reads WORKDIR/history.jsonl with runfiles.load_history; each row must also have an `epoch`.

  Blank lines are ignored and a torn last line (the usual result of a run killed mid-write) is
  dropped with a note, as runfiles' policy says; the report's tables and figures are indexed by
  epoch, hence the `epoch` check, which runfiles leaves to its callers.

  Args:
    workdir: the run directory.

  Returns:
    (rows, notes): notes holds runfiles' line about a dropped torn line, if one was dropped.

  Raises:
    RunLoadError: missing or unreadable file, no complete row, a malformed line that is not a torn
      last line, or a row without `epoch`.
  """
  if not (workdir / HISTORY).is_file():
    raise RunLoadError(f"no {HISTORY} (no finished epoch, or the run failed before its first)")
  try:
    history = runfiles.load_history(workdir)
  except runfiles.HistoryError as e:
    raise RunLoadError(f"{HISTORY} {e.problem}") from e
  if not history.rows:
    if history.torn:
      raise RunLoadError(f"{HISTORY} has no complete row: its only line {history.torn_line} is "
                         f"incomplete (truncated mid-write: {history.torn_reason})")
    raise RunLoadError(f"{HISTORY} is empty")
  for number, row in enumerate(history.rows, start=1):
    if "epoch" not in row:
      raise RunLoadError(f"{HISTORY} row {number} has no 'epoch' key")
  return history.rows, [history.note] if history.note else []


def _read_json_object(path: Path) -> dict | None:
  """Returns the JSON object in path, None when the file is absent.

  Raises:
    RunLoadError: the file exists but is not a JSON object.
  """
  try:
    return runfiles.read_json_object(path)
  except runfiles.RunFileError as e:
    raise RunLoadError(f"{path.name} {e.problem}") from e


def sweep_error_line(workdir: Path) -> str | None:
  """Returns the first line of a run's sweep_error.txt, when the sweep recorded a failure."""
  path = workdir / SWEEP_ERROR
  if not path.is_file():
    return None
  try:
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
  except (OSError, UnicodeDecodeError):
    return None
  return lines[0] if lines else None
