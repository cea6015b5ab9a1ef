"""The files a run writes into its workdir (docs/run_files.md): their names, writers and readers.

``config.json``, ``history.jsonl`` (one JSON object per epoch) and ``summary.json``; the doctor adds
``diagnosis.json`` and a sweep ``sweep_error.txt``. This module is the one place that names them and
parses ``history.jsonl``, so training (resume), reports (``reporting/``), sweeps (``sweeps/``) and
the doctor (``diagnostics/``) read a run the same way. It imports no JAX at module level, so those
tools load it without JAX: only ``is_writer`` (called by the writers) imports it.

Only process 0 writes. JSON values are plain floats, with NaN/Inf written as null so that any JSON
reader can load them.

``history.jsonl`` policy (the same for every reader):

* Blank or whitespace-only lines are skipped.
* Each other line must be a JSON object. An ``epoch`` key is not checked here: training writes one
  on every row, but the doctor also reads other tools' ``history.jsonl`` without one (it numbers
  the rows), so a reader that needs it (the report's tables) checks it itself.
* A torn last line, i.e. a last non-blank line that is not valid JSON, is what a process killed (or
  still busy) in the middle of an append leaves: it is dropped, and the result says so
  (``History.torn_line``, ``History.note``). Training drops it silently on resume and rewrites the
  history without it; the report and the doctor show the note. When the torn line is the only one,
  no rows remain.
* A line before the last that is not valid JSON, or any valid line that is not an object, cannot
  come from an interrupted append: it raises ``HistoryError`` naming the file and the line.
"""

import dataclasses
import json
import logging
import math
import os
import pathlib
from typing import Any

from curvelab import configdicts
from curvelab import errors

HISTORY = 'history.jsonl'
SUMMARY = 'summary.json'
CONFIG = 'config.json'
# Written by the in-training doctor (curvelab/epoch_end.py), read by the report.
DIAGNOSIS = 'diagnosis.json'
# Written by sweeps/runner.py into the workdir of a failed run; the report lists the run with it.
SWEEP_ERROR = 'sweep_error.txt'


class RunFileError(errors.CurvelabError, ValueError):
  """A run file exists but cannot be read.

  A CurvelabError, so that train.py ends with one line naming the file; a ValueError, since the
  file's contents are what is wrong.

  Attributes:
    path: the file.
    problem: what is wrong, phrased to follow the file's name ("line 3 is not valid JSON (...)").
    line: the 1-based line at fault, when one is.
  """

  def __init__(self, path: os.PathLike | str, problem: str, line: int | None = None):
    self.path = pathlib.Path(path)
    self.problem = problem
    self.line = line
    super().__init__(f'{self.path} {problem}')


class HistoryError(RunFileError):
  """``history.jsonl`` has a malformed line that is not a torn last line, or cannot be read."""


@dataclasses.dataclass(frozen=True)
class History:
  """The rows of a ``history.jsonl`` and what was dropped to get them.

  Attributes:
    rows: one dict per complete line, in file order.
    torn_line: 1-based number of the torn last line that was dropped, None when there was none.
    torn_reason: the JSON decoder's message for that line ('' when none was dropped).
  """

  rows: list
  torn_line: int | None = None
  torn_reason: str = ''

  @property
  def torn(self) -> bool:
    """True when a torn last line was dropped."""
    return self.torn_line is not None

  @property
  def note(self) -> str | None:
    """One line saying which line was dropped and why, for reports and the doctor; None if none."""
    if self.torn_line is None:
      return None
    return (f'{HISTORY} line {self.torn_line}, the last, is incomplete (truncated mid-write: '
            f'{self.torn_reason}) and was dropped')


def is_writer() -> bool:
  """True on the process that writes the run files (process 0)."""
  # Imported here, not at the top: reports, sweeps and the doctor use this module without JAX.
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_index() == 0


def _clean(value: Any) -> Any:
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: _clean(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_clean(v) for v in value]
  return value


def _io_error(path: pathlib.Path, e: OSError) -> errors.TrainingError:
  return errors.TrainingError(
      f'could not write {path} ({e.strerror or e}); the run stopped, its checkpoints are intact. '
      'Free disk space or fix permissions, then run the same command to resume.')


def _atomic_write(path: pathlib.Path, text: str) -> None:
  tmp = path.with_name(path.name + '.tmp')
  try:
    tmp.write_text(text, encoding='utf-8')
    os.replace(tmp, path)
  except OSError as e:
    raise _io_error(path, e) from e


def write_json(path: pathlib.Path, obj: Any) -> None:
  """Writes ``obj`` as indented JSON atomically (process 0 only); NaN/Inf become null."""
  if is_writer():
    _atomic_write(path, json.dumps(_clean(obj), indent=2, sort_keys=True) + '\n')


def _read_text(path: pathlib.Path, error: type[RunFileError]) -> str:
  try:
    # utf-8-sig: a byte order mark left by an editor is not part of the first line's JSON.
    return path.read_text(encoding='utf-8-sig')
  except UnicodeDecodeError as e:
    raise error(path, f'is not UTF-8 text ({e.reason} at byte {e.start})') from None
  except OSError as e:
    raise error(path, f'cannot be read ({e.strerror or e})') from None


def read_json_object(path: pathlib.Path) -> dict | None:
  """The JSON object in ``config.json``, ``summary.json`` or ``diagnosis.json``.

  Args:
    path: the file.

  Returns:
    The object; None when the file does not exist.

  Raises:
    RunFileError: the file exists but cannot be read, is not valid JSON or is not an object.
  """
  if not path.is_file():
    return None
  text = _read_text(path, RunFileError)
  try:
    value = json.loads(text)
  except json.JSONDecodeError as e:
    raise RunFileError(path, f'is not valid JSON ({e})', e.lineno) from None
  if not isinstance(value, dict):
    raise RunFileError(path, f'holds a JSON {type(value).__name__}, not an object')
  return value


def read_config(path: pathlib.Path) -> dict | None:
  """A run's ``config.json`` in today's sections, whichever version wrote it (configdicts.upgrade).

  Returns None when the file does not exist; raises RunFileError as :func:`read_json_object`.
  """
  return configdicts.upgrade(read_json_object(path))


def parse_history(text: str, path: os.PathLike | str = HISTORY) -> History:
  """Parses the text of a ``history.jsonl`` under the policy in this module's docstring.

  Args:
    text: the file's contents.
    path: the file, named in errors.

  Returns:
    The History: its rows, and the torn last line if one was dropped.

  Raises:
    HistoryError: a line before the last is not valid JSON, or a line is not a JSON object.
  """
  lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1)
           if line.strip()]
  rows = []
  for index, (number, line) in enumerate(lines):
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      if index == len(lines) - 1:
        return History(rows, number, e.msg)
      raise HistoryError(
          path, f'line {number} is not valid JSON ({e.msg}) and is not the last line: the file is '
          'damaged (only a torn last line is dropped)', number) from None
    if not isinstance(row, dict):
      raise HistoryError(path, f'line {number} is a JSON {type(row).__name__}, not an object',
                         number)
    rows.append(row)
  return History(rows)


def load_history(workdir: pathlib.Path) -> History:
  """Reads ``WORKDIR/history.jsonl``, dropping and reporting a torn last line.

  Args:
    workdir: the run directory.

  Returns:
    The History; ``History.note`` says when a torn last line was dropped.

  Raises:
    HistoryError: the file is missing or unreadable, or has a malformed line that is not a torn
      last line.
  """
  path = pathlib.Path(workdir) / HISTORY
  return parse_history(_read_text(path, HistoryError), path)


def read_history(workdir: pathlib.Path) -> list[dict]:
  """Rows of ``history.jsonl`` for resuming; [] when there is none yet.

  A torn last line is dropped (the epoch it was recording had not been checkpointed, so the resumed
  run records it again); only a log line says so.

  Raises:
    HistoryError: a malformed line that is not a torn last line (see the module docstring).
  """
  if not (pathlib.Path(workdir) / HISTORY).exists():
    return []
  history = load_history(workdir)
  if history.torn:
    logging.getLogger(__name__).warning('%s: %s', workdir, history.note)
  return history.rows


def write_history(workdir: pathlib.Path, rows: list[dict]) -> None:
  """Rewrites the whole history atomically (used on resume to drop epochs past the checkpoint)."""
  if is_writer():
    text = ''.join(json.dumps(_clean(r), sort_keys=True) + '\n' for r in rows)
    _atomic_write(workdir / HISTORY, text)


def append_history(workdir: pathlib.Path, row: dict) -> None:
  """Appends one row and syncs it to disk (process 0 only); NaN/Inf become null."""
  if is_writer():
    try:
      with open(workdir / HISTORY, 'a', encoding='utf-8') as f:
        f.write(json.dumps(_clean(row), sort_keys=True) + '\n')
        f.flush()
        os.fsync(f.fileno())
    except OSError as e:
      raise _io_error(workdir / HISTORY, e) from e
