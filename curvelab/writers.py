"""Metric writers: CLU's (TensorBoard events + logging) or a TensorFlow-free equivalent.

``clu`` (the default) is ``clu.metric_writers.create_default_writer``; it imports TensorFlow
(several seconds per process). ``events`` writes the same TensorBoard event files through the
``tensorboard`` package alone, with the same ``write_scalars``/``flush``/``close`` interface, for
short-lived processes (fault-injection tests, sweeps of tiny runs) where that import dominates.
"""

import logging
import pathlib
import time

from curvelab import errors

KINDS = ('clu', 'events')


class EventsWriter:
  """TensorBoard scalar events without TensorFlow (CLU's MetricWriter methods)."""

  def __init__(self, logdir: str, *, enabled: bool):
    self._writer = None
    if enabled:
      _tensorboard_without_tensorflow()
      from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
      from tensorboard.compat.proto import summary_pb2  # pylint: disable=g-import-not-at-top
      from tensorboard.summary.writer import event_file_writer  # pylint: disable=g-import-not-at-top
      self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
      pathlib.Path(logdir).mkdir(parents=True, exist_ok=True)
      self._writer = event_file_writer.EventFileWriter(logdir)

  def write_scalars(self, step: int, scalars: dict) -> None:
    if self._writer is None:
      return
    values = [self._summary_pb2.Summary.Value(tag=k, simple_value=float(v))
              for k, v in scalars.items()]
    event = self._event_pb2.Event(wall_time=time.time(), step=int(step),
                                  summary=self._summary_pb2.Summary(value=values))
    self._writer.add_event(event)
    logging.info('[%d] %s', step, ', '.join(f'{k}={v:.6g}' for k, v in scalars.items()))

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()


def _tensorboard_without_tensorflow() -> None:
  """Points TensorBoard's file layer at its bundled stub unless TensorFlow is already loaded.

  TensorBoard imports TensorFlow whenever it is installed, only to write files, which its stub does
  as well; ``tensorboard.compat.notf`` is TensorBoard's own switch for that.
  """
  import sys  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  if 'tensorflow' not in sys.modules and 'tensorboard.compat.notf' not in sys.modules:
    sys.modules['tensorboard.compat.notf'] = types.ModuleType('tensorboard.compat.notf')


def create(kind: str, workdir: str, *, is_writer: bool):
  """A metric writer for ``workdir``; only the writing process emits files."""
  if kind not in KINDS:
    raise errors.ConfigError(f'metric_writer={kind!r} is unknown; allowed: {", ".join(KINDS)}.')
  if kind == 'events':
    return EventsWriter(workdir, enabled=is_writer)
  from clu import metric_writers  # pylint: disable=g-import-not-at-top  (imports TensorFlow)
  return metric_writers.create_default_writer(workdir, just_logging=not is_writer,
                                              asynchronous=False)
