"""Writes a report (tables, figures, html) for run workdirs and sweep roots.

Usage:
  python report.py DIR [DIR ...] --out=OUT [--metric=NAME] [--no_doctor] [--published=FILE]

Writes OUT/table.md, OUT/table.csv, OUT/figures/**.png and OUT/report.html. Problems with
single paths or runs are one line each on stderr; the exit status is 1 when no run at all
could be read, 2 when --published names a missing or invalid file (nothing is written then).

--published=experiments/reference_published.py adds, under each table with a matching row, the
study's published numbers beside ours measured in the study's protocol (max-over-epochs
train/val, test of the final model) and ours of the best-validation checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from reporting import build_report
from reporting.published import PublishedError, load_published


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
  parser.add_argument("--published", default=None, metavar="FILE",
                      help="a study's published numbers to show beside matching rows, e.g. "
                      "experiments/reference_published.py (default: none)")
  parser.add_argument("--set", default=None, metavar="NAME", dest="set_label",
                      help="report the runs of all DIRs as one set called NAME: one table and "
                      "overlays over epochs and wall-clock time (default: one set per DIR)")
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the CLI; returns the exit status."""
  args = parse_args(sys.argv[1:] if argv is None else argv)
  published = None
  if args.published is not None:
    try:
      published = load_published(args.published)
    except PublishedError as e:
      # Checked before reading runs: a typo in the path should not cost a whole report.
      print(f"report: --published: {e}", file=sys.stderr)
      return 2
  result = build_report(args.dirs, args.out, metric=args.metric, run_doctor=not args.no_doctor,
                        published=published, set_label=args.set_label)
  if not result.ok:
    return 1
  print(f"report: {len(result.runs)} runs in {len(result.tables)} tables -> "
        f"{result.out_dir / 'report.html'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
