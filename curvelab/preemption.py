"""Graceful stops: SIGTERM/SIGINT finish the current step, save, flush and exit 0.

A single process turns the signal into a flag the loop checks after every step. Several processes
must stop at the same step (a checkpoint is a collective) although a signal may reach them at
different moments, so there every process ORs its flag with the others' at the same steps, every
``MULTIHOST_CHECK_EVERY`` steps (a tiny host collective, too costly for every step).
"""

import signal

import jax

from curvelab import console

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
MULTIHOST_CHECK_EVERY = 10


class Preemption:
  """Context manager that records stop signals (and restores the old handlers on exit)."""

  def __init__(self):
    self.signal_name = None
    self._old = {}

  def __enter__(self):
    for sig in _SIGNALS:
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # Not the main thread (e.g. a test runner's worker): no handlers.
        pass
    return self

  def __exit__(self, *exc):
    for sig, handler in self._old.items():
      signal.signal(sig, handler)
    return False

  def _handle(self, signum, frame):
    del frame
    if self.signal_name is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt  # A second Ctrl-C means "now".
    self.signal_name = signal.Signals(signum).name
    console.logger().info('%s received: finishing the current step, then saving a checkpoint.',
                          self.signal_name)

  def requested(self, step: int) -> bool:
    """Whether every process should stop after ``step``."""
    if jax.process_count() > 1:
      if step % MULTIHOST_CHECK_EVERY:
        return False
      return _any_process(self.signal_name is not None)
    return self.signal_name is not None


def _any_process(flag: bool) -> bool:
  """Logical OR of a host flag over processes (a tiny collective; used only multi-process)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(np.any(multihost_utils.process_allgather(np.array([flag]))))
