"""Seed groups: which runs of a table are seeds of one experiment, and what the group is called.

Runs are grouped in two ways, in this order:

1. Folder names. Runs in directories named `seed_K` are the seeds of the experiment named by
   the path above them (the sweep layout NAME/seed_K, see runs.experiment_name). This is
   the layout sweeps write, so it is trusted as it is and its groups are never merged
   with other runs.
2. Configs. Each remaining run whose config.json is equal to other runs' except for the
   seed and the fields in IDENTITY_IGNORED_KEYS / OUTPUT_LOCATION_NAMES is a seed of one
   experiment with them, whatever its folder is called (`seed1`, `s2`, `run_a`, ...).

A run stays on its own row when it has no config.json (a config copied into summary.json
is not enough: it may be a subset, written by another tool), when its config.json has no
integer `seed` (then nothing says the runs are different seeds rather than copies), or
when no other run outside seed_K folders has an equal config.

Duplicates: runs with equal configs AND the same seed are copies or re-runs of one seed,
not seeds of each other, and which of them is "the" seed is not knowable from the files.
Rather than guess, none of the runs of such a config is grouped: each is its own row,
marked NOT_GROUPED_REPEATED_SEED, and a footnote names the runs that share a seed.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Sequence

from reporting import configs
from reporting.runs import CONFIG, RunData, is_seed_dir, natural_key

# How a row's runs were put together, shown in the tables' "seeds grouped by" column.
GROUPED_BY_FOLDER = "folder names seed_K"
GROUPED_BY_CONFIG = "configs equal except seed"
NOT_GROUPED_UNIQUE = "none (no equal config outside seed_K folders)"
NOT_GROUPED_NO_CONFIG = "none (no config.json)"
NOT_GROUPED_NO_SEED = "none (no seed in config.json)"
NOT_GROUPED_REPEATED_SEED = "none (equal configs, repeated seed)"

# Dotted config keys left out when deciding whether two runs are the same experiment.
# configs/common.py has exactly one field the seeds of an experiment differ in (`seed`)
# and two that say only where a named dataset lies on this machine (`dataset.data_dir`,
# and `dataset.manual_dir` of configs/lstm_lm.py): the data is fixed by `dataset.name`
# and the splits. Run labels (`run_name`, `label`, ...) count at the top level only:
# `model.name`, `task.name` and `dataset.name` are part of an experiment's identity.
IDENTITY_IGNORED_KEYS = frozenset(
    {"seed", "dataset.data_dir", "dataset.manual_dir"} | configs.RUN_LABEL_KEYS)
# Config fields (at any depth) that say where a run's outputs go. train.py gets the workdir
# on its command line, but other writers (and the sweep's test trainer) put it in the config.
OUTPUT_LOCATION_NAMES = frozenset({
    "workdir", "work_dir", "output_dir", "out_dir", "log_dir", "logdir", "checkpoint_dir",
    "ckpt_dir", "save_dir",
})
# Deliberately narrower than configs.comparable's suffix rule ("*_path", "*_file", "*dir"):
# `dataset.train_path`, `dataset.vocab_path`, `model.embedding_path` choose data or initial
# weights and `model.drop_path` is a stochastic-depth rate. Everything else counts, even
# bookkeeping such as `log_every_steps`: merging two experiments silently corrupts a row's
# mean ± std, while splitting one only shows an extra row.

# Trailing words of a common folder-name prefix that name the repetition, not the
# experiment: "exp1_try1", "exp1_try2" share "exp1_try" and are labelled "exp1".
_REPETITION_WORD = re.compile(r"(?:^|[_\-. ])(?:seed|run|try|rep|repeat|trial|s|r)$",
                              re.IGNORECASE)
_SEPARATORS = "_-. "
# Tokens for prefixes: digit runs, separator runs, everything else. Comparing whole tokens
# keeps "exp10" and "exp11" from sharing the misleading prefix "exp1".
_TOKEN = re.compile(r"\d+|[_\-. ]+|[^\d_\-. ]+")
# Shorter common prefixes ("s" of "s1", "s2") say nothing about the experiment.
_MIN_PREFIX_CHARS = 2


@dataclasses.dataclass
class SeedGroup:
  """One experiment of a table: its runs and how they were found to belong together.

  Attributes:
    name: the experiment label shown in tables and figures (unique within the table).
    runs: its runs, in natural workdir order.
    grouped_by: one of the GROUPED_BY_* / NOT_GROUPED_* strings above.
  """

  name: str
  runs: list[RunData]
  grouped_by: str


def group_runs(runs: Sequence[RunData]) -> tuple[list[SeedGroup], list[str]]:
  """Splits the runs of one table into experiments (see the module docstring for the rules).

  Args:
    runs: the runs of one table.

  Returns:
    (groups, notes): groups in no particular order with unique names; notes are footnote
    lines about runs that were deliberately not grouped (repeated seeds).
  """
  runs = sorted(runs, key=lambda r: natural_key(str(r.workdir)))
  by_folder: dict[str, list[RunData]] = {}
  rest = []
  for run in runs:
    if is_seed_dir(run.workdir):
      by_folder.setdefault(run.experiment, []).append(run)
    else:
      rest.append(run)
  folder_groups = [SeedGroup(name, members, GROUPED_BY_FOLDER)
                   for name, members in by_folder.items()]
  singles, config_groups, notes = _group_by_config(rest, [r.workdir.resolve() for r in runs])
  return _unique_names(folder_groups + singles + config_groups), notes


def identity(config: dict) -> dict[str, Any]:
  """Returns the flattened config without the fields that never change an experiment."""
  return {key: value for key, value in configs.flatten(config).items()
          if not _ignored_for_identity(key)}


def _ignored_for_identity(key: str) -> bool:
  return (key in IDENTITY_IGNORED_KEYS
          or key.rsplit(".", 1)[-1].lower() in OUTPUT_LOCATION_NAMES)


def config_seed(run: RunData) -> int | None:
  """Returns the integer `seed` of the run's config.json, else None."""
  seed = run.config.get("seed") if run.config_source == CONFIG else None
  return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _group_by_config(rest: Sequence[RunData], table_dirs: Sequence[Path]
                     ) -> tuple[list[SeedGroup], list[SeedGroup], list[str]]:
  """Groups runs outside seed_K folders by config identity.

  Args:
    rest: the runs outside seed_K folders.
    table_dirs: the resolved workdirs of all runs of the table (for group_label).

  Returns:
    (single-run groups, config groups, notes).
  """
  singles, groups, notes = [], [], []
  classes: list[tuple[dict, list[RunData]]] = []
  for run in rest:
    if run.config_source != CONFIG:
      singles.append(_single(run, NOT_GROUPED_NO_CONFIG))
    elif config_seed(run) is None:
      singles.append(_single(run, NOT_GROUPED_NO_SEED))
    else:
      _add_to_class(classes, run)
  for _, members in classes:
    repeated = _repeated_seeds(members)
    if len(members) == 1:
      singles.append(_single(members[0], NOT_GROUPED_UNIQUE))
    elif repeated:
      singles += [_single(run, NOT_GROUPED_REPEATED_SEED) for run in members]
      notes.append(_repeated_seed_note(members, repeated))
    else:
      groups.append(SeedGroup(group_label(members, table_dirs), list(members), GROUPED_BY_CONFIG))
  return singles, groups, notes


def _single(run: RunData, reason: str) -> SeedGroup:
  return SeedGroup(run.experiment, [run], reason)


def _add_to_class(classes: list[tuple[dict, list[RunData]]], run: RunData) -> None:
  """Appends run to the class of runs with an equal identity, or starts a new class."""
  key = identity(run.config)
  for class_key, members in classes:
    # Plain == rather than a hash of the JSON text: 1 and 1.0 are the same learning rate.
    if class_key == key:
      members.append(run)
      return
  classes.append((key, [run]))


def _repeated_seeds(runs: Sequence[RunData]) -> list[int]:
  seeds = [config_seed(run) for run in runs]
  return sorted({s for s in seeds if seeds.count(s) > 1})


def _repeated_seed_note(runs: Sequence[RunData], repeated: Sequence[int]) -> str:
  shared = "; ".join(
      f"seed {seed}: " + ", ".join(r.experiment for r in runs if config_seed(r) == seed)
      for seed in repeated)
  return (f"Not grouped as seeds: {', '.join(r.experiment for r in runs)} have equal configs "
          f"but repeat a seed ({shared}), so they are copies or re-runs rather than seeds of "
          "each other; each is its own row (move or delete the extra copies to group them).")


def group_label(members: Sequence[RunData], table_dirs: Sequence[Path]) -> str:
  """Names a config-based group.

  The common parent folder when the group has it to itself (no other run of the table lies
  below it), else the common prefix of the folder names (without a trailing repetition
  word such as "try" or "seed") below that parent, else the own name of the group's first
  run in table order (its lowest seed).

  Args:
    members: the group's runs, in natural workdir order.
    table_dirs: the resolved workdirs of all runs of the table.

  Returns:
    The label, e.g. "lr_1e-3" for lr_1e-3/{seed1,s2,run_a} or "exp1" for exp1_try{1,2}.
  """
  parent = _common_parent(members)
  if parent is not None and _owns(parent, members, table_dirs):
    return _parent_label(members, parent)
  prefix = _common_name_prefix([run.workdir.name for run in members])
  if prefix:
    above = _common_experiment_parent(members)
    return f"{above}/{prefix}" if above else prefix
  return min(members, key=lambda run: (config_seed(run), natural_key(str(run.workdir)))).experiment


def _common_parent(runs: Sequence[RunData]) -> Path | None:
  parents = {run.workdir.resolve().parent for run in runs}
  return parents.pop() if len(parents) == 1 else None


def _owns(parent: Path, members: Sequence[RunData], table_dirs: Sequence[Path]) -> bool:
  """True when every run of the table below `parent` is one of `members`."""
  inside = {d for d in table_dirs if d.is_relative_to(parent)}
  return inside == {run.workdir.resolve() for run in members}


def _parent_label(members: Sequence[RunData], parent: Path) -> str:
  """The parent's path below the set's root (as experiment names are), else its name."""
  return _common_experiment_parent(members) or parent.name or str(parent)


def _common_experiment_parent(runs: Sequence[RunData]) -> str:
  """The experiment-name path above the runs' folders when all share it, else ""."""
  heads = {run.experiment.rpartition("/")[0] for run in runs}
  return heads.pop() if len(heads) == 1 else ""


def _common_name_prefix(names: Sequence[str]) -> str:
  """Common whole-token prefix of folder names without trailing separators and repetition
  words; "" when what remains is too short to name anything."""
  token_lists = [_TOKEN.findall(name) for name in names]
  common = []
  for tokens in zip(*token_lists):
    if any(t != tokens[0] for t in tokens):
      break
    common.append(tokens[0])
  prefix = "".join(common).rstrip(_SEPARATORS)
  prefix = _REPETITION_WORD.sub("", prefix).rstrip(_SEPARATORS)
  return prefix if len(prefix) >= _MIN_PREFIX_CHARS else ""


def _unique_names(groups: list[SeedGroup]) -> list[SeedGroup]:
  """Suffixes " (2)", " (3)"... to repeated names; earlier groups keep theirs.

  Callers pass folder groups first, so sweep experiments keep the names they always had,
  then single runs (their own path names), then the labels made up for config groups.
  """
  used: set[str] = set()
  for group in groups:
    name, n = group.name, 2
    while name in used:
      name, n = f"{group.name} ({n})", n + 1
    group.name = name
    used.add(name)
  return groups
