"""Fault injection: preemption, kill -9 storms, damaged checkpoints, full disks, NaNs, two
processes on one workdir. All offline on CPU; a run never loses its history or its best checkpoint.
"""

import concurrent.futures
import errno
import pathlib
import shutil
import signal
import subprocess

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from curvelab import errors
from curvelab import sharding
from tests import fault_runs
from tests import helpers
import train

EPOCHS = fault_runs.EPOCHS
FAULT_FIELDS = fault_runs.FAULT_FIELDS
FAULT_CLI = fault_runs.FAULT_CLI
_command = fault_runs.command
_PROGRESS = fault_runs.PROGRESS


def _config(**fields):
  return helpers.tiny_config(**{**FAULT_FIELDS, **fields})


def _start(workdir, epochs=EPOCHS, *extra):
  return subprocess.Popen(_command(workdir, epochs, *extra), cwd=helpers.REPO,
                          env=helpers.child_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """The uninterrupted run every fault scenario must reproduce."""
  workdir = tmp_path_factory.mktemp('reference')
  train.train_and_evaluate(_config(loop__num_epochs=EPOCHS), str(workdir))
  return helpers.without_timing(helpers.read_history(workdir))


def test_sigterm_mid_epoch_saves_and_resumes_exactly(tmp_path, tmp_path_factory, request):
  proc = _start(tmp_path, EPOCHS, '--config.loop.log_every_steps=1')
  # Wait until training runs (a progress line inside epoch 2), then ask it to stop.
  lines = []
  for line in proc.stdout:
    lines.append(line)
    if 'epoch 2 step' in line:
      break
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-2000:]
  assert 'checkpoint saved' in ''.join(lines) + out
  steps = helpers.checkpoint_steps(tmp_path)
  assert steps and max(steps) % 8 != 0  # A mid-epoch checkpoint.
  assert not (tmp_path / 'summary.json').exists()
  # The resuming process runs while this process makes the reference run (the module fixture,
  # requested here rather than as an argument so that the two overlap).
  done = helpers.BackgroundProcess(_command(tmp_path),
                                   folder=tmp_path_factory.mktemp('sigterm_rerun'))
  try:
    reference = request.getfixturevalue('reference')
  finally:
    done = done.wait(timeout=240)
  assert done.returncode == 0, done.stderr[-2000:]
  assert helpers.without_timing(helpers.read_history(tmp_path)) == reference


def _sigterm_on(workdir, marker: str) -> tuple[int, str]:
  """Runs the fault run with per-step progress, SIGTERMs it on the first line holding `marker`,
  and returns (exit status, everything it printed). Triggered by the child's own output."""
  proc = _start(workdir, EPOCHS, '--config.loop.log_every_steps=1')
  lines = []
  for line in proc.stdout:
    lines.append(line)
    if marker in line:
      proc.send_signal(signal.SIGTERM)
      break
  out, err = proc.communicate(timeout=240)
  return proc.returncode, ''.join(lines) + out + err


# Where each phase's SIGTERM is sent: on the first line of the child's output holding the marker.
SIGTERM_PHASES = {
    # The compiled-steps line comes before the loop's own compilation and the first step.
    'before_the_first_step': 'Compiled train and eval steps',
    # The last progress line of epoch 1 (its last step reports in the epoch's own line): step 8,
    # epoch 1's evaluation and its checkpoint come next; the epoch-end check stops there.
    'during_evaluation': f'epoch 1 step 7/{EPOCHS * 8}',
    # The last epoch's line: its checkpoint, then the final test evaluation and the summary.
    'during_the_final_test_evaluation': f'epoch {EPOCHS}: ',
}


def _sigterm_then_rerun(workdir, marker: str) -> tuple[int, str, subprocess.CompletedProcess]:
  code, output = _sigterm_on(workdir, marker)
  rerun = helpers.run_cli('train.py', *FAULT_CLI, f'--config.loop.num_epochs={EPOCHS}',
                          f'--workdir={workdir}')
  return code, output, rerun


def test_sigterm_at_any_phase_exits_0_and_the_same_command_finishes(tmp_path, reference):
  """Each phase in its own workdir, the three side by side (each child's time is mostly
  single-threaded start-up)."""
  with concurrent.futures.ThreadPoolExecutor(len(SIGTERM_PHASES)) as pool:
    futures = {phase: pool.submit(_sigterm_then_rerun, tmp_path / phase, marker)
               for phase, marker in SIGTERM_PHASES.items()}
  for phase, future in futures.items():
    code, output, rerun = future.result()
    assert code == 0, (phase, output[-3000:])
    assert 'SIGTERM received' in output and 'Traceback' not in output, phase
    assert rerun.returncode == 0, (phase, rerun.stderr[-2000:])
    assert helpers.without_timing(helpers.read_history(tmp_path / phase)) == reference, phase
    assert helpers.read_json(tmp_path / phase / 'summary.json')['status'] == 'finished', phase


def test_twenty_kill_nines_then_resume_equals_uninterrupted(early_storm, reference):
  """20 SIGKILLs at random steps of the run, each triggered by the child's progress lines; then
  the same command to completion reproduces the uninterrupted history.

  The storm itself (tests/fault_runs.py: kill_storm) started with the session, beside the other
  tests; this collects it, checks that the kills hit training, and resumes the run.
  """
  workdir, storm = early_storm
  landed = storm.result(timeout=1800)
  assert sum(landed) >= 15, landed  # The kills hit training, not start-up or a crash.
  assert max(helpers.checkpoint_steps(workdir)) >= 8  # Epoch ends were crossed and saved.
  done = helpers.run_cli('train.py', *FAULT_CLI, f'--config.loop.num_epochs={EPOCHS}',
                         f'--workdir={workdir}')
  assert done.returncode == 0, done.stderr[-2000:]
  assert helpers.without_timing(helpers.read_history(workdir)) == reference
  assert not list((workdir / 'checkpoints').glob('*orbax-checkpoint-tmp*'))


def _damage_newest(workdir) -> int:
  newest = max(helpers.checkpoint_steps(workdir))
  files = sorted((p for p in (workdir / 'checkpoints' / str(newest) / 'state').rglob('*')
                  if p.is_file()), key=lambda p: p.stat().st_size)
  with open(files[-1], 'r+b') as f:  # Truncate the largest array file to half.
    f.truncate(files[-1].stat().st_size // 2)
  return newest


@pytest.fixture(scope='module')
def three_epochs(tmp_path_factory):
  """The reference config stopped after 3 epochs (tests damage a copy of it, then resume)."""
  workdir = tmp_path_factory.mktemp('three_epochs')
  train.train_and_evaluate(_config(loop__num_epochs=3), str(workdir))
  return workdir


def test_truncated_newest_checkpoint_is_set_aside_and_previous_restored(tmp_path, reference,
                                                                        three_epochs):
  workdir = pathlib.Path(shutil.copytree(three_epochs, tmp_path / 'run'))
  assert len(helpers.checkpoint_steps(workdir)) >= 2
  damaged = _damage_newest(workdir)
  train.train_and_evaluate(_config(loop__num_epochs=EPOCHS), str(workdir))
  assert helpers.without_timing(helpers.read_history(workdir)) == reference
  aside = list((workdir / 'checkpoints_damaged').iterdir())
  assert [p.name.split('-')[0] for p in aside] == [str(damaged)]


def test_missing_directory_entries_are_detected(tmp_path, reference, three_epochs):
  workdir = pathlib.Path(shutil.copytree(three_epochs, tmp_path / 'run'))
  newest = max(helpers.checkpoint_steps(workdir))
  shutil.rmtree(workdir / 'checkpoints' / str(newest) / 'state')
  train.train_and_evaluate(_config(loop__num_epochs=EPOCHS), str(workdir))
  assert helpers.without_timing(helpers.read_history(workdir)) == reference


def _fail_saves_from(monkeypatch, step_limit: int, exc: OSError):
  original = ocp.CheckpointManager.save

  def save(self, step, *args, **kwargs):
    if step >= step_limit:
      raise exc
    return original(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, 'save', save)


@pytest.mark.parametrize('exc', [OSError(errno.ENOSPC, 'No space left on device'),
                                 PermissionError(errno.EACCES, 'Permission denied')])
def test_disk_full_or_unwritable_while_saving_stops_cleanly(tmp_path, monkeypatch, exc):
  _fail_saves_from(monkeypatch, 16, exc)  # Epoch 2's save fails.
  with pytest.raises(errors.TrainingError, match='could not save the checkpoint of step 16') as e:
    train.train_and_evaluate(_config(loop__num_epochs=3), str(tmp_path))
  assert 'earlier checkpoints are intact' in str(e.value)
  monkeypatch.undo()
  assert helpers.checkpoint_steps(tmp_path) == [8]
  helpers.checkpoint_params(tmp_path, 8)  # Still readable.


def test_unwritable_history_stops_with_a_clear_error(tmp_path, monkeypatch):
  from curvelab import runfiles  # pylint: disable=g-import-not-at-top

  def refuse(workdir, row):
    raise runfiles._io_error(workdir / runfiles.HISTORY,  # pylint: disable=protected-access
                             OSError(errno.EROFS, 'Read-only file system'))

  monkeypatch.setattr(runfiles, 'append_history', refuse)
  with pytest.raises(errors.TrainingError, match='Read-only file system'):
    train.train_and_evaluate(_config(loop__num_epochs=1), str(tmp_path))


def _inject_nan_at(monkeypatch, call: int):
  """Makes the ``call``-th training batch all-NaN (eval batches are left alone)."""
  original = sharding.to_global
  seen = {'n': 0}

  def to_global(batch, mesh):
    if batch['inputs'].shape[0] == 32 and batch['weight'].min() > 0:
      seen['n'] += 1
      if seen['n'] == call:
        batch = dict(batch, inputs=np.full_like(batch['inputs'], np.nan))
    return original(batch, mesh)

  monkeypatch.setattr(sharding, 'to_global', to_global)


def test_nan_at_a_given_step_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  _inject_nan_at(monkeypatch, 12)  # Epoch 2, step 12.
  with pytest.raises(errors.TrainingError, match='epoch 2, step 12'):
    train.train_and_evaluate(_config(loop__num_epochs=3, loop__eval_batch_size=40), str(tmp_path))
  assert helpers.checkpoint_steps(tmp_path) == [8]
  params = helpers.checkpoint_params(tmp_path, 8)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))
  rows = helpers.read_history(tmp_path)
  assert rows[-1]['epoch'] == 2 and rows[-1]['nonfinite'] is True


def test_nan_rollback_policy_recovers_with_a_lower_learning_rate(tmp_path, monkeypatch):
  _inject_nan_at(monkeypatch, 12)
  summary = train.train_and_evaluate(
      _config(loop__num_epochs=3, loop__eval_batch_size=40, stopping__nan_policy='rollback', stopping__nan_lr_factor=0.5),
      str(tmp_path))
  assert summary['status'] == 'finished'
  rows = helpers.read_history(tmp_path)
  assert [r['epoch'] for r in rows] == [1, 2, 3]
  assert not any(r.get('nonfinite') for r in rows)
  assert rows[1]['learning_rate'] == pytest.approx(rows[0]['learning_rate'] * 0.5)


def test_second_process_on_a_workdir_is_refused_and_stale_locks_are_taken_over(tmp_path):
  # The first run is far too long to finish during the test; it holds the lock from before its
  # first progress line (which is what this waits for) until it is killed.
  first = _start(tmp_path, 10_000, '--config.loop.log_every_steps=1')
  assert any(_PROGRESS.search(line) for line in first.stdout), first.stderr.read()[-2000:]
  assert (tmp_path / '.lock').exists()
  second = helpers.run_cli('train.py', *FAULT_CLI, '--config.loop.num_epochs=40',
                           f'--workdir={tmp_path}', timeout=120)
  assert second.returncode != 0
  assert 'is in use by process' in helpers.last_line(second.stderr)
  assert 'Traceback' not in second.stderr
  first.kill()
  first.communicate()
  assert (tmp_path / '.lock').exists()  # Left behind by kill -9 ...
  # ... and detected as stale: the same command takes the workdir over and trains (its progress
  # line says so), then stops on SIGTERM with its checkpoint, releasing the lock.
  third = _start(tmp_path, 10_000, '--config.loop.log_every_steps=1')
  assert any(_PROGRESS.search(line) for line in third.stdout), third.stderr.read()[-2000:]
  third.send_signal(signal.SIGTERM)
  _, err = third.communicate(timeout=240)
  assert third.returncode == 0, err[-2000:]
  assert not (tmp_path / '.lock').exists()


def test_resuming_past_the_end_of_a_shorter_run_is_refused(tmp_path):
  train.train_and_evaluate(_config(loop__num_epochs=2), str(tmp_path))
  config_before = (tmp_path / 'config.json').read_text()
  done = helpers.run_cli('train.py', *FAULT_CLI, '--config.loop.num_epochs=1', f'--workdir={tmp_path}')
  assert done.returncode != 0
  assert helpers.last_line(done.stderr).startswith('error:'), done.stderr[-2000:]
  assert 'num_epochs=1' in done.stderr and 'step 16' in done.stderr
  assert 'Traceback' not in done.stderr
  assert (tmp_path / 'config.json').read_text() == config_before  # Nothing saved is touched.


@pytest.mark.parametrize('steps_per_call', [1, 3, 7, 8, 16])
def test_multihost_stop_check_reaches_every_process_for_any_steps_per_call(monkeypatch,
                                                                           steps_per_call):
  """Each process ORs its flag at the first check of every window of MULTIHOST_CHECK_EVERY steps,
  so a signal is acted on within max(k, MULTIHOST_CHECK_EVERY) steps whatever k is."""
  from curvelab import preemption  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  collectives = []
  monkeypatch.setattr(preemption, '_any_process', lambda flag: collectives.append(flag) or flag)
  recorder = preemption.Preemption()
  window = preemption.MULTIHOST_CHECK_EVERY
  signal_at = 23
  for step in range(steps_per_call, 200, steps_per_call):
    if step >= signal_at:
      recorder.signal_name = 'SIGTERM'
    if recorder.requested(step):
      break
  assert step - signal_at < max(steps_per_call, window) + steps_per_call
  assert len(collectives) <= step // window + 1  # At most one collective per window.
