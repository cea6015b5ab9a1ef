"""Fault injection: preemption, kill -9 storms, damaged checkpoints, full disks, NaNs, two
processes on one workdir. All offline on CPU; a run never loses its history or its best checkpoint.
"""

import errno
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from curvelab import errors
from curvelab import sharding
from tests import helpers
import train

EPOCHS = 4
# The fault runs: 256 digits, batch 32 -> 8 steps/epoch; TensorFlow-free writer for fast starts.
FAULT_FIELDS = {'metric_writer': 'events', 'checkpoint_keep_latest': 2}
FAULT_CLI = helpers.TINY_CLI + [f'--config.{k}={v}' for k, v in FAULT_FIELDS.items()]


def _config(**fields):
  return helpers.tiny_config(**{**FAULT_FIELDS, **fields})


def _command(workdir, epochs=EPOCHS, *extra):
  return helpers.cli_command('train.py', *FAULT_CLI, f'--config.num_epochs={epochs}',
                             f'--workdir={workdir}', *extra)


def _start(workdir, epochs=EPOCHS, *extra):
  return subprocess.Popen(_command(workdir, epochs, *extra), cwd=helpers.REPO,
                          env=helpers.child_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """The uninterrupted run every fault scenario must reproduce."""
  workdir = tmp_path_factory.mktemp('reference')
  train.train_and_evaluate(_config(num_epochs=EPOCHS), str(workdir))
  return helpers.without_timing(helpers.read_history(workdir))


def _wait_for(predicate, timeout=120.0):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return True
    time.sleep(0.05)
  return False


def test_sigterm_mid_epoch_saves_and_resumes_exactly(tmp_path, tmp_path_factory, request):
  proc = _start(tmp_path, EPOCHS, '--config.log_every_steps=1')
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


def test_twenty_kill_nines_then_resume_equals_uninterrupted(tmp_path, reference):
  """20 SIGKILLs, each at a random moment once the child is training (after a random number of
  its progress lines, 0-2 s later), so kills land mid-step, mid-save and mid-evaluation; then the
  same command to completion must reproduce the uninterrupted history."""
  rng = random.Random(0)
  reached_training = 0
  for _ in range(20):
    proc = _start(tmp_path, EPOCHS, '--config.log_every_steps=1')
    wanted = rng.randint(1, 6)
    seen = 0
    for line in proc.stdout:
      if ' step ' in line and 'loss' in line:
        seen += 1
        if seen >= wanted:
          break
    reached_training += seen > 0
    time.sleep(rng.uniform(0.0, 2.0))
    proc.kill()
    proc.communicate()
    if helpers.checkpoint_steps(tmp_path) and max(helpers.checkpoint_steps(tmp_path)) >= (
        EPOCHS * 8):
      break  # Finished between kills: nothing left to interrupt.
  assert reached_training >= 3  # The kills really hit training, not just start-up.
  done = helpers.run_cli('train.py', *FAULT_CLI, f'--config.num_epochs={EPOCHS}',
                         f'--workdir={tmp_path}')
  assert done.returncode == 0, done.stderr[-2000:]
  assert helpers.without_timing(helpers.read_history(tmp_path)) == reference
  assert not list((tmp_path / 'checkpoints').glob('*orbax-checkpoint-tmp*'))


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
  train.train_and_evaluate(_config(num_epochs=3), str(workdir))
  return workdir


def test_truncated_newest_checkpoint_is_set_aside_and_previous_restored(tmp_path, reference,
                                                                        three_epochs):
  workdir = pathlib.Path(shutil.copytree(three_epochs, tmp_path / 'run'))
  assert len(helpers.checkpoint_steps(workdir)) >= 2
  damaged = _damage_newest(workdir)
  train.train_and_evaluate(_config(num_epochs=EPOCHS), str(workdir))
  assert helpers.without_timing(helpers.read_history(workdir)) == reference
  aside = list((workdir / 'checkpoints_damaged').iterdir())
  assert [p.name.split('-')[0] for p in aside] == [str(damaged)]


def test_missing_directory_entries_are_detected(tmp_path, reference, three_epochs):
  workdir = pathlib.Path(shutil.copytree(three_epochs, tmp_path / 'run'))
  newest = max(helpers.checkpoint_steps(workdir))
  shutil.rmtree(workdir / 'checkpoints' / str(newest) / 'state')
  train.train_and_evaluate(_config(num_epochs=EPOCHS), str(workdir))
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
    train.train_and_evaluate(_config(num_epochs=3), str(tmp_path))
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
    train.train_and_evaluate(_config(num_epochs=1), str(tmp_path))


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
    train.train_and_evaluate(_config(num_epochs=3, eval_batch_size=40), str(tmp_path))
  assert helpers.checkpoint_steps(tmp_path) == [8]
  params = helpers.checkpoint_params(tmp_path, 8)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))
  rows = helpers.read_history(tmp_path)
  assert rows[-1]['epoch'] == 2 and rows[-1]['nonfinite'] is True


def test_nan_rollback_policy_recovers_with_a_lower_learning_rate(tmp_path, monkeypatch):
  _inject_nan_at(monkeypatch, 12)
  summary = train.train_and_evaluate(
      _config(num_epochs=3, eval_batch_size=40, nan_policy='rollback', nan_lr_factor=0.5),
      str(tmp_path))
  assert summary['status'] == 'finished'
  rows = helpers.read_history(tmp_path)
  assert [r['epoch'] for r in rows] == [1, 2, 3]
  assert not any(r.get('nonfinite') for r in rows)
  assert rows[1]['learning_rate'] == pytest.approx(rows[0]['learning_rate'] * 0.5)


def test_second_process_on_a_workdir_is_refused_and_stale_locks_are_taken_over(tmp_path):
  first = _start(tmp_path, 40)
  assert _wait_for(lambda: (tmp_path / '.lock').exists())
  second = helpers.run_cli('train.py', *FAULT_CLI, '--config.num_epochs=40',
                           f'--workdir={tmp_path}', timeout=120)
  assert second.returncode != 0
  assert 'is in use by process' in helpers.last_line(second.stderr)
  assert 'Traceback' not in second.stderr
  first.kill()
  first.communicate()
  assert (tmp_path / '.lock').exists()  # Left behind by kill -9 ...
  third = helpers.run_cli('train.py', *FAULT_CLI, '--config.num_epochs=1',
                          f'--workdir={tmp_path}', timeout=240)
  assert third.returncode == 0, third.stderr[-2000:]  # ... and detected as stale.
  assert not (tmp_path / '.lock').exists()
