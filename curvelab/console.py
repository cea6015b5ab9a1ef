"""The console: curvelab's own progress lines, with library chatter (Orbax, TF) kept quiet.

Orbax and TensorFlow log every save and restore at INFO through absl; a researcher watching a run
wants epochs, metrics and findings. curvelab logs through its own logger to stdout and raises the
level of the others to WARNING.
"""

import logging
import sys

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
