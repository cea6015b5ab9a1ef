"""The one place where durations become steps and cadences are decided.

Configs speak in epochs (``num_epochs``, ``warmup_epochs``, ``checkpoint_every_epochs``) because
that is how researchers compare runs; the loop and the optimizer schedule speak in optimizer
steps. Every conversion goes through :func:`to_steps`, and every "is it time to X?" question goes
through :class:`Cadence`, so that a change of batch size or dataset size can never make two parts
of the system disagree about where an epoch ends.
"""

import dataclasses
import math

from curvelab import errors


def steps_per_epoch(*, num_examples: int, batch_size: int) -> int:
  """Optimizer steps in one training epoch.

  Training batches have a fixed shape (one compiled step), so the last partial batch of an epoch
  is dropped; the next epoch's reshuffle gives those examples their turn.

  Args:
    num_examples: training examples in the split.
    batch_size: global batch size.

  Returns:
    ``num_examples // batch_size``.

  Raises:
    ConfigError: when the split holds fewer examples than one batch.
  """
  if batch_size <= 0:
    raise errors.ConfigError(f'loop.batch_size must be a positive integer, got {batch_size}.')
  steps = num_examples // batch_size
  if steps < 1:
    raise errors.ConfigError(
        f'loop.batch_size={batch_size} is larger than the training split ({num_examples} '
        'examples); lower loop.batch_size or use a larger split.')
  return steps


def to_steps(*, steps_per_epoch: int, epochs: float | None = None, steps: int | None = None,
             examples: int | None = None, batch_size: int | None = None) -> int:
  """Converts exactly one duration (epochs, steps or examples) into optimizer steps.

  Fractional epochs are allowed (``warmup_epochs=0.5``) and round to the nearest step.

  Args:
    steps_per_epoch: from :func:`steps_per_epoch`.
    epochs: a duration in epochs.
    steps: a duration in optimizer steps (returned unchanged).
    examples: a duration in training examples (needs ``batch_size``).
    batch_size: global batch size, for ``examples``.

  Returns:
    The duration in whole optimizer steps (>= 0).
  """
  given = [v is not None for v in (epochs, steps, examples)]
  if sum(given) != 1:
    raise ValueError('to_steps takes exactly one of epochs=, steps=, examples=.')
  if steps is not None:
    result = int(steps)
  elif epochs is not None:
    result = int(round(float(epochs) * steps_per_epoch))
  else:
    if not batch_size:
      raise ValueError('to_steps(examples=...) needs batch_size.')
    result = int(math.ceil(examples / batch_size))
  if result < 0:
    raise ValueError(f'a duration cannot be negative, got {result} steps.')
  return result


@dataclasses.dataclass(frozen=True)
class Cadence:
  """When the loop logs, evaluates and checkpoints, all in optimizer steps.

  Attributes:
    steps_per_epoch: optimizer steps per epoch.
    total_steps: optimizer steps of the whole run.
    log_every_steps: console progress (steps/s, ETA) every this many steps; 0 disables.
    log_every_seconds: also whenever this many seconds passed since the last progress line, so
      that runs of slow steps (a CPU LSTM epoch of 24 steps of 7 s) say how they are doing;
      0 disables.
    eval_every_epochs: validation every this many epochs (the last epoch always evaluates).
    checkpoint_every_epochs: checkpoint every this many epochs (the last epoch always saves).
  """
  steps_per_epoch: int
  total_steps: int
  log_every_steps: int = 0
  log_every_seconds: float = 0.0
  eval_every_epochs: int = 1
  checkpoint_every_epochs: int = 1

  @property
  def num_epochs(self) -> int:
    return self.total_steps // self.steps_per_epoch

  def epoch_of(self, step: int) -> int:
    """1-based epoch that optimizer step ``step`` (1-based: the step just taken) belongs to."""
    return (step - 1) // self.steps_per_epoch + 1

  def is_epoch_end(self, step: int) -> bool:
    return step > 0 and step % self.steps_per_epoch == 0

  def should_log(self, step: int) -> bool:
    return (self.log_every_steps > 0 and step % self.log_every_steps == 0
            and not self.is_epoch_end(step))

  def progress_due(self, first: int, last: int, seconds_since_line: float) -> bool:
    """Whether steps ``first..last`` (one call's chunk) end with a progress line.

    By step count, or by time since the last line; never at an epoch's end, whose own line says
    more.
    """
    if self.is_epoch_end(last):
      return any(self.should_log(s) for s in range(first, last + 1))
    timely = 0 < self.log_every_seconds <= seconds_since_line
    return timely or any(self.should_log(s) for s in range(first, last + 1))

  def _every_epochs(self, step: int, every: int) -> bool:
    if not self.is_epoch_end(step):
      return False
    if step >= self.total_steps:
      return True
    return every > 0 and (step // self.steps_per_epoch) % every == 0

  def should_eval(self, step: int) -> bool:
    return self._every_epochs(step, self.eval_every_epochs)

  def should_checkpoint(self, step: int) -> bool:
    return self._every_epochs(step, self.checkpoint_every_epochs)


def make_cadence(config, *, steps_per_epoch: int) -> Cadence:
  """Builds the run's :class:`Cadence` from the config's duration fields."""
  total = to_steps(steps_per_epoch=steps_per_epoch, epochs=config.loop.num_epochs)
  return Cadence(
      steps_per_epoch=steps_per_epoch,
      total_steps=total,
      log_every_steps=int(config.loop.log_every_steps),
      log_every_seconds=float(config.loop.log_every_seconds),
      eval_every_epochs=int(config.loop.eval_every_epochs),
      checkpoint_every_epochs=int(config.loop.checkpoint_every_epochs),
  )
