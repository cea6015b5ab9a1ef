"""Tests of the reporting library and report.py on fabricated run directories.

Every expected number below is worked out by hand from the fabricated values (comments show
the arithmetic), not recomputed with the code under test.
"""

import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import report  # noqa: E402  (report.py, the CLI)
from reporting import build_report, figures, load_published, metric_spec  # noqa: E402
from reporting import configs as config_lib  # noqa: E402
from reporting.stats import seed_stat, welch_separation  # noqa: E402

MIB = 2 ** 20

# Per-seed test accuracies (fractions), chosen so means and stds are round numbers:
#   exp1: mean 0.81, std sqrt((0.01² + 0.01² + 0)/2) = 0.01
#   exp2: mean 0.81, std sqrt((0.02² + 0.02² + 0)/2) = 0.02   -> same mean as exp1: p = 1
#   exp3: mean 0.51, std 0.01                                  -> 30 points below exp1
#   exp4: mean 0.91, std 0.01                                  -> 10 points above exp2
TEST_ACC = {
    "exp1_l2_adam": [0.80, 0.82, 0.81],
    "exp2_l2_adamw": [0.79, 0.83, 0.81],
    "exp3_l2_sgd": [0.50, 0.52, 0.51],
    "exp4_l4_adamw": [0.90, 0.92, 0.91],
}
FACTORS = {  # (num_layers, optimizer)
    "exp1_l2_adam": (2, "adam"),
    "exp2_l2_adamw": (2, "adamw"),
    "exp3_l2_sgd": (2, "sgd"),
    "exp4_l4_adamw": (4, "adamw"),
}


def write_run(workdir, config, rows, summary=None):
  """Writes config.json, history.jsonl and (optionally) summary.json into workdir."""
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "config.json").write_text(json.dumps(config))
  (workdir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  if summary is not None:
    (workdir / "summary.json").write_text(json.dumps(summary))


def classification_rows(seed, with_memory=True):
  """Three epochs whose statistics over seeds 0, 1, 2 are easy to compute by hand.

  epoch_time_s [2.0, 1.0, 1.5] + 0.5*seed -> per-run mean 1.5, 2.0, 2.5 -> 2.0 ± 0.5.
  peak memory max 300, 310, 320 MiB -> 310 ± 10.
  val_accuracy best 0.85 (epoch 2), 0.86 (epoch 2), 0.87 (epoch 3) -> 86.00 ± 1.00 %, best
  epoch 2, 2, 3 -> 2.33 ± 0.58.
  train_accuracy max 0.95, 0.90, 0.90 -> mean 0.91667, std sqrt((0.0333²+2·0.01667²)/2)
  = 0.028868 -> 91.67 ± 2.89 %.
  """
  val = [0.60, 0.85 + 0.01 * seed, 0.70] if seed < 2 else [0.60, 0.70, 0.87]
  train = [0.50, 0.90, 0.95 - 0.05 * seed]
  times = [t + 0.5 * seed for t in (2.0, 1.0, 1.5)]
  peaks = [100 * MIB, (300 + 10 * seed) * MIB, 200 * MIB] if with_memory else [None] * 3
  rows, elapsed = [], 0.0
  for i in range(3):
    elapsed += times[i] + 0.25
    rows.append({"epoch": i + 1, "step": 10 * (i + 1), "train_loss": 1.0 / (i + 1),
                 "val_loss": 1.2 / (i + 1), "learning_rate": 1e-3, "epoch_time_s": times[i],
                 "eval_time_s": 0.25, "elapsed_s": elapsed, "examples_per_s": 1000.0,
                 "peak_memory_bytes": peaks[i], "train_accuracy": train[i],
                 "val_accuracy": val[i]})
  return rows


def vit_config(name, seed, workdir):
  layers, optimizer = FACTORS[name]
  return {"seed": seed, "workdir": str(workdir), "optimizer": optimizer, "learning_rate": 1e-3,
          "model": {"name": "vit", "num_layers": layers, "block": "prenorm"},
          "dataset": {"name": "digits", "data_dir": f"/data/{seed}"}}


def make_vit_sweep(root):
  """Four experiments x three seeds in the sweep layout ROOT/NAME/seed_K."""
  for index, (name, accs) in enumerate(TEST_ACC.items()):
    for seed, acc in enumerate(accs):
      workdir = root / name / f"seed_{seed}"
      summary = {"num_params": 1000 + index, "test_accuracy": acc, "test_loss": 0.5,
                 "total_time_s": 10.0 + seed, "best_metric": "val_accuracy",
                 "best_mode": "max", "best_epoch": 2, "status": "finished"}
      write_run(workdir, vit_config(name, seed, workdir),
                classification_rows(seed, with_memory=name != "exp3_l2_sgd"), summary)
  return root


def lm_rows():
  """Perplexity falls then rises: the best (lowest) val value 150 is at epoch 2."""
  val = [300.0, 150.0, 180.0]
  train = [400.0, 200.0, 120.0]
  return [{"epoch": i + 1, "step": i + 1, "train_loss": 5.0 - i, "val_loss": 5.1 - i,
           "learning_rate": 1.0, "epoch_time_s": 3.0, "eval_time_s": 1.0,
           "elapsed_s": 4.0 * (i + 1), "examples_per_s": 10.0, "peak_memory_bytes": None,
           "train_perplexity": train[i], "val_perplexity": val[i], "tokens_per_s": 5.0}
          for i in range(3)]


def make_lm_runs(root, best_mode="min"):
  """Two single-seed LM runs differing in one factor (layers)."""
  for layers in (1, 2):
    workdir = root / f"lm_l{layers}"
    summary = {"num_params": 5000, "test_perplexity": 155.0 + layers, "total_time_s": 12.0,
               "best_metric": "val_perplexity", "status": "finished"}
    if best_mode:
      summary["best_mode"] = best_mode
    write_run(workdir, {"seed": 0, "optimizer": "adam", "model": {"name": "lstm",
                                                                   "num_layers": layers}},
              lm_rows(), summary)
  return root


def read_csv(path):
  with open(path) as f:
    return {row["experiment"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def vit_report(tmp_path_factory):
  base = tmp_path_factory.mktemp("vit")
  root = make_vit_sweep(base / "sweep")
  out = base / "out"
  assert report.main([str(root), f"--out={out}", "--no_doctor"]) == 0
  return root, out


# ------------------------------------------------------------------------------- tables


def test_table_values_match_hand_computed(vit_report):
  _, out = vit_report
  rows = read_csv(out / "table.csv")
  assert set(rows) == set(TEST_ACC)
  r = rows["exp1_l2_adam"]
  assert r["metric"] == "accuracy" and r["metric_unit"] == "%" and r["best_mode"] == "max"
  assert r["seeds"] == "3" and r["seed_list"] == "0 1 2"
  assert float(r["num_params_mean"]) == 1000
  expected = {
      "sec_per_epoch": (2.0, 0.5),
      "peak_mib": (310.0, 10.0),
      "best_train": (91.6666667, 2.8867513),
      "best_val": (86.0, 1.0),
      "best_epoch": (2.3333333, 0.5773503),
      "test": (81.0, 1.0),
      "total_time_s": (11.0, 1.0),
  }
  for quantity, (mean, std) in expected.items():
    assert float(r[f"{quantity}_mean"]) == pytest.approx(mean, abs=1e-6), quantity
    assert float(r[f"{quantity}_std"]) == pytest.approx(std, abs=1e-6), quantity
  assert float(rows["exp2_l2_adamw"]["test_std"]) == pytest.approx(2.0)
  assert float(rows["exp3_l2_sgd"]["test_mean"]) == pytest.approx(51.0)


def test_markdown_shows_mean_std_and_na_memory(vit_report):
  _, out = vit_report
  md = (out / "table.md").read_text()
  line = next(l for l in md.splitlines() if l.startswith("| exp1_l2_adam "))
  cells = [c.strip() for c in line.strip("|").split("|")]
  assert cells[:11] == ["exp1_l2_adam", "3", "folder names seed_K", "1,000", "2.00 ± 0.50",
                        "310.0 ± 10.0", "91.67 ± 2.89", "86.00 ± 1.00", "2.3 ± 0.6",
                        "81.00 ± 1.00", "11.0 ± 1.0"]
  sgd = next(l for l in md.splitlines() if l.startswith("| exp3_l2_sgd "))
  assert [c.strip() for c in sgd.strip("|").split("|")][5] == "n/a"
  assert "max val accuracy (%)" in md and "test accuracy (%)" in md


def test_not_separated_mark_for_overlapping_pair_only(vit_report):
  _, out = vit_report
  rows = read_csv(out / "table.csv")
  # exp1 vs exp2 differ only in optimizer, same mean test accuracy -> not separated.
  assert rows["exp1_l2_adam"]["not_separated_from"].split() == ["exp2_l2_adamw"]
  # exp1 vs exp3 (optimizer) and exp2 vs exp4 (num_layers) are 30 and 10 points apart.
  assert "exp3_l2_sgd" in rows["exp1_l2_adam"]["separated_from"].split()
  assert rows["exp4_l4_adamw"]["separated_from"].split() == ["exp2_l2_adamw"]
  assert rows["exp4_l4_adamw"]["not_separated_from"] == ""
  # exp1 and exp4 differ in two factors: no comparison at all.
  assert "exp4_l4_adamw" not in (rows["exp1_l2_adam"]["separated_from"]
                                 + rows["exp1_l2_adam"]["not_separated_from"])
  md = (out / "table.md").read_text()
  assert "≈ exp2_l2_adamw [optimizer.name] p=1" in md
  assert "≠ exp2_l2_adamw [model.num_layers]" in md
  assert "Welch's t-test" in md and "equal_var=False" in md and "p ≥ 0.05" in md


def test_welch_matches_hand_computed_t():
  # exp2 vs exp4: t = 0.10 / sqrt(0.02²/3 + 0.01²/3) = 7.746; Welch df = 2.94; p ≈ 0.0047.
  sep = welch_separation([0.79, 0.83, 0.81], [0.90, 0.92, 0.91])
  assert sep.tested and sep.separated and sep.p_value == pytest.approx(0.0047, abs=5e-4)
  assert welch_separation([0.8], [0.9]).note == "single seed: no test"
  stat = seed_stat([1.0, None, 3.0])
  assert (stat.n, stat.mean, stat.std) == (2, 2.0, pytest.approx(2 ** 0.5))


def test_config_flattening_ignores_seed_and_paths():
  a = config_lib.comparable({"seed": 1, "workdir": "/a", "dataset": {"data_dir": "/x"},
                             "model": {"num_layers": 2}})
  b = config_lib.comparable({"seed": 2, "workdir": "/b", "dataset": {"data_dir": "/y"},
                             "model": {"num_layers": 4}})
  assert config_lib.differing_keys(a, b) == ["model.num_layers"]


# ------------------------------------------------------------------------------ perplexity


@pytest.mark.parametrize("best_mode", ["min", None])
def test_perplexity_lower_is_better(tmp_path, best_mode, capsys):
  root = make_lm_runs(tmp_path / "lm", best_mode)
  out = tmp_path / "out"
  assert report.main([str(root), f"--out={out}", "--no_doctor"]) == 0
  rows = read_csv(out / "table.csv")
  r = rows["lm_l1"]
  assert r["metric"] == "perplexity" and r["best_mode"] == "min"
  assert float(r["best_val_mean"]) == 150.0  # min, not the max 300 of epoch 1.
  assert float(r["best_epoch_mean"]) == 2.0
  assert float(r["best_train_mean"]) == 120.0
  assert float(r["test_mean"]) == 156.0
  assert r["best_val_std"] == ""  # A single seed has no sample std.
  assert r["untested_with"] == "lm_l2"
  md = (out / "table.md").read_text()
  assert "min val perplexity" in md and "single seed: no test" in md
  assert "| n/a |" in md  # peak_memory_bytes is null throughout.
  assert not metric_spec("perplexity").higher_is_better


# --------------------------------------------------------------------------------- figures


def _nonblank_png(path, shape):
  img = mpimg.imread(path)
  assert img.shape[:2] == shape, path
  assert float(np.var(img[..., :3])) > 1e-4, f"{path} looks blank"


def test_figures_exist_with_size_and_content(vit_report):
  _, out = vit_report
  pngs = sorted((out / "figures").rglob("*.png"))
  overlays = [p for p in pngs if p.name.startswith("overlay_")]
  per_run = [p for p in pngs if not p.name.startswith("overlay_")]
  assert {p.name for p in overlays} == {"overlay_val_accuracy.png", "overlay_train_accuracy.png",
                                        "overlay_val_loss.png"}
  assert len(per_run) == 12  # 4 experiments x 3 seeds.
  for path in overlays:
    _nonblank_png(path, figures.overlay_figure_size_px())
  for path in per_run:
    _nonblank_png(path, figures.run_figure_size_px())


def test_axis_labels_have_units():
  assert metric_spec("accuracy").axis_label == "accuracy (%)"
  assert metric_spec("loss").axis_label == "loss (nats)"
  assert metric_spec("perplexity").axis_label == "perplexity"
  assert figures.TIME_LABEL == "wall-clock time (s)" and figures.EPOCH_LABEL == "epoch"


# ------------------------------------------------------------------------------------ html


def test_html_is_self_contained(vit_report):
  root, out = vit_report
  page = (out / "report.html").read_text()
  srcs = re.findall(r"""src\s*=\s*["']([^"']*)""", page)
  assert len(srcs) == 15  # 3 overlays + 12 runs.
  assert all(s.startswith("data:image/png;base64,") for s in srcs)
  assert not re.search(r"<link|<script|href\s*=|url\(", page)
  assert "exp1_l2_adam" in page and "Welch" in page
  # Config differences from the set's first run: exp3 changes the optimizer adam -> sgd.
  assert "optimizer.name</code>: &quot;adam&quot; → &quot;sgd&quot;" in page


def test_html_shows_diagnosis_json_findings(tmp_path):
  root = make_lm_runs(tmp_path / "lm")
  (root / "lm_l1" / "diagnosis.json").write_text(json.dumps({"findings": [
      {"id": "overfitting", "severity": "warning", "epochs": [3],
       "evidence": "val perplexity rose 20% after epoch 2", "recommendations": ["more data"]}]}))
  result = build_report([root], tmp_path / "out")
  page = (tmp_path / "out" / "report.html").read_text()
  assert result.ok and "overfitting" in page and "val perplexity rose 20%" in page
  assert "more data" in page


# ------------------------------------------------------------------------------- bad input


def test_broken_runs_are_listed_and_report_still_written(tmp_path, capsys):
  root = make_lm_runs(tmp_path / "lm")
  truncated = root / "lm_truncated"
  write_run(truncated, {"seed": 0}, lm_rows())
  with open(truncated / "history.jsonl", "a") as f:
    f.write('{"epoch": 4, "train_lo')  # Killed mid-write.
  damaged = root / "lm_damaged"
  write_run(damaged, {"seed": 0}, lm_rows())
  lines = (damaged / "history.jsonl").read_text().splitlines()
  (damaged / "history.jsonl").write_text("\n".join([lines[0], '{"epoch": 2, "tra'] + lines[2:]))
  empty = root / "lm_empty"
  empty.mkdir()
  (empty / "history.jsonl").write_text("")
  (tmp_path / "nothing_here").mkdir()
  out = tmp_path / "out"
  code = report.main([str(root), str(tmp_path / "missing"), str(tmp_path / "nothing_here"),
                      f"--out={out}", "--no_doctor"])
  assert code == 0
  err = capsys.readouterr().err.splitlines()
  # A torn last line is dropped with a note (curvelab/runfiles.py's policy): the run is reported
  # from its three complete epochs. A broken line before the last leaves the run out.
  torn = [l for l in err if "lm_truncated" in l]
  assert len(torn) == 1 and "line 4" in torn[0] and "incomplete" in torn[0]
  assert "dropped" in torn[0] and "left out" not in torn[0]
  assert any("left out" in l and "lm_damaged" in l and "line 2 is not valid JSON" in l
             for l in err)
  assert any("lm_empty" in l and "history.jsonl is empty" in l for l in err)
  assert any("no such directory" in l and "missing" in l for l in err)
  assert any("no run found under" in l and "nothing_here" in l for l in err)
  assert set(read_csv(out / "table.csv")) == {"lm_l1", "lm_l2", "lm_truncated"}
  md = (out / "table.md").read_text()
  assert "Not in this table" in md and "lm_damaged" in md and "lm_empty" in md
  assert "lm_truncated" in md and "truncated mid-write" in md
  page = (out / "report.html").read_text()
  assert "lm_damaged" in page and "lm_empty" in page
  assert "lm_truncated" in page and "truncated mid-write" in page


def test_unknown_metric_gives_one_line_and_falls_back(tmp_path, capsys):
  root = make_lm_runs(tmp_path / "lm")
  out = tmp_path / "out"
  assert report.main([str(root), f"--out={out}", "--metric=wer", "--no_doctor"]) == 0
  err = [l for l in capsys.readouterr().err.splitlines() if "wer" in l]
  assert len(err) == 1 and "no run has metric 'wer'" in err[0] and "perplexity" in err[0]
  assert read_csv(out / "table.csv")["lm_l1"]["metric"] == "perplexity"


def test_explicit_metric_is_used(tmp_path):
  root = make_lm_runs(tmp_path / "lm")
  result = build_report([root], tmp_path / "out", metric="val_loss", run_doctor=False)
  assert [t.metric.name for t in result.tables] == ["loss"]
  assert result.tables[0].rows[0].stats["best_val"].mean == pytest.approx(3.1)  # min val_loss


def test_no_readable_run_exits_nonzero(tmp_path, capsys):
  bad = tmp_path / "bad"
  bad.mkdir()
  (bad / "history.jsonl").write_text("not json\n")
  assert report.main([str(bad), str(tmp_path / "missing"), f"--out={tmp_path / 'out'}"]) == 1
  err = capsys.readouterr().err
  assert "truncated" in err and "no run could be read" in err


def test_runs_lacking_an_asked_metric_are_left_out(tmp_path, capsys):
  make_lm_runs(tmp_path / "mixed")
  make_vit_sweep(tmp_path / "mixed" / "vit")
  result = build_report([tmp_path / "mixed"], tmp_path / "out", metric="accuracy",
                        run_doctor=False)
  assert {t.metric.name for t in result.tables} == {"accuracy"} and len(result.runs) == 12
  err = capsys.readouterr().err
  assert "lm_l1: no 'accuracy' metric in history.jsonl (it has: loss, perplexity)" in err
  assert "lm_l1" in (tmp_path / "out" / "table.md").read_text()  # Listed as left out.


# --------------------------------------------------------------------------- seed grouping

BY_FOLDER = "folder names seed_K"
BY_CONFIG = "configs equal except seed"


def hand_config(seed, workdir, learning_rate=1e-3, layers=2):
  """A config whose seed, output locations, label and data dir vary with the run."""
  return {"seed": seed, "workdir": str(workdir), "run_name": workdir.name,
          "logging": {"log_dir": f"/logs/{workdir.name}"}, "optimizer": "adam",
          "learning_rate": learning_rate,
          "model": {"name": "vit", "num_layers": layers, "drop_path": 0.1},
          "dataset": {"name": "digits", "data_dir": f"/data/{seed}", "train_split": "train"}}


def write_hand_run(workdir, seed, config=None, with_config=True):
  """A run with the per-seed numbers of exp1 (TEST_ACC, classification_rows), seed 0, 1 or 2."""
  config = hand_config(seed, workdir) if config is None else config
  summary = {"num_params": 1000, "test_accuracy": TEST_ACC["exp1_l2_adam"][seed],
             "total_time_s": 10.0 + seed, "best_metric": "val_accuracy", "best_mode": "max",
             "status": "finished", "config": config}
  write_run(workdir, config, classification_rows(seed), summary)
  if not with_config:
    (workdir / "config.json").unlink()  # summary.json still holds a copy of the config.


def hand_report(tmp_path, root):
  """Reports on root; returns (the table's rows by name, csv rows, table.md, report.html)."""
  out = tmp_path / "out"
  result = build_report([root], out, run_doctor=False, warn=lambda message: None)
  assert result.ok and len(result.tables) == 1
  rows = {row.name: row for row in result.tables[0].rows}
  return (rows, read_csv(out / "table.csv"), (out / "table.md").read_text(),
          (out / "report.html").read_text())


@pytest.mark.parametrize("nested", [True, False])
def test_configs_equal_except_seed_group_whatever_the_folder_names(tmp_path, nested):
  root = tmp_path / "handmade"
  parent = root / "lr_1e-3" if nested else root
  for folder, seed in (("seed1", 0), ("s2", 1), ("run_a", 2)):
    write_hand_run(parent / folder, seed)
  rows, csv_rows, md, page = hand_report(tmp_path, root)
  # Named after the folder the three runs have to themselves: lr_1e-3, or the root itself.
  name = "lr_1e-3" if nested else "handmade"
  assert list(rows) == [name] and [r.workdir.name for r in rows[name].runs] == [
      "seed1", "s2", "run_a"]  # In seed order 0, 1, 2.
  r = csv_rows[name]
  assert r["seeds"] == "3" and r["seed_list"] == "0 1 2" and r["seeds_grouped_by"] == BY_CONFIG
  # The exp1 numbers of test_table_values_match_hand_computed: 81 ± 1 %, 86 ± 1 %.
  assert float(r["test_mean"]) == pytest.approx(81.0) and float(r["test_std"]) == pytest.approx(1.0)
  assert float(r["best_val_mean"]) == pytest.approx(86.0)
  assert float(r["best_val_std"]) == pytest.approx(1.0)
  line = next(l for l in md.splitlines() if l.startswith(f"| {name} "))
  assert [c.strip() for c in line.strip("|").split("|")][:3] == [name, "3", BY_CONFIG]
  assert "seeds grouped by" in md and f"<td>{BY_CONFIG}</td>" in page


def test_a_different_learning_rate_is_its_own_row(tmp_path):
  root = tmp_path / "handmade"
  write_hand_run(root / "exp" / "seed1", 0)
  write_hand_run(root / "exp" / "s2", 1)
  workdir = root / "exp" / "run_a"
  write_hand_run(workdir, 2, hand_config(2, workdir, learning_rate=1e-2))
  rows, csv_rows, md, _ = hand_report(tmp_path, root)
  # exp/ is shared with run_a and "seed1"/"s2" have no common start: the first run's name.
  assert set(rows) == {"exp/seed1", "exp/run_a"}
  pair, alone = csv_rows["exp/seed1"], csv_rows["exp/run_a"]
  assert pair["seed_list"] == "0 1" and pair["seeds_grouped_by"] == BY_CONFIG
  # (0.80 + 0.82) / 2 = 81 %; std sqrt(2 · 1²) = 1.414 %.
  assert float(pair["test_mean"]) == pytest.approx(81.0)
  assert float(pair["test_std"]) == pytest.approx(2 ** 0.5)
  assert alone["seeds"] == "1" and alone["seeds_grouped_by"].startswith("none")
  assert "exp/seed1 [optimizer.learning_rate]" in md  # The two rows differ in exactly that factor.


def test_config_groups_are_named_by_common_folder_prefix(tmp_path):
  root = tmp_path / "handmade"
  for layers in (2, 4):
    for seed in (0, 1):
      workdir = root / f"l{layers}_try{seed + 1}"
      write_hand_run(workdir, seed, hand_config(seed, workdir, layers=layers))
  rows, csv_rows, md, _ = hand_report(tmp_path, root)
  # A layer count is part of the identity: two groups, named without the "_tryK".
  assert set(rows) == {"l2", "l4"}
  assert all(csv_rows[n]["seeds"] == "2" and csv_rows[n]["seeds_grouped_by"] == BY_CONFIG
             for n in rows)
  assert "l4 [model.num_layers]" in md


def test_seed_k_layout_is_grouped_by_folder_names(vit_report):
  _, out = vit_report
  rows = read_csv(out / "table.csv")
  assert set(rows) == set(TEST_ACC)
  assert {r["seeds_grouped_by"] for r in rows.values()} == {BY_FOLDER}
  assert all(r["seeds"] == "3" for r in rows.values())
  assert f"| {BY_FOLDER} |" in (out / "table.md").read_text()


def test_seed_k_groups_stay_closed_and_names_stay_unique(tmp_path):
  root = tmp_path / "mixed"
  for seed in (0, 1):
    write_hand_run(root / "exp1" / f"seed_{seed}", seed)
    workdir = root / f"exp1_try{seed + 1}"
    write_hand_run(workdir, seed, hand_config(seed, workdir, layers=4))
  extra = root / "exp1_extra"  # Same config as exp1/seed_K, seed 2, outside the folders.
  write_hand_run(extra, 2)
  rows, csv_rows, _, _ = hand_report(tmp_path, root)
  # The folder group keeps its name; the config group's label "exp1" is taken, so "exp1 (2)".
  assert set(rows) == {"exp1", "exp1 (2)", "exp1_extra"}
  assert csv_rows["exp1"]["seed_list"] == "0 1"
  assert csv_rows["exp1"]["seeds_grouped_by"] == BY_FOLDER
  assert [r.workdir.name for r in rows["exp1 (2)"].runs] == ["exp1_try1", "exp1_try2"]
  assert csv_rows["exp1 (2)"]["seeds_grouped_by"] == BY_CONFIG
  assert csv_rows["exp1_extra"]["seeds"] == "1"


def test_runs_without_config_json_or_seed_are_not_grouped(tmp_path):
  root = tmp_path / "handmade"
  write_hand_run(root / "seed1", 0, with_config=False)
  write_hand_run(root / "s2", 1, with_config=False)
  for folder in ("noseed_a", "noseed_b"):
    config = hand_config(0, root / "x")  # Equal configs (paths included) ...
    del config["seed"]  # ... but nothing says they are different seeds.
    write_hand_run(root / folder, 0, config)
  rows, csv_rows, _, _ = hand_report(tmp_path, root)
  assert set(rows) == {"seed1", "s2", "noseed_a", "noseed_b"}
  assert csv_rows["seed1"]["seeds_grouped_by"] == "none (no config.json)"
  assert csv_rows["s2"]["seeds_grouped_by"] == "none (no config.json)"
  assert csv_rows["noseed_a"]["seeds_grouped_by"] == "none (no seed in config.json)"


def test_equal_configs_with_a_repeated_seed_are_not_grouped(tmp_path):
  root = tmp_path / "handmade"
  write_hand_run(root / "seed1", 0)
  write_hand_run(root / "s2", 1)
  write_hand_run(root / "s2_copy", 1)  # A copy or re-run of seed 1.
  rows, csv_rows, md, page = hand_report(tmp_path, root)
  # Documented in reporting/seeds.py: which run is "the" seed 1 is unknowable, so none of
  # this config's runs is grouped and a footnote says why.
  assert set(rows) == {"seed1", "s2", "s2_copy"}
  assert {r["seeds_grouped_by"] for r in csv_rows.values()} == {
      "none (equal configs, repeated seed)"}
  assert "repeat a seed (seed 1: s2, s2_copy)" in md and "repeat a seed" in page


def test_identity_ignores_seed_outputs_and_labels_only():
  from reporting import seeds  # pylint: disable=import-outside-toplevel
  config = {"seed": 3, "workdir": "/w", "run_name": "a", "label": "x", "name": "try2",
            "trainer": {"output_dir": "/o", "checkpoint_dir": "/c"},
            "dataset": {"name": "digits", "data_dir": "/d", "train_path": "/t.npz"},
            "model": {"name": "vit", "drop_path": 0.1, "embedding_path": "/e.npy"}}
  assert seeds.identity(config) == {
      "dataset.name": "digits", "dataset.train_path": "/t.npz", "model.name": "vit",
      "model.drop_path": 0.1, "model.embedding_path": "/e.npy"}
  # Run labels are not one-factor comparison factors either; `model.name` is.
  assert config_lib.is_ignored("run_name") and not config_lib.is_ignored("model.name")


def test_drop_path_is_a_factor_not_a_path():
  from reporting import configs  # pylint: disable=g-import-not-at-top
  assert not configs.is_ignored("model.drop_path")
  assert configs.is_ignored("dataset.train_path") and configs.is_ignored("workdir")
  assert configs.differing_keys(configs.comparable({"model": {"drop_path": 0.1}, "seed": 0}),
                                configs.comparable({"model": {"drop_path": 0.2}, "seed": 1})) == [
                                    "model.drop_path"]


# ------------------------------------------------------------------- published study numbers

PUBLISHED = REPO / "experiments" / "reference_published.py"
COMPARISON = "### Against the published study"


def vit_protocol_rows():
  """Three epochs: max train 0.66 (epoch 2), max val 0.67 (epoch 2) -> 66.00 % and 67.00 %."""
  train, val = [0.30, 0.66, 0.64], [0.40, 0.67, 0.65]
  return [{"epoch": i + 1, "step": i + 1, "train_loss": 1.0, "val_loss": 1.0,
           "learning_rate": 1e-3, "epoch_time_s": 2.0, "eval_time_s": 0.5,
           "elapsed_s": 2.5 * (i + 1), "examples_per_s": 100.0, "peak_memory_bytes": 500 * MIB,
           "train_accuracy": train[i], "val_accuracy": val[i]} for i in range(3)]


def write_protocol_run(workdir, optimizer, layers, test, last_test=None, seed=0,
                       dataset="cifar10"):
  """A ViT run; `last_test` None writes a summary without `last_test_*` (an older run)."""
  config = {"seed": seed, "workdir": str(workdir), "optimizer": optimizer, "num_epochs": 10,
            "model": {"name": "vit", "num_layers": layers, "block": "prenorm"},
            "dataset": {"name": dataset}}
  summary = {"num_params": 1_086_730, "test_accuracy": test, "test_loss": 1.0,
             "total_time_s": 7.5, "best_metric": "val_accuracy", "best_mode": "max",
             "device_kind": "cpu", "status": "finished"}
  if last_test is not None:
    summary.update({"last_test_accuracy": last_test, "last_test_loss": 1.1, "last_epoch": 3})
  write_run(workdir, config, vit_protocol_rows(), summary)


@pytest.fixture(scope="module")
def published_report(tmp_path_factory):
  """Five ViT rows reported with --published; returns (out dir, stderr lines).

  exp1 (l=2 adam) and exp2 (l=2 adamw) match study rows 1 and 2; exp3_l2_sgd matches row 4
  (the study's Table 2 calls sgd 4, our experiment set calls it exp3); l3_adam matches
  nothing. exp2 is an older run without `last_test_*`, on digits; exp3 has two seeds of which
  only seed 0 wrote `last_test_accuracy`.
  """
  base = tmp_path_factory.mktemp("published")
  root = base / "runs"
  write_protocol_run(root / "exp1_l2_adam", "adam", 2, test=0.62, last_test=0.60)
  write_protocol_run(root / "exp2_l2_adamw", "adamw", 2, test=0.63, dataset="digits")
  write_protocol_run(root / "exp3_l2_sgd" / "seed_0", "sgd", 2, test=0.21, last_test=0.20)
  write_protocol_run(root / "exp3_l2_sgd" / "seed_1", "sgd", 2, test=0.23, seed=1)
  write_protocol_run(root / "l3_adam", "adam", 3, test=0.70, last_test=0.69)
  out = base / "out"
  lines = []
  result = build_report([root], out, run_doctor=False, warn=lines.append,
                        published=load_published(PUBLISHED))
  assert result.ok and len(result.tables) == 1
  return out, lines


def md_table(md, heading):
  """Parses the markdown table after `heading` into {first cell: {header: cell}}."""
  lines = md.splitlines()
  start = lines.index(heading) + 2
  split = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]
  headers = split(lines[start])
  rows = {}
  for line in lines[start + 2:]:
    if not line.startswith("|"):
      break
    cells = split(line)
    rows[cells[0]] = dict(zip(headers, cells))
  return rows


def test_published_file_holds_the_study_numbers_by_settings():
  published = load_published(PUBLISHED)
  vit, lstm = published.sets
  assert vit.settings == ("model.name", "model.num_layers", "optimizer.name", "model.block")
  # Table 2 row 3 is momentum, row 4 sgd, whatever our experiment set calls them.
  sgd = vit.entries[("vit", 2, "sgd", "prenorm")]
  momentum = vit.entries[("vit", 2, "momentum", "prenorm")]
  assert (sgd.row, sgd.figures["final_test"], sgd.figures["best_val"]) == (4, 19.65, 19.61)
  assert (momentum.row, momentum.figures["final_test"]) == (3, 28.88)
  post = vit.entries[("vit", 6, "adamw", "postnorm")]
  assert post.figures == {"sec_per_epoch": 22.36, "best_train": 72.01, "best_val": 74.90,
                          "final_test": 67.97, "num_params": 3_195_146, "memory_mib": 3254.6}
  assert lstm.entries[("lstm_lm", 1, "sgd")].row == 4
  assert lstm.entries[("lstm_lm", 1, "sgd")].figures == {"sec_per_epoch": 38.20,
                                                         "final_test": 2088.86}
  assert len(vit.entries) == 7 and len(lstm.entries) == 6


def test_published_columns_in_markdown(published_report):
  out, _ = published_report
  md = (out / "table.md").read_text()
  rows = md_table(md, COMPARISON)
  assert list(rows) == ["exp1_l2_adam", "exp2_l2_adamw", "exp3_l2_sgd", "l3_adam"]
  exp1, sgd = rows["exp1_l2_adam"], rows["exp3_l2_sgd"]
  assert exp1["study row (Table 2)"] == "1" and sgd["study row (Table 2)"] == "4"
  assert exp1["study max train accuracy (%)"] == "64.08"
  assert exp1["study max val accuracy (%)"] == "65.25"
  assert exp1["study test accuracy (%) (final model)"] == "61.63"
  assert exp1["study params"] == "1,086,730" and exp1["ours params"] == "1,086,730"
  assert exp1["study train s/epoch (its GPU)"] == "8.05"
  assert exp1["study GPU memory (MiB, whole card)"] == "2,341.9"
  assert exp1["ours peak memory (MiB)"] == "500.0"
  assert sgd["study test accuracy (%) (final model)"] == "19.65"
  assert sgd["study max val accuracy (%)"] == "19.61"
  assert rows["exp2_l2_adamw"]["study row (Table 2)"] == "2"
  # Ours in the study's protocol: max over epochs (0.66, 0.67) for every row.
  assert exp1["ours max train accuracy (%)"] == "66.00"
  assert exp1["ours max val accuracy (%)"] == "67.00"
  # No match: every study cell blank, ours still shown.
  unmatched = rows["l3_adam"]
  assert all(v == "" for k, v in unmatched.items() if k.startswith("study"))
  assert unmatched["ours test accuracy (%) (final model)"] == "69.00"


def test_final_and_best_checkpoint_test_columns(published_report):
  out, _ = published_report
  rows = md_table((out / "table.md").read_text(), COMPARISON)
  final = "ours test accuracy (%) (final model)"
  best = "ours test accuracy (%) (best val checkpoint)"
  assert (rows["exp1_l2_adam"][final], rows["exp1_l2_adam"][best]) == ("60.00", "62.00")
  # exp2 wrote no last_test_*: a dash, and the best checkpoint's 63 % still shown.
  assert (rows["exp2_l2_adamw"][final], rows["exp2_l2_adamw"][best]) == ("—", "63.00")
  # exp3: only seed 0 has a final-model test (20 %); best is (21 + 23) / 2 = 22 ± 1.41.
  assert rows["exp3_l2_sgd"][final] == "20.00 (1 of 2 seeds)"
  assert rows["exp3_l2_sgd"][best] == "22.00 ± 1.41"


def test_published_columns_in_csv(published_report):
  out, _ = published_report
  rows = read_csv(out / "table.csv")
  exp1, exp2, sgd, unmatched = (rows[n] for n in ("exp1_l2_adam", "exp2_l2_adamw",
                                                   "exp3_l2_sgd", "l3_adam"))
  assert (exp1["study_table"], exp1["study_row"]) == ("Table 2", "1")
  assert float(exp1["study_final_test"]) == 61.63 and float(exp1["study_best_val"]) == 65.25
  assert float(exp1["study_best_train"]) == 64.08 and exp1["study_num_params"] == "1086730"
  assert float(exp1["study_sec_per_epoch"]) == 8.05
  assert float(exp1["study_memory_mib"]) == 2341.9
  assert sgd["study_row"] == "4" and float(sgd["study_final_test"]) == 19.65
  assert float(exp1["last_test_mean"]) == pytest.approx(60.0)
  assert float(exp1["test_mean"]) == pytest.approx(62.0)
  assert exp2["last_test_mean"] == "" and float(exp2["test_mean"]) == pytest.approx(63.0)
  assert float(sgd["last_test_mean"]) == pytest.approx(20.0) and sgd["last_test_std"] == ""
  assert all(unmatched[k] == "" for k in unmatched if k.startswith("study_"))


def test_published_columns_in_html(published_report):
  out, _ = published_report
  page = (out / "report.html").read_text()
  section = page[page.index("<h3>Against the published study</h3>"):]
  table = section[:section.index("</table>")]
  assert "<th>study test accuracy (%) (final model)</th>" in table
  assert "<th>ours test accuracy (%) (best val checkpoint)</th>" in table
  sgd = re.search(r"<tr><td>exp3_l2_sgd</td>(.*?)</tr>", table).group(1)
  assert sgd.startswith("<td>4</td>") and "<td>19.65</td>" in sgd
  assert "<td>20.00 (1 of 2 seeds)</td>" in sgd
  assert "<td>—</td>" in re.search(r"<tr><td>exp2_l2_adamw</td>(.*?)</tr>", table).group(1)


def test_published_footnotes(published_report):
  out, _ = published_report
  md = (out / "table.md").read_text()
  notes = md[md.index(COMPARISON):]
  assert "Chamorro" in notes and "reference_published.py" in notes
  assert "not comparable across devices" in notes and "ours on cpu" in notes
  assert "3 = momentum and 4 = sgd" in notes
  assert "`last_test_accuracy`" in notes and "final-epoch model" in notes
  # exp2 ran on digits: flagged; exp1 ran the study's protocol: not.
  assert "exp2_l2_adamw: dataset.name = digits (study: cifar10)" in notes
  assert "exp1_l2_adam:" not in notes


def test_lm_rows_get_the_study_perplexity(tmp_path):
  workdir = tmp_path / "runs" / "lm4_l1_sgd"
  config = {"seed": 0, "optimizer": "sgd", "num_epochs": 10,
            "model": {"name": "lstm_lm", "num_layers": 1}, "dataset": {"name": "wikitext2"}}
  summary = {"num_params": 5000, "test_perplexity": 150.0, "last_test_perplexity": 170.0,
             "best_metric": "val_perplexity", "best_mode": "min", "status": "finished"}
  write_run(workdir, config, lm_rows(), summary)
  out = tmp_path / "out"
  assert report.main([str(tmp_path / "runs"), f"--out={out}", "--no_doctor",
                      f"--published={PUBLISHED}"]) == 0
  row = md_table((out / "table.md").read_text(), COMPARISON)["lm4_l1_sgd"]
  # Table 1 row 4 is sgd (2088.86); ours: final model 170, best val checkpoint 150.
  assert row == {"experiment": "lm4_l1_sgd", "study row (Table 1)": "4",
                 "study test perplexity (final model)": "2,088.86",
                 "ours test perplexity (final model)": "170.0",
                 "ours test perplexity (best val checkpoint)": "150.0",
                 "study train s/epoch (its GPU)": "38.20", "ours train s/epoch": "3.00"}


def test_no_published_columns_without_the_flag(vit_report):
  _, out = vit_report
  assert COMPARISON not in (out / "table.md").read_text()
  header = (out / "table.csv").read_text().splitlines()[0].split(",")
  assert "last_test_mean" in header and not any(h.startswith("study_") for h in header)


def test_published_but_no_match_says_so(tmp_path, capsys):
  root = make_lm_runs(tmp_path / "lm")  # model.name "lstm", not the study's "lstm_lm".
  out = tmp_path / "out"
  assert report.main([str(root), f"--out={out}", "--no_doctor", f"--published={PUBLISHED}"]) == 0
  assert "no row matches an entry of" in capsys.readouterr().err
  assert COMPARISON not in (out / "table.md").read_text()
  assert read_csv(out / "table.csv")["lm_l1"]["study_row"] == ""


@pytest.mark.parametrize("content, expected", [
    (None, "no such file"),
    ("PUBLISHED = [\n", "not valid Python"),
    ("raise RuntimeError('boom')\n", "fails to import: RuntimeError: boom"),
    ("SOURCE = 'x'\n", "defines no PUBLISHED list"),
    ("PUBLISHED = [{'name': 'a', 'table': 'T', 'metric': 'accuracy', 'settings': ('optimizer.name',),"
     " 'entries': {('adam', 2): {'table_row': 1}}}]\n", "has 2 setting value(s)"),
    ("PUBLISHED = [{'name': 'a', 'table': 'T', 'metric': 'accuracy', 'settings': ('optimizer.name',),"
     " 'entries': {('adam',): {'table_row': 1, 'test_accuracy': 61.6}}}]\n",
     "unknown figure(s) test_accuracy"),
])
def test_bad_published_file_is_one_line_and_exit_2(tmp_path, capsys, content, expected):
  path = tmp_path / "published.py"
  if content is not None:
    path.write_text(content)
  root = make_lm_runs(tmp_path / "lm")
  out = tmp_path / "out"
  assert report.main([str(root), f"--out={out}", f"--published={path}"]) == 2
  err = capsys.readouterr().err.splitlines()
  assert len(err) == 1 and err[0].startswith("report: --published: ")
  assert str(path) in err[0] and expected in err[0]
  assert not out.exists()  # Checked before any run is read or file written.


# ------------------------------------------------------------------------------- one set


def test_set_puts_runs_of_several_folders_in_one_table_and_overlay(tmp_path):
  """`--set NAME`: ViT rows from one folder and a CNN row from another, side by side."""
  vit_root, cnn_root = tmp_path / "vit", tmp_path / "cnn"
  for seed in (0, 1):
    workdir = vit_root / "exp1_l2_adam" / f"seed_{seed}"
    write_run(workdir, vit_config("exp1_l2_adam", seed, workdir), classification_rows(seed),
              {"test_accuracy": 0.6, "best_metric": "val_accuracy", "best_mode": "max"})
  cnn = cnn_root / "cnn_fast" / "seed_0"
  write_run(cnn, {"seed": 0, "model": {"name": "fast_cnn"}}, classification_rows(0),
            {"test_accuracy": 0.87, "best_metric": "val_accuracy", "best_mode": "max"})
  out = tmp_path / "out"
  assert report.main([str(vit_root), str(cnn_root), f"--out={out}", "--no_doctor",
                      "--set=vit_vs_cnn"]) == 0
  rows = read_csv(out / "table.csv")
  assert sorted(rows) == ["cnn_fast", "exp1_l2_adam"]
  figures = sorted(p.name for p in (out / "figures").iterdir())
  assert figures == ["set1_vit_vs_cnn_accuracy"]  # One set: one overlay over epochs and time.
  assert (out / "figures" / figures[0] / "overlay_val_accuracy.png").is_file()
  # Without --set, each folder is its own set.
  assert report.main([str(vit_root), str(cnn_root), f"--out={tmp_path / 'apart'}",
                      "--no_doctor"]) == 0
  assert len(list((tmp_path / "apart" / "figures").iterdir())) == 2
