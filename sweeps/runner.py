"""Running a sweep: one train.py process per (run, seed), skip/resume/failure bookkeeping.

Each job runs in its own process (so peak memory is measured per run) in its own workdir:
ROOT/NAME with one seed, ROOT/NAME/seed_K with several. A job whose workdir has
summary.json is finished and skipped; any other job is (re)started with the same command,
and train.py resumes from its own checkpoints. Failures are recorded, never fatal.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from curvelab import runfiles
from sweeps.experiments import Run
from sweeps.overrides import format_value, merge

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TRAIN_SCRIPT = REPO / "train.py"
STATUS_FILE = "sweep_status.json"
# The run's own files and the failure note the report reads are named in curvelab/runfiles.py.
ERROR_FILE = runfiles.SWEEP_ERROR
STDOUT_LOG = "sweep_stdout.log"
STDERR_LOG = "sweep_stderr.log"
SUMMARY = runfiles.SUMMARY
HISTORY = runfiles.HISTORY
STDERR_TAIL_LINES = 20
_POLL_S = 0.05


@dataclasses.dataclass(frozen=True)
class Job:
  """One process to run: a run of the set with one seed.

  Attributes:
    run: the experiment-set run.
    seed: the seed.
    workdir: where train.py writes.
    key: workdir relative to the sweep root, the job's id in sweep_status.json.
    overrides: run overrides merged with --set overrides (seed excluded).
  """

  run: Run
  seed: int
  workdir: Path
  key: str
  overrides: Mapping[str, Any]


def plan_jobs(runs: Sequence[Run], seeds: Sequence[int], root: Path,
              extra_overrides: Mapping[str, Any] | None = None) -> list[Job]:
  """Expands runs over seeds into jobs, run-major (all seeds of a run before the next run).

  Args:
    runs: selected runs.
    seeds: seeds; with one seed workdirs are ROOT/NAME, with several ROOT/NAME/seed_K.
    root: sweep root.
    extra_overrides: --set overrides applied to every run (they win over the run's own).

  Returns:
    The jobs.
  """
  # Absolute, because train.py runs with the repo root as its working directory.
  root = Path(root).absolute()
  jobs = []
  for run in runs:
    for seed in seeds:
      rel = Path(run.name) if len(seeds) == 1 else Path(run.name) / f"seed_{seed}"
      jobs.append(Job(run, seed, root / rel, rel.as_posix(),
                      merge(run.overrides, extra_overrides or {})))
  return jobs


def build_command(job: Job, python: str = sys.executable,
                  train_script: Path = DEFAULT_TRAIN_SCRIPT) -> list[str]:
  """Returns train.py's argv for a job.

  [python, train.py, --config=<config string>, --workdir=<dir>, --config.seed=<seed>,
   --config.FIELD=VALUE ...] with each overridden field once (merged, --set last).
  """
  command = [python, str(train_script), f"--config={job.run.config}",
             f"--workdir={job.workdir}", f"--config.seed={job.seed}"]
  command += [f"--config.{field}={format_value(value)}" for field, value in job.overrides.items()]
  return command


def job_state(workdir: Path) -> str:
  """Returns "finished" (summary.json), "partial" (some history, no summary) or "new"."""
  if (workdir / SUMMARY).is_file():
    return "finished"
  if (workdir / HISTORY).is_file():
    return "partial"
  return "new"


def code_version(cwd) -> str:
  """The commit the run's code is at, '+modified' when tracked files differ from it; 'unknown'
  outside a git checkout. Results name the code that made them (results/)."""
  try:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                           capture_output=True, text=True, check=True, timeout=30).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return head + ("+modified" if dirty else "")


def _now() -> str:
  return datetime.datetime.now().isoformat(timespec="seconds")


class StatusFile:
  """ROOT/sweep_status.json: one record per job, rewritten atomically after every change.

  Records of jobs outside this invocation (e.g. filtered out by --only) are kept.
  """

  def __init__(self, root: Path, experiments: Path | None = None):
    self.path = root / STATUS_FILE
    self.data = self._load()
    if experiments is not None:
      self.data["experiments"] = str(experiments)
    self.data.setdefault("runs", {})

  def _load(self) -> dict:
    try:
      data = json.loads(self.path.read_text())
      return data if isinstance(data, dict) and isinstance(data.get("runs"), dict) else {}
    except (OSError, json.JSONDecodeError):
      return {}

  def update(self, job: Job, **fields) -> None:
    record = self.data["runs"].setdefault(job.key, {})
    record.update(name=job.run.name, seed=job.seed, workdir=str(job.workdir),
                  config=job.run.config, **fields)
    self.save()

  def save(self) -> None:
    self.data["updated"] = _now()
    self.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = self.path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True))
    os.replace(tmp, self.path)  # Atomic: a crash never leaves half a status file.


@dataclasses.dataclass
class JobResult:
  """Outcome of one job: state is finished, skipped, failed or interrupted."""

  job: Job
  state: str
  returncode: int | None = None
  error: str = ""


@dataclasses.dataclass
class _Active:
  job: Job
  process: subprocess.Popen
  stderr_offset: int
  started: float
  resumed: bool
  files: tuple


class SweepRunner:
  """Runs jobs with at most `parallel` processes at once and records every outcome.

  Args:
    root: sweep root.
    parallel: number of concurrent processes.
    python: interpreter for train.py.
    train_script: the trainer script.
    experiments: the experiment-set path, recorded in sweep_status.json.
    echo: receives one progress line per event.
    cwd: working directory of train.py; config strings are relative to it (the repo root).
  """

  def __init__(self, root: Path, parallel: int = 1, python: str = sys.executable,
               train_script: Path = DEFAULT_TRAIN_SCRIPT, experiments: Path | None = None,
               echo: Callable[[str], None] = print, cwd: Path = REPO):
    if parallel < 1:
      raise ValueError(f"parallel must be at least 1, got {parallel}")
    self.root = Path(root).absolute()
    self.parallel = parallel
    self.python = python
    self.train_script = Path(train_script)
    self.status = StatusFile(self.root, experiments)
    self.echo = echo
    self.cwd = Path(cwd)

  def run(self, jobs: Sequence[Job]) -> list[JobResult]:
    """Runs all jobs; returns one JobResult per job in job order.

    Raises:
      KeyboardInterrupt: after terminating running processes and recording them as
        interrupted (running the same sweep again resumes them).
    """
    results: dict[str, JobResult] = {}
    pending = []
    for job in jobs:
      if job_state(job.workdir) == "finished":
        results[job.key] = self._skip(job)
      else:
        pending.append(job)
        self.status.update(job, state="pending")
    active: list[_Active] = []
    total = len(jobs)
    try:
      while pending or active:
        while pending and len(active) < self.parallel:
          active.append(self._start(pending.pop(0), len(results) + len(active) + 1, total))
        time.sleep(_POLL_S)
        for item in [a for a in active if a.process.poll() is not None]:
          active.remove(item)
          results[item.job.key] = self._finish(item)
    except KeyboardInterrupt:
      for item in active:
        self._interrupt(item)
      raise
    return [results[job.key] for job in jobs]

  def _skip(self, job: Job) -> JobResult:
    self.echo(f"skip {job.key}: finished ({SUMMARY} present)")
    self.status.update(job, state="finished", skipped=True)
    return JobResult(job, "skipped")

  def _env(self) -> dict:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")  # Logs show progress while the run is going.
    if self.parallel > 1:
      # JAX preallocates most of the accelerator memory per process; with several processes
      # on one device the second would run out of memory. Peak usage is still measured.
      env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return env

  def _start(self, job: Job, index: int, total: int) -> _Active:
    job.workdir.mkdir(parents=True, exist_ok=True)
    resumed = job_state(job.workdir) == "partial"
    command = build_command(job, self.python, self.train_script)
    header = f"\n==== sweep {_now()} {'resume' if resumed else 'start'}: {' '.join(command)}\n"
    out = open(job.workdir / STDOUT_LOG, "a", encoding="utf-8")
    err = open(job.workdir / STDERR_LOG, "a", encoding="utf-8")
    out.write(header)
    err.write(header)
    out.flush()
    err.flush()
    # Remember where this attempt's stderr begins so the recorded tail is this attempt's.
    offset = err.tell()
    process = subprocess.Popen(command, stdout=out, stderr=err, cwd=self.cwd, env=self._env(),
                               stdin=subprocess.DEVNULL)
    self.echo(f"[{index}/{total}] {'resume' if resumed else 'start'} {job.key} "
              f"(seed {job.seed}) -> {job.workdir}")
    self.status.update(job, state="running", command=command, started=_now(), resumed=resumed,
                       pid=process.pid, returncode=None, error=None, stderr_tail=None,
                       commit=code_version(self.cwd))
    return _Active(job, process, offset, time.monotonic(), resumed, (out, err))

  def _finish(self, item: _Active) -> JobResult:
    for f in item.files:
      f.close()
    job, code = item.job, item.process.returncode
    duration = round(time.monotonic() - item.started, 3)
    tail = stderr_tail(job.workdir / STDERR_LOG, item.stderr_offset)
    if code == 0 and job_state(job.workdir) == "finished":
      _remove(job.workdir / ERROR_FILE)  # An earlier failure no longer describes this run.
      self.status.update(job, state="finished", returncode=0, ended=_now(), duration_s=duration,
                         pid=None, skipped=False)
      self.echo(f"done {job.key} in {duration:.1f}s")
      return JobResult(job, "finished", 0)
    error = describe_exit(code)
    self.status.update(job, state="failed", returncode=code, error=error, stderr_tail=tail,
                       ended=_now(), duration_s=duration, pid=None, skipped=False)
    write_error_file(job, build_command(job, self.python, self.train_script), code, error, tail)
    last = tail[-1] if tail else "(no stderr output)"
    self.echo(f"FAILED {job.key}: {error}; last stderr line: {last} "
              f"(see {job.workdir / ERROR_FILE})")
    return JobResult(job, "failed", code, error)

  def _interrupt(self, item: _Active) -> None:
    item.process.terminate()
    try:
      item.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
      item.process.kill()
      item.process.wait()
    for f in item.files:
      f.close()
    self.status.update(item.job, state="interrupted", returncode=item.process.returncode,
                       ended=_now(), pid=None)


def describe_exit(code: int | None) -> str:
  """Explains a train.py exit status in words."""
  if code == 0:
    return f"train.py exited with code 0 but wrote no {SUMMARY}"
  if code is not None and code < 0:
    return f"train.py was killed by signal {-code}"
  return f"train.py exited with code {code}"


def stderr_tail(path: Path, offset: int = 0, lines: int = STDERR_TAIL_LINES) -> list[str]:
  """Returns the last `lines` non-empty lines written to path after byte `offset`."""
  try:
    with open(path, "rb") as f:
      f.seek(offset)
      text = f.read().decode("utf-8", errors="replace")
  except OSError:
    return []
  return [line for line in text.splitlines() if line.strip()][-lines:]


def write_error_file(job: Job, command: Sequence[str], code: int | None, error: str,
                     tail: Sequence[str]) -> None:
  """Writes WORKDIR/sweep_error.txt; its first line is the one-line reason reports show."""
  text = [f"sweep: {job.key} failed: {error}",
          f"run: {job.run.name}  seed: {job.seed}  exit code: {code}  at: {_now()}",
          f"command: {' '.join(command)}",
          f"logs: {job.workdir / STDOUT_LOG}, {job.workdir / STDERR_LOG}",
          f"last {len(tail)} stderr lines:"] + [f"  {line}" for line in tail]
  (job.workdir / ERROR_FILE).write_text("\n".join(text) + "\n")


def _remove(path: Path) -> None:
  try:
    path.unlink()
  except FileNotFoundError:
    pass
