"""eval.py: evaluating a run's best/latest/numbered checkpoint on any split."""

import json

import pytest

import eval as eval_lib
import helpers
from curvelab import errors

EPOCHS = 4


def test_best_checkpoint_on_test_equals_summary(straight_run):
  """The best checkpoint on the test split reproduces summary.json's test metrics."""
  workdir, summary, _ = straight_run
  result = eval_lib.evaluate_checkpoint(str(workdir), split='test', checkpoint='best')
  assert result['step'] == summary['best_step']
  assert (result['split'], result['checkpoint'], result['num_examples']) == ('test', 'best', 360)
  assert result['test_loss'] == pytest.approx(summary['test_loss'], rel=1e-6)
  assert result['test_accuracy'] == pytest.approx(summary['test_accuracy'], rel=1e-6)
  assert set(result) == {'workdir', 'checkpoint', 'step', 'split', 'num_examples', 'test_loss',
                         'test_accuracy'}


def test_latest_checkpoint_on_val_equals_last_history_row(straight_run):
  """'latest' is the last epoch's checkpoint: its val metrics are the last history row's."""
  workdir, _, history = straight_run
  result = eval_lib.evaluate_checkpoint(str(workdir), split='val', checkpoint='latest')
  assert result['step'] == history[-1]['step'] == max(helpers.checkpoint_steps(workdir))
  assert result['num_examples'] == 237
  assert result['val_loss'] == pytest.approx(history[-1]['val_loss'], rel=1e-6)
  assert result['val_accuracy'] == pytest.approx(history[-1]['val_accuracy'], rel=1e-6)


def test_numbered_checkpoint_and_split_string(straight_run):
  """A step number and a split string of the dataset (keys prefixed ``eval_``)."""
  workdir, _, _ = straight_run
  step = max(helpers.checkpoint_steps(workdir))
  result = eval_lib.evaluate_checkpoint(str(workdir), split='train[:100]', checkpoint=str(step))
  assert result['step'] == step and result['num_examples'] == 100
  assert 0.0 <= result['eval_accuracy'] <= 1.0 and result['eval_loss'] > 0


@pytest.mark.parametrize('which', ['999', 'newest', '-1'])
def test_missing_checkpoint_is_a_clear_error(straight_run, which):
  """An unavailable checkpoint names itself and the steps that exist."""
  workdir, _, _ = straight_run
  with pytest.raises(errors.ConfigError, match='--checkpoint') as info:
    eval_lib.evaluate_checkpoint(str(workdir), checkpoint=which)
  assert repr(which) in str(info.value)
  assert str(max(helpers.checkpoint_steps(workdir))) in str(info.value)


def test_not_a_run_workdir(tmp_path):
  with pytest.raises(errors.ResumeError, match='config.json'):
    eval_lib.evaluate_checkpoint(str(tmp_path))


@pytest.fixture(scope='module', autouse=True)
def _eval_cli_process(request, tmp_path_factory):
  """Starts ``python eval.py`` on straight_run when this module starts; it runs alongside the
  in-process tests before test_eval_cli_prints_one_json_line, which waits for it."""
  if not helpers.module_uses(request, 'eval_cli'):
    yield None
    return
  workdir, _, _ = request.getfixturevalue('straight_run')
  proc = helpers.BackgroundProcess(helpers.cli_command('eval.py', f'--workdir={workdir}'),
                                   folder=tmp_path_factory.mktemp('eval_cli'))
  yield proc
  proc.kill()


@pytest.fixture
def eval_cli(_eval_cli_process):
  return _eval_cli_process.wait(timeout=240)


def test_eval_cli_prints_one_json_line(straight_run, eval_cli):
  """``python eval.py --workdir=...`` prints exactly one JSON object on one line."""
  workdir, summary, _ = straight_run
  proc = eval_cli
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [line for line in proc.stdout.splitlines() if line.strip()]
  assert len(lines) == 1, proc.stdout
  result = json.loads(lines[0])
  assert result['step'] == summary['best_step']
  assert result['test_loss'] == pytest.approx(summary['test_loss'], rel=1e-6)


def test_summary_gives_the_best_and_the_last_models_test_metrics(tmp_path, monkeypatch):
  """Best-validation checkpoint (curvelab's protocol) and final model (the study's), both."""
  import train  # pylint: disable=g-import-not-at-top
  from curvelab import epoch_end  # pylint: disable=g-import-not-at-top
  # Only epoch 1 counts as an improvement, so the best checkpoint is not the last model.
  monkeypatch.setattr(epoch_end, 'improved', lambda value, best, **_: best is None)
  summary = train.train_and_evaluate(helpers.tiny_config(loop__num_epochs=3), str(tmp_path))
  assert summary['best_epoch'] == 1 and summary['last_epoch'] == 3
  best = eval_lib.evaluate_checkpoint(str(tmp_path), split='test', checkpoint='best')
  last = eval_lib.evaluate_checkpoint(str(tmp_path), split='test', checkpoint='latest')
  for key in ('test_loss', 'test_accuracy'):
    assert summary[key] == pytest.approx(best[key], rel=1e-6)
    assert summary[f'last_{key}'] == pytest.approx(last[key], rel=1e-6)
  assert summary['last_test_loss'] != summary['test_loss']
  assert helpers.read_json(tmp_path / 'summary.json')['last_test_accuracy'] == summary[
      'last_test_accuracy']


def test_best_and_last_coincide_when_the_last_epoch_is_best(straight_run):
  _, summary, history = straight_run
  if summary['best_epoch'] == history[-1]['epoch']:
    assert summary['last_test_loss'] == summary['test_loss']
  assert summary['last_epoch'] == history[-1]['epoch']
