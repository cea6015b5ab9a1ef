"""Config comparison: flattening config.json and finding the factors two runs differ in."""

from __future__ import annotations

from typing import Any, Mapping

# The one flatten (curvelab/configdicts.py); reporting.doctor and reporting.seeds use it from here.
from curvelab.configdicts import flatten

# Fields that differ between runs without being an experimental factor: seeds are what a
# row averages over, and directories/paths only say where files went.
_IGNORED_NAMES = frozenset({"seed", "workdir", "work_dir", "output_dir", "log_dir"})
_IGNORED_SUFFIXES = ("_seed", "dir", "_path", "_file")
# Factors whose names end like a path: stochastic depth's rate (configs/vit_recipe.py).
_FACTORS_NAMED_LIKE_PATHS = frozenset({"drop_path", "drop_path_rate"})
# Top-level fields that only name or tag a run. Top level only: `model.name`, `task.name` and
# `dataset.name` (configs/common.py) are factors. configs/common.py itself has no label field;
# these are the names hand-written configs and other tools use.
RUN_LABEL_KEYS = frozenset({"name", "run_name", "run_label", "label", "experiment_name",
                            "exp_name", "tag", "tags"})
# Bookkeeping that changes what a run prints, not what it computes (configs/common.py's loop).
BOOKKEEPING_KEYS = frozenset({"loop.log_every_steps", "loop.log_every_seconds",
                              "loop.metric_writer", "loop.checkpoint_keep_latest"})


def is_ignored(key: str) -> bool:
  """True for seed, workdir-like, run-label and bookkeeping fields: not experimental factors."""
  last = key.rsplit(".", 1)[-1].lower()
  if last in _FACTORS_NAMED_LIKE_PATHS:
    return False
  return (last in _IGNORED_NAMES or last.endswith(_IGNORED_SUFFIXES) or key in RUN_LABEL_KEYS
          or key in BOOKKEEPING_KEYS)


def comparable(config: Mapping[str, Any]) -> dict[str, Any]:
  """Returns the flattened config without ignored fields."""
  return {k: v for k, v in flatten(config).items() if not is_ignored(k)}


_MISSING = object()


def differing_keys(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
  """Returns sorted keys whose values differ between two flattened configs.

  A key present in only one of them counts as a difference.
  """
  keys = set(a) | set(b)
  return sorted(k for k in keys if a.get(k, _MISSING) != b.get(k, _MISSING))


def diff(base: Mapping[str, Any], other: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
  """Returns (key, base value, other value) for every differing key; absent values are None."""
  return [(k, base.get(k), other.get(k)) for k in differing_keys(base, other)]
