"""Bad input ends a run with a CurvelabError naming the field (and one ``error:`` line on the CLI).

Config errors are checked through ``train.train_and_evaluate`` (they fail before any data is
decoded or step compiled, so each takes well under a second); a few through ``python train.py``.
"""

import importlib.util
import os
import pathlib
import re
import shutil
import socket
import subprocess

import jax
import numpy as np
import pytest

import eval as eval_lib
import helpers
from curvelab import errors
from curvelab import validate
from curvelab import workdir as workdir_lib
import train

ConfigError, DataError = errors.ConfigError, errors.DataError

# (config fields, error type, texts the message must contain)
CASES = {
    'unknown_optimizer': ({'optimizer.name': 'rmsprop'}, ConfigError, ['optimizer.name', "'rmsprop'"]),
    'unknown_schedule': ({'schedule.name': 'step'}, ConfigError, ['schedule.name', "'step'"]),
    'unknown_model': ({'model.name': 'not_a_model'}, ConfigError,
                      ['model.name', "'not_a_model'", 'vit']),
    'unknown_dataset': ({'dataset.name': 'imagenet'}, ConfigError, ['dataset.name', 'digits']),
    'unknown_dtype': ({'speed.compute_dtype': 'float16'}, ConfigError, ['speed.compute_dtype']),
    'zero_learning_rate': ({'optimizer.learning_rate': 0.0}, ConfigError, ['optimizer.learning_rate']),
    'negative_learning_rate': ({'optimizer.learning_rate': -1e-3}, ConfigError, ['optimizer.learning_rate']),
    'zero_batch_size': ({'loop.batch_size': 0}, ConfigError, ['loop.batch_size']),
    'negative_batch_size': ({'loop.batch_size': -32}, ConfigError, ['loop.batch_size']),
    'zero_epochs': ({'loop.num_epochs': 0}, ConfigError, ['loop.num_epochs']),
    'zero_layers': ({'model.num_layers': 0}, ConfigError, ['model.num_layers']),
    'boolean_layers': ({'model.num_layers': True}, ConfigError, ['model.num_layers', 'True']),
    'negative_weight_decay': ({'optimizer.weight_decay': -0.1}, ConfigError, ['optimizer.weight_decay']),
    'batch_not_divisible_by_accumulation': (
        {'loop.batch_size': 30, 'speed.grad_accum_steps': 4}, ConfigError, ['batch_size=30',
                                                                 'grad_accum_steps']),
    'negative_concurrent_microbatches': ({'speed.concurrent_microbatches': -1}, ConfigError,
                                         ['speed.concurrent_microbatches', '-1', '0 = automatic']),
    'boolean_concurrent_microbatches': ({'speed.concurrent_microbatches': True}, ConfigError,
                                        ['speed.concurrent_microbatches', 'True']),
    'batch_not_divisible_by_concurrent_microbatches': (
        {'loop.batch_size': 30, 'speed.concurrent_microbatches': 4}, ConfigError,
        ['batch_size=30', 'concurrent_microbatches=4', 'multiple of 4']),
    'batch_not_divisible_by_both_microbatch_fields': (
        {'loop.batch_size': 30, 'speed.grad_accum_steps': 3, 'speed.concurrent_microbatches': 4}, ConfigError,
        ['batch_size=30', 'grad_accum_steps=3', 'concurrent_microbatches=4', 'multiple of 12']),
    'negative_cpu_microbatch_size': ({'speed.cpu_microbatch_size': -4}, ConfigError,
                                     ['speed.cpu_microbatch_size', '-4', '0 = off']),
    'boolean_cpu_microbatch_size': ({'speed.cpu_microbatch_size': True}, ConfigError,
                                    ['speed.cpu_microbatch_size', 'True']),
    'embed_dim_not_divisible_by_heads': (
        {'model.num_heads': 5}, ConfigError, ['model.embed_dim=32', 'model.num_heads=5']),
    'image_not_divisible_by_patch': (
        {'model.patch_size': 3}, ConfigError, ['model.patch_size=3', '8x8']),
    'missing_split': (
        {'dataset.val_split': 'validation'}, DataError, ['dataset.val_split', "'validation'",
                                                         'test, train']),
    'batch_larger_than_split': ({'loop.batch_size': 512}, ConfigError, ['batch_size=512', '256']),
    'unknown_doctor_stop_on': ({'doctor.enabled': True, 'doctor.stop_on': 'diverged,bogus'},
                               ConfigError, ['doctor.stop_on', "'bogus'", 'overfitting']),
    'zero_doctor_patience': ({'doctor.patience': 0}, ConfigError, ['doctor.patience']),
    'host_only_augmentation_on_device': (
        {'speed.input_mode': 'device', 'dataset.augment.randaugment_ops': 2}, ConfigError,
        ['input_mode=device', 'dataset.augment.randaugment_ops', 'pad_crop']),
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_bad_config_raises_curvelab_error_naming_the_field(name, tmp_path):
  """Each bad value raises its CurvelabError subclass, names the field; nothing is trained."""
  fields, error, texts = CASES[name]
  config = helpers.set_fields(helpers.tiny_config(), fields)
  workdir = tmp_path / 'run'
  with pytest.raises(error) as info:
    train.train_and_evaluate(config, str(workdir))
  assert isinstance(info.value, errors.CurvelabError)
  for text in texts:
    assert text in str(info.value), (text, str(info.value))
  assert not (workdir / 'history.jsonl').exists() and not helpers.checkpoint_steps(workdir)
  assert not (workdir / '.lock').exists()


def test_clu_writer_without_tensorflow_is_refused_before_compute(monkeypatch, tmp_path):
  real_find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec',
                      lambda name, *a: None if name == 'tensorflow' else real_find_spec(name, *a))
  workdir = tmp_path / 'run'
  with pytest.raises(ConfigError, match='metric_writer=events'):
    train.train_and_evaluate(helpers.tiny_config(loop__metric_writer='clu'), str(workdir))
  assert not workdir.exists()
  train.prepare_config(helpers.tiny_config(loop__metric_writer='events'))  # The TF-free writer is fine.


def test_nan_learning_rate_is_config_error():
  with pytest.raises(ConfigError, match='learning_rate'):
    validate.check(helpers.tiny_config(optimizer__learning_rate=float('nan')))


def test_dataset_not_available_offline_says_how_to_prepare_it(tmp_path):
  """cifar10 with an empty data_dir: DataError naming the folder and the tfds build command."""
  empty = tmp_path / 'tfds'
  empty.mkdir()
  config = helpers.tiny_config(dataset__name='cifar10', dataset__data_dir=str(empty))
  with pytest.raises(DataError) as info:
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  message = str(info.value)
  assert 'cifar10' in message and str(empty) in message
  assert 'dataset.data_dir' in message and 'tfds build cifar10' in message


# ----------------------------------------------------------------------------------- NaN loss

def test_nan_loss_in_first_epoch_is_training_error(tmp_path):
  """learning_rate=1e9: TrainingError naming epoch 1 and the step; no checkpoint exists."""
  workdir = tmp_path / 'run'
  with pytest.raises(errors.TrainingError) as info:
    train.train_and_evaluate(helpers.tiny_config(optimizer__learning_rate=1e9), str(workdir))
  match = re.search(r'epoch 1, step (\d+)', str(info.value))
  assert match and 1 <= int(match.group(1)) <= 8, str(info.value)
  assert 'no checkpoint was saved' in str(info.value)
  assert helpers.checkpoint_steps(workdir) == []
  [row] = helpers.read_history(workdir)
  assert row['nonfinite'] is True and row['train_loss'] is None  # NaN is written as null.
  assert not (workdir / '.lock').exists()


def test_nan_loss_after_good_epochs_keeps_checkpoints_intact(half_run, tmp_path):
  """2 good epochs, then learning_rate=1e9 in epoch 3: TrainingError naming epoch 3 and its step.

  The earlier checkpoints are untouched, restorable, hold finite parameters, and evaluate to the
  validation loss recorded for their epoch.
  """
  workdir = tmp_path / 'run'
  shutil.copytree(half_run[0], workdir)
  steps_before = helpers.checkpoint_steps(workdir)
  with pytest.raises(errors.TrainingError) as info:
    train.train_and_evaluate(helpers.tiny_config(loop__num_epochs=3, optimizer__learning_rate=1e9), str(workdir))
  match = re.search(r'epoch 3, step (\d+)', str(info.value))
  assert match and 17 <= int(match.group(1)) <= 24, str(info.value)
  assert f'step {max(steps_before)}' in str(info.value)  # The last good checkpoint is named.

  assert helpers.checkpoint_steps(workdir) == steps_before
  for step in steps_before:
    params = helpers.checkpoint_params(workdir, step)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))
  history = helpers.read_history(workdir)
  assert history[:2] == half_run[2] and history[2]['nonfinite'] is True
  restored = eval_lib.evaluate_checkpoint(str(workdir), split='val', checkpoint='latest')
  assert restored['step'] == max(steps_before)
  assert restored['val_loss'] == pytest.approx(half_run[2][-1]['val_loss'], rel=1e-6)
  assert not (workdir / '.lock').exists()


# ----------------------------------------------------------------------------------- workdir lock

def _write_lock(workdir: pathlib.Path, pid, host=None):
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / '.lock').write_text(
      '{"pid": %d, "host": "%s"}' % (pid, host or socket.gethostname()))


def _dead_pid() -> int:
  proc = subprocess.Popen(['true'])
  proc.wait()
  return proc.pid


def test_locked_workdir_is_refused(tmp_path):
  """A lock held by a live process: WorkdirLockedError naming it; the lock is left alone."""
  workdir = tmp_path / 'run'
  _write_lock(workdir, os.getpid())
  before = (workdir / '.lock').read_text()
  with pytest.raises(errors.WorkdirLockedError, match=f'process {os.getpid()}'):
    train.train_and_evaluate(helpers.tiny_config(), str(workdir))
  assert (workdir / '.lock').read_text() == before
  assert not (workdir / 'history.jsonl').exists()


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
  _write_lock(tmp_path, _dead_pid())
  lock = workdir_lib.WorkdirLock(tmp_path)
  lock.acquire()
  assert helpers.read_json(tmp_path / '.lock')['pid'] == os.getpid()
  lock.release()
  assert not (tmp_path / '.lock').exists()


def test_torn_lock_file_is_taken_over(tmp_path):
  """An empty lock (a process killed while writing it) does not block the workdir forever."""
  (tmp_path / '.lock').write_text('')
  lock = workdir_lib.WorkdirLock(tmp_path)
  lock.acquire()
  assert helpers.read_json(tmp_path / '.lock')['pid'] == os.getpid()
  lock.release()


def test_lock_from_another_host_is_refused(tmp_path):
  """Liveness cannot be checked across hosts, so such a lock is respected."""
  _write_lock(tmp_path, _dead_pid(), host='some-other-host')
  with pytest.raises(errors.WorkdirLockedError, match='some-other-host'):
    workdir_lib.WorkdirLock(tmp_path).acquire()


# ----------------------------------------------------------------------------------- CLI

CLI_CASES = {
    'unknown_field': (['--config.not_a_field=1'], {}, ['not_a_field']),
    'field_of_an_earlier_version': (['--config.learning_rate=1e-3'], {},
                                    ["'learning_rate' is now 'optimizer.learning_rate'"]),
    'sanity_without_its_variant': (['--config.sanity.examples=5'], {},
                                   ['sanity.examples=5', ':sanity=5']),
    'unknown_optimizer': (['--config.optimizer.name=rmsprop'], {}, ['optimizer', 'rmsprop']),
    'embed_dim_not_divisible_by_heads': (['--config.model.num_heads=5'], {},
                                         ['model.embed_dim', 'model.num_heads']),
    'batch_not_divisible_by_4_devices': (
        ['--config.loop.batch_size=30'], {'XLA_FLAGS': '--xla_force_host_platform_device_count=4'},
        ['batch_size=30', 'device count (4)']),
}


@pytest.fixture(scope='module', autouse=True)
def _cli_processes(request, tmp_path_factory):
  """Starts the CLI cases concurrently when this module starts (each exits during set-up); they
  run alongside the in-process tests before them."""
  if not helpers.module_uses(request, 'cli_results'):
    yield None
    return
  root = tmp_path_factory.mktemp('cli')
  procs = {}
  try:
    for name, (args, env, _) in CLI_CASES.items():
      command = helpers.cli_command('train.py', *helpers.TINY_CLI, *args,
                                    f'--workdir={root / name}')
      procs[name] = helpers.BackgroundProcess(command, folder=root / f'{name}.out',
                                              env=helpers.child_env(**env))
    yield procs
  finally:
    for proc in procs.values():
      proc.kill()


@pytest.fixture(scope='module')
def cli_results(_cli_processes):
  """The finished CLI processes: ``{name: (returncode, stdout, stderr)}``."""
  results = {}
  for name, proc in _cli_processes.items():
    done = proc.wait(timeout=240)
    results[name] = (done.returncode, done.stdout, done.stderr)
  return results


@pytest.mark.parametrize('name', sorted(CLI_CASES))
def test_cli_bad_input_is_one_error_line(cli_results, name):
  """Exit status != 0; stderr ends with one ``error:`` line naming the field; no traceback."""
  returncode, _, stderr = cli_results[name]
  assert returncode != 0
  last = helpers.last_line(stderr)
  assert last.startswith('error:'), stderr[-2000:]
  assert 'Traceback' not in stderr
  for text in CLI_CASES[name][2]:
    assert text in last, (text, last)
