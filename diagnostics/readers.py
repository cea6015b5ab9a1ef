"""Readers: curvelab workdirs, CSV/JSON/JSON-lines histories and TensorBoard event directories.

Every reader returns canonical rows (one dict per epoch, keys as in docs/run_files.md) plus the
columns it did not recognise, so the doctor never guesses silently. Problems that stop a path from
being read raise ReadError with a one-line message naming the path.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable

from diagnostics import schema
from diagnostics.curves import to_float
from diagnostics.history import flatten

HISTORY = "history.jsonl"
CONFIG = "config.json"
SUMMARY = "summary.json"
# File names other frameworks write their per-epoch log under, looked up inside a directory.
KNOWN_LOG_NAMES = ("metrics.csv", "history.csv", "log.csv", "training.log", "history.json",
                   "trainer_state.json", "metrics.jsonl", "log.jsonl")
_EVENT_MARK = "tfevents"
_SEED_DIR = re.compile(r"^seed[_\-=]?(\d+)$")


class ReadError(Exception):
  """A path could not be read as a training history; the message is one line for the user."""


@dataclasses.dataclass
class Run:
  """A training history loaded from disk.

  Attributes:
    path: the path as given (or the workdir found under it).
    source: "curvelab", "csv", "json", "jsonl" or "tensorboard".
    rows: canonical per-epoch rows.
    ignored_columns: columns/tags that were not recognised.
    config: config.json (nested dict) for curvelab workdirs, else {}.
    summary: summary.json for curvelab workdirs, else {}.
    notes: remarks about the reading (a truncated last line, promoted test columns, ...).
  """

  path: str
  source: str
  rows: list
  ignored_columns: list = dataclasses.field(default_factory=list)
  config: dict = dataclasses.field(default_factory=dict)
  summary: dict = dataclasses.field(default_factory=dict)
  notes: list = dataclasses.field(default_factory=list)

  @property
  def is_curvelab(self) -> bool:
    return self.source == "curvelab"

  @property
  def num_classes(self) -> int | None:
    """dataset.num_classes (or any *.num_classes) from the config, if present."""
    flat = flatten(self.config)
    value = flat.get("dataset.num_classes")
    if value is None:
      value = next((v for k, v in flat.items() if k.rsplit(".", 1)[-1] == "num_classes"), None)
    value = to_float(value)
    return int(value) if value and value >= 2 else None

  @property
  def seed(self) -> int | None:
    """The run's seed from config.json, else from a `seed_K` path component."""
    value = to_float(self.config.get("seed")) if self.config else None
    if value is not None:
      return int(value)
    for part in reversed(Path(self.path).parts):
      match = _SEED_DIR.match(part)
      if match:
        return int(match.group(1))
    return None


# --- entry point --------------------------------------------------------------------------------


def load(path: str) -> list[Run]:
  """Loads every run at `path`.

  Args:
    path: a curvelab workdir, a history file, a TensorBoard event directory, or a directory of
      curvelab workdirs (a sweep), which yields one Run per workdir.

  Returns:
    The runs, in sorted path order for sweeps.

  Raises:
    ReadError: the path does not exist or holds no readable history.
  """
  p = Path(path)
  if not p.exists():
    raise ReadError(f"{path}: no such file or directory")
  if p.is_file():
    if p.name == HISTORY and ((p.parent / CONFIG).exists() or (p.parent / SUMMARY).exists()):
      return [read_workdir(p.parent, str(path))]
    return [read_history_file(p, str(path))]
  if (p / HISTORY).is_file():
    return [read_workdir(p, str(path))]
  for name in KNOWN_LOG_NAMES:
    if (p / name).is_file():
      return [read_history_file(p / name, str(path))]
  workdirs = sorted(h.parent for h in p.rglob(HISTORY))
  if workdirs:
    return [read_workdir(w, str(w)) for w in workdirs]
  if any(_EVENT_MARK in f.name for f in p.rglob("*") if f.is_file()):
    return [read_tensorboard(p, str(path))]
  raise ReadError(f"{path}: no {HISTORY}, history file (.csv/.json/.jsonl) or TensorBoard event "
                  "files found in this directory")


# --- curvelab workdir ---------------------------------------------------------------------------


def _read_json_object(path: Path, notes: list) -> dict:
  """Reads an optional JSON object file; a broken one is noted, not fatal (history still counts)."""
  if not path.is_file():
    return {}
  try:
    data = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    notes.append(f"{path.name} ignored: {e}")
    return {}
  if not isinstance(data, dict):
    notes.append(f"{path.name} ignored: not a JSON object")
    return {}
  return data


def read_workdir(workdir: Path, label: str) -> Run:
  """Reads a curvelab workdir: history.jsonl plus optional config.json and summary.json."""
  notes: list[str] = []
  records = _parse_jsonl(_read_text(workdir / HISTORY), str(workdir / HISTORY), notes)
  rows, ignored = canonicalize(records)
  if not rows:
    raise ReadError(f"{workdir / HISTORY}: no epochs recorded yet")
  config = _read_json_object(workdir / CONFIG, notes)
  summary = _read_json_object(workdir / SUMMARY, notes)
  if not config and isinstance(summary.get("config"), dict):
    config = summary["config"]
  return Run(label, "curvelab", rows, ignored, config, summary, notes)


# --- history files ------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
  try:
    text = path.read_text(encoding="utf-8-sig")
  except UnicodeDecodeError:
    raise ReadError(f"{path}: not a text file (is it a binary or compressed log?)") from None
  except OSError as e:
    raise ReadError(f"{path}: cannot read ({e.strerror or e})") from None
  if not text.strip():
    raise ReadError(f"{path}: file is empty")
  return text


def read_history_file(path: Path, label: str) -> Run:
  """Reads a CSV, JSON or JSON-lines history written by any framework."""
  text = _read_text(path)
  notes: list[str] = []
  suffix = path.suffix.lower()
  head = text.lstrip()[:1]
  if suffix in (".jsonl", ".ndjson") or (suffix != ".json" and head == "{" and "\n{" in text):
    source, records = "jsonl", _parse_jsonl(text, str(path), notes)
  elif suffix == ".json" or head in "[{":
    source, records = "json", _parse_json(text, str(path), notes)
  else:
    source, records = "csv", _parse_csv(text, str(path))
  rows, ignored = canonicalize(records, notes=notes)
  if not rows:
    found = ", ".join(sorted({k for r in records for k in r})[:12]) or "none"
    raise ReadError(f"{path}: no recognised per-epoch columns (found: {found}); expected e.g. "
                    "epoch, loss/train_loss, val_loss, accuracy/val_accuracy, lr")
  return Run(label, source, rows, ignored, notes=notes)


def _parse_jsonl(text: str, where: str, notes: list) -> list[dict]:
  """Parses JSON lines; a broken *last* line is skipped (a run may be writing it right now)."""
  lines = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
  records = []
  for pos, (lineno, line) in enumerate(lines):
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      if pos == len(lines) - 1 and records:
        notes.append(f"line {lineno} is incomplete and was skipped")
        continue
      raise ReadError(f"{where}: line {lineno} is not valid JSON ({e.msg})") from None
    if not isinstance(record, dict):
      raise ReadError(f"{where}: line {lineno} is not a JSON object")
    records.append(record)
  return records


def _parse_json(text: str, where: str, notes: list) -> list[dict]:
  """Parses a JSON history: a list of rows, an object of columns, or a wrapper around either."""
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    if e.msg == "Extra data" and text.lstrip().startswith("{"):
      return _parse_jsonl(text, where, notes)  # JSON lines in a .json file
    raise ReadError(f"{where}: not valid JSON (line {e.lineno}: {e.msg})") from None
  if isinstance(data, dict):
    for wrapper in ("history", "log_history", "rows", "epochs", "metrics"):
      if isinstance(data.get(wrapper), (list, dict)):
        notes.append(f"read the '{wrapper}' entry")
        data = data[wrapper]
        break
  if isinstance(data, list):
    if not all(isinstance(r, dict) for r in data):
      raise ReadError(f"{where}: a JSON list history must hold one object per epoch")
    return list(data)
  if isinstance(data, dict):
    return _columns_to_rows(data, where)
  raise ReadError(f"{where}: expected a list of epoch objects or an object of columns")


def _columns_to_rows(columns: dict, where: str) -> list[dict]:
  """Turns Keras-style {"loss": [...], "val_loss": [...]} into rows; short columns are padded."""
  lists = {k: v for k, v in columns.items() if isinstance(v, list)}
  if not lists:
    raise ReadError(f"{where}: a JSON object history must map column names to lists")
  length = max(len(v) for v in lists.values())
  return [{k: (v[i] if i < len(v) else None) for k, v in lists.items()} for i in range(length)]


def _parse_csv(text: str, where: str) -> list[dict]:
  """Parses CSV (comma, semicolon or tab separated) into rows of strings."""
  try:
    dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
  except csv.Error:
    dialect = csv.excel
  reader = csv.DictReader(io.StringIO(text), dialect=dialect)
  if not reader.fieldnames or len(reader.fieldnames) < 2:
    raise ReadError(f"{where}: not a CSV history (need a header row with at least two columns)")
  return [dict(r) for r in reader]


# --- canonical rows -----------------------------------------------------------------------------


def parse_value(value: Any) -> Any:
  """Parses a logged value: numbers from strings ("nan", "inf" included), booleans, structures."""
  if isinstance(value, (dict, list, bool)) or value is None:
    return value
  if isinstance(value, (int, float)):
    return value
  text = str(value).strip()
  if not text:
    return None
  lowered = text.lower()
  if lowered in ("true", "false"):
    return lowered == "true"
  if re.fullmatch(r"[+-]?\d+", text):
    return int(text)
  number = to_float(text)
  return text if number is None else number


def _map_columns(names: Iterable[str], prefix: str | None = None) -> tuple[dict, list]:
  """Maps raw column names to canonical keys, resolving collisions.

  Returns:
    ({raw name: canonical key}, [ignored raw names]).
  """
  names = list(dict.fromkeys(names))
  mapping = {n: schema.canonical_key(n, prefix) for n in names}
  ignored = [n for n, k in mapping.items() if k is None]
  mapping = {n: k for n, k in mapping.items() if k is not None}
  # Test-split columns stand in for validation only when no validation column exists.
  has_val = any(k.startswith("val_") for k in mapping.values())
  for name, key in list(mapping.items()):
    if key.startswith("test_"):
      if has_val:
        ignored.append(name)
        del mapping[name]
      else:
        mapping[name] = "val_" + key[len("test_"):]
  owners: dict[str, str] = {}
  # Exact canonical spellings claim their key first; aliases take what is left.
  for name in sorted(mapping, key=lambda n: schema.normalize_name(n) != mapping[n]):
    key = mapping[name]
    if key in owners and key.startswith("val_") and "_" not in schema.normalize_name(name):
      key = "train_" + key[len("val_"):]  # unprefixed 'wer' next to 'val_wer' is the training one
    if key in owners:
      ignored.append(name)
      del mapping[name]
      continue
    owners[key] = name
    mapping[name] = key
  return mapping, ignored


def _resolve_time(rows: list[dict]) -> None:
  """Decides whether an ambiguous `time` column is cumulative (elapsed_s) or per epoch.

  A cumulative clock increases every epoch and ends well above its first value; per-epoch times
  hover around a constant. Unix timestamps (> 1e8 s) are turned into elapsed seconds.
  """
  times = [to_float(r.get("time")) for r in rows]
  present = [t for t in times if t is not None]
  if not present:
    return
  increasing = all(b > a for a, b in zip(present, present[1:]))
  cumulative = len(present) >= 3 and increasing and present[-1] >= 2 * present[0]
  if present[0] > 1e8:
    cumulative = True
    step = present[1] - present[0] if len(present) > 1 else 0.0
    offset = present[0] - step  # assume the first epoch took as long as the second
    times = [None if t is None else t - offset for t in times]
  target = "elapsed_s" if cumulative else "epoch_time_s"
  for row, t in zip(rows, times):
    row.pop("time", None)
    if t is not None and target not in row:
      row[target] = t


def _group_by_epoch(rows: list[dict]) -> list[dict]:
  """Merges rows that share an epoch (Lightning writes train and validation on separate rows).

  Fractional epochs (Hugging Face logs at 0.25, 0.5, ...) belong to the epoch they end in. Later
  non-missing values win, so the epoch-end value is kept.
  """
  labels = [to_float(r.get("epoch")) for r in rows]
  if all(l is None for l in labels):
    for i, row in enumerate(rows):
      row["epoch"] = i + 1
    return rows
  fractional = any(l is not None and not float(l).is_integer() for l in labels)
  merged: dict[float, dict] = {}
  for row, label in zip(rows, labels):
    if label is None:
      continue
    key = float(math.ceil(label - 1e-9)) if fractional else float(label)
    target = merged.setdefault(key, {})
    target.update({k: v for k, v in row.items() if v is not None})
    target["epoch"] = int(key) if key.is_integer() else key
  return [merged[k] for k in sorted(merged)]


_METRIC_KEYS_HINT = ("loss", "accuracy", "perplexity", "wer", "cer", "bleu", "share", "ratio",
                     "rate", "samples")


def _has_metric(row: dict) -> bool:
  return any(k.endswith(_METRIC_KEYS_HINT) for k in row)


def canonicalize(records: list[dict], prefix: str | None = None,
                 notes: list | None = None) -> tuple[list[dict], list[str]]:
  """Turns raw records into canonical per-epoch rows.

  Args:
    records: raw rows (column -> value) as read from a file.
    prefix: split implied by the source (TensorBoard sub-directory), if any.
    notes: list to which remarks are appended.

  Returns:
    (rows, ignored column names). Rows without any metric (e.g. step-only rows) are dropped.
  """
  names = [k for r in records for k in r]
  mapping, ignored = _map_columns(names, prefix)
  promoted = [n for n, k in mapping.items()
              if k.startswith("val_") and schema.normalize_name(n).startswith("test")]
  if notes is not None and promoted:
    notes.append("test_* columns used as validation (no validation columns found)")
  rows = []
  for record in records:
    row = {}
    for name, value in record.items():
      key = mapping.get(name)
      parsed = parse_value(value)
      if key is not None and parsed is not None:
        if key in schema.STRUCTURED_KEYS or not isinstance(parsed, (dict, list, str)):
          row[key] = parsed
    rows.append(row)
  if any("time" in r for r in rows):
    _resolve_time(rows)
  rows = _group_by_epoch(rows)
  rows = [r for r in rows if _has_metric(r)]
  return rows, sorted(set(ignored))


# --- TensorBoard --------------------------------------------------------------------------------


def _event_dirs(root: Path) -> list[Path]:
  """Directories under root (root included) that hold TensorBoard event files."""
  dirs = {f.parent for f in root.rglob(f"*{_EVENT_MARK}*") if f.is_file()}
  return sorted(dirs)


def _split_of(root: Path, directory: Path) -> str | None:
  """The event directory's name ('train', 'validation', ...) as the split of its unprefixed tags.

  canonical_key ignores names that are not split names, so any sub-directory name can be passed.
  """
  return None if directory == root else directory.name


def use_tensorboard_without_tensorflow() -> None:
  """Makes TensorBoard's event reader use its TensorFlow-free stub in this process.

  TensorBoard imports TensorFlow (seconds) whenever it is installed, only to open files, which
  its bundled stub does as well. This switches to the stub through TensorBoard's own
  `tensorboard.compat.notf` marker. It affects the whole process, so only a command-line entry point
  should call it, and only before anything else touched TensorBoard; it does nothing when
  TensorFlow is already imported.
  """
  import sys  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  if "tensorflow" in sys.modules or "tensorboard.compat.notf" in sys.modules:
    return
  sys.modules["tensorboard.compat.notf"] = types.ModuleType("tensorboard.compat.notf")


def _scalar_events(directory: Path) -> Iterable[tuple[str, int, float, float]]:
  """(tag, step, wall_time, value) of every scalar in a directory, v1 scalars and v2 tensors."""
  # Imported lazily: TensorBoard (and TensorFlow behind it) takes seconds to import.
  # pylint: disable-next=g-import-not-at-top
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top
  acc = event_accumulator.EventAccumulator(
      str(directory), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0})
  acc.Reload()
  tags = acc.Tags()
  for tag in tags.get(event_accumulator.SCALARS, []):
    for ev in acc.Scalars(tag):
      yield tag, int(ev.step), float(ev.wall_time), float(ev.value)
  for tag in tags.get(event_accumulator.TENSORS, []):
    for ev in acc.Tensors(tag):
      try:
        array = tensor_util.make_ndarray(ev.tensor_proto)
      except (TypeError, ValueError):
        continue
      if array.size == 1 and array.dtype.kind in "fiub":
        yield tag, int(ev.step), float(ev.wall_time), float(array.reshape(()))


def read_tensorboard(root: Path, label: str) -> Run:
  """Reads scalars from TensorBoard event files under root, one row per step.

  Tags are mapped like CSV columns; a `train/` or `validation/` sub-directory (Keras) gives the
  split of unprefixed tags such as `epoch_loss`. Wall times become `elapsed_s` when no time tag
  was logged.
  """
  by_step: dict[int, dict] = {}
  wall: dict[int, float] = {}
  ignored: set[str] = set()
  try:
    for directory in _event_dirs(root):
      prefix = _split_of(root, directory)
      events = list(_scalar_events(directory))
      mapping, skipped = _map_columns([e[0] for e in events], prefix)
      ignored.update(skipped)
      for tag, step, wall_time, value in events:
        if tag in mapping:
          by_step.setdefault(step, {})[mapping[tag]] = value
          wall[step] = max(wall.get(step, wall_time), wall_time)
  except ImportError:
    raise ReadError(f"{root}: reading TensorBoard events needs the tensorboard package") from None
  except Exception as e:  # pylint: disable=broad-except
    # Corrupt event files raise a variety of protobuf/IO errors; one line is what the user needs.
    raise ReadError(f"{root}: cannot read TensorBoard events ({type(e).__name__}: {e})") from None
  if not by_step:
    raise ReadError(f"{root}: TensorBoard events hold no recognised scalar tags (ignored: "
                    f"{', '.join(sorted(ignored)) or 'none'})")
  steps = sorted(by_step)
  records = [dict(by_step[s], step=s) for s in steps]
  records = _bin_dense_steps(records)
  if not any("elapsed_s" in r or "epoch_time_s" in r for r in records):
    _add_wall_clock(records, wall)
  rows, more_ignored = canonicalize(records)
  if not rows:
    raise ReadError(f"{root}: TensorBoard events hold no per-epoch losses or metrics")
  return Run(label, "tensorboard", rows, sorted(ignored | set(more_ignored)))


def _bin_dense_steps(records: list[dict]) -> list[dict]:
  """Averages per-step training scalars into the epochs marked by sparser validation scalars.

  When training is logged every N steps but validation once per epoch, grouping by step would
  give mostly half-empty rows; validation steps mark the epoch ends instead.
  """
  val_steps = [r["step"] for r in records if any(k.startswith("val_") for k in r)]
  if not val_steps or len(val_steps) * 2 > len(records):
    return records
  binned, bucket = [], []
  boundaries = iter(val_steps)
  boundary = next(boundaries)
  for record in records:
    bucket.append(record)
    if record["step"] == boundary:
      binned.append(_merge_bucket(bucket))
      bucket = []
      boundary = next(boundaries, None)
      if boundary is None:
        break
  return binned


def _merge_bucket(bucket: list[dict]) -> dict:
  """Means of training metrics over the bucket, last value of everything else."""
  out: dict = {}
  sums: dict[str, list] = {}
  for record in bucket:
    for key, value in record.items():
      if key.startswith("train_"):
        sums.setdefault(key, []).append(value)
      else:
        out[key] = value
  out.update({k: sum(v) / len(v) for k, v in sums.items()})
  return out


def _add_wall_clock(records: list[dict], wall: dict[int, float]) -> None:
  """Cumulative seconds from event wall times (first epoch assumed as long as the second)."""
  times = [wall.get(r["step"]) for r in records]
  if len(times) < 2 or any(t is None for t in times):
    return
  start = times[0] - (times[1] - times[0])
  for record, t in zip(records, times):
    record["elapsed_s"] = t - start


def describe_source(run: Run) -> str:
  """A short description of where a run came from, for the text report."""
  words = {"curvelab": "curvelab workdir", "csv": "CSV history", "json": "JSON history",
           "jsonl": "JSON-lines history", "tensorboard": "TensorBoard events"}
  return f"{words.get(run.source, run.source)}, {len(run.rows)} epochs"


def relpath(path: str) -> str:
  """Path relative to the working directory when that is shorter."""
  try:
    rel = os.path.relpath(path)
  except ValueError:
    return path
  return rel if len(rel) < len(path) else path
