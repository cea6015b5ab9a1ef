"""The doctor on logs other frameworks really wrote.

Three sources, none written by curvelab:
* `tests/fixtures/real_logs/`: logs taken unchanged from public projects (SOURCES.md names each
  repository, path and commit), with the verdict a careful reader draws from their numbers
  (`expected.json`);
* `tests/fixtures/frameworks/`: logs that Lightning, the Hugging Face Trainer, fastai, Ultralytics
  and timm wrote in tiny runs (`make_framework_logs.py` and its README say which versions);
* Keras, installed with TensorFlow: `tests/fixtures/keras_logs.py` trains tiny models at test time
  and Keras writes their `CSVLogger` file and TensorBoard events.

Then one test per defect the readers had, on those files.
"""

import csv
import json
import math
import pathlib

import pytest

import diagnostics
from diagnostics import formatting
from tests import helpers

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
REAL = FIXTURES / "real_logs"
FRAMEWORKS = FIXTURES / "frameworks"


def _cases(folder: pathlib.Path) -> list:
  path = folder / "expected.json"
  if not path.exists():
    return []
  return [pytest.param(folder, name, spec, id=name)
          for name, spec in sorted(json.loads(path.read_text()).items())]


def _diagnose(path) -> tuple[diagnostics.Run, set]:
  (run,) = diagnostics.load(str(path))
  return run, {f.id for f in diagnostics.diagnose_run(run)}


def _check_verdict(folder, spec) -> None:
  """The expected findings on the file and on each other layout of the same run (`also_read`:
  Lightning's TensorBoard events beside its CSV)."""
  for path in [spec["read"]] + list(spec.get("also_read") or []):
    run, found = _diagnose(folder / path)
    context = f"{path}: {spec.get('why', '')}; found {sorted(found)}; notes {run.notes}"
    assert set(spec.get("must", [])) <= found, context
    assert not set(spec.get("must_not", [])) & found, context
    if spec.get("must_any"):
      assert set(spec["must_any"]) & found, context


@pytest.mark.parametrize("folder,name,spec", _cases(REAL))
def test_real_logs_of_public_projects_get_the_careful_readers_verdict(folder, name, spec):
  del name
  _check_verdict(folder, spec)


@pytest.mark.parametrize("folder,name,spec", _cases(FRAMEWORKS))
def test_logs_written_by_the_frameworks_get_their_scenarios_verdict(folder, name, spec):
  del name
  _check_verdict(folder, spec)


def test_the_corpus_is_large_and_sourced():
  expected = json.loads((REAL / "expected.json").read_text())
  assert len(expected) >= 15
  assert {spec["framework"] for spec in expected.values()} >= {
      "keras", "lightning", "huggingface", "yolov5", "ultralytics"}
  sources = (REAL / "SOURCES.md").read_text()
  for name, spec in expected.items():
    assert name in sources
    assert (REAL / spec["read"]).exists(), name
  assert sum(spec["verdict"] == "healthy" for spec in expected.values()) >= 5


# --- Keras, trained here ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras_logs(early_children):
  """The logs `tests/fixtures/keras_logs.py` made, started with the session (conftest.py)."""
  out, child = early_children["keras_logs"]
  done = child.wait(timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  return out


@pytest.mark.parametrize("layout", ["training.log", "tb"])
@pytest.mark.parametrize("scenario,must,must_not", [
    ("healthy", {"healthy"}, {"overfitting", "diverged", "lr_too_high", "no_learning"}),
    ("overfitting", {"overfitting"}, {"diverged", "healthy"}),
    ("lr_too_high", {"diverged"}, {"healthy"}),
])
def test_keras_csv_logger_and_tensorboard_callback(keras_logs, layout, scenario, must, must_not):
  run, found = _diagnose(keras_logs / scenario / layout)
  assert run.framework == ("keras" if layout == "training.log" else "tensorboard")
  assert must <= found and not must_not & found, (found, run.notes)


def test_keras_advice_without_a_logged_learning_rate_gives_the_factor_only(keras_logs):
  (run,) = diagnostics.load(str(keras_logs / "lr_too_high" / "training.log"))
  assert "learning_rate" not in run.rows[0]
  (diverged,) = [f for f in diagnostics.diagnose_run(run) if f.id == "diverged"]
  assert "tenfold" in diverged.recommendations[0]
  assert "(to " not in " ".join(diverged.recommendations)


# --- one test per defect ------------------------------------------------------------------------


def _csv_rows(path) -> list[dict]:
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def test_step_level_rows_are_averaged_over_the_epoch():
  """Lightning's self.log('train_loss') in training_step: a row every 50 steps, no _step suffix."""
  path = REAL / "lightning_01_mnist_steps_validate_test" / "metrics.csv"
  raw = _csv_rows(path)
  run, found = _diagnose(path)
  for row in run.rows:
    logged = [float(r["train_loss"]) for r in raw
              if r["train_loss"] and int(r["epoch"]) == row["epoch"]]
    assert len(logged) > 1
    assert row["train_loss"] == pytest.approx(sum(logged) / len(logged))
  assert not {"diverged", "lr_too_high"} & found
  assert any("means of the" in note for note in run.notes)


def test_hugging_face_summary_entry_is_not_the_training_curve():
  path = REAL / "hf_02_bert_rumor_train_only" / "trainer_state.json"
  state = json.loads(path.read_text())
  summary = [e for e in state["log_history"] if "train_runtime" in e][0]
  run, _ = _diagnose(path)
  assert run.framework == "huggingface"
  assert len(run.rows) > 20  # The per-step losses are the curve ...
  assert all(r.get("epoch_time_s") != summary["train_runtime"] for r in run.rows)
  assert run.summary["total_time_s"] == summary["train_runtime"]  # ... the summary is a fact.
  assert "loss" not in run.ignored_columns


def test_hugging_face_steps_evaluations_are_rows_at_fractional_epochs():
  path = REAL / "hf_04_whisper_eval_steps" / "trainer_state.json"
  state = json.loads(path.read_text())
  evals = [e for e in state["log_history"] if "eval_loss" in e]
  (run,) = diagnostics.load(str(path))
  assert run.unit == "evaluation"
  val_rows = [r for r in run.rows if "val_loss" in r]
  assert [r["step"] for r in val_rows] == [e["step"] for e in evals]
  assert [r["epoch"] for r in val_rows] == [pytest.approx(e["epoch"], abs=1e-3) for e in evals]
  assert any(not float(r["epoch"]).is_integer() for r in val_rows)


@pytest.mark.parametrize("folder,framework,loss_columns", [
    ("yolov5_01_anpr_healthy", "yolov5",
     ("train/box_loss", "train/obj_loss", "train/cls_loss")),
    ("ultralytics_01_fire_smoke_v8", "ultralytics",
     ("train/box_loss", "train/cls_loss", "train/dfl_loss")),
])
def test_yolo_run_folders_are_read_with_summed_losses_and_map(folder, framework, loss_columns):
  raw = _csv_rows(REAL / folder / "results.csv")
  raw = [{k.strip(): v for k, v in r.items()} for r in raw]
  run, found = _diagnose(REAL / folder)  # The run folder, not the file.
  assert run.framework == framework
  assert run.rows[0]["train_loss"] == pytest.approx(sum(float(raw[0][c]) for c in loss_columns))
  assert "val_map" in run.rows[-1] and run.ignored_columns == []
  assert "healthy" in found
  monitor = diagnostics.monitor_of(run, "val_map")
  assert monitor["direction"] == "higher is better"


def test_a_folder_of_runs_yields_each_run():
  runs = diagnostics.load(str(REAL))
  assert len(runs) >= 15
  assert {r.framework for r in runs} >= {"keras", "lightning", "huggingface", "yolov5"}


def test_lightning_post_fit_validate_and_test_rows_are_not_an_epoch():
  path = REAL / "lightning_01_mnist_steps_validate_test" / "metrics.csv"
  raw_epochs = {int(r["epoch"]) for r in _csv_rows(path) if r["epoch"]}
  run, found = _diagnose(path)
  assert [r["epoch"] for r in run.rows] == sorted(raw_epochs)[:-1]
  assert any("after training ended" in note for note in run.notes)
  assert "healthy" in found


def test_advice_in_epochs_when_rows_are_not_epochs():
  """51 logged rows spanning 100 epochs: a budget is in epochs, not rows."""
  run, _ = _diagnose(REAL / "hf_02_bert_rumor_train_only")
  assert len(run.rows) < 60 and run.rows[-1]["epoch"] >= 99
  (finding,) = [f for f in diagnostics.diagnose_run(run) if f.id == "not_converged"]
  # The last logged epoch is 99 (of 100; the last epoch logged no loss): 99 epochs, not 51 rows.
  assert "instead of 99." in finding.recommendations[0]


def test_a_silent_diagnosis_says_what_is_missing(tmp_path):
  path = tmp_path / "metrics.csv"
  path.write_text("epoch,train_loss,val_loss,gpu_mem\n0,1.0,1.1,3\n1,0.8,0.9,3\n")
  (run,) = diagnostics.load(str(path))
  assert diagnostics.diagnose_run(run) == []
  text = formatting.render_run(run, [])
  assert "too few epochs to judge: 2 logged" in text and "train_loss, val_loss" in text
  empty = diagnostics.Run("x", "csv", [{"epoch": 1, "learning_rate": 0.1}], columns=["lr", "step"])
  assert "no training or validation loss or metric" in formatting.silence_reason(empty)
  assert "lr, step" in formatting.silence_reason(empty)


def test_monitor_option_chooses_the_curve_and_refuses_unknown_names(tmp_path):
  path = REAL / "hf_03_finnews_overfit"
  cli = helpers.run_cli("diagnose.py", str(path), "--json", "--monitor", "eval_accuracy")
  assert cli.returncode == 0, cli.stderr
  (entry,) = json.loads(cli.stdout)["runs"]
  assert entry["monitor"] == {"key": "val_accuracy", "direction": "higher is better",
                              "chosen": "chosen with --monitor"}
  default = json.loads(helpers.run_cli("diagnose.py", str(path), "--json").stdout)["runs"][0]
  assert default["monitor"]["key"] == "val_loss" and default["framework"] == "huggingface"
  yolo = diagnostics.load(str(REAL / "ultralytics_01_fire_smoke_v8"))[0]
  for name in ("mAP50-95(B)", "metrics/mAP50-95(B)", "mAP50-95", "map"):
    assert diagnostics.resolve_monitor(yolo, name) == "val_map", name
  bad = helpers.run_cli("diagnose.py", str(path), "--monitor", "val_bleu")
  assert bad.returncode == 1 and "no such curve" in bad.stderr and "Traceback" not in bad.stderr


def test_appended_keras_log_keeps_the_latest_run():
  run, _ = _diagnose(REAL / "keras_03_cat_appended_runs")
  epochs = [r["epoch"] for r in run.rows]
  assert epochs == sorted(set(epochs)) and epochs[0] == 0
  assert any("restarts" in note for note in run.notes)
  assert not any(math.isnan(r["train_loss"]) for r in run.rows)


def test_fastai_metrics_are_validation_metrics_and_time_is_per_epoch():
  """fastai's Recorder computes accuracy and error_rate on the validation set; time is mm:ss."""
  path = FRAMEWORKS / "fastai_healthy" / "history.csv"
  raw = _csv_rows(path)
  (run,) = diagnostics.load(str(path))
  assert run.framework == "fastai"
  first = run.rows[0]
  assert first["val_accuracy"] == pytest.approx(float(raw[0]["accuracy"]))
  assert first["val_error_rate"] == pytest.approx(float(raw[0]["error_rate"]))
  assert "train_accuracy" not in first
  minutes, seconds = raw[0]["time"].split(":")
  assert first["epoch_time_s"] == 60 * int(minutes) + int(seconds)
  assert run.ignored_columns == []


def test_lightning_tensorboard_validate_and_test_after_fit_are_not_an_epoch():
  """The TensorBoard logger writes trainer.validate()/test() at the last step, in new files."""
  folder = FRAMEWORKS / "lightning_validate_test"
  (csv_run,) = diagnostics.load(str(folder / "csv" / "version_0"))
  (tb_run,) = diagnostics.load(str(folder / "tensorboard" / "version_0"))
  assert len(tb_run.rows) == len(csv_run.rows) == 5
  assert any("after training ended" in note for note in tb_run.notes)
  for a, b in zip(csv_run.rows, tb_run.rows):
    assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-6)
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)


def test_hugging_face_eval_steps_warmup_too_high_is_seen():
  """Six-plus evaluations inside few epochs; rising training loss in warm-up, best eval first."""
  run, found = _diagnose(FRAMEWORKS / "hf_lr_too_high_warmup")
  assert run.unit == "evaluation" and len([r for r in run.rows if "val_loss" in r]) >= 6
  assert {"lr_too_high", "diverged"} & found
  assert "healthy" not in found


def test_timm_summary_reads_eval_as_validation():
  (run,) = diagnostics.load(str(FRAMEWORKS / "timm_healthy"))
  assert run.framework == "timm"
  assert {"train_loss", "val_loss", "val_accuracy", "learning_rate"} <= set(run.rows[0])
