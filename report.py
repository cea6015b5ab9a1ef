"""Writes a report (tables, figures, html) for run workdirs and sweep roots.

Usage:
  python report.py DIR [DIR ...] --out=OUT [--metric=NAME] [--no_doctor]

Writes OUT/table.md, OUT/table.csv, OUT/figures/**.png and OUT/report.html. Problems with
single paths or runs are one line each on stderr; the exit status is non-zero only when no
run at all could be read.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from reporting import build_report


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  """Parses report.py's command line."""
  parser = argparse.ArgumentParser(
      prog="report.py", description="Tables, figures and an html page for curvelab runs.")
  parser.add_argument("dirs", nargs="+", metavar="DIR",
                      help="run workdirs or sweep roots (searched recursively for history.jsonl)")
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--metric", default=None,
                      help="metric to report, e.g. accuracy, perplexity, wer (default: each "
                      "run's own best_metric)")
  parser.add_argument("--no_doctor", action="store_true",
                      help="leave the training doctor's findings out of the html")
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the CLI; returns the exit status."""
  args = parse_args(sys.argv[1:] if argv is None else argv)
  result = build_report(args.dirs, args.out, metric=args.metric, run_doctor=not args.no_doctor)
  if not result.ok:
    return 1
  print(f"report: {len(result.runs)} runs in {len(result.tables)} tables -> "
        f"{result.out_dir / 'report.html'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
