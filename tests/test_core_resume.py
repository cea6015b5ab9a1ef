"""Resuming: a run continued from its checkpoints reproduces the uninterrupted run bit for bit.

The reference is conftest.straight_run (4 epochs); conftest.half_run is the same config stopped
after 2 epochs. Tests copy workdirs before running into them.
"""

import pathlib
import shutil
import signal
import subprocess

import pytest

import helpers
from curvelab import resume
from curvelab import build as build_lib
from curvelab import errors
from curvelab import workdir as workdir_lib
from input_pipeline import pipeline
import train

EPOCHS = 4


def _copy(src, dst) -> pathlib.Path:
  shutil.copytree(src, dst)
  return pathlib.Path(dst)


@pytest.fixture(scope='module')
def resumed_run(half_run, tmp_path_factory):
  """half_run's workdir continued with num_epochs=4 by the same call."""
  workdir = _copy(half_run[0], tmp_path_factory.mktemp('resume') / 'run')
  summary = train.train_and_evaluate(helpers.tiny_config(loop__num_epochs=EPOCHS), str(workdir))
  return workdir, summary, helpers.read_history(workdir)


def test_resumed_history_equals_uninterrupted_history(straight_run, resumed_run):
  """Every non-timing history value (losses, accuracies, norms, ...) is identical."""
  assert len(resumed_run[2]) == EPOCHS
  assert helpers.without_timing(resumed_run[2]) == helpers.without_timing(straight_run[2])


def test_resume_keeps_the_rows_of_the_first_part(half_run, resumed_run):
  """The first two rows are the half run's rows (timings included): nothing was redone."""
  assert resumed_run[2][:2] == half_run[2]


def test_resumed_summary_equals_uninterrupted_summary(straight_run, resumed_run):
  keys = ('best_epoch', 'best_step', 'best_val_loss', 'best_val_accuracy', 'test_loss',
          'test_accuracy', 'num_params', 'epochs_run', 'status')
  assert {k: resumed_run[1][k] for k in keys} == {k: straight_run[1][k] for k in keys}
  assert helpers.checkpoint_steps(resumed_run[0]) == helpers.checkpoint_steps(straight_run[0])


def test_rerunning_a_finished_run_does_not_retrain(straight_run, tmp_path):
  """The same call on a finished workdir trains nothing: history, checkpoints stay as they were."""
  workdir = _copy(straight_run[0], tmp_path / 'run')
  before = (workdir / 'history.jsonl').read_text()
  ckpt_mtimes = {p: p.stat().st_mtime_ns for p in (workdir / 'checkpoints').iterdir()}
  summary = train.train_and_evaluate(helpers.tiny_config(loop__num_epochs=EPOCHS), str(workdir))
  assert (workdir / 'history.jsonl').read_text() == before  # Timings too: no epoch re-ran.
  assert {p: p.stat().st_mtime_ns for p in (workdir / 'checkpoints').iterdir()} == ckpt_mtimes
  assert summary['epochs_run'] == EPOCHS
  assert summary['test_loss'] == straight_run[1]['test_loss']
  assert summary['best_epoch'] == straight_run[1]['best_epoch']


@pytest.mark.parametrize('field, value', [('model.embed_dim', 16), ('model.num_layers', 3)])
def test_shape_changing_field_is_resume_error(straight_run, tmp_path, field, value):
  """Resuming with a field that changes parameter shapes names that field and touches nothing."""
  workdir = _copy(straight_run[0], tmp_path / 'run')
  before = (workdir / 'history.jsonl').read_text()
  config = helpers.set_fields(helpers.tiny_config(loop__num_epochs=EPOCHS), {field: value})
  with pytest.raises(errors.ResumeError, match=field.replace('.', r'\.')) as info:
    train.train_and_evaluate(config, str(workdir))
  assert 'new --workdir' in str(info.value)
  assert (workdir / 'history.jsonl').read_text() == before
  assert not (workdir / '.lock').exists()


def _shape_check(workdir, config):
  """The fields the resume check reports for ``config`` against ``workdir``'s config.json."""
  config = train.prepare_config(config)
  setup = train.build(config)
  example = next(pipeline.eval_batches(setup.data.load('val'), global_batch=config.loop.batch_size,
                                       preprocess=setup.data.eval_preprocess))
  return workdir_lib.shape_changing_fields(helpers.read_json(workdir / 'config.json'), config,
                                           build_lib.param_shapes(setup, example))


def test_learning_rate_and_other_shape_neutral_changes_are_allowed(straight_run):
  """learning_rate, optimizer, epochs, seed or data changes keep the parameter shapes."""
  workdir = straight_run[0]
  assert _shape_check(workdir, helpers.tiny_config(optimizer__learning_rate=5e-4, optimizer__name='sgd',
                                                   loop__num_epochs=9, seed=3,
                                                   dataset__train_split='train[:512]')) == []
  assert _shape_check(workdir, helpers.tiny_config(model__embed_dim=16,
                                                   optimizer__learning_rate=5e-4)) == ['model.embed_dim']


def test_dataset_change_that_changes_shapes_is_resume_error(straight_run):
  """digits (8x8x1) -> cifar10 (32x32x3) changes the patch embedding and positions: refuse."""
  from input_pipeline import sources  # pylint: disable=g-import-not-at-top
  if not (pathlib.Path(sources.resolve_data_dir('')) / 'cifar10').is_dir():
    pytest.skip('cifar10 is not prepared offline here')
  config = train.prepare_config(helpers.tiny_config(
      loop__num_epochs=EPOCHS, dataset__name='cifar10', dataset__data_dir='',
      dataset__mean=(0.5, 0.5, 0.5), dataset__std=(0.25, 0.25, 0.25),
      dataset__train_split='train[:64]', dataset__val_split='train[64:96]',
      dataset__test_split='test[:32]'))
  setup = train.build(config)
  example = next(pipeline.eval_batches(setup.data.load('val'), global_batch=32,
                                       preprocess=setup.data.eval_preprocess))
  assert example['inputs'].shape[1:] == (32, 32, 3)
  from curvelab import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  checkpointer = ckpt_lib.Checkpointer(straight_run[0] / 'checkpoints', best_metric='val_accuracy',
                                       best_mode='max')
  with pytest.raises(errors.ResumeError, match='dataset'):
    resume.check_shapes(setup, straight_run[0], checkpointer,  # pylint: disable=protected-access
                        example)


def test_kill_9_then_rerun_reproduces_the_uninterrupted_run(straight_run, tmp_path):
  """SIGKILL train.py after its first checkpoint; the same command again finishes the run.

  The rerun takes over the dead process's lock, drops history rows past the checkpoint and
  reproduces the uninterrupted history (all non-timing values) and test metrics.
  """
  workdir = tmp_path / 'run'
  # The TensorFlow-free metric writer (where available) only saves start-up time.
  args = helpers.TINY_CLI + helpers.fast_writer_cli() + [f'--config.loop.num_epochs={EPOCHS}',
                                                         f'--workdir={workdir}']
  # The kill is triggered by the child's own report of step 9, the first of epoch 2: by then the
  # epoch-1 checkpoint is committed (saves are synchronous) and most of the run is still ahead,
  # on any machine and with a cold or warm compilation cache.
  proc = subprocess.Popen(helpers.cli_command('train.py', *args, '--config.loop.log_every_steps=1'),
                          cwd=helpers.REPO, env=helpers.child_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)
  try:
    reached = any(' step 9/' in line for line in proc.stdout)
  finally:
    proc.kill()
    proc.communicate()
  assert reached, 'train.py ended before it reported step 9'
  assert proc.returncode == -signal.SIGKILL
  assert not (workdir / 'summary.json').exists()
  assert (workdir / '.lock').exists()  # Left behind by the killed process.
  assert len(helpers.read_history(workdir)) < EPOCHS

  rerun = helpers.run_cli('train.py', *args)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  history = helpers.read_history(workdir)
  assert helpers.without_timing(history) == helpers.without_timing(straight_run[2])
  summary = helpers.read_json(workdir / 'summary.json')
  assert summary['test_loss'] == straight_run[1]['test_loss']
  assert summary['test_accuracy'] == straight_run[1]['test_accuracy']
  assert not (workdir / '.lock').exists()


def test_torn_last_history_line_is_ignored(tmp_path):
  """A process killed mid-append leaves a partial last line; reading stops before it."""
  from curvelab import runfiles  # pylint: disable=g-import-not-at-top
  (tmp_path / 'history.jsonl').write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3, "tra')
  assert runfiles.read_history(tmp_path) == [{'epoch': 1}, {'epoch': 2}]
