"""Tests of the doctor's readers (CSV, JSON, JSON lines, curvelab workdirs, sweeps), the run
comparison and the diagnose.py command line."""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import diagnostics
from diagnostics import ReadError, diagnose_run, load
from diagnostics import synthetic as S
from diagnostics.compare import compare_runs

ROOT = Path(__file__).resolve().parents[1]


def write_csv(path: Path, rows: list, columns: list) -> Path:
  with path.open("w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
      writer.writerow(row)
  return path


def write_workdir(path: Path, rows: list, config: dict | None = None,
                  summary: dict | None = None) -> Path:
  path.mkdir(parents=True, exist_ok=True)
  (path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  if config is not None:
    (path / "config.json").write_text(json.dumps(config))
  if summary is not None:
    (path / "summary.json").write_text(json.dumps(summary))
  return path


def keras_rows(rows: list) -> list:
  """curvelab rows renamed the way Keras' CSVLogger writes them (0-based epochs)."""
  return [{"epoch": r["epoch"] - 1, "loss": r["train_loss"], "val_loss": r["val_loss"],
           "accuracy": 0.9, "val_accuracy": r.get("val_accuracy", 0.9),
           "lr": r["learning_rate"], "batch_time_ms": 12} for r in rows]


def ids_of(run) -> set:
  return {f.id for f in diagnose_run(run)}


# --- readers ------------------------------------------------------------------------------------


def test_keras_csv_aliases_and_ignored_columns(tmp_path):
  path = write_csv(tmp_path / "training.log.csv", keras_rows(S.overfitting()),
                   ["epoch", "accuracy", "loss", "lr", "val_accuracy", "val_loss",
                    "batch_time_ms"])
  (run,) = load(str(path))
  assert run.source == "csv" and not run.is_curvelab
  assert run.ignored_columns == ["batch_time_ms"]
  assert set(run.rows[0]) >= {"epoch", "train_loss", "val_loss", "train_accuracy",
                              "val_accuracy", "learning_rate"}
  assert run.rows[0]["epoch"] == 0  # the file's own epoch numbers are kept
  found = diagnose_run(run)
  overfit = next(f for f in found if f.id == "overfitting")
  original = next(f for f in diagnostics.diagnose_history(S.overfitting()) if f.id == "overfitting")
  # Epochs are reported as the file numbers them (Keras counts from 0).
  assert overfit.evidence["best_epoch"] == original.evidence["best_epoch"] - 1
  assert not any("--config" in r for f in found for r in f.recommendations)


def test_lightning_csv_rows_are_merged_per_epoch(tmp_path):
  text = ("epoch,step,train_loss_step,train_loss_epoch,val_loss,val_acc,lr-Adam\n"
          "0,49,1.5,,,,0.001\n0,99,1.2,,,,0.001\n0,99,,,1.1,0.7,\n0,99,,1.3,,,\n"
          "1,149,1.0,,,,0.001\n1,199,,,0.95,0.75,\n1,199,,0.95,,,\n")
  (tmp_path / "metrics.csv").write_text(text)
  (run,) = load(str(tmp_path))  # found by its conventional name inside the directory
  assert run.rows == [
      {"epoch": 0, "step": 99, "learning_rate": 0.001, "val_loss": 1.1, "val_accuracy": 0.7,
       "train_loss": 1.3},
      {"epoch": 1, "step": 199, "learning_rate": 0.001, "val_loss": 0.95, "val_accuracy": 0.75,
       "train_loss": 0.95}]
  assert run.ignored_columns == ["train_loss_step"]


def test_json_object_of_columns_keras_history(tmp_path):
  path = tmp_path / "history.json"
  path.write_text('{"loss": [2.0, 1.0, 0.8, 0.7, NaN], "val_loss": [1.8, 1.1, 0.9, 0.85],'
                  ' "accuracy": [0.3, 0.6, 0.7, 0.75, 0.1], "val_accuracy": [0.4, 0.6, 0.7, 0.7]}')
  (run,) = load(str(path))
  assert run.source == "json" and len(run.rows) == 5
  assert "val_loss" not in run.rows[4] and math.isnan(run.rows[4]["train_loss"])
  diverged = next(f for f in diagnose_run(run) if f.id == "diverged")
  assert diverged.epochs == [5]


def test_json_list_of_rows_and_wrapper(tmp_path):
  rows = [{"epoch": r["epoch"], "train_loss": r["train_loss"], "valid_loss": r["val_loss"],
           "epoch_time": 3.0} for r in S.not_converged()]
  (tmp_path / "a.json").write_text(json.dumps(rows))
  (tmp_path / "b.json").write_text(json.dumps({"history": rows}))
  for name in ("a.json", "b.json"):
    (run,) = load(str(tmp_path / name))
    assert run.rows[0]["val_loss"] == rows[0]["valid_loss"]
    assert run.rows[0]["epoch_time_s"] == 3.0
    assert "not_converged" in ids_of(run)


def test_jsonl_with_time_column_cumulative_or_per_epoch(tmp_path):
  base = S.healthy(n=6)
  cumulative = [{"epoch": r["epoch"], "loss": r["train_loss"], "val_loss": r["val_loss"],
                 "time": 10.0 * r["epoch"]} for r in base]
  per_epoch = [dict(r, time=10.0 + 0.1 * (r["epoch"] % 2)) for r in cumulative]
  (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in cumulative))
  (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in per_epoch))
  assert load(str(tmp_path / "c.jsonl"))[0].rows[2]["elapsed_s"] == 30.0
  assert load(str(tmp_path / "p.jsonl"))[0].rows[2]["epoch_time_s"] == pytest.approx(10.1)


def test_unprefixed_decoding_metrics_are_validation(tmp_path):
  path = tmp_path / "asr.csv"
  path.write_text("epoch,loss,valid_loss,wer,bleu,test_loss\n1,3.0,3.1,0.9,1.0,3.2\n"
                  "2,2.0,2.2,0.7,5.0,2.3\n")
  (run,) = load(str(path))
  assert run.rows[1] == {"epoch": 2, "train_loss": 2.0, "val_loss": 2.2, "val_wer": 0.7,
                         "val_bleu": 5.0}
  assert run.ignored_columns == ["test_loss"]  # validation columns exist


def test_test_columns_stand_in_for_missing_validation(tmp_path):
  path = tmp_path / "pt.csv"
  path.write_text("epoch,train_loss,test_loss,test_acc\n1,2.0,1.9,0.3\n2,1.0,1.1,0.6\n")
  (run,) = load(str(path))
  assert run.rows[0] == {"epoch": 1, "train_loss": 2.0, "val_loss": 1.9, "val_accuracy": 0.3}
  assert any("test_" in note for note in run.notes)


def test_curvelab_workdir_reads_config_and_summary(tmp_path):
  wd = write_workdir(tmp_path / "run", S.overfitting(),
                     config={"seed": 0, "learning_rate": 1e-3, "weight_decay": 1e-4,
                             "model": {"dropout": 0.1}, "dataset": {"num_classes": 10}},
                     summary={"num_params": 2_000_000, "num_train_examples": 1437,
                              "best_metric": "val_loss", "status": "finished"})
  (run,) = load(str(wd))
  assert run.is_curvelab and run.num_classes == 10 and run.seed == 0
  found = {f.id: f for f in diagnose_run(run)}
  assert {"overfitting", "capacity_vs_data"} <= set(found)
  assert found["overfitting"].recommendations[0] == \
      "--config.model.dropout=0.3 --config.optimizer.weight_decay=1e-3"


def test_truncated_last_line_of_a_running_workdir(tmp_path):
  wd = write_workdir(tmp_path / "run", S.healthy(n=5))
  with (wd / "history.jsonl").open("a") as f:
    f.write('{"epoch": 6, "train_lo')
  (run,) = load(str(wd))
  assert len(run.rows) == 5 and "incomplete" in run.notes[0]


def test_sweep_directory_expands_to_its_workdirs(tmp_path):
  for seed in (0, 1):
    write_workdir(tmp_path / "sweep" / "wide" / f"seed_{seed}", S.healthy(seed=seed))
  runs = load(str(tmp_path / "sweep"))
  assert [Path(r.path).name for r in runs] == ["seed_0", "seed_1"]
  assert [r.seed for r in runs] == [0, 1]


@pytest.mark.parametrize("content, message", [
    ("", "file is empty"),
    ("   \n", "file is empty"),
    ('{"loss": [1, 2', "not valid JSON"),
    ("just one column\n1\n2\n", "not a CSV history"),
    ("a,b\n1,2\n3,4\n", "no recognised per-epoch columns (found: a, b)"),
])
def test_unreadable_files_raise_one_clear_line(tmp_path, content, message):
  suffix = ".json" if content.startswith("{") else ".csv"
  path = tmp_path / f"h{suffix}"
  path.write_text(content)
  with pytest.raises(ReadError) as err:
    load(str(path))
  assert message in str(err.value) and str(path) in str(err.value)
  assert "\n" not in str(err.value)


def test_missing_path_and_empty_directory(tmp_path):
  with pytest.raises(ReadError, match="no such file or directory"):
    load(str(tmp_path / "nope"))
  with pytest.raises(ReadError, match="TensorBoard event files found"):
    load(str(tmp_path))


# --- comparison ---------------------------------------------------------------------------------


def _timed(rows: list, seconds: float) -> list:
  elapsed = 0.0
  for row in rows:
    elapsed += seconds
    row["epoch_time_s"], row["elapsed_s"] = seconds, elapsed
  return rows


def test_compare_equal_epochs_and_equal_time(tmp_path):
  # "slow" learns more per epoch but each epoch takes 5x longer.
  fast = write_workdir(tmp_path / "fast", _timed(S.not_converged(n=30, tau=10), 1.0))
  slow = write_workdir(tmp_path / "slow", _timed(S.healthy(n=10, tau=2), 5.0))
  runs = load(str(fast)) + load(str(slow))
  comparison = compare_runs(runs, {r.path: diagnose_run(r) for r in runs})
  assert comparison["metric"] == "val_loss"
  assert comparison["equal_epochs"]["epochs"] == 10
  assert comparison["equal_epochs"]["leader"] == str(slow)
  assert comparison["equal_time"]["seconds"] == 30.0
  assert comparison["equal_time"]["epochs_within"] == {str(fast): 30, str(slow): 6}
  json.dumps(comparison, allow_nan=False)


def test_compare_flags_a_run_stopped_while_still_improving(tmp_path):
  deep = write_workdir(tmp_path / "deep", S.not_converged(n=15, tau=12))
  shallow = write_workdir(tmp_path / "shallow", S.healthy(n=30, tau=3))
  runs = load(str(deep)) + load(str(shallow))
  comparison = compare_runs(runs, {r.path: diagnose_run(r) for r in runs})
  assert comparison["final_leader"] == str(shallow)
  assert comparison["still_improving"] == [str(deep)]
  assert any("stopped too early" in n and n.startswith(str(deep)) for n in comparison["notes"])


def _seed_sweep(root: Path, name: str, offset: float, layers: int) -> None:
  for seed in range(3):
    rows = S.healthy(n=30, seed=seed, noise=0.02)
    for row in rows:
      row["val_loss"] += offset
      row["val_accuracy"] -= offset  # the comparison prefers the accuracy
    write_workdir(root / name / f"seed_{seed}", rows,
                  config={"seed": seed, "model": {"num_layers": layers}})


def test_seed_noise_decides_whether_a_difference_is_real(tmp_path):
  _seed_sweep(tmp_path, "a", 0.0, 2)
  _seed_sweep(tmp_path, "b", 0.0005, 4)  # far below the seed spread
  _seed_sweep(tmp_path, "c", 0.2, 8)
  runs = load(str(tmp_path))
  comparison = compare_runs(runs, {r.path: diagnose_run(r) for r in runs})
  assert len(comparison["seed_groups"]) == 3
  verdicts = {(v["a"], v["b"]): v["within_seed_noise"] for v in comparison["seed_comparisons"]}
  a, b, c = (str(tmp_path / n) for n in "abc")
  assert verdicts[(a, b)] is True
  assert verdicts[(a, c)] is False and verdicts[(b, c)] is False


# --- command line -------------------------------------------------------------------------------


def run_cli(*args, cwd=ROOT):
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  return subprocess.run([sys.executable, str(ROOT / "diagnose.py"), *map(str, args)],
                        capture_output=True, text=True, cwd=cwd, env=env, timeout=60)


def test_cli_json_schema_for_several_paths(tmp_path):
  wd = write_workdir(tmp_path / "wd", S.overfitting(), config={"seed": 1})
  csv_path = write_csv(tmp_path / "log.csv", keras_rows(S.healthy()),
                       ["epoch", "loss", "val_loss", "lr", "batch_time_ms"])
  result = run_cli(wd, csv_path, "--json")
  assert result.returncode == 0, result.stderr
  doc = json.loads(result.stdout)
  assert [r["path"] for r in doc["runs"]] == [str(wd), str(csv_path)]
  for run in doc["runs"]:
    assert run["findings"]
    for finding in run["findings"]:
      assert set(finding) >= {"id", "severity", "epochs", "evidence", "recommendations"}
      assert "text" in finding["evidence"]
  assert doc["runs"][1]["ignored_columns"] == ["batch_time_ms"]
  assert doc["comparison"]["metric"] == "val_loss"
  overfit = next(f for f in doc["runs"][0]["findings"] if f["id"] == "overfitting")
  assert overfit["recommendations"][0].startswith("--config.")


def test_cli_text_output_and_patience_option(tmp_path):
  wd = write_workdir(tmp_path / "wd", S.overfitting(turn=12))
  result = run_cli(wd, "--patience", "8")
  assert result.returncode == 0, result.stderr
  assert "overfitting" in result.stdout and "patience 8" in result.stdout
  assert "try: --config." in result.stdout


def test_cli_bad_path_is_one_line_without_traceback(tmp_path):
  result = run_cli(tmp_path / "missing")
  assert result.returncode != 0
  assert result.stderr.strip().count("\n") == 0
  assert "no such file or directory" in result.stderr and "Traceback" not in result.stderr


def test_cli_empty_and_garbage_files(tmp_path):
  (tmp_path / "empty.csv").write_text("")
  (tmp_path / "bad.json").write_text("{nope")
  good = write_workdir(tmp_path / "good", S.healthy(n=10))
  result = run_cli(tmp_path / "empty.csv", tmp_path / "bad.json", good, "--json")
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 2 and "file is empty" in lines[0] and "not valid JSON" in lines[1]
  assert "Traceback" not in result.stderr
  assert [r["path"] for r in json.loads(result.stdout)["runs"]] == [str(good)]


def test_cli_rejects_bad_options():
  result = run_cli("x", "--patience", "0")
  assert result.returncode == 2 and "--patience" in result.stderr


def test_package_exports_the_training_loop_api():
  assert {"diagnose_history", "Finding", "OnlineDoctor"} <= set(diagnostics.__all__)
