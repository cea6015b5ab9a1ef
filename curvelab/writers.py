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
  """TensorBoard scalar events without TensorFlow (CLU's MetricWriter methods).

  Events are the ``tensorboard`` package's protobufs framed as TFRecords by its own
  ``RecordWriter`` (length, masked CRC-32C, payload, masked CRC-32C), which needs no TensorFlow.
  TensorBoard's higher-level ``EventFileWriter`` would import TensorFlow, and switching it to its
  TF-free stub is process-wide, which would break CLU writers used later in the same process.
  """

  def __init__(self, logdir: str, *, enabled: bool):
    self._file = None
    if enabled:
      # pylint: disable=g-import-not-at-top
      import socket
      from tensorboard.compat.proto import event_pb2
      from tensorboard.compat.proto import summary_pb2
      from tensorboard.summary.writer import record_writer
      # pylint: enable=g-import-not-at-top
      self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
      folder = pathlib.Path(logdir)
      folder.mkdir(parents=True, exist_ok=True)
      name = f'events.out.tfevents.{int(time.time())}.{socket.gethostname()}.curvelab'
      self._file = open(folder / name, 'ab')  # pylint: disable=consider-using-with
      self._records = record_writer.RecordWriter(self._file)
      self._write(event_pb2.Event(wall_time=time.time(), file_version='brain.Event:2'))

  def _write(self, event) -> None:
    self._records.write(event.SerializeToString())

  def write_scalars(self, step: int, scalars: dict) -> None:
    if self._file is None:
      return
    values = [self._summary_pb2.Summary.Value(tag=k, simple_value=float(v))
              for k, v in scalars.items()]
    self._write(self._event_pb2.Event(wall_time=time.time(), step=int(step),
                                      summary=self._summary_pb2.Summary(value=values)))
    logging.info('[%d] %s', step, ', '.join(f'{k}={v:.6g}' for k, v in scalars.items()))

  def flush(self) -> None:
    if self._file is not None:
      self._file.flush()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None


def create(kind: str, workdir: str, *, is_writer: bool):
  """A metric writer for ``workdir``; only the writing process emits files."""
  if kind not in KINDS:
    raise errors.ConfigError(f'loop.metric_writer={kind!r} is unknown; allowed: {", ".join(KINDS)}.')
  if kind == 'events':
    return EventsWriter(workdir, enabled=is_writer)
  from clu import metric_writers  # pylint: disable=g-import-not-at-top  (imports TensorFlow)
  return metric_writers.create_default_writer(workdir, just_logging=not is_writer,
                                              asynchronous=False)
