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
import os
import re
from pathlib import Path
from typing import Any, Iterable

from curvelab import configdicts
from curvelab import runfiles
from curvelab.configdicts import flatten
from diagnostics import aggregate
from diagnostics import layouts
from diagnostics import schema
from diagnostics.curves import to_float

# A curvelab workdir's files: names, parser and torn-last-line policy are curvelab/runfiles.py's.
HISTORY = runfiles.HISTORY
CONFIG = runfiles.CONFIG
SUMMARY = runfiles.SUMMARY
# File names other frameworks write their log under, looked up inside a directory: Lightning
# (metrics.csv), Keras and fastai (history.csv, log.csv, training.log), Hugging Face
# (trainer_state.json), YOLOv5 and Ultralytics (results.csv), timm (summary.csv).
KNOWN_LOG_NAMES = ("metrics.csv", "history.csv", "log.csv", "training.log", "history.json",
                   "trainer_state.json", "results.csv", "summary.csv", "metrics.jsonl",
                   "log.jsonl")
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
    rows: canonical rows, one per epoch or per evaluation (the notes say which).
    ignored_columns: columns/tags that were not recognised.
    config: config.json (nested dict) for curvelab workdirs, else {}.
    summary: summary.json for curvelab workdirs; run-level facts another framework's file
      states (Hugging Face's train_runtime, for instance), else {}.
    notes: remarks about the reading (a truncated last line, promoted test columns, how per-step
      values were aggregated, ...).
    framework: the layout the file was read as ("curvelab", "huggingface", "lightning", "keras",
      "fastai", "yolov5", "ultralytics", "timm", "tensorboard" or "generic").
    columns: every column or tag the file had, for messages about missing curves.
    unit: what a row is: "epoch", "evaluation" (several per epoch, fractional epoch labels) or
      "row" (a plain log, one row per epoch).
  """

  path: str
  source: str
  rows: list
  ignored_columns: list = dataclasses.field(default_factory=list)
  config: dict = dataclasses.field(default_factory=dict)
  summary: dict = dataclasses.field(default_factory=dict)
  notes: list = dataclasses.field(default_factory=list)
  framework: str = "generic"
  columns: list = dataclasses.field(default_factory=list)
  unit: str = "epoch"

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
  # A folder of runs (lightning_logs/version_*/, runs/detect/train*/): one run per log file.
  logs = _log_files_below(p)
  if logs:
    return [read_history_file(f, str(f.parent)) for f in logs]
  if any(_EVENT_MARK in f.name for f in p.rglob("*") if f.is_file()):
    return [read_tensorboard(p, str(path))]
  raise ReadError(f"{path}: no {HISTORY}, history file (.csv/.json/.jsonl) or TensorBoard event "
                  "files found in this directory")


def _log_files_below(root: Path) -> list[Path]:
  """The known log file of each run folder below root (the first known name in each folder)."""
  found: dict[Path, Path] = {}
  for name in KNOWN_LOG_NAMES:
    for f in sorted(root.rglob(name)):
      if f.is_file():
        found.setdefault(f.parent, f)
  return [found[d] for d in sorted(found)]


# --- curvelab workdir ---------------------------------------------------------------------------


def _read_json_object(path: Path, notes: list) -> dict:
  """Reads an optional JSON object file; a broken one is noted, not fatal (history still counts)."""
  try:
    data = runfiles.read_json_object(path)
  except runfiles.RunFileError as e:
    notes.append(f"{path.name} ignored: it {e.problem}")
    return {}
  return data or {}


def read_workdir(workdir: Path, label: str) -> Run:
  """Reads a curvelab workdir: history.jsonl plus optional config.json and summary.json.

  history.jsonl is read by curvelab.runfiles: a torn last line is dropped with a note, any other
  malformed line is a ReadError.
  """
  notes: list[str] = []
  path = workdir / HISTORY
  try:
    history = runfiles.load_history(workdir)
  except runfiles.HistoryError as e:
    raise ReadError(f"{path}: {e.problem}") from None
  if history.note:
    notes.append(history.note)
  records = history.rows
  if not records and history.torn:
    raise ReadError(f"{path}: no complete epoch: its only line {history.torn_line} is incomplete "
                    f"(truncated mid-write: {history.torn_reason})")
  if not records:
    raise ReadError(f"{path}: file is empty")
  rows, ignored, _ = canonicalize(records)
  if not rows:
    raise ReadError(f"{path}: no epochs recorded yet")
  config = _read_json_object(workdir / CONFIG, notes)
  summary = _read_json_object(workdir / SUMMARY, notes)
  if not config and isinstance(summary.get("config"), dict):
    config = summary["config"]
  config = configdicts.upgrade(config)  # Earlier versions' field names, in today's sections.
  return Run(label, "curvelab", rows, ignored, config, summary, notes, framework="curvelab",
             columns=_columns_of(records))


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
  """Reads a CSV, JSON or JSON-lines history written by any framework.

  The records are first read as their framework writes them (`layouts`: Hugging Face's
  `trainer_state.json`, YOLO and fastai files have their own semantics), then mapped to canonical
  keys and aggregated into per-epoch or per-evaluation rows (`aggregate`).
  """
  text = _read_text(path)
  notes: list[str] = []
  suffix = path.suffix.lower()
  head = text.lstrip()[:1]
  if suffix in (".jsonl", ".ndjson") or (suffix != ".json" and head == "{" and "\n{" in text):
    source, records = "jsonl", _parse_jsonl(text, str(path), notes)
    layout = layouts.interpret(records)
  elif suffix == ".json" or head in "[{":
    source, data = "json", _load_json(text, str(path), notes)
    if layouts.is_trainer_state(data):
      layout = layouts.huggingface(data)
      records = layout.records
    else:
      records = _json_records(data, str(path), notes)
      layout = layouts.interpret(records)
  else:
    source, records = "csv", _parse_csv(text, str(path))
    layout = layouts.interpret(records)
  notes.extend(layout.notes)
  rows, ignored, unit = canonicalize(layout.records, notes=notes, used=layout.used)
  columns = _columns_of(records)
  if not rows:
    found = ", ".join(columns[:16]) or "none"
    raise ReadError(f"{path}: no recognised per-epoch columns (found: {found}); expected e.g. "
                    "epoch, loss/train_loss, val_loss, accuracy/val_accuracy, lr")
  return Run(label, source, rows, ignored, summary=layout.summary, notes=notes,
             framework=layout.framework, columns=columns, unit=unit)


def _columns_of(records: list[dict]) -> list[str]:
  return [str(c) for c in dict.fromkeys(k for r in records for k in r)]


def _parse_jsonl(text: str, where: str, notes: list) -> list[dict]:
  """Parses other tools' JSON lines; a broken *last* line is skipped (a run may be writing it now).

  curvelab's own history.jsonl goes through runfiles.load_history instead (read_workdir). This
  lenient reader is for other tools' files: unlike runfiles, it refuses a file whose only line is
  broken, since nothing then shows that a file of unknown origin is a log at all.
  """
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


def _load_json(text: str, where: str, notes: list) -> Any:
  """Parses a JSON document; JSON lines in a .json file are returned as a list of records."""
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    if e.msg == "Extra data" and text.lstrip().startswith("{"):
      return _parse_jsonl(text, where, notes)  # JSON lines in a .json file
    raise ReadError(f"{where}: not valid JSON (line {e.lineno}: {e.msg})") from None


def _json_records(data: Any, where: str, notes: list) -> list[dict]:
  """Records of a JSON history: a list of rows, an object of columns, or a wrapper around either."""
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


def _has_metric(row: dict) -> bool:
  return aggregate.has_train(row) or aggregate.has_val(row)


def canonicalize(records: list[dict], prefix: str | None = None, notes: list | None = None,
                 used: Iterable[str] = ()) -> tuple[list[dict], list[str], str]:
  """Turns raw records into canonical rows, one per epoch or per evaluation.

  Args:
    records: raw rows (column -> value) as read from a file, in the order they were logged.
      Keys starting with "_" are the reader's own (TensorBoard wall times) and pass through.
    prefix: split implied by the source (TensorBoard sub-directory), if any.
    notes: list to which remarks are appended.
    used: raw columns a framework layout consumed; not listed as ignored.

  Returns:
    (rows, ignored column names, the unit of a row: "epoch", "evaluation" or "row"). Rows
    without any metric (e.g. step-only rows) are dropped.
  """
  notes = [] if notes is None else notes
  names = [k for r in records for k in r if not str(k).startswith("_")]
  mapping, ignored = _map_columns(names, prefix)
  promoted = [n for n, k in mapping.items()
              if k.startswith("val_") and schema.normalize_name(n).startswith("test")]
  if promoted:
    notes.append("test_* columns used as validation (no validation columns found)")
  canonical = []
  for record in records:
    row = {}
    for name, value in record.items():
      if str(name).startswith("_"):
        row[name] = value
        continue
      key = mapping.get(name)
      parsed = parse_value(value)
      if key is not None and parsed is not None:
        if key in schema.STRUCTURED_KEYS or not isinstance(parsed, (dict, list, str)):
          row[key] = parsed
    canonical.append(row)
  if any("time" in r for r in canonical):
    _resolve_time(canonical)
  rows, unit = aggregate.aggregate(canonical, notes)
  rows = [r for r in rows if _has_metric(r)]
  return rows, sorted(set(ignored) - set(used)), unit


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


def _event_files(directory: Path) -> list[Path]:
  """The event files directly in `directory`, in the order they were written (names hold the
  creation time)."""
  return sorted(f for f in directory.iterdir() if f.is_file() and _EVENT_MARK in f.name)


def _scalar_events(directory: Path) -> Iterable[tuple[str, int, float, float]]:
  """(tag, step, wall_time, value) of every scalar in a directory, in the order written.

  Files are read one after another with TensorBoard's own event-file loader, v1 simple values and
  v2 scalar tensors alike. The order matters: a second value of a tag at a step already logged
  (an evaluation after training, a restart) is a new record, which EventAccumulator would merge.
  """
  # Imported lazily: TensorBoard (and TensorFlow behind it) takes seconds to import.
  # pylint: disable-next=g-import-not-at-top
  from tensorboard.backend.event_processing import event_file_loader
  from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top
  for path in _event_files(directory):
    for event in event_file_loader.EventFileLoader(str(path)).Load():
      if not event.HasField("summary"):
        continue
      for value in event.summary.value:
        kind = value.WhichOneof("value")
        if kind == "simple_value":
          yield value.tag, int(event.step), float(event.wall_time), float(value.simple_value)
        elif kind == "tensor":
          try:
            array = tensor_util.make_ndarray(value.tensor)
          except (TypeError, ValueError):
            continue
          if array.size == 1 and array.dtype.kind in "fiub":
            yield value.tag, int(event.step), float(event.wall_time), float(array.reshape(()))


def _directory_records(directory: Path, prefix: str | None, ignored: set) -> list[dict]:
  """Canonical records of one event directory, a record per step and occurrence.

  A tag logged again at a step that already has it opens a new record at that step; `_n` counts
  such occurrences so that records of split directories (Keras' train/ and validation/) pair up.
  """
  events = list(_scalar_events(directory))
  mapping, skipped = _map_columns([e[0] for e in events], prefix)
  ignored.update(skipped)
  records: list[dict] = []
  latest: dict[int, dict] = {}
  for tag, step, wall_time, value in events:
    key = mapping.get(tag)
    if key is None:
      continue
    record = latest.get(step)
    if record is None or key in record:
      record = {"step": step, "_n": (record["_n"] + 1) if record else 0, "_wall": wall_time}
      latest[step] = record
      records.append(record)
    record[key] = value
    record["_wall"] = max(record["_wall"], wall_time)
  return records


def read_tensorboard(root: Path, label: str) -> Run:
  """Reads scalars from TensorBoard event files under root.

  Tags are mapped like CSV columns; a `train/` or `validation/` sub-directory (Keras) gives the
  split of unprefixed tags such as `epoch_loss`. Records are then aggregated like any log: per
  epoch when an `epoch` scalar is logged (Lightning), else per evaluation when training scalars
  are much denser than validation ones, else one row per step. Wall times become `elapsed_s` when
  no time tag was logged.
  """
  ignored: set[str] = set()
  merged: dict[tuple[int, int], dict] = {}
  try:
    for directory in _event_dirs(root):
      for record in _directory_records(directory, _split_of(root, directory), ignored):
        target = merged.setdefault((record["step"], record["_n"]), {})
        wall = max(target.get("_wall", record["_wall"]), record["_wall"])
        target.update(record)
        target["_wall"] = wall
  except ImportError:
    raise ReadError(f"{root}: reading TensorBoard events needs the tensorboard package") from None
  except Exception as e:  # pylint: disable=broad-except
    # Corrupt event files raise a variety of protobuf/IO errors; one line is what the user needs.
    raise ReadError(f"{root}: cannot read TensorBoard events ({type(e).__name__}: {e})") from None
  if not merged:
    raise ReadError(f"{root}: TensorBoard events hold no recognised scalar tags (ignored: "
                    f"{', '.join(sorted(ignored)) or 'none'})")
  records = [merged[k] for k in sorted(merged)]
  for record in records:
    record.pop("_n", None)
  notes: list[str] = []
  rows, more_ignored, unit = canonicalize(records, notes=notes)
  if not rows:
    raise ReadError(f"{root}: TensorBoard events hold no per-epoch losses or metrics")
  if not any("elapsed_s" in r or "epoch_time_s" in r for r in rows):
    _add_wall_clock(rows)
  for row in rows:
    row.pop("_wall", None)
  return Run(label, "tensorboard", rows, sorted(ignored | set(more_ignored)), notes=notes,
             framework="tensorboard", columns=sorted(ignored | {k for r in rows for k in r}),
             unit=unit)


def _add_wall_clock(rows: list[dict]) -> None:
  """Cumulative seconds from event wall times (first row assumed as long as the second)."""
  times = [to_float(r.get("_wall")) for r in rows]
  if len(times) < 2 or any(t is None for t in times):
    return
  start = times[0] - (times[1] - times[0])
  for row, t in zip(rows, times):
    row["elapsed_s"] = t - start


_FRAMEWORK_WORDS = {"huggingface": "Hugging Face Trainer", "lightning": "Lightning",
                    "keras": "Keras", "fastai": "fastai", "yolov5": "YOLOv5",
                    "ultralytics": "Ultralytics", "timm": "timm"}
_SOURCE_WORDS = {"curvelab": "curvelab workdir", "csv": "CSV history", "json": "JSON history",
                 "jsonl": "JSON-lines history", "tensorboard": "TensorBoard events"}


def describe_source(run: Run) -> str:
  """A short description of where a run came from, for the text report."""
  words = _SOURCE_WORDS.get(run.source, run.source)
  if run.framework in _FRAMEWORK_WORDS:
    words = f"{_FRAMEWORK_WORDS[run.framework]} {words}"
  unit = "evaluations" if run.unit == "evaluation" else "epochs"
  return f"{words}, {len(run.rows)} {unit}"


def relpath(path: str) -> str:
  """Path relative to the working directory when that is shorter."""
  try:
    rel = os.path.relpath(path)
  except ValueError:
    return path
  return rel if len(rel) < len(path) else path
