"""Published numbers of a reference study, matched to report rows by their config settings.

A published file is a Python module (experiments/reference_published.py is the one shipped)
defining `PUBLISHED`, a list of sets, and optionally `SOURCE`, a one-line citation. Each set is
a dict::

  {"name": "ViT on CIFAR-10 (study Tables 2-4)",  # how footnotes call it
   "table": "Table 2",                            # the table `table_row` numbers rows of
   "metric": "accuracy",                          # the metric its figures are about
   "settings": ("model.name", "model.num_layers", "optimizer.name", "model.block"),
   "protocol": {"dataset.name": "cifar10", "loop.num_epochs": 10},  # optional
   "note": "...",                                 # optional footnote line
   "entries": {("vit", 2, "adam", "prenorm"): {"table_row": 1, ...}}}

`settings` are flattened config.json keys; an entry's key gives their values in that order.
Figure keys (all optional but `table_row`) are in FIGURE_KINDS, spelled with the metric's name
and mode, e.g. `max_val_accuracy_pct` or `final_test_perplexity` (see figure_key). Figures are
stored in display units (percent for accuracy), exactly as the study prints them.
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import importlib.util
from pathlib import Path
from typing import Any, Mapping

from reporting.metrics import is_number, metric_spec

# What a study may publish about a row, in the order the report shows them: best_* are best
# over epochs (max, or min for lower-is-better metrics), final_test is the final model's test.
FIGURE_KINDS = ("best_train", "best_val", "final_test", "num_params", "sec_per_epoch",
                "memory_mib")
_FIXED_KEYS = {"num_params": "num_params", "sec_per_epoch": "train_s_per_epoch",
               "memory_mib": "gpu_memory_mib"}
ROW_KEY = "table_row"
_REQUIRED_SET_KEYS = ("name", "table", "metric", "settings", "entries")


class PublishedError(ValueError):
  """A published file is missing or invalid; the message is one line naming the file."""


def figure_key(kind: str, metric: str) -> str:
  """Returns the key a figure of `kind` has in a published entry about `metric`.

  Examples: ("best_val", "accuracy") -> "max_val_accuracy_pct", ("final_test", "perplexity")
  -> "final_test_perplexity", ("sec_per_epoch", any) -> "train_s_per_epoch".
  """
  if kind in _FIXED_KEYS:
    return _FIXED_KEYS[kind]
  spec = metric_spec(metric)
  # The suffix makes the file say its unit: a bare 64.08 "accuracy" could be read as a fraction.
  suffix = "_pct" if spec.unit == "%" else ""
  prefix = {"best_train": f"{spec.mode}_train", "best_val": f"{spec.mode}_val",
            "final_test": "final_test"}[kind]
  return f"{prefix}_{spec.name}{suffix}"


@dataclasses.dataclass(frozen=True)
class Entry:
  """One published row.

  Attributes:
    values: the setting values, in the order of its set's `settings`.
    row: the row number in the study's table.
    figures: FIGURE_KINDS kind -> value in display units; kinds not published are absent.
  """

  values: tuple
  row: int
  figures: dict[str, int | float]


@dataclasses.dataclass(frozen=True)
class PublishedSet:
  """One group of published rows about one metric, matched on the same config keys."""

  name: str
  table: str
  metric: str
  settings: tuple[str, ...]
  protocol: dict[str, Any]
  note: str
  entries: dict[tuple, Entry]


@dataclasses.dataclass(frozen=True)
class Match:
  """A report row's published counterpart."""

  set: PublishedSet
  entry: Entry

  def protocol_differences(self, config: Mapping[str, Any]) -> list[str]:
    """Returns "key = ours (study: theirs)" for each protocol value the config differs in."""
    out = []
    for key, theirs in self.set.protocol.items():
      ours = config.get(key, "(absent)")
      if ours != theirs:
        out.append(f"{key} = {ours} (study: {theirs})")
    return out


@dataclasses.dataclass(frozen=True)
class Published:
  """Everything a published file holds.

  Attributes:
    path: the file it was read from.
    source: its one-line citation (SOURCE), else the file name.
    sets: its sets, in file order.
  """

  path: Path
  source: str
  sets: tuple[PublishedSet, ...]

  def match(self, config: Mapping[str, Any], metric: str) -> Match | None:
    """Finds the entry whose settings equal a row's config, among sets about `metric`.

    Args:
      config: the row's flattened config (configs.comparable).
      metric: the bare metric name of the row's table; a set about another metric never
        matches, so e.g. percent accuracies never land in a loss table.

    Returns:
      The first Match in file order, or None.
    """
    for published_set in self.sets:
      if published_set.metric != metric:
        continue
      key = tuple(config.get(k, _MISSING) for k in published_set.settings)
      entry = published_set.entries.get(key)
      if entry is not None:
        return Match(published_set, entry)
    return None


_MISSING = object()


def load_published(path: str | Path) -> Published:
  """Imports and validates a published file.

  Args:
    path: the Python file.

  Returns:
    The Published numbers.

  Raises:
    PublishedError: the file is missing, does not import, or its data do not follow the format
      in this module's docstring; the message is one line.
  """
  path = Path(path)
  if not path.is_file():
    raise PublishedError(f"{path}: no such file")
  module = _import(path)
  sets = getattr(module, "PUBLISHED", None)
  if not isinstance(sets, (list, tuple)) or not sets:
    raise PublishedError(f"{path}: defines no PUBLISHED list of sets")
  source = getattr(module, "SOURCE", None)
  if source is not None and not isinstance(source, str):
    raise PublishedError(f"{path}: SOURCE must be a string, got {type(source).__name__}")
  parsed = tuple(_parse_set(raw, f"{path}: PUBLISHED[{i}]") for i, raw in enumerate(sets))
  return Published(path, source or path.name, parsed)


def _import(path: Path):
  """Imports a file as a module, whatever its suffix, with failures as one-line errors."""
  loader = importlib.machinery.SourceFileLoader(f"_published_{abs(hash(path))}", str(path))
  spec = importlib.util.spec_from_loader(loader.name, loader)
  module = importlib.util.module_from_spec(spec)
  try:
    loader.exec_module(module)
  except SyntaxError as e:
    raise PublishedError(f"{path}: not valid Python: {e.msg} (line {e.lineno})") from e
  except Exception as e:  # pylint: disable=broad-except
    # Any error while running the file means its numbers are unusable; say which and where.
    message = str(e).splitlines()[0] if str(e) else ""
    raise PublishedError(f"{path}: fails to import: {type(e).__name__}: {message}") from e
  return module


def _parse_set(raw: Any, where: str) -> PublishedSet:
  """Validates one set dict and builds its PublishedSet."""
  if not isinstance(raw, Mapping):
    raise PublishedError(f"{where}: must be a dict, got {type(raw).__name__}")
  missing = [k for k in _REQUIRED_SET_KEYS if k not in raw]
  if missing:
    raise PublishedError(f"{where}: missing key(s) {', '.join(missing)}")
  settings = raw["settings"]
  if (not isinstance(settings, (list, tuple)) or not settings
      or not all(isinstance(k, str) for k in settings)):
    raise PublishedError(f"{where}: settings must be a non-empty tuple of config keys")
  protocol = raw.get("protocol", {})
  if not isinstance(protocol, Mapping):
    raise PublishedError(f"{where}: protocol must be a dict of config key -> value")
  if not isinstance(raw["entries"], Mapping) or not raw["entries"]:
    raise PublishedError(f"{where}: entries must be a non-empty dict of settings -> figures")
  metric = str(raw["metric"])
  entries = {}
  for key, figures in raw["entries"].items():
    entry = _parse_entry(key, figures, len(settings), metric, f"{where}: entry {key!r}")
    entries[entry.values] = entry
  return PublishedSet(str(raw["name"]), str(raw["table"]), metric, tuple(settings),
                      dict(protocol), str(raw.get("note", "")), entries)


def _parse_entry(key: Any, figures: Any, n_settings: int, metric: str, where: str) -> Entry:
  """Validates one entry (settings tuple -> figures dict) and builds its Entry."""
  values = key if isinstance(key, tuple) else (key,)
  if len(values) != n_settings:
    raise PublishedError(f"{where}: has {len(values)} setting value(s), settings name "
                         f"{n_settings}")
  if not isinstance(figures, Mapping):
    raise PublishedError(f"{where}: figures must be a dict, got {type(figures).__name__}")
  row = figures.get(ROW_KEY)
  if not isinstance(row, int) or isinstance(row, bool):
    raise PublishedError(f"{where}: needs an integer {ROW_KEY}")
  kind_of = {figure_key(kind, metric): kind for kind in FIGURE_KINDS}
  unknown = sorted(k for k in figures if k != ROW_KEY and k not in kind_of)
  if unknown:
    raise PublishedError(f"{where}: unknown figure(s) {', '.join(map(str, unknown))} (known: "
                         f"{ROW_KEY}, {', '.join(kind_of)})")
  parsed = {}
  for name, value in figures.items():
    if name == ROW_KEY:
      continue
    if not is_number(value):
      raise PublishedError(f"{where}: {name} must be a finite number, got {value!r}")
    parsed[kind_of[name]] = value
  return Entry(values, row, parsed)
