"""The files a run writes into its workdir (see docs/run_files.md).

``config.json``, ``history.jsonl`` (one JSON object per epoch) and ``summary.json``. Only process 0
writes. JSON values are plain floats, with NaN/Inf written as null so that any JSON reader can
load them.
"""

import json
import math
import os
import pathlib
from typing import Any

import jax

from curvelab import errors

HISTORY = 'history.jsonl'
SUMMARY = 'summary.json'
CONFIG = 'config.json'


def is_writer() -> bool:
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
    tmp.write_text(text)
    os.replace(tmp, path)
  except OSError as e:
    raise _io_error(path, e) from e


def write_json(path: pathlib.Path, obj: Any) -> None:
  if is_writer():
    _atomic_write(path, json.dumps(_clean(obj), indent=2, sort_keys=True) + '\n')


def read_history(workdir: pathlib.Path) -> list[dict]:
  """Rows of ``history.jsonl``; a torn last line (killed mid-write) is ignored."""
  path = workdir / HISTORY
  if not path.exists():
    return []
  rows = []
  for line in path.read_text().splitlines():
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError:
      break
  return rows


def write_history(workdir: pathlib.Path, rows: list[dict]) -> None:
  """Rewrites the whole history atomically (used on resume to drop epochs past the checkpoint)."""
  if is_writer():
    text = ''.join(json.dumps(_clean(r), sort_keys=True) + '\n' for r in rows)
    _atomic_write(workdir / HISTORY, text)


def append_history(workdir: pathlib.Path, row: dict) -> None:
  if is_writer():
    try:
      with open(workdir / HISTORY, 'a') as f:
        f.write(json.dumps(_clean(row), sort_keys=True) + '\n')
        f.flush()
        os.fsync(f.fileno())
    except OSError as e:
      raise _io_error(workdir / HISTORY, e) from e
