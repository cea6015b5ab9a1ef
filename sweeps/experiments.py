"""Experiment sets: Python files in experiments/ that name runs, their configs and seeds.

An experiment set is a module defining::

  from sweeps import Run

  SEEDS = (0, 1, 2)          # optional: default seeds (a count or a sequence); default (0,)
  EXPERIMENTS = [             # or: def get_experiments() -> list of Run
      Run("exp1_l2_adam", "configs/vit_prenorm.py:layers=2,optimizer=adam"),
      Run("exp2_l2_adamw", "configs/vit_prenorm.py:layers=2,optimizer=adamw",
          overrides={"loop.num_epochs": 50}),
  ]

`config` is the config string handed to train.py's --config (path relative to the repo
root, optionally `:args` for get_config); `overrides` become `--config.FIELD=VALUE` flags.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from curvelab import configdicts

# Run names become directory names, so keep them to characters every filesystem accepts.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class ExperimentSetError(ValueError):
  """An experiment set file or a selection from it is invalid; the message says what and where."""


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of an experiment set.

  Attributes:
    name: short readable name, also the run's directory name (e.g. "exp1_l2_adam").
    config: config string for train.py --config, e.g. "configs/vit_prenorm.py:layers=2".
    overrides: config fields set on the command line as --config.FIELD=VALUE.
  """

  name: str
  config: str
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if not isinstance(self.name, str) or not _NAME.match(self.name):
      raise ExperimentSetError(
          f"run name {self.name!r} is not valid: use letters, digits, '_', '.', '-' "
          "(it becomes a directory name)")
    if not isinstance(self.config, str) or not self.config.strip():
      raise ExperimentSetError(f"run {self.name!r}: config must be a non-empty config string, "
                               f"got {self.config!r}")
    if not isinstance(self.overrides, Mapping):
      raise ExperimentSetError(f"run {self.name!r}: overrides must be a dict of field -> value, "
                               f"got {type(self.overrides).__name__}")
    for field in self.overrides:
      check_field(field, where=f"run {self.name!r}")
    # Frozen dataclass: store an immutable-by-convention copy so callers' dicts can't leak in.
    object.__setattr__(self, "overrides", dict(self.overrides))


def check_field(field: str, where: str) -> None:
  """Validates a config override field name such as "optimizer.name" or "model.num_layers".

  Raises:
    ExperimentSetError: not a dotted identifier, or "seed" (seeds come from the sweep).
  """
  if not isinstance(field, str) or not _FIELD.match(field):
    raise ExperimentSetError(f"{where}: override field {field!r} is not a dotted name like "
                             "'optimizer.name' or 'model.num_layers'")
  if configdicts.alias_message(field):
    raise ExperimentSetError(f"{where}: {configdicts.alias_message(field)}")
  if field == "seed":
    raise ExperimentSetError(f"{where}: do not override 'seed'; seeds come from SEEDS or "
                             "sweep.py --seeds")


@dataclasses.dataclass(frozen=True)
class ExperimentSet:
  """A loaded experiment set.

  Attributes:
    path: the file it was loaded from.
    runs: its runs in file order.
    seeds: its default seeds.
    description: the module docstring's first line.
  """

  path: Path
  runs: tuple[Run, ...]
  seeds: tuple[int, ...]
  description: str = ""

  @property
  def names(self) -> list[str]:
    return [run.name for run in self.runs]


def load_experiment_set(path: str | Path) -> ExperimentSet:
  """Imports an experiment-set file and validates it.

  Args:
    path: the .py file.

  Returns:
    The ExperimentSet.

  Raises:
    ExperimentSetError: missing file, missing EXPERIMENTS/get_experiments, invalid runs,
      duplicate names or invalid SEEDS.
  """
  path = Path(path)
  if not path.is_file():
    raise ExperimentSetError(f"experiment set file not found: {path}")
  module = _import_file(path)
  runs = _runs_of(module, path)
  seeds = resolve_seeds(getattr(module, "SEEDS", None), default=(0,), where=str(path))
  description = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""
  return ExperimentSet(path, tuple(runs), seeds, description)


def _import_file(path: Path):
  # A unique module name per file keeps two sets with the same file name apart.
  name = f"_curvelab_experiment_set_{abs(hash(str(path.resolve())))}"
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or spec.loader is None:
    raise ExperimentSetError(f"cannot import experiment set {path} (is it a .py file?)")
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except ExperimentSetError as e:
    raise ExperimentSetError(f"{path}: {e}") from e
  except Exception as e:
    raise ExperimentSetError(f"{path} failed to import: {type(e).__name__}: {e}") from e
  return module


def _runs_of(module, path: Path) -> list[Run]:
  if hasattr(module, "get_experiments"):
    items = module.get_experiments()
  elif hasattr(module, "EXPERIMENTS"):
    items = module.EXPERIMENTS
  else:
    raise ExperimentSetError(f"{path} defines neither EXPERIMENTS nor get_experiments()")
  runs = [_as_run(item, path) for item in items]
  if not runs:
    raise ExperimentSetError(f"{path} defines no runs")
  seen = set()
  for run in runs:
    if run.name in seen:
      raise ExperimentSetError(f"{path}: run name {run.name!r} is used twice")
    seen.add(run.name)
  return runs


def _as_run(item, path: Path) -> Run:
  """Accepts Run objects and plain dicts with name/config/overrides keys."""
  if isinstance(item, Run):
    return item
  if isinstance(item, Mapping):
    unknown = set(item) - {"name", "config", "overrides"}
    if unknown:
      raise ExperimentSetError(f"{path}: run entry has unknown keys {sorted(unknown)}; "
                               "allowed: name, config, overrides")
    try:
      return Run(item["name"], item["config"], item.get("overrides", {}))
    except KeyError as e:
      raise ExperimentSetError(f"{path}: run entry {dict(item)!r} lacks {e.args[0]!r}") from e
  raise ExperimentSetError(f"{path}: run entries must be Run(...) or dicts, got {item!r}")


def resolve_seeds(spec, default: Sequence[int] = (0,), where: str = "--seeds") -> tuple[int, ...]:
  """Turns a seed specification into a tuple of seeds.

  Args:
    spec: None (use default); an int N or a string "N" (seeds 0..N-1); a sequence of ints or
      a comma-separated string "1,5,9" (exactly those seeds; "7," is the single seed 7).
    default: seeds used when spec is None.
    where: names the source in error messages.

  Returns:
    Distinct seeds in the given order.

  Raises:
    ExperimentSetError: non-positive counts, non-integers, negative or repeated seeds.
  """
  if spec is None:
    seeds = tuple(default)
  elif isinstance(spec, bool):
    raise ExperimentSetError(f"{where}: expected a seed count or a list of seeds, got {spec!r}")
  elif isinstance(spec, int):
    seeds = _count(spec, where)
  elif isinstance(spec, str):
    seeds = _parse_seed_string(spec, where)
  elif isinstance(spec, Iterable):
    seeds = tuple(spec)
  else:
    raise ExperimentSetError(f"{where}: expected a seed count or a list of seeds, got {spec!r}")
  for seed in seeds:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
      raise ExperimentSetError(f"{where}: seeds must be non-negative integers, got {seed!r}")
  if len(set(seeds)) != len(seeds):
    raise ExperimentSetError(f"{where}: seeds repeat: {list(seeds)}")
  if not seeds:
    raise ExperimentSetError(f"{where}: no seeds given")
  return seeds


def _count(n: int, where: str) -> tuple[int, ...]:
  if n < 1:
    raise ExperimentSetError(f"{where}: the number of seeds must be at least 1, got {n}")
  return tuple(range(n))


def _parse_seed_string(text: str, where: str) -> tuple[int, ...]:
  text = text.strip()
  try:
    if "," not in text:
      return _count(int(text), where)
    return tuple(int(tok) for tok in text.split(",") if tok.strip())
  except ValueError as e:
    raise ExperimentSetError(f"{where}: expected a count like 3 or seeds like 0,1,2, "
                             f"got {text!r}") from e


def select_runs(experiment_set: ExperimentSet, only: Sequence[str] | None) -> list[Run]:
  """Filters runs by name, keeping file order.

  Args:
    experiment_set: the set.
    only: names to keep (None or empty keeps all).

  Raises:
    ExperimentSetError: a name is not in the set; the message lists the valid names.
  """
  if not only:
    return list(experiment_set.runs)
  unknown = [name for name in only if name not in experiment_set.names]
  if unknown:
    raise ExperimentSetError(
        f"unknown run name(s) {', '.join(unknown)} in --only; valid names in "
        f"{experiment_set.path}: {', '.join(experiment_set.names)}")
  wanted = set(only)
  return [run for run in experiment_set.runs if run.name in wanted]
