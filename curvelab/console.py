"""The console: curvelab's own progress lines, with library chatter (Orbax, TF) kept quiet.

Orbax and TensorFlow log every save and restore at INFO through absl; a researcher watching a run
wants epochs, metrics and findings. curvelab logs through its own logger to stdout and raises the
level of the others to WARNING.
"""

import logging
import sys
import time

_NAME = 'curvelab'


def logger() -> logging.Logger:
  log = logging.getLogger(_NAME)
  if not log.handlers:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter('%(asctime)s %(message)s', '%H:%M:%S'))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
  return log


def quiet_libraries() -> None:
  """Libraries speak only for warnings and errors."""
  try:
    from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
    absl_logging.set_verbosity(absl_logging.WARNING)
  except ImportError:
    pass
  logging.getLogger().setLevel(logging.WARNING)
  for name in ('orbax', 'absl', 'jax', 'tensorflow'):
    logging.getLogger(name).setLevel(logging.WARNING)


class Progress:
  """Console progress inside an epoch: steps/s and ETA, at the config's cadence."""

  def __init__(self, cadence):
    """``cadence``: the run's ``durations.Cadence`` (steps per epoch, total steps, when to log)."""
    self.cadence = cadence
    self.start = self.last_line = time.perf_counter()
    self.start_step = 0

  def reset(self, step: int) -> None:
    self.start, self.start_step = time.perf_counter(), step
    self.last_line = self.start

  def due(self, step: int, k: int) -> bool:
    """Whether the chunk of ``k`` steps ending at ``step`` ends with a line (cadence.py decides)."""
    return self.cadence.progress_due(step - k + 1, step, time.perf_counter() - self.last_line)

  def report(self, step: int, loss: float) -> None:
    self.last_line = time.perf_counter()
    rate = (step - self.start_step) / max(time.perf_counter() - self.start, 1e-9)
    left = (self.cadence.total_steps - step) / max(rate, 1e-9)
    logger().info('epoch %d step %d/%d  loss %.4f  %.1f steps/s  ETA %.0fs',
                  self.cadence.epoch_of(step), step, self.cadence.total_steps, loss, rate, left)
