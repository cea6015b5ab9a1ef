"""Feeders hand the loop its training input one compiled call at a time.

* :class:`HostFeeder`: batches from the grain iterator (host augmentation), one per call, or
  ``k`` stacked for a scanned multi-step call.
* :class:`DeviceFeeder`: for device-resident data, only the steps' example indices.

Both report a checkpointable position (``state()``) in the grain iterator's format, so a workdir
resumes whichever way it was written.
"""

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from curvelab import sharding
from input_pipeline import device as device_lib
from input_pipeline import pipeline


def _stacked_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(None, sharding.DATA_AXIS))


class HostFeeder:
  """Host batches from the run's grain dataset."""

  def __init__(self, dataset, data_state: dict | None, mesh):
    self.iterator = pipeline.train_iterator(dataset, data_state)
    self.mesh = mesh

  def next(self, k: int):
    if k == 1:
      return sharding.to_global(next(self.iterator), self.mesh)
    local = [next(self.iterator) for _ in range(k)]
    stacked = jax.tree.map(lambda *xs: np.stack(xs), *local)
    shard = _stacked_sharding(self.mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(shard, x), stacked)

  def state(self) -> dict:
    return self.iterator.get_state()


class DeviceFeeder:
  """Example indices of the next steps, for batches built on the device."""

  def __init__(self, order: device_lib.EpochOrder, data_state: dict | None, mesh):
    self.order = order
    self.step = int((data_state or {}).get('next_index', 0))
    self.mesh = mesh

  def next(self, k: int):
    indices = self.order.indices(self.step, k)
    self.step += k
    local = indices.shape[1] // jax.process_count()
    mine = indices[:, jax.process_index() * local:(jax.process_index() + 1) * local]
    return jax.make_array_from_process_local_data(_stacked_sharding(self.mesh), mine,
                                                  indices.shape)

  def state(self) -> dict:
    return {'next_index': self.step}
