r"""Copies a sweep's finished runs into results/: run files only, each with what made it.

    python -m sweeps.publish runs/reference_cpu results/cpu_reference

For every finished run of ROOT/sweep_status.json, DEST/<name>/seed_<K>/ gets `config.json`,
`history.jsonl` and `summary.json` unchanged (no checkpoints, no events) and a RUN.md naming the
device, the command, the commit the code was at (recorded by the sweep when the run started) and
the date. A run whose code had uncommitted changes is refused unless `--allow_modified`: results
name code anyone can check out. Nothing in DEST is edited by hand; run this again instead.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import sys

from curvelab import runfiles
from sweeps import runner

RUN_FILES = (runfiles.CONFIG, runfiles.HISTORY, runfiles.SUMMARY)


def _processor() -> str:
  """The CPU's model name (what 'cpu' in summary.json ran on)."""
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown processor"


def device_of(summary: dict) -> str:
  kind = summary.get("device_kind", "unknown device")
  count = summary.get("device_count", "?")
  where = f" ({_processor()}, {os.cpu_count()} cores)" if str(kind).lower() == "cpu" else ""
  return f"{count} x {kind}{where}"


def shown_command(command: list[str], repo: pathlib.Path) -> str:
  """The command as a person types it in the repository root (the checkout it ran in, which may
  be another worktree of the same commit, is left out of every path)."""
  roots = {str(repo) + "/"}
  if len(command) > 1:
    roots.add(str(pathlib.Path(command[1]).parent) + "/")
  parts = ["python"]
  for arg in command[1:]:
    for root in sorted(roots, key=len, reverse=True):
      arg = str(arg).replace(root, "")
    parts.append(arg)
  return " ".join(parts)


def publish_run(workdir: pathlib.Path, dest: pathlib.Path, *, command: str, commit: str,
                date: str) -> pathlib.Path:
  """Copies one run's files to `dest` with its RUN.md; returns `dest`."""
  dest.mkdir(parents=True, exist_ok=True)
  for name in RUN_FILES:
    shutil.copy2(workdir / name, dest / name)
  summary = json.loads((workdir / runfiles.SUMMARY).read_text())
  (dest / "RUN.md").write_text(
      f"device: {device_of(summary)}\ncommand: {command}\ncommit: {commit}\ndate: {date}\n"
      "files: copied unchanged from the run's workdir by sweeps/publish.py\n")
  return dest


def publish(root: str, dest: str, *, allow_modified: bool = False) -> list[pathlib.Path]:
  """Publishes every finished run of a sweep; returns the folders written.

  Raises:
    ValueError: no sweep status, or a run's code was modified and `allow_modified` is False.
  """
  status_path = pathlib.Path(root) / runner.STATUS_FILE
  if not status_path.is_file():
    raise ValueError(f"{root}: no {runner.STATUS_FILE} (not a sweep root)")
  runs = json.loads(status_path.read_text()).get("runs", {})
  repo = pathlib.Path(__file__).resolve().parent.parent
  written = []
  for key, record in sorted(runs.items()):
    workdir = pathlib.Path(record["workdir"])
    if record.get("state") != "finished" or not (workdir / runfiles.SUMMARY).is_file():
      continue
    commit = record.get("commit") or "not recorded by the sweep"
    if commit.endswith("+modified") and not allow_modified:
      raise ValueError(f"{key}: its code had uncommitted changes ({commit}); commit them and "
                       "rerun, or pass --allow_modified")
    written.append(publish_run(
        workdir, pathlib.Path(dest) / record["name"] / f"seed_{record['seed']}",
        command=shown_command(record.get("command") or [], repo), commit=commit,
        date=str(record.get("ended") or record.get("started") or "unknown")))
  return written


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m sweeps.publish",
                                   description=__doc__.split("\n\n", maxsplit=1)[0])
  parser.add_argument("root", help="sweep root (holds sweep_status.json)")
  parser.add_argument("dest", help="results folder, e.g. results/cpu_reference")
  parser.add_argument("--allow_modified", action="store_true",
                      help="also publish runs whose code had uncommitted changes")
  args = parser.parse_args(argv)
  try:
    written = publish(args.root, args.dest, allow_modified=args.allow_modified)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"{len(written)} runs published to {args.dest}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
