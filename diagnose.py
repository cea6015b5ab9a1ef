"""Diagnoses training curves: `python diagnose.py PATH [PATH ...] [--json]`.

PATH is a curvelab workdir, a directory of workdirs (a sweep), a CSV/JSON/JSON-lines history from
any framework, or a TensorBoard event directory. See docs/doctor.md.
"""

from __future__ import annotations

import argparse
import sys

import diagnostics
from diagnostics import formatting
from diagnostics import readers
from diagnostics import thresholds
from diagnostics.compare import compare_runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Parses the command line."""
  parser = argparse.ArgumentParser(
      prog="diagnose.py",
      description="Diagnose train/validation curves: overfitting, convergence, learning rate, "
                  "divergence, early stopping; compares several runs.")
  parser.add_argument("paths", nargs="+", metavar="PATH",
                      help="curvelab workdir, sweep directory, CSV/JSON/JSONL history or "
                           "TensorBoard event directory")
  parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
  parser.add_argument("--patience", type=int, default=thresholds.DEFAULT_PATIENCE,
                      help="patience of the early-stopping what-if (default %(default)s)")
  parser.add_argument("--num-classes", type=int, default=None,
                      help="number of classes, for chance-level checks")
  parser.add_argument("--monitor", default=None, metavar="NAME",
                      help="validation curve to judge, e.g. val_accuracy, eval_f1, mAP50-95 "
                           "(default: the validation loss, else the primary validation metric)")
  args = parser.parse_args(argv)
  if args.patience < 1:
    parser.error(f"--patience must be at least 1, got {args.patience}")
  if args.num_classes is not None and args.num_classes < 2:
    parser.error(f"--num-classes must be at least 2, got {args.num_classes}")
  return args


def main(argv: list[str] | None = None) -> int:
  """Runs the doctor; returns the exit status (1 when any PATH could not be read)."""
  args = parse_args(argv)
  # This process only reads event files: spare the user TensorFlow's import time.
  readers.use_tensorboard_without_tensorflow()
  runs, failed = [], False
  for path in args.paths:
    try:
      runs.extend(diagnostics.load(path))
    except diagnostics.ReadError as e:
      print(f"diagnose.py: error: {e}", file=sys.stderr)
      failed = True
  monitors = {}
  for run in list(runs):
    try:
      monitors[run.path] = diagnostics.resolve_monitor(run, args.monitor) if args.monitor else None
    except diagnostics.ReadError as e:
      print(f"diagnose.py: error: {e}", file=sys.stderr)
      runs.remove(run)
      failed = True
  diagnosed = [(run, diagnostics.diagnose_run(run, num_classes=args.num_classes,
                                              patience=args.patience,
                                              monitor=monitors[run.path]),
                diagnostics.monitor_of(run, monitors[run.path])) for run in runs]
  comparison = compare_runs(runs, {r.path: f for r, f, _ in diagnosed}) if len(runs) > 1 else None
  if args.json:
    if runs:
      entries = [formatting.run_entry(r, f, m) for r, f, m in diagnosed]
      print(formatting.to_json(entries, comparison))
  else:
    blocks = [formatting.render_run(r, f, m) for r, f, m in diagnosed]
    if comparison is not None:
      blocks.append(formatting.render_comparison(comparison))
    if blocks:
      print("\n\n".join(blocks))
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
