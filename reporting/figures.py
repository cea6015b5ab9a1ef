"""PNG figures: per-run curves and per-set overlays (matplotlib, Agg, no pyplot state).

Figures are drawn on matplotlib.figure.Figure objects directly instead of pyplot, so nothing
leaks between figures and no display is ever needed. Sizes are fixed (no tight bbox) so every
PNG of a kind has the same pixel size.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # Reports are written on headless machines.

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from reporting.metrics import MetricSpec, is_number, metric_spec  # noqa: E402
from reporting.runs import RunData  # noqa: E402

DPI = 100
RUN_FIGSIZE = (15.0, 4.0)      # inches -> 1500 x 400 px
OVERLAY_FIGSIZE = (14.0, 5.0)  # inches -> 1400 x 500 px
EPOCH_LABEL = "epoch"
TIME_LABEL = "wall-clock time (s)"
LOSS = metric_spec("loss")


def run_figure_size_px() -> tuple[int, int]:
  """Returns (height, width) in pixels of a per-run figure."""
  return round(RUN_FIGSIZE[1] * DPI), round(RUN_FIGSIZE[0] * DPI)


def overlay_figure_size_px() -> tuple[int, int]:
  """Returns (height, width) in pixels of an overlay figure."""
  return round(OVERLAY_FIGSIZE[1] * DPI), round(OVERLAY_FIGSIZE[0] * DPI)


def series(run: RunData, key: str, metric: MetricSpec, x: str = "epoch") -> tuple[list, list]:
  """Returns (xs, ys) of a history key in display units, skipping epochs without a value.

  Args:
    run: the run.
    key: history key, e.g. "val_accuracy".
    metric: gives the display scale.
    x: "epoch" or "time" (cumulative `elapsed_s`).
  """
  xs, ys = [], []
  times = elapsed_seconds(run.history)
  for row, t in zip(run.history, times):
    y = row.get(key)
    x_value = row.get("epoch") if x == "epoch" else t
    if is_number(y) and is_number(x_value):
      xs.append(x_value)
      ys.append(y * metric.scale)
  return xs, ys


def elapsed_seconds(rows: Sequence[dict]) -> list[float | None]:
  """Returns cumulative wall-clock seconds per epoch.

  Uses `elapsed_s`; histories from other tools without it fall back to the running sum of
  `epoch_time_s` + `eval_time_s`, and None where even those are missing.
  """
  out, total = [], 0.0
  for row in rows:
    if is_number(row.get("elapsed_s")):
      total = float(row["elapsed_s"])
      out.append(total)
      continue
    step = [row.get(k) for k in ("epoch_time_s", "eval_time_s") if is_number(row.get(k))]
    if not step:
      out.append(None)
      continue
    total += sum(step)
    out.append(total)
  return out


def _new_figure(figsize) -> Figure:
  # Fixed margins instead of constrained layout: the sizes are fixed anyway and automatic
  # layout doubles the drawing time, which adds up over a sweep of dozens of runs.
  fig = Figure(figsize=figsize, dpi=DPI)
  FigureCanvasAgg(fig)
  fig.subplots_adjust(left=0.06, right=0.98, bottom=0.13, top=0.84, wspace=0.25)
  return fig


def _style_axis(ax, xlabel: str, metric: MetricSpec, title: str) -> None:
  ax.set_xlabel(xlabel)
  if xlabel == EPOCH_LABEL:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # No "epoch 1.25" ticks.
  ax.set_ylabel(metric.axis_label)
  ax.set_title(title, fontsize=10)
  ax.grid(True, alpha=0.3)
  if metric.name == "perplexity" and _all_positive(ax):
    # Early-epoch perplexities dwarf late ones; a log axis keeps both readable.
    ax.set_yscale("log")


def _all_positive(ax) -> bool:
  ys = [y for line in ax.get_lines() for y in line.get_ydata()]
  return bool(ys) and min(ys) > 0


def _plot_split_pair(ax, run: RunData, metric: MetricSpec, x: str) -> None:
  """Draws train and val curves of one metric for one run."""
  for split, style in (("train", "--"), ("val", "-")):
    xs, ys = series(run, f"{split}_{metric.name}", metric, x)
    if xs:
      ax.plot(xs, ys, style, marker="o", markersize=3, label=split)
  if ax.get_lines():
    ax.legend(fontsize=8)
  else:
    ax.text(0.5, 0.5, f"no {metric.name} logged", ha="center", va="center",
            transform=ax.transAxes)


def plot_run(run: RunData, metric: MetricSpec, path: Path) -> Path:
  """Writes one run's figure: metric over epochs, metric over time, loss over epochs.

  Args:
    run: the run.
    metric: the run's metric.
    path: PNG file to write.

  Returns:
    path.
  """
  fig = _new_figure(RUN_FIGSIZE)
  axes = fig.subplots(1, 3)
  _plot_split_pair(axes[0], run, metric, "epoch")
  _style_axis(axes[0], EPOCH_LABEL, metric, f"{metric.name} over epochs")
  _plot_split_pair(axes[1], run, metric, "time")
  _style_axis(axes[1], TIME_LABEL, metric, f"{metric.name} over wall-clock time")
  _plot_split_pair(axes[2], run, LOSS, "epoch")
  _style_axis(axes[2], EPOCH_LABEL, LOSS, "loss over epochs")
  fig.suptitle(f"{run.label}  ({run.workdir})", fontsize=11)
  return _save(fig, path)


def plot_overlay(groups: Sequence[tuple[str, Sequence[RunData]]], key: str,
                 metric: MetricSpec, title: str, path: Path) -> Path:
  """Writes an overlay of one history key for all experiments of a set: epochs | time.

  Each experiment gets one colour; its seeds are drawn as separate lines of that colour so
  the seed spread stays visible.

  Args:
    groups: (experiment name, its runs) pairs.
    key: history key, e.g. "val_accuracy".
    metric: gives units and direction.
    title: figure title.
    path: PNG file to write.

  Returns:
    path.
  """
  fig = _new_figure(OVERLAY_FIGSIZE)
  ax_epoch, ax_time = fig.subplots(1, 2)
  colours = itertools.cycle(matplotlib.colormaps["tab10" if len(groups) <= 10 else "tab20"].colors)
  for (name, runs), colour in zip(groups, colours):
    for i, run in enumerate(runs):
      label = name if i == 0 else None
      for ax, x in ((ax_epoch, "epoch"), (ax_time, "time")):
        xs, ys = series(run, key, metric, x)
        if xs:
          ax.plot(xs, ys, color=colour, alpha=0.85, linewidth=1.4, marker="o", markersize=2,
                  label=label)
  _style_axis(ax_epoch, EPOCH_LABEL, metric, f"{key} over epochs")
  _style_axis(ax_time, TIME_LABEL, metric, f"{key} over wall-clock time")
  if ax_epoch.get_lines():
    ax_epoch.legend(fontsize=8, ncol=2 if len(groups) > 6 else 1)
  fig.suptitle(title, fontsize=11)
  return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=DPI)
  return path
