"""Tests of experiment sets and sweep.py, with a fake trainer and one real end-to-end sweep."""

import json
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import sweep  # noqa: E402  (sweep.py, the CLI)
from sweeps import (ExperimentSetError, Run, build_command, load_experiment_set,  # noqa: E402
                    parse_set_args, plan_jobs, resolve_seeds, select_runs)

# A stand-in for train.py: same flags, writes the run files, and can fail on request via
# --config.fail=always (exit 3) or --config.fail=first (dies after epoch 1 on its first call,
# then resumes from the history on the next call, as train.py does from checkpoints).
FAKE_TRAINER = textwrap.dedent('''
    import json, os, sys, time
    from pathlib import Path

    args = dict(a.split("=", 1) for a in sys.argv[1:])
    workdir = Path(args["--workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = {k[len("--config."):]: v for k, v in args.items() if k.startswith("--config.")}
    calls = workdir / "calls.jsonl"
    attempt = 1 + (len(calls.read_text().splitlines()) if calls.exists() else 0)
    with open(calls, "a") as f:
      f.write(json.dumps({"argv": sys.argv[1:], "start": time.time(), "cwd": os.getcwd(),
                          "prealloc": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")}) + "\\n")
    print(f"fake trainer attempt {attempt}", flush=True)
    time.sleep(float(cfg.get("sleep", 0)))
    if cfg.get("barrier"):
      # Overlap proven without timing: each run announces itself, then waits for the others.
      barrier = Path(cfg["barrier"])
      barrier.mkdir(parents=True, exist_ok=True)
      (barrier / workdir.name).touch()
      deadline = time.time() + 300
      while len(list(barrier.iterdir())) < int(cfg["barrier_n"]):
        if time.time() > deadline:
          print("barrier: the other runs never started", file=sys.stderr)
          sys.exit(4)
        time.sleep(0.02)
    if cfg.get("fail") == "always":
      print("Traceback (most recent call last):", file=sys.stderr)
      print("ValueError: boom in the fake trainer", file=sys.stderr)
      sys.exit(3)
    seed, epochs = int(cfg["seed"]), int(cfg.get("loop.num_epochs", 3))
    config = {"seed": seed, "workdir": str(workdir), "loop": {"num_epochs": epochs},
              "optimizer": {"name": cfg.get("optimizer.name", "adam")},
              "config_string": args["--config"]}
    (workdir / "config.json").write_text(json.dumps(config))
    history = workdir / "history.jsonl"
    done = len(history.read_text().splitlines()) if history.exists() else 0
    for epoch in range(done + 1, epochs + 1):
      acc = 0.5 + 0.1 * epoch + 0.01 * seed
      row = {"epoch": epoch, "step": epoch, "train_loss": 1.0 / epoch, "val_loss": 1.1 / epoch,
             "learning_rate": 0.1, "epoch_time_s": 0.5, "eval_time_s": 0.1,
             "elapsed_s": 0.6 * epoch, "examples_per_s": 100.0, "peak_memory_bytes": None,
             "train_accuracy": acc, "val_accuracy": acc - 0.05}
      with open(history, "a") as f:
        f.write(json.dumps(row) + "\\n")
      if cfg.get("fail") == "first" and attempt == 1:
        print("killed after epoch 1", file=sys.stderr)
        sys.exit(1)
    (workdir / "summary.json").write_text(json.dumps({
        "num_params": 10, "test_accuracy": 0.8 + 0.01 * seed, "total_time_s": 0.6 * epochs,
        "best_metric": "val_accuracy", "best_mode": "max", "status": "finished"}))
    with open(calls, "a") as f:
      f.write(json.dumps({"end": time.time()}) + "\\n")
''')


def write_set(tmp_path, body, name="exp_set.py"):
  path = tmp_path / name
  path.write_text(textwrap.dedent(body))
  return path


@pytest.fixture
def fake_trainer(tmp_path):
  path = tmp_path / "fake_train.py"
  path.write_text(FAKE_TRAINER)
  return path


def calls(workdir):
  """The fake trainer's start records (argv etc.) for a workdir."""
  lines = (workdir / "calls.jsonl").read_text().splitlines()
  return [json.loads(l) for l in lines if "argv" in json.loads(l)]


# ------------------------------------------------------------------------- experiment sets


def test_reference_sets_load_with_the_specified_configs():
  vit = load_experiment_set(REPO / "experiments" / "reference_vit.py")
  assert [r.config for r in vit.runs] == [
      "configs/vit_prenorm.py:layers=2,optimizer=adam",
      "configs/vit_prenorm.py:layers=2,optimizer=adamw",
      "configs/vit_prenorm.py:layers=2,optimizer=sgd",
      "configs/vit_prenorm.py:layers=2,optimizer=momentum",
      "configs/vit_prenorm.py:layers=4,optimizer=adamw",
      "configs/vit_prenorm.py:layers=6,optimizer=adamw",
      "configs/vit_postnorm.py:layers=6,optimizer=adamw"]
  assert vit.names[0] == "exp1_l2_adam"
  lstm = load_experiment_set(REPO / "experiments" / "reference_lstm.py")
  assert [r.config.split(":")[1] for r in lstm.runs] == [
      "layers=1,optimizer=adam", "layers=1,optimizer=adamw", "layers=1,optimizer=sgd",
      "layers=1,optimizer=momentum", "layers=2,optimizer=adamw", "layers=4,optimizer=adamw"]
  assert all(r.config.startswith("configs/lstm_lm.py:") for r in lstm.runs)
  assert vit.seeds == lstm.seeds == (0, 1, 2)


def test_set_with_dicts_get_experiments_and_default_seeds(tmp_path):
  path = write_set(tmp_path, '''
      """Two runs."""
      def get_experiments():
        return [{"name": "a", "config": "configs/x.py"},
                {"name": "b", "config": "configs/x.py:k=1", "overrides": {"model.depth": 3}}]
  ''')
  exp_set = load_experiment_set(path)
  assert exp_set.names == ["a", "b"] and exp_set.seeds == (0,)
  assert exp_set.runs[1].overrides == {"model.depth": 3}
  assert exp_set.description == "Two runs."


@pytest.mark.parametrize("body, message", [
    ("X = 1", "defines neither EXPERIMENTS nor get_experiments()"),
    ("EXPERIMENTS = []", "defines no runs"),
    ("from sweeps import Run\nEXPERIMENTS = [Run('a', 'c.py'), Run('a', 'd.py')]",
     "'a' is used twice"),
    ("from sweeps import Run\nEXPERIMENTS = [Run('a b', 'c.py')]", "'a b' is not valid"),
    ("from sweeps import Run\nEXPERIMENTS = [Run('a', 'c.py', {'seed': 1})]",
     "do not override 'seed'"),
    ("EXPERIMENTS = [{'name': 'a', 'config': 'c.py', 'seeds': 2}]", "unknown keys ['seeds']"),
    ("EXPERIMENTS = [{'name': 'a', 'config': 'c.py'}]\nSEEDS = 0", "at least 1"),
])
def test_invalid_sets_name_the_problem(tmp_path, body, message):
  with pytest.raises(ExperimentSetError, match=None) as info:
    load_experiment_set(write_set(tmp_path, body))
  assert message in str(info.value)


def test_missing_set_file(tmp_path):
  with pytest.raises(ExperimentSetError, match="experiment set file not found"):
    load_experiment_set(tmp_path / "nope.py")


@pytest.mark.parametrize("spec, expected", [
    (None, (7,)), (3, (0, 1, 2)), ("3", (0, 1, 2)), ("1,5,9", (1, 5, 9)), ("7,", (7,)),
    ((4, 2), (4, 2))])
def test_seed_expansion(spec, expected):
  assert resolve_seeds(spec, default=(7,)) == expected


@pytest.mark.parametrize("spec", ["0", "x", "1,1", "-1,2", -2])
def test_bad_seeds(spec):
  with pytest.raises(ExperimentSetError):
    resolve_seeds(spec)


def test_only_filters_and_unknown_names_list_valid_ones(tmp_path):
  exp_set = load_experiment_set(write_set(tmp_path, '''
      EXPERIMENTS = [{"name": n, "config": "c.py"} for n in ("a", "b", "c")]'''))
  assert [r.name for r in select_runs(exp_set, ["c", "a"])] == ["a", "c"]
  assert len(select_runs(exp_set, [])) == 3
  with pytest.raises(ExperimentSetError, match=r"unknown run name\(s\) z in --only; "
                     r"valid names in .*: a, b, c"):
    select_runs(exp_set, ["a", "z"])


def test_cli_unknown_only_is_one_line_and_nonzero(tmp_path, capsys):
  path = write_set(tmp_path, 'EXPERIMENTS = [{"name": "a", "config": "c.py"}]')
  code = sweep.main([f"--experiments={path}", f"--root={tmp_path / 'r'}", "--only=a,zz"])
  err = capsys.readouterr().err.strip().splitlines()
  assert code != 0 and len(err) == 1 and "zz" in err[0] and "valid names" in err[0]


def test_set_overrides_parse():
  assert parse_set_args(["loop.num_epochs=2", "config.model.num_layers=4", "lr=1e-3",
                         "loop.num_epochs=5"]) == {"loop.num_epochs": "5", "model.num_layers": "4",
                                                   "lr": "1e-3"}
  for bad, message in (("loop.num_epochs", "expected FIELD=VALUE"), ("seed=1", "--seeds"),
                       ("1x=2", "not a dotted name"),
                       ("num_epochs=2", "'num_epochs' is now 'loop.num_epochs'")):
    with pytest.raises(ExperimentSetError, match=message):
      parse_set_args([bad])


# ---------------------------------------------------------------------- jobs and commands


def test_layout_and_command_construction(tmp_path):
  runs = [Run("a", "configs/x.py:layers=2", {"optimizer.name": "sgd", "model.dropout": 0.1}),
          Run("b", "configs/y.py")]
  one = plan_jobs(runs, (0,), tmp_path, {"optimizer.name": "adam", "loop.num_epochs": "2"})
  assert [j.workdir for j in one] == [tmp_path / "a", tmp_path / "b"]
  assert build_command(one[0], python="PY", train_script=Path("/repo/train.py")) == [
      "PY", "/repo/train.py", "--config=configs/x.py:layers=2", f"--workdir={tmp_path / 'a'}",
      "--config.seed=0", "--config.optimizer.name=adam", "--config.model.dropout=0.1",
      "--config.loop.num_epochs=2"]  # --set wins over the run's own optimizer, each field once.
  several = plan_jobs(runs, (0, 4), tmp_path)
  assert [j.key for j in several] == ["a/seed_0", "a/seed_4", "b/seed_0", "b/seed_4"]
  assert several[1].workdir == tmp_path / "a" / "seed_4"
  assert "--config.seed=4" in build_command(several[1])
  assert build_command(several[0])[:2] == [sys.executable, str(REPO / "train.py")]


def test_dry_run_prints_commands(tmp_path, capsys):
  path = write_set(tmp_path, 'EXPERIMENTS = [{"name": "a", "config": "c.py"}]\nSEEDS = 2')
  assert sweep.main([f"--experiments={path}", f"--root={tmp_path / 'r'}", "--dry_run",
                     "--set", "loop.num_epochs=1", "x.y=z"]) == 0
  out = capsys.readouterr().out.splitlines()
  assert len(out) == 2 and "--config.seed=1" in out[1]
  assert out[0].endswith("--config.loop.num_epochs=1 --config.x.y=z")
  assert not (tmp_path / "r").exists()


# --------------------------------------------------------------- running with a fake trainer


def run_sweep(tmp_path, fake_trainer, set_path, *extra):
  root = tmp_path / "root"
  code = sweep.main([f"--experiments={set_path}", f"--root={root}",
                     f"--train_script={fake_trainer}", *extra])
  return code, root


def test_sweep_runs_then_skips_finished_runs(tmp_path, fake_trainer):
  set_path = write_set(tmp_path, '''
      from sweeps import Run
      EXPERIMENTS = [Run("r1_adam", "configs/x.py"),
                     Run("r2_sgd", "configs/x.py", overrides={"optimizer.name": "sgd"})]''')
  code, root = run_sweep(tmp_path, fake_trainer, set_path, "--seeds=2", "--set", "loop.num_epochs=2")
  assert code == 0
  for name in ("r1_adam", "r2_sgd"):
    for seed in (0, 1):
      workdir = root / name / f"seed_{seed}"
      assert (workdir / "summary.json").exists()
      assert "fake trainer attempt 1" in (workdir / "sweep_stdout.log").read_text()
      argv = calls(workdir)[0]["argv"]
      assert f"--config.seed={seed}" in argv and "--config.loop.num_epochs=2" in argv
      assert calls(workdir)[0]["cwd"] == str(REPO)  # Config paths are repo-relative.
  status = json.loads((root / "sweep_status.json").read_text())["runs"]
  assert {k: v["state"] for k, v in status.items()} == {
      "r1_adam/seed_0": "finished", "r1_adam/seed_1": "finished",
      "r2_sgd/seed_0": "finished", "r2_sgd/seed_1": "finished"}
  assert (root / "report" / "report.html").exists() and (root / "report" / "table.md").exists()
  # Second invocation: everything finished, nothing runs again.
  assert run_sweep(tmp_path, fake_trainer, set_path, "--seeds=2", "--set", "loop.num_epochs=2")[0] == 0
  assert len(calls(root / "r1_adam" / "seed_0")) == 1
  assert json.loads((root / "sweep_status.json").read_text())["runs"]["r1_adam/seed_0"]["skipped"]


def test_failure_is_recorded_and_sweep_goes_on(tmp_path, fake_trainer, capsys):
  set_path = write_set(tmp_path, '''
      from sweeps import Run
      EXPERIMENTS = [Run("bad", "configs/x.py", {"fail": "always"}),
                     Run("good", "configs/x.py")]''')
  code, root = run_sweep(tmp_path, fake_trainer, set_path)
  assert code == 1
  assert (root / "good" / "summary.json").exists()
  record = json.loads((root / "sweep_status.json").read_text())["runs"]["bad"]
  assert record["state"] == "failed" and record["returncode"] == 3
  assert record["stderr_tail"][-1] == "ValueError: boom in the fake trainer"
  error = (root / "bad" / "sweep_error.txt").read_text()
  assert error.startswith("sweep: bad failed: train.py exited with code 3")
  assert "ValueError: boom in the fake trainer" in error
  assert "boom" in (root / "bad" / "sweep_stderr.log").read_text()
  captured = capsys.readouterr()
  assert "FAILED bad" in captured.out
  # The report still covers the good run and lists the failed one.
  page = (root / "report" / "report.html").read_text()
  assert "good" in page and "train.py exited with code 3" in page


def test_interrupted_run_resumes_and_clears_error(tmp_path, fake_trainer):
  set_path = write_set(tmp_path, '''
      EXPERIMENTS = [{"name": "flaky", "config": "configs/x.py", "overrides": {"fail": "first"}}]''')
  code, root = run_sweep(tmp_path, fake_trainer, set_path, "--no_report")
  workdir = root / "flaky"
  assert code == 1 and (workdir / "sweep_error.txt").exists()
  assert len((workdir / "history.jsonl").read_text().splitlines()) == 1
  code, _ = run_sweep(tmp_path, fake_trainer, set_path, "--no_report")
  assert code == 0
  epochs = [json.loads(l)["epoch"] for l in (workdir / "history.jsonl").read_text().splitlines()]
  assert epochs == [1, 2, 3]
  assert len(calls(workdir)) == 2 and calls(workdir)[0]["argv"] == calls(workdir)[1]["argv"]
  record = json.loads((root / "sweep_status.json").read_text())["runs"]["flaky"]
  assert record["state"] == "finished" and record["resumed"] is True
  assert not (workdir / "sweep_error.txt").exists()


def test_parallel_runs_overlap_and_only_filters(tmp_path, fake_trainer):
  set_path = write_set(tmp_path, '''
      EXPERIMENTS = [{"name": n, "config": "configs/x.py",
                      "overrides": {"barrier": BARRIER, "barrier_n": 3}}
                     for n in ("p1", "p2", "p3", "skipped")]'''.replace(
                         'BARRIER', repr(str(tmp_path / 'barrier'))))
  code, root = run_sweep(tmp_path, fake_trainer, set_path, "--parallel=3", "--only=p1,p2",
                         "--only", "p3", "--no_report")
  assert code == 0 and not (root / "skipped").exists()
  spans = []
  for name in ("p1", "p2", "p3"):
    records = [json.loads(l) for l in (root / name / "calls.jsonl").read_text().splitlines()]
    spans.append((records[0]["start"], records[-1]["end"]))
    assert records[0]["prealloc"] == "false"  # Several JAX processes share one device.
  assert max(s for s, _ in spans) < min(e for _, e in spans)  # All three ran at once.


# ------------------------------------------------------------------- real train.py end to end


@pytest.mark.skipif(not ((REPO / "configs/quickstart.py").exists()
                         and (REPO / "train.py").exists()),
                    reason="train.py and configs/quickstart.py land later")
def test_real_two_run_sweep_end_to_end(tmp_path, monkeypatch):
  from tests import helpers  # pylint: disable=g-import-not-at-top
  # The train.py processes inherit this environment: the suite's shared compilation cache
  # (the two runs share their initialisation and evaluation programs) and quiet TensorFlow logs.
  for key in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
              "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "JAX_PLATFORMS", "TF_CPP_MIN_LOG_LEVEL"):
    monkeypatch.setenv(key, helpers.child_env()[key])
  set_path = write_set(tmp_path, '''
      from sweeps import Run
      EXPERIMENTS = [Run("qs_a", "configs/quickstart.py"),
                     Run("qs_b", "configs/quickstart.py", overrides={"optimizer.learning_rate": 0.003})]''')
  root = tmp_path / "root"
  # Two runs at once (each process is mostly single-threaded start-up and compilation); the
  # TensorFlow-free metric writer writes the same files without TensorFlow's import.
  argv = [f"--experiments={set_path}", f"--root={root}", "--parallel=2",
          "--set", "loop.num_epochs=1", "loop.metric_writer=events"]
  assert sweep.main(argv) == 0
  for name in ("qs_a", "qs_b"):
    summary = json.loads((root / name / "summary.json").read_text())
    assert summary["epochs_run"] == 1
    assert json.loads((root / name / "config.json").read_text())["loop"]["num_epochs"] == 1
  config = json.loads((root / "qs_b" / "config.json").read_text())
  assert config["optimizer"]["learning_rate"] == 0.003
  assert "qs_a" in (root / "report" / "table.md").read_text()
  logs = {name: (root / name / "sweep_stderr.log").stat().st_mtime for name in ("qs_a", "qs_b")}
  assert sweep.main(argv + ["--no_report"]) == 0  # Started again: both runs are skipped.
  status = json.loads((root / "sweep_status.json").read_text())["runs"]
  assert all(status[name]["skipped"] for name in ("qs_a", "qs_b"))
  assert logs == {n: (root / n / "sweep_stderr.log").stat().st_mtime for n in ("qs_a", "qs_b")}
