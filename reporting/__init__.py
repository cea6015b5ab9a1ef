"""Reporting library: load run workdirs, summarise seeds, test differences, draw and publish.

Typical use::

  from reporting import build_report
  result = build_report(["runs/sweep_vit"], "runs/sweep_vit/report")
  # With a study's published numbers beside matching rows:
  result = build_report(["runs/sweep_vit"], "runs/sweep_vit/report",
                        published=load_published("experiments/reference_published.py"))

Modules: runs (discovery and loading), seeds (which runs are seeds of one experiment: seed_K
folders, else configs equal except the seed), metrics (direction and units), configs
(flattening and one-factor differences), stats (mean ± std, Welch's t-test), tables (rows,
markdown, csv), formatting (cell strings), published (a study's published numbers, matched
to rows by config settings), comparison (the table against the published study), figures
(PNG), doctor (diagnosis findings), html_page (self-contained page), build (the whole report).
"""

from reporting.build import ReportResult, build_report
from reporting.metrics import MetricSpec, metric_spec
from reporting.published import Published, PublishedError, load_published
from reporting.runs import BrokenRun, RunData, discover, load_run

__all__ = ["BrokenRun", "MetricSpec", "Published", "PublishedError", "ReportResult", "RunData",
           "build_report", "discover", "load_published", "load_run", "metric_spec"]
