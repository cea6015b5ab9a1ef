"""Graceful stops: SIGTERM/SIGINT at any moment lead to exit 0 with nothing lost.

A scheduler's preemption notice can come at any moment: during imports, start-up and
compilation, training, evaluation, or the final test evaluation. `install()` (train.py's first
statement when run as a program) turns the signals into a flag from then on, and the loop reads
the flag at the points where stopping is safe:

* before the first step: nothing new to save, the run exits 0 and the same command starts it;
* during training: the current step finishes, a mid-epoch checkpoint is saved, exit 0;
* during an epoch-end evaluation: the epoch's checkpoint is the resume point, exit 0;
* after the last epoch (final test evaluation, summary): the run finishes, which takes seconds,
  and exits 0 with its summary.

A second Ctrl-C means "now" (KeyboardInterrupt). Library callers of `train_and_evaluate` get the
same flag for the duration of the loop only (`watch`), so a host program keeps its own handlers.

Several processes must stop at the same step (a checkpoint is a collective) although a signal may
reach them at different moments, so there every process ORs its flag with the others' once per
window of ``MULTIHOST_CHECK_EVERY`` steps, at the first check that falls in a new window. With
``steps_per_call = k`` the loop checks every k steps, and a window boundary is crossed at least
every ``max(k, MULTIHOST_CHECK_EVERY)`` steps whatever k is (a modulo test could miss every one).
"""

import contextlib
import signal

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
MULTIHOST_CHECK_EVERY = 10

_installed = None  # The process-wide recorder, once install() has run.


class Preemption:
  """Records stop signals while installed (and restores the old handlers on exit)."""

  def __init__(self):
    self.signal_name = None
    self._old = {}
    self._window = None  # Last multi-host check window (step // MULTIHOST_CHECK_EVERY).

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
    # Imported here: install() runs before logging (and anything heavy) is set up.
    from curvelab import console  # pylint: disable=g-import-not-at-top
    console.logger().info('%s received: stopping at the next safe point (a checkpoint is saved '
                          'when training has started; after the last epoch the run finishes).',
                          self.signal_name)

  def requested(self, step: int) -> bool:
    """Whether every process should stop after ``step``; all processes call it at the same steps."""
    import jax  # pylint: disable=g-import-not-at-top
    if jax.process_count() > 1:
      window = step // MULTIHOST_CHECK_EVERY
      if window == self._window:
        return False
      self._window = window
      return _any_process(self.signal_name is not None)
    return self.signal_name is not None


def install() -> Preemption:
  """Records SIGTERM/SIGINT for the rest of the process; idempotent. The CLI's first statement."""
  global _installed
  if _installed is None:
    _installed = Preemption().__enter__()
  return _installed


@contextlib.contextmanager
def watch():
  """The process-wide recorder when installed, else one installed for the block's duration."""
  if _installed is not None:
    _installed._window = None  # pylint: disable=protected-access
    yield _installed
    return
  with Preemption() as recorder:
    yield recorder


def _any_process(flag: bool) -> bool:
  """Logical OR of a host flag over processes (a tiny collective; used only multi-process)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(np.any(multihost_utils.process_allgather(np.array([flag]))))
