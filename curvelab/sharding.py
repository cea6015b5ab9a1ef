"""Data-parallel sharding over every device of every process.

One 1-D mesh axis, ``data``. Parameters, optimizer state and metrics are replicated; every batch
array is split along its leading (example) axis. Under ``jax.jit`` the compiler inserts the
gradient all-reduce (and the cross-device mean of BatchNorm statistics), so the sharded step
computes exactly what a single device would on the whole global batch.
"""

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from curvelab import errors

DATA_AXIS = 'data'


def make_mesh() -> Mesh:
  """A mesh over all global devices (every process sees the same device order)."""
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size: int, *, field: str = 'loop.batch_size',
                     multiples: dict[str, int] | None = None) -> None:
  """Refuses a global batch that cannot be split evenly across devices (and micro-batches).

  Args:
    batch_size: the global batch size.
    field: the config field to name in the error.
    multiples: further factors the per-device share must divide by, by the config field that
      asks for them (``speed.grad_accum_steps``, ``speed.concurrent_microbatches``).
  """
  n = jax.device_count()
  if batch_size <= 0:
    raise errors.ConfigError(f'{field} must be a positive integer, got {batch_size}.')
  multiple = math.prod((multiples or {}).values())
  if batch_size % (n * multiple):
    extra = ''.join(f' x {name}={value}' for name, value in (multiples or {}).items())
    raise errors.ConfigError(
        f'{field}={batch_size} is not divisible by the device count ({n}){extra}; '
        f'use a multiple of {n * multiple}.')


def local_batch_size(global_batch: int) -> int:
  """This process's share of a global batch."""
  return global_batch // jax.process_count()


def to_global(batch: dict, mesh: Mesh) -> dict:
  """Assembles global arrays from this process's slice of a batch (no copy between processes)."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def to_host_global(tree):
  """A global (possibly multi-process) pytree of arrays as numpy on every process."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return multihost_utils.process_allgather(tree, tiled=True)
