"""Comparing several runs: who is ahead at equal epochs and at equal wall-clock time, who was still
improving when stopped, and whether differences exceed the spread between seeds.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from curvelab.configdicts import flatten
from diagnostics import curves, schema
from diagnostics import thresholds as T
from diagnostics.common import describe, num
from diagnostics.finding import Finding
from diagnostics.history import History, RunInfo
from diagnostics.readers import Run

# Metrics a comparison is made on, first one logged by every run wins.
COMPARE_KEYS = ("val_accuracy", "val_bleu", "val_wer", "val_cer", "val_perplexity", "val_loss",
                "train_loss")
# Config keys that do not change what is trained (they differ between seeds of one setting).
_NON_SETTING_KEYS = ("seed", "workdir", "rng_seed", "data_seed")


def _metric_key(runs: Sequence[Run]) -> str | None:
  """The metric to compare on: a shared summary best_metric, else the first key all runs log."""
  monitors = {r.summary.get("best_metric") for r in runs}
  if len(monitors) == 1 and None not in monitors:
    key = monitors.pop()
    if all(curves.extract(r.rows, key) is not None for r in runs):
      return key
  for key in COMPARE_KEYS:
    if all(curves.extract(r.rows, key) is not None for r in runs):
      return key
  return None


def _best_so_far(curve: curves.Curve) -> np.ndarray:
  """Running best of the lower-better values (NaN-safe: a NaN never becomes the best)."""
  bad = np.where(np.isfinite(curve.bad), curve.bad, np.inf)
  return np.minimum.accumulate(bad)


def _raw_of(key: str, bad_value: float, curve: curves.Curve) -> float:
  """The logged value whose lower-better transform is bad_value."""
  hits = np.nonzero(curve.bad == bad_value)[0]
  return float(curve.raw[hits[0]]) if hits.size else float("nan")


def _leader(values: dict[str, float]) -> str | None:
  finite = {k: v for k, v in values.items() if math.isfinite(v)}
  return min(finite, key=finite.get) if finite else None


def _at_equal_epochs(runs, key) -> dict:
  """Best value reached by each run within the epochs every run completed."""
  common = min(len(r.rows) for r in runs)
  bads, raws = {}, {}
  for run in runs:
    curve = curves.extract(run.rows[:common], key)
    if curve is None:
      continue
    bad = float(_best_so_far(curve)[-1])
    bads[run.path] = bad
    raws[run.path] = _raw_of(key, bad, curve)
  leader = _leader(bads)
  return {"epochs": common, "values": {k: curves.rnd(v) for k, v in raws.items()},
          "leader": leader}


def _at_equal_time(runs, key) -> dict | None:
  """Best value reached by each run within the wall-clock time every run had."""
  elapsed = {}
  for run in runs:
    times = History(run.rows, RunInfo()).elapsed
    if times is None or not np.isfinite(times[-1]):
      return None
    elapsed[run.path] = times
  budget = min(float(t[-1]) for t in elapsed.values())
  bads, raws, epochs = {}, {}, {}
  for run in runs:
    within = int(np.sum(elapsed[run.path] <= budget + 1e-9))
    epochs[run.path] = within
    curve = curves.extract(run.rows[:within], key) if within else None
    if curve is None:
      bads[run.path], raws[run.path] = math.inf, None
      continue
    bad = float(_best_so_far(curve)[-1])
    bads[run.path], raws[run.path] = bad, _raw_of(key, bad, curve)
  return {"seconds": curves.rnd(budget), "epochs_within": epochs,
          "values": {k: curves.rnd(v) for k, v in raws.items()}, "leader": _leader(bads)}


def _setting(run: Run) -> str:
  """What a run trains, ignoring its seed: the config without seed keys, else the sweep layout."""
  if run.config:
    flat = {k: v for k, v in flatten(run.config).items()
            if k.rsplit(".", 1)[-1] not in _NON_SETTING_KEYS}
    return json.dumps(flat, sort_keys=True, default=str)
  path = Path(run.path)
  if run.seed is not None:
    return str(path.parent)  # NAME/seed_K/ -> NAME
  return str(path)


def _final_best(run: Run, key: str) -> tuple[float, float] | None:
  """(lower-better best, logged best) of a run."""
  curve = curves.extract(run.rows, key)
  if curve is None:
    return None
  bad = float(_best_so_far(curve)[-1])
  return (bad, _raw_of(key, bad, curve)) if math.isfinite(bad) else None


def _group_label(paths: list[str]) -> str:
  """A short name for a group of runs: their common directory (NAME of NAME/seed_K), else the
  first path with a count."""
  if len(paths) == 1:
    return paths[0]
  try:
    common = os.path.commonpath(paths)
  except ValueError:
    common = ""
  if common and common not in (os.sep, ".") and common not in paths:
    return common
  return f"{paths[0]} (+{len(paths) - 1} more)"


def _seed_groups(runs, key) -> list[dict]:
  """Runs grouped by setting, with mean and standard deviation of their best value."""
  groups: dict[str, list[Run]] = {}
  for run in runs:
    groups.setdefault(_setting(run), []).append(run)
  out = []
  for members in groups.values():
    bests = [b for b in (_final_best(r, key) for r in members) if b is not None]
    raw = np.array([b[1] for b in bests])
    bad = np.array([b[0] for b in bests])
    paths = [r.path for r in members]
    entry = {"label": _group_label(paths), "runs": paths, "seeds": [r.seed for r in members],
             "n": len(raw), "mean": curves.rnd(float(raw.mean())) if raw.size else None,
             "std": curves.rnd(float(raw.std(ddof=1))) if raw.size >= 2 else None,
             "_bad_mean": float(bad.mean()) if bad.size else math.inf}
    out.append(entry)
  return out


def _seed_verdicts(groups: list[dict]) -> tuple[list[dict], float | None]:
  """Pairwise group differences against seed noise; (verdicts, pooled seed std or None)."""
  stds = [g["std"] for g in groups if g["std"] is not None]
  if not stds:
    return [], None
  pooled = float(np.sqrt(np.mean(np.square(stds))))
  verdicts = []
  for i, a in enumerate(groups):
    for b in groups[i + 1:]:
      if a["mean"] is None or b["mean"] is None:
        continue
      sa = a["std"] if a["std"] is not None else pooled
      sb = b["std"] if b["std"] is not None else pooled
      se = math.sqrt(sa**2 / a["n"] + sb**2 / b["n"])
      diff = a["mean"] - b["mean"]
      verdicts.append({"a": a["label"], "b": b["label"], "difference": curves.rnd(diff),
                       "standard_error": curves.rnd(se),
                       "within_seed_noise": bool(abs(diff) <= T.SEED_NOISE_Z * se)})
  return verdicts, pooled


def compare_runs(runs: Sequence[Run], findings: dict[str, list[Finding]]) -> dict | None:
  """Compares runs on a shared metric.

  Args:
    runs: the loaded runs (two or more).
    findings: each run's findings by path (used for "still improving").

  Returns:
    A JSON-safe dict (metric, equal_epochs, equal_time, still_improving, seed_groups,
    seed_comparisons, notes), or None with fewer than two runs or no shared metric.
  """
  if len(runs) < 2:
    return None
  key = _metric_key(runs)
  if key is None:
    return {"metric": None, "notes": ["the runs share no validation metric or training loss"]}
  out = {"metric": key, "higher_is_better": schema.higher_is_better(key)}
  out["equal_epochs"] = _at_equal_epochs(runs, key)
  out["equal_time"] = _at_equal_time(runs, key)
  finals = {r.path: _final_best(r, key) for r in runs}
  final_bad = {p: (v[0] if v else math.inf) for p, v in finals.items()}
  out["final"] = {p: (curves.rnd(v[1]) if v else None) for p, v in finals.items()}
  out["final_leader"] = _leader(final_bad)
  improving = {p: next((f for f in fs if f.id == "not_converged"), None)
               for p, fs in findings.items()}
  out["still_improving"] = sorted(p for p, f in improving.items() if f is not None)
  groups = _seed_groups(runs, key)
  out["seed_groups"] = [{k: v for k, v in g.items() if not k.startswith("_")}
                        for g in groups if g["n"] >= 2]
  verdicts, pooled = _seed_verdicts(groups)
  out["seed_comparisons"] = verdicts
  out["notes"] = _notes(out, key, groups, improving, pooled)
  return out


def _stopped_early_notes(groups: list[dict], improving: dict) -> list[str]:
  """Settings that finished behind the leading setting while still improving when it converged."""
  ranked = sorted(groups, key=lambda g: g["_bad_mean"])
  leader = ranked[0]
  if any(improving.get(p) is not None for p in leader["runs"]):
    return []  # the leader itself was still improving: nobody had converged
  notes = []
  for group in ranked[1:]:
    still = [improving[p] for p in group["runs"] if improving.get(p) is not None]
    if not still or len(still) * 2 < len(group["runs"]):
      continue
    estimates = sorted(f.evidence["epochs_to_plateau"] for f in still
                       if f.evidence.get("epochs_to_plateau") is not None)
    more = ""
    if estimates:
      more = f" (about {estimates[len(estimates) // 2]} more epochs to a plateau)"
    who = group["label"] if len(group["runs"]) == 1 else (
        f"{group['label']} ({len(still)} of {len(group['runs'])} seeds)")
    notes.append(f"{who} finished behind {leader['label']} but was still improving at its last "
                 f"epoch{more} while {leader['label']} had stopped improving: it may only have "
                 "been stopped too early.")
  return notes


def _notes(out: dict, key: str, groups: list[dict], improving: dict,
           pooled: float | None) -> list[str]:
  """One sentence per conclusion a reader should draw."""
  notes = []
  name = describe(key)
  eq = out["equal_epochs"]
  if eq["leader"]:
    notes.append(f"At equal epochs ({eq['epochs']}) {eq['leader']} leads on best {name} "
                 f"({num(eq['values'][eq['leader']])}).")
  et = out["equal_time"]
  if et and et["leader"]:
    notes.append(f"At equal wall-clock time ({num(et['seconds'])} s) {et['leader']} leads "
                 f"({num(et['values'][et['leader']])}).")
  elif et is None:
    notes.append("No wall-clock comparison: not every run logged elapsed or per-epoch times.")
  notes.extend(_stopped_early_notes(groups, improving))
  for verdict in out["seed_comparisons"]:
    word = "within" if verdict["within_seed_noise"] else "beyond"
    notes.append(f"{verdict['a']} vs {verdict['b']}: difference in mean best {name} "
                 f"{num(verdict['difference'])} is {word} seed noise (±{T.SEED_NOISE_Z:g} × "
                 f"standard error {num(verdict['standard_error'])}).")
  if pooled is None:
    notes.append("Seed noise unknown: no setting was run with several seeds.")
  elif not out["seed_comparisons"]:
    notes.append(f"Seed standard deviation of best {name} is about {num(pooled)}.")
  return notes
