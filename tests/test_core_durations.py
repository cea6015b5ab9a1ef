"""Durations and cadence (curvelab/durations.py): epochs <-> steps, when to log/eval/save."""

import ml_collections
import pytest

from curvelab import durations
from curvelab import errors


@pytest.mark.parametrize('n, batch, expected', [(256, 32, 8), (257, 32, 8), (287, 32, 8),
                                                (288, 32, 9), (32, 32, 1)])
def test_steps_per_epoch_drops_remainder(n, batch, expected):
  """The last partial batch of an epoch is dropped."""
  assert durations.steps_per_epoch(num_examples=n, batch_size=batch) == expected


def test_batch_larger_than_split_is_config_error():
  """A split smaller than one batch cannot make an epoch; the message names batch_size."""
  with pytest.raises(errors.ConfigError, match='batch_size=64') as info:
    durations.steps_per_epoch(num_examples=63, batch_size=64)
  assert '63' in str(info.value)


@pytest.mark.parametrize('batch', [0, -8])
def test_non_positive_batch_is_config_error(batch):
  with pytest.raises(errors.ConfigError, match='batch_size'):
    durations.steps_per_epoch(num_examples=100, batch_size=batch)


@pytest.mark.parametrize('kwargs, expected', [
    (dict(epochs=3), 30),
    (dict(epochs=0.5), 5),
    (dict(epochs=0.25), 2),   # 2.5 rounds to the nearest (even) step.
    (dict(epochs=0.26), 3),   # 2.6 -> 3.
    (dict(epochs=0), 0),
    (dict(steps=7), 7),
    (dict(examples=640, batch_size=32), 20),
    (dict(examples=641, batch_size=32), 21),  # A started batch is a step.
])
def test_to_steps(kwargs, expected):
  """Epochs (also fractional), steps and examples convert to whole optimizer steps."""
  assert durations.to_steps(steps_per_epoch=10, **kwargs) == expected


@pytest.mark.parametrize('kwargs', [dict(), dict(epochs=1, steps=10),
                                    dict(epochs=1, examples=10, batch_size=2),
                                    dict(steps=1, examples=10, batch_size=2)])
def test_to_steps_takes_exactly_one_duration(kwargs):
  with pytest.raises(ValueError, match='exactly one'):
    durations.to_steps(steps_per_epoch=10, **kwargs)


def test_to_steps_examples_needs_batch_size_and_rejects_negatives():
  with pytest.raises(ValueError, match='batch_size'):
    durations.to_steps(steps_per_epoch=10, examples=100)
  with pytest.raises(ValueError, match='negative'):
    durations.to_steps(steps_per_epoch=10, epochs=-1)


def _cadence(**kwargs):
  base = dict(steps_per_epoch=8, total_steps=8 * 5)
  base.update(kwargs)
  return durations.Cadence(**base)


def test_epoch_of_and_num_epochs():
  """Steps are 1-based: steps 1..8 are epoch 1, step 9 starts epoch 2."""
  c = _cadence()
  assert c.num_epochs == 5
  assert [c.epoch_of(s) for s in (1, 8, 9, 16, 40)] == [1, 1, 2, 2, 5]


def test_eval_and_checkpoint_every_epoch_by_default():
  c = _cadence()
  assert [s for s in range(1, 41) if c.should_eval(s)] == [8, 16, 24, 32, 40]
  assert [s for s in range(1, 41) if c.should_checkpoint(s)] == [8, 16, 24, 32, 40]


def test_every_n_epochs_and_the_last_epoch_always():
  """Every 2 epochs (2, 4) plus the last epoch (5) even though 5 is not a multiple of 2."""
  c = _cadence(eval_every_epochs=2, checkpoint_every_epochs=3)
  assert [s for s in range(1, 41) if c.should_eval(s)] == [16, 32, 40]
  assert [s for s in range(1, 41) if c.should_checkpoint(s)] == [24, 40]


def test_cadence_longer_than_run_still_fires_on_last_epoch():
  c = _cadence(eval_every_epochs=100, checkpoint_every_epochs=100)
  assert [s for s in range(1, 41) if c.should_eval(s)] == [40]
  assert [s for s in range(1, 41) if c.should_checkpoint(s)] == [40]


def test_should_log_skips_epoch_ends_and_zero_disables():
  """Progress lines every 4 steps, but not at an epoch's end (the epoch line covers it)."""
  c = _cadence(log_every_steps=4)
  assert [s for s in range(1, 25) if c.should_log(s)] == [4, 12, 20]
  assert not any(_cadence(log_every_steps=0).should_log(s) for s in range(1, 41))


def test_progress_lines_by_time_as_well_as_by_steps():
  """Slow steps still report: a line once log_every_seconds have passed, never at an epoch end."""
  c = _cadence(log_every_steps=0, log_every_seconds=10.0)
  assert c.progress_due(3, 3, seconds_since_line=12.0)
  assert not c.progress_due(3, 3, seconds_since_line=9.9)
  assert not c.progress_due(8, 8, seconds_since_line=60.0)  # The epoch's own line comes next.
  chunked = _cadence(log_every_steps=4, log_every_seconds=0.0)
  assert chunked.progress_due(9, 12, seconds_since_line=0.0)  # Step 12 is in the chunk 9..12.
  assert not chunked.progress_due(5, 7, seconds_since_line=1e6)  # Time-based lines are off.


def test_make_cadence_from_config():
  """The config's duration fields become the cadence (epochs -> steps through to_steps)."""
  config = ml_collections.ConfigDict({'loop': dict(
      num_epochs=3, log_every_steps=5, log_every_seconds=0.0, eval_every_epochs=2,
      checkpoint_every_epochs=1)})
  c = durations.make_cadence(config, steps_per_epoch=7)
  assert (c.steps_per_epoch, c.total_steps, c.num_epochs) == (7, 21, 3)
  assert (c.log_every_steps, c.eval_every_epochs, c.checkpoint_every_epochs) == (5, 2, 1)
  assert [s for s in range(1, 22) if c.should_eval(s)] == [14, 21]
