"""End to end: ``train.train_and_evaluate`` on the tiny digits config writes the documented run.

Most tests read the shared 4-epoch run (conftest.straight_run); the recompilation guard reads the
2-epoch run (conftest.half_run), which is made under that guard.
"""

import json
import math

import pytest

import helpers

EPOCHS = 4
STEPS_PER_EPOCH = 8  # 256 examples / batch 32.


def test_run_writes_the_documented_files(straight_run):
  """config.json, history.jsonl, summary.json, a TensorBoard event file and checkpoints/."""
  workdir, _, _ = straight_run
  for name in ('config.json', 'history.jsonl', 'summary.json'):
    assert (workdir / name).is_file(), name
  assert list(workdir.glob('events.out.tfevents.*'))
  assert helpers.checkpoint_steps(workdir)
  assert not (workdir / '.lock').exists()  # The lock is released at the end.


def test_config_json_is_the_resolved_config(straight_run):
  """config.json holds the run's config, in its sections, with eval_batch_size=0 resolved."""
  workdir, summary, _ = straight_run
  saved = helpers.read_json(workdir / 'config.json')
  assert set(saved) == {'seed', 'model', 'task', 'dataset', 'optimizer', 'schedule', 'loop', 'speed',
                        'stopping', 'doctor', 'sanity'}
  assert saved['loop']['num_epochs'] == EPOCHS and saved['loop']['batch_size'] == 32
  assert saved['loop']['eval_batch_size'] == 32
  assert saved['dataset']['train_split'] == 'train[:256]'
  assert saved['model']['name'] == 'vit' and saved['optimizer']['name'] == 'adam'
  assert saved == json.loads(json.dumps(summary['config']))


def test_history_has_one_row_per_epoch_with_documented_keys(straight_run):
  """Every row has the docs/run_files.md keys; epochs count from 1; steps are cumulative."""
  _, _, history = straight_run
  assert [r['epoch'] for r in history] == list(range(1, EPOCHS + 1))
  assert [r['step'] for r in history] == [STEPS_PER_EPOCH * e for e in range(1, EPOCHS + 1)]
  for row in history:
    missing = set(helpers.HISTORY_KEYS) - set(row)
    assert not missing, missing
    assert row['learning_rate'] == pytest.approx(1e-3)  # Constant schedule.
    assert 0.0 <= row['train_accuracy'] <= 1.0 and 0.0 <= row['val_accuracy'] <= 1.0
    assert row['epoch_time_s'] > 0 and row['eval_time_s'] > 0 and row['examples_per_s'] > 0
    assert row['nonfinite'] is False
    assert set(row['layer_grad_norms']) == {'block_0', 'block_1', 'cls_token', 'head',
                                            'head_norm', 'patch_embed', 'pos_embed'}
    assert len(row['pred_class_hist']) == 10
    assert sum(row['pred_class_hist']) == pytest.approx(1.0, abs=1e-5)
  elapsed = [r['elapsed_s'] for r in history]
  assert elapsed == sorted(elapsed)
  assert elapsed[-1] == pytest.approx(
      sum(r['epoch_time_s'] + r['eval_time_s'] for r in history), rel=1e-6)


def test_loss_decreases_on_digits(straight_run):
  """Four epochs of Adam on 256 digits: the losses go down and accuracy goes up."""
  _, _, history = straight_run
  train_loss = [r['train_loss'] for r in history]
  assert all(b < a for a, b in zip(train_loss, train_loss[1:])), train_loss
  assert history[-1]['val_loss'] < history[0]['val_loss'] - 0.1
  assert history[-1]['val_accuracy'] > history[0]['val_accuracy']


def test_summary_has_documented_keys_and_consistent_values(straight_run):
  """summary.json == the returned summary; best_* come from the best history row."""
  workdir, summary, history = straight_run
  assert helpers.read_json(workdir / 'summary.json') == json.loads(json.dumps(summary))
  missing = set(helpers.SUMMARY_KEYS) - set(summary)
  assert not missing, missing
  # Tiny ViT on 8x8x1: patch embed 2*2*1*32+32 = 160, CLS 32, positions 17*32 = 544; per block
  # 2 LayerNorms 128 + q/k/v 3*(32*32+32) + out 32*32+32 + MLP (32*64+64)+(64*32+32) = 8544;
  # head LayerNorm 64, head 32*10+10 = 330: 160+32+544+2*8544+64+330 = 18218.
  assert summary['num_params'] == 18_218
  assert summary['num_train_examples'] == 256
  assert summary['device_count'] == 1 and summary['device_kind'] == 'cpu'
  assert (summary['status'], summary['epochs_run']) == ('finished', EPOCHS)
  assert (summary['best_metric'], summary['best_mode']) == ('val_accuracy', 'max')
  best = max(history, key=lambda r: (r['val_accuracy'], -r['epoch']))  # Ties: earliest.
  assert summary['best_epoch'] == best['epoch']
  assert summary['best_step'] == best['step']
  assert summary['best_val_accuracy'] == best['val_accuracy']
  assert summary['best_val_loss'] == best['val_loss']
  assert 0.0 <= summary['test_accuracy'] <= 1.0 and math.isfinite(summary['test_loss'])
  assert summary['total_time_s'] > 0 and summary['compile_time_s'] >= 0
  # The speed choices the run executed, resolved once (curvelab/plan.py).
  assert summary['plan']['backend'] == 'cpu' and summary['plan']['attention'] == 'head_major'
  assert summary['plan']['steps_per_call'] == 1 and summary['plan']['input_mode'] == 'host'


def test_checkpoints_keep_latest_and_best(straight_run):
  """Retention: the newest step and the best step only."""
  workdir, summary, _ = straight_run
  steps = helpers.checkpoint_steps(workdir)
  assert set(steps) == {EPOCHS * STEPS_PER_EPOCH, summary['best_step']}


def test_tensorboard_events_hold_the_epoch_scalars(straight_run):
  """The event file has one point per epoch for the history's scalar keys."""
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  workdir, _, _ = straight_run
  acc = event_accumulator.EventAccumulator(str(workdir))
  acc.Reload()
  tags = set(acc.Tags()['tensors']) | set(acc.Tags()['scalars'])
  for tag in ('train_loss', 'val_loss', 'val_accuracy', 'learning_rate', 'grad_norm/head'):
    assert tag in tags, sorted(tags)
  events = acc.Tensors('train_loss') if 'train_loss' in acc.Tags()['tensors'] else (
      acc.Scalars('train_loss'))
  assert [e.step for e in events] == list(range(1, EPOCHS + 1))


def test_train_step_is_traced_once(half_run):
  """Recompilation guard: a 2-epoch run (conftest.half_run) traces its train step exactly once.

  The run's make_train_step is wrapped in chex.assert_max_traces(n=1), which would also have
  failed the run on a second trace.
  """
  _, summary, history, traces = half_run
  assert summary['epochs_run'] == 2 and len(history) == 2
  assert len(traces) == 1


def test_events_writer_is_read_back_by_tensorboards_event_accumulator(tmp_path):
  """The TensorFlow-free writer's files, framed by tensorboard's RecordWriter, read as TensorBoard
  reads them."""
  # pylint: disable=g-import-not-at-top
  from tensorboard.backend.event_processing import event_accumulator
  from curvelab import writers
  # pylint: enable=g-import-not-at-top
  writer = writers.create('events', str(tmp_path), is_writer=True)
  for step in (1, 2, 3):
    writer.write_scalars(step, {'train_loss': 1.0 / step, 'val_accuracy': 0.5 + 0.1 * step})
  writer.close()
  acc = event_accumulator.EventAccumulator(str(tmp_path))
  acc.Reload()
  assert sorted(acc.Tags()['scalars']) == ['train_loss', 'val_accuracy']
  assert [(e.step, round(e.value, 6)) for e in acc.Scalars('train_loss')] == [
      (1, 1.0), (2, 0.5), (3, round(1 / 3, 6))]
  assert not writers.create('events', str(tmp_path / 'quiet'), is_writer=False).write_scalars(
      1, {'x': 1.0})
  assert not (tmp_path / 'quiet').exists()  # Non-writing processes write nothing.
