"""The end-of-epoch actions: their documented order, and what the order guarantees.

Exact resume depends on the order: the checkpoint must hold what every earlier action wrote
into the loop position. These tests drive ``epoch_end.run_actions`` on a stand-in run (no model,
no compilation), and one of them shows that the guarantees fail when the order is changed.
"""

import dataclasses
import re
import types

import ml_collections
import pytest

from curvelab import durations
from curvelab import epoch_end
from curvelab import errors
from curvelab import runfiles
from tests import helpers


class FakeCheckpointer:
  def __init__(self):
    self.saved = []

  def save(self, step, *, state, metrics, data_state, meta, is_best, value):
    del state, metrics, data_state
    self.saved.append({'step': step, 'meta': dict(meta), 'is_best': is_best, 'value': value})


class FakeWriter:
  def __init__(self):
    self.scalars = []

  def write_scalars(self, step, scalars):
    self.scalars.append((step, dict(scalars)))

  def flush(self):
    pass


class FakeTask:
  metric_names = ('accuracy',)

  def sanity_passed(self, row, *, loss_threshold):
    return row['train_loss'] <= loss_threshold


def _config(**overrides):
  """The sections the end-of-epoch actions read; ``overrides`` use ``__`` for dots."""
  c = ml_collections.ConfigDict({
      'loop': {'batch_size': 4},
      'sanity': {'examples': 0, 'loss_threshold': 0.01},
      'stopping': {'patience': 0, 'min_delta': 0.0, 'max_train_seconds': 0.0, 'nan_policy': 'stop',
                   'nan_lr_factor': 0.5, 'nan_max_rollbacks': 3}})
  return helpers.set_fields(c, {k.replace('__', '.'): v for k, v in overrides.items()})


def _run(tmp_path, *, val_values, **config):
  """A stand-in run whose validation accuracy at epoch e is ``val_values[e - 1]``."""
  setup = types.SimpleNamespace(config=_config(**config), task=FakeTask(),
                                best_metric='val_accuracy', best_mode='max', mesh=None)
  cadence = durations.Cadence(steps_per_epoch=2, total_steps=2 * len(val_values))
  position = epoch_end.Position(state=None, metrics={}, data_state=None,
                                meta=epoch_end.fresh_meta(), saved_step=None)
  run = epoch_end.Run(
      setup=setup, workdir=tmp_path, cadence=cadence, schedule=lambda step: 0.1,
      splits={'val': None},
      checkpointer=FakeCheckpointer(), writer=FakeWriter(), doctor=None,
      make_feeder=lambda data_state: None, position=position, history=[], initial=None,
      empty_train={}, empty_eval={}, eval_step=None, val_eval=None, layer_names=(),
      stop_signal=types.SimpleNamespace(requested=lambda step: False, signal_name='SIGTERM'),
      feeder=types.SimpleNamespace(state=lambda: {}))
  return run


def _end(epoch, *, loss=1.0, nonfinite=0):
  row = {'epoch': epoch, 'step': 2 * epoch, 'learning_rate': 0.1, 'train_loss': loss}
  return epoch_end.EpochEnd(epoch=epoch, step=2 * epoch, row=row,
                            nonfinite={'count': nonfinite, 'first_step': 2 * epoch - 1},
                            epoch_time=1.0)


@pytest.fixture(autouse=True)
def _validation(monkeypatch):
  """``evaluate`` reads this epoch's value from the run's list instead of a model."""
  def fake(setup, eval_step, state, split, empty, *, prefix, device_eval=None):
    return {'val_accuracy': setup.values[setup.epoch - 1]}
  monkeypatch.setattr(epoch_end.evaluation, 'evaluate', fake)
  monkeypatch.setattr(epoch_end.evaluation, 'peak_memory', lambda: None)


def _epochs(run, values, actions=epoch_end.ACTIONS, losses=None):
  run.setup.values = values
  for epoch in range(1, len(values) + 1):
    run.setup.epoch = epoch
    end = epoch_end.run_actions(run, _end(epoch, loss=(losses or {}).get(epoch, 1.0)),
                                actions=actions)
    if end.stop_reason is not None:
      return end
  return end


def test_the_order_is_the_one_the_module_documents():
  documented = re.findall(r'^\d+\. ``(\w+)``', epoch_end.__doc__, flags=re.M)
  assert documented == [a.__name__ for a in epoch_end.ACTIONS]
  assert documented == ['evaluate', 'time_epoch', 'record', 'nan_policy', 'track_best',
                        'stop_policies', 'consult_doctor', 'checkpoint', 'stop_signal']


def test_each_checkpoint_holds_the_best_and_elapsed_time_of_its_own_epoch(tmp_path):
  run = _run(tmp_path, val_values=[0.3, 0.5, 0.4])
  _epochs(run, [0.3, 0.5, 0.4])
  saved = run.checkpointer.saved
  assert [s['step'] for s in saved] == [2, 4, 6]
  assert [s['meta']['best_epoch'] for s in saved] == [1, 2, 2]
  assert [s['meta']['bad_epochs'] for s in saved] == [0, 0, 1]
  assert [s['meta']['epoch'] for s in saved] == [1, 2, 3]
  # Epoch time (1 s each) plus the stand-in evaluation's own (real, tiny) time.
  assert [s['meta']['elapsed_s'] for s in saved] == pytest.approx([1.0, 2.0, 3.0], abs=0.05)
  assert [s['is_best'] for s in saved] == [True, True, False]
  assert [r['epoch'] for r in runfiles.read_history(tmp_path)] == [1, 2, 3]
  assert [step for step, _ in run.writer.scalars] == [1, 2, 3]


def test_checkpoint_before_track_best_would_save_a_stale_best(tmp_path):
  """The guarantee above is the order's: swapping two actions breaks it, so the test can fail."""
  order = list(epoch_end.ACTIONS)
  i, j = order.index(epoch_end.track_best), order.index(epoch_end.checkpoint)
  order[i], order[j] = order[j], order[i]
  run = _run(tmp_path, val_values=[0.3, 0.5])
  _epochs(run, [0.3, 0.5], actions=tuple(order))
  assert [s['meta']['best_epoch'] for s in run.checkpointer.saved] != [1, 2]


def test_early_stopping_records_the_epoch_then_saves_and_stops(tmp_path):
  run = _run(tmp_path, val_values=[0.5, 0.4, 0.4, 0.6], stopping__patience=2)
  end = _epochs(run, [0.5, 0.4, 0.4, 0.6])
  assert end.stop_reason == 'early_stopped' and run.status == 'early_stopped'
  assert [r['epoch'] for r in run.history] == [1, 2, 3]  # The stopping epoch is in the history.
  assert run.checkpointer.saved[-1]['step'] == 6  # Saved although not on a best.


def test_sanity_stops_once_memorised_without_saving_each_best(tmp_path):
  run = _run(tmp_path, val_values=[0.5, 0.6, 0.7], sanity__examples=5)
  end = _epochs(run, [0.5, 0.6, 0.7], losses={2: 0.001})
  assert end.stop_reason == 'sanity' and run.sanity == {'passed': True, 'epochs': 2}
  # A cadence checkpoint at epoch 1 (checkpoint_every_epochs=1), then the stop's; no extra best.
  assert [s['step'] for s in run.checkpointer.saved] == [2, 4]


def test_a_non_finite_epoch_is_recorded_before_the_run_stops(tmp_path):
  run = _run(tmp_path, val_values=[0.5, 0.6])
  run.setup.values, run.setup.epoch = [0.5, 0.6], 1
  epoch_end.run_actions(run, _end(1))
  run.setup.epoch = 2
  with pytest.raises(errors.TrainingError, match='epoch 2, step 3.*step 2\\) is intact'):
    epoch_end.run_actions(run, _end(2, loss=float('nan'), nonfinite=1))
  rows = runfiles.read_history(tmp_path)
  assert [r['epoch'] for r in rows] == [1, 2] and rows[-1]['train_loss'] is None  # NaN -> null.
  assert 'val_accuracy' not in rows[-1]  # A non-finite epoch is not evaluated.
  assert [s['step'] for s in run.checkpointer.saved] == [2]  # The good checkpoint is the last.


def test_a_rollback_skips_the_rest_of_the_list(tmp_path, monkeypatch):
  run = _run(tmp_path, val_values=[0.5, 0.6], stopping__nan_policy='rollback')
  run.setup.values, run.setup.epoch = [0.5, 0.6], 1
  epoch_end.run_actions(run, _end(1))

  def roll_back(r, *, epoch, first_step):
    r.position = dataclasses.replace(r.position, meta={**r.position.meta, 'epoch': 1})
    return True

  monkeypatch.setattr(epoch_end, 'roll_back', roll_back)
  run.setup.epoch = 2
  end = epoch_end.run_actions(run, _end(2, loss=float('nan'), nonfinite=1))
  assert end.restart
  assert [r['epoch'] for r in runfiles.read_history(tmp_path)] == [1]  # The NaN row is dropped.
  assert [s['step'] for s in run.checkpointer.saved] == [2]  # Nothing after nan_policy ran.


def test_a_stop_signal_during_evaluation_saves_the_epoch_and_stops(tmp_path):
  run = _run(tmp_path, val_values=[0.5, 0.4, 0.3])
  run.cadence = durations.Cadence(steps_per_epoch=2, total_steps=6, checkpoint_every_epochs=3)
  run.setup.values, run.setup.epoch = [0.5, 0.4, 0.3], 1
  epoch_end.run_actions(run, _end(1))  # A new best: saved.
  run.stop_signal = types.SimpleNamespace(requested=lambda step: True, signal_name='SIGTERM')
  run.setup.epoch = 2
  end = epoch_end.run_actions(run, _end(2))  # Not a best, not due: saved for the signal.
  assert end.stop_reason == 'preempted' and run.status == 'preempted'
  assert [s['step'] for s in run.checkpointer.saved] == [2, 4]
  assert run.checkpointer.saved[-1]['meta']['bad_epochs'] == 1
