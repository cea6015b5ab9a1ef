"""Tests of reading TensorBoard event directories.

Events are written with TensorBoard's own protos and record framing in exactly the two on-disk forms
frameworks produce: v2 tensor summaries with the "scalars" plugin (what tf.summary.scalar, Keras and
CLU write) and v1 simple values (what PyTorch's SummaryWriter writes). Importing TensorFlow takes
10-20 s on the CI machines, so the test that writes with tf.summary itself runs only when
CURVELAB_TF_TESTS=1 (or TensorFlow is already imported).
"""

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("tensorboard")
# TensorFlow-free pieces of TensorBoard: the protos and the TFRecord framing.
# pylint: disable=g-import-not-at-top
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

from diagnostics import diagnose_history, load
from diagnostics import synthetic as S
# pylint: enable=g-import-not-at-top

ROOT = Path(__file__).resolve().parents[1]

# Reading in this process would make TensorBoard import TensorFlow (10-20 s). The command line
# switches TensorBoard to its TensorFlow-free file layer for its own process, and so does this
# helper, in one subprocess for all event directories of the module.
_LOAD_SNIPPET = """
import json, sys
from diagnostics import readers
readers.use_tensorboard_without_tensorflow()
out = {}
for path in sys.argv[1:]:
  try:
    (run,) = readers.load(path)
    out[path] = {"source": run.source, "rows": run.rows, "ignored": run.ignored_columns}
  except readers.ReadError as e:
    out[path] = {"error": str(e)}
print(json.dumps(out))
"""


def _tensor_value(tag: str, value: float) -> summary_pb2.Summary.Value:
  """A scalar as tf.summary.scalar (TF2) stores it: a float tensor tagged for the scalars plugin."""
  metadata = summary_pb2.SummaryMetadata(
      plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
  tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[value])
  return summary_pb2.Summary.Value(tag=tag, tensor=tensor, metadata=metadata)


def _simple_value(tag: str, value: float) -> summary_pb2.Summary.Value:
  """A scalar as TF1 and PyTorch's SummaryWriter store it."""
  return summary_pb2.Summary.Value(tag=tag, simple_value=value)


def write_events(directory: Path, scalars: dict, steps: list, v2: bool = True,
                 start: float = 1000.0, seconds_per_step: float = 1.0) -> None:
  """Writes {tag: values} at `steps` into a new event file in `directory`."""
  directory.mkdir(parents=True, exist_ok=True)
  make = _tensor_value if v2 else _simple_value
  count = len(os.listdir(directory))
  name = f"events.out.tfevents.{time.time():.0f}.{socket.gethostname()}.{count}"
  with open(directory / name, "wb") as f:
    writer = RecordWriter(f)
    writer.write(event_pb2.Event(wall_time=start, file_version="brain.Event:2").SerializeToString())
    for i, step in enumerate(steps):
      values = [make(tag, float(series[i])) for tag, series in scalars.items()]
      event = event_pb2.Event(step=step, wall_time=start + seconds_per_step * step,
                              summary=summary_pb2.Summary(value=values))
      writer.write(event.SerializeToString())


def _keras_layout(root: Path) -> None:
  """Keras' TensorBoard callback layout: train/ and validation/ with epoch_* tags."""
  rows = S.overfitting(n=30)
  epochs = list(range(len(rows)))
  write_events(root / "train", {"epoch_loss": [r["train_loss"] for r in rows],
                                "epoch_learning_rate": [r["learning_rate"] for r in rows]}, epochs)
  write_events(root / "validation", {"epoch_loss": [r["val_loss"] for r in rows],
                                     "evaluation_loss_vs_iterations": [1.0] * len(rows)}, epochs)


def _dense_layout(root: Path) -> None:
  """Slash tags; training loss every 10 steps, validation once per 100-step epoch."""
  rows = S.not_converged(n=8)
  steps = list(range(10, 801, 10))
  train = [rows[(s - 1) // 100]["train_loss"] for s in steps]
  write_events(root, {"train/loss": train, "lr": [0.1] * len(steps)}, steps)
  write_events(root / "eval", {"val/loss": [r["val_loss"] for r in rows],
                               "custom/thing": [3.0] * len(rows)}, list(range(100, 801, 100)))


def _pytorch_layout(root: Path) -> None:
  """v1 simple values as PyTorch writes them; NaN from epoch 5."""
  rows = S.diverged(n=8, at=5)
  write_events(root, {"Loss/train": [r["train_loss"] for r in rows],
                      "Loss/valid": [r["val_loss"] for r in rows]},
               [r["epoch"] for r in rows], v2=False)


def _no_scalars(root: Path) -> None:
  write_events(root, {"images/count": [1.0, 2.0]}, [1, 2])


LAYOUTS = {"keras": _keras_layout, "dense": _dense_layout, "pytorch": _pytorch_layout,
           "no_scalars": _no_scalars}


@pytest.fixture(scope="module")
def logdirs(tmp_path_factory):
  """Every layout written to its own directory, then read in one subprocess."""
  root = tmp_path_factory.mktemp("tb")
  paths = {}
  for name, make in LAYOUTS.items():
    make(root / name)
    paths[name] = str(root / name)
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  result = subprocess.run([sys.executable, "-c", _LOAD_SNIPPET, *paths.values()],
                          capture_output=True, text=True, env=env, timeout=120)
  assert result.returncode == 0, result.stderr
  loaded = json.loads(result.stdout)
  return {name: dict(loaded[path], path=path) for name, path in paths.items()}


def ids(rows) -> set:
  return {f.id for f in diagnose_history(rows, is_curvelab=False)}


def test_keras_layout_maps_split_directories(logdirs):
  run = logdirs["keras"]
  assert run["source"] == "tensorboard" and len(run["rows"]) == 30
  assert set(run["rows"][0]) >= {"train_loss", "val_loss", "learning_rate", "epoch", "step"}
  assert run["ignored"] == ["evaluation_loss_vs_iterations"]
  first = S.overfitting(n=30)[0]
  assert run["rows"][0]["train_loss"] == pytest.approx(first["train_loss"], rel=1e-6)
  assert "overfitting" in ids(run["rows"])


def test_slash_tags_and_dense_training_steps(logdirs):
  rows = logdirs["dense"]["rows"]
  assert len(rows) == 8
  assert rows[2]["train_loss"] == pytest.approx(S.not_converged(n=8)[2]["train_loss"], rel=1e-6)
  assert rows[2]["step"] == 300 and rows[2]["epoch"] == 3
  assert rows[2]["elapsed_s"] == pytest.approx(300.0)  # from event wall times
  assert logdirs["dense"]["ignored"] == ["custom/thing"]


def test_pytorch_style_simple_values(logdirs):
  rows = logdirs["pytorch"]["rows"]
  assert rows[0]["elapsed_s"] == pytest.approx(1.0)
  assert math.isnan(rows[4]["train_loss"])
  diverged = [f for f in diagnose_history(rows) if f.id == "diverged"]
  assert diverged and diverged[0].epochs == [5]


def test_directory_without_scalars_is_a_clear_error(logdirs):
  assert "no recognised scalar tags" in logdirs["no_scalars"]["error"]
  assert "\n" not in logdirs["no_scalars"]["error"]


def test_cli_reads_event_directories(logdirs):
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  result = subprocess.run(
      [sys.executable, str(ROOT / "diagnose.py"), logdirs["keras"]["path"], "--json"],
      capture_output=True, text=True, env=env, timeout=60)
  assert result.returncode == 0, result.stderr
  (run,) = json.loads(result.stdout)["runs"]
  assert run["source"] == "tensorboard"
  assert "overfitting" in {f["id"] for f in run["findings"]}


@pytest.mark.skipif(os.environ.get("CURVELAB_TF_TESTS") != "1" and "tensorflow" not in sys.modules,
                    reason="importing TensorFlow is slow; set CURVELAB_TF_TESTS=1")
def test_events_written_by_tf_summary(tmp_path):
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  tf = pytest.importorskip("tensorflow")
  rows = S.overfitting(n=20)
  for split, key in (("train", "train_loss"), ("validation", "val_loss")):
    writer = tf.summary.create_file_writer(str(tmp_path / split))
    with writer.as_default():
      for i, row in enumerate(rows):
        tf.summary.scalar("epoch_loss", row[key], step=i)
    writer.close()
  (run,) = load(str(tmp_path))  # in-process: TensorBoard reads through TensorFlow here
  assert len(run.rows) == 20
  assert run.rows[5]["val_loss"] == pytest.approx(rows[5]["val_loss"], rel=1e-6)
  assert "overfitting" in ids(run.rows)
