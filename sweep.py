"""Runs an experiment set: one train.py process per run and seed, then a report.

Usage:
  python sweep.py --experiments=experiments/reference_vit.py --root=DIR [--seeds=3]
      [--parallel=N] [--only=NAME,...] [--set FIELD=VALUE ...] [--dry_run] [--no_report]

Layout: ROOT/NAME with one seed, ROOT/NAME/seed_K with several. Finished runs (summary.json
present) are skipped, interrupted ones resumed, failed ones recorded in
ROOT/sweep_status.json and ROOT/.../sweep_error.txt. Ends with ROOT/report/ (report.py).
Exit status: 0 when every run finished, 1 when some run failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from sweeps import (ExperimentSetError, SweepRunner, build_command, load_experiment_set,
                    parse_set_args, plan_jobs, resolve_seeds, select_runs)

# train.py, configs/ and experiments/ live next to this file; train.py runs from here.
REPO = Path(__file__).resolve().parent


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  """Parses sweep.py's command line."""
  parser = argparse.ArgumentParser(prog="sweep.py", description=__doc__.splitlines()[0])
  parser.add_argument("--experiments", required=True,
                      help="experiment-set file, e.g. experiments/reference_vit.py")
  parser.add_argument("--root", required=True, help="sweep root directory")
  parser.add_argument("--seeds", default=None,
                      help="number of seeds (3 -> 0,1,2) or a list (1,5,9); default: the "
                      "set's SEEDS")
  parser.add_argument("--parallel", type=int, default=1, help="processes at once (default 1)")
  parser.add_argument("--only", action="append", default=[],
                      help="comma-separated run names to run (repeatable)")
  parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                      metavar="FIELD=VALUE", help="config override applied to every run")
  parser.add_argument("--metric", default=None, help="metric for the final report")
  parser.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
  parser.add_argument("--no_report", action="store_true", help="skip the final report")
  parser.add_argument("--train_script", default=str(REPO / "train.py"),
                      help="trainer script (default: the repo's train.py)")
  return parser.parse_args(argv)


def resolve_experiments_path(text: str) -> Path:
  """Finds the experiment-set file: as given, else relative to the repo root."""
  path = Path(text)
  if path.is_file() or path.is_absolute():
    return path
  return REPO / path if (REPO / path).is_file() else path


def split_names(values: Sequence[str]) -> list[str]:
  """Flattens repeated/comma-separated --only values into names."""
  return [name.strip() for value in values for name in value.split(",") if name.strip()]


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the CLI; returns the exit status."""
  args = parse_args(sys.argv[1:] if argv is None else argv)
  root = Path(args.root).absolute()
  try:
    experiment_set = load_experiment_set(resolve_experiments_path(args.experiments))
    runs = select_runs(experiment_set, split_names(args.only))
    seeds = resolve_seeds(args.seeds, default=experiment_set.seeds)
    jobs = plan_jobs(runs, seeds, root, parse_set_args(args.overrides))
    if args.parallel < 1:
      raise ExperimentSetError(f"--parallel must be at least 1, got {args.parallel}")
  except ExperimentSetError as e:
    print(f"sweep: {e}", file=sys.stderr)
    return 2
  train_script = Path(args.train_script).absolute()
  if args.dry_run:
    for job in jobs:
      print(" ".join(build_command(job, train_script=train_script)))
    return 0
  if not train_script.is_file():
    print(f"sweep: trainer script not found: {train_script}", file=sys.stderr)
    return 2
  runner = SweepRunner(root, args.parallel, train_script=train_script,
                       experiments=experiment_set.path.absolute(), cwd=REPO)
  try:
    results = runner.run(jobs)
  except KeyboardInterrupt:
    print("sweep: interrupted; run the same command again to resume", file=sys.stderr)
    return 130
  failed = [r for r in results if r.state == "failed"]
  print(f"sweep: {len(results) - len(failed)}/{len(results)} runs finished"
        + (f"; failed: {', '.join(r.job.key for r in failed)}" if failed else ""))
  if not args.no_report:
    _report(root, args.metric)
  return 1 if failed else 0


def _report(root: Path, metric: str | None) -> None:
  """Writes ROOT/report; a reporting problem must not hide the sweep's own outcome."""
  try:
    from reporting import build_report  # pylint: disable=import-outside-toplevel
    result = build_report([root], root / "report", metric=metric)
    print(f"sweep: report -> {result.out_dir / 'report.html'}")
  except Exception as e:  # pylint: disable=broad-except
    print(f"sweep: report failed: {type(e).__name__}: {e}", file=sys.stderr)


if __name__ == "__main__":
  sys.exit(main())
