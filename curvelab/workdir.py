"""Workdir set-up: the single-user lock and the resume compatibility check."""

import errno
import json
import os
import pathlib
import socket

import jax
import ml_collections

from curvelab import errors
from curvelab.configdicts import flatten

LOCK = '.lock'


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except OSError as e:
    return e.errno == errno.EPERM
  return True


class WorkdirLock:
  """An advisory lock file so two processes never train into the same workdir.

  A lock left by a dead process on this host (``kill -9``) is detected and taken over.
  Only process 0 locks: the other processes of a multi-host run write nothing.
  """

  def __init__(self, workdir: pathlib.Path):
    self.path = workdir / LOCK
    self.held = False

  def acquire(self) -> None:
    if jax.process_index() != 0:
      return
    me = {'pid': os.getpid(), 'host': socket.gethostname()}
    for _ in range(2):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
      except FileExistsError:
        if self._stale():
          self.path.unlink(missing_ok=True)
          continue
        owner = self._owner()
        raise errors.WorkdirLockedError(
            f'workdir {self.path.parent} is in use by process {owner.get("pid")} on '
            f'{owner.get("host")}; wait for it to finish or use another --workdir.') from None
      with os.fdopen(fd, 'w') as f:
        json.dump(me, f)
      self.held = True
      return

  def _owner(self) -> dict:
    try:
      return json.loads(self.path.read_text())
    except (OSError, ValueError):
      return {}

  def _stale(self) -> bool:
    owner = self._owner()
    if not owner:
      return True  # Torn write by a process killed while locking.
    if owner.get('host') != socket.gethostname():
      return False  # Cannot tell from here; refuse rather than risk two writers.
    return not _pid_alive(int(owner.get('pid', -1)))

  def release(self) -> None:
    if self.held:
      self.path.unlink(missing_ok=True)
      self.held = False


def shape_changing_fields(saved: dict, current: ml_collections.ConfigDict, shapes_fn) -> list[str]:
  """Config fields whose saved value gives different parameter shapes than the current one.

  Args:
    saved: the workdir's ``config.json``.
    current: the config of this invocation.
    shapes_fn: ``config -> pytree of parameter shapes`` (cheap: ``jax.eval_shape``).

  Returns:
    Sorted field names; empty when the parameter shapes agree.
  """
  now = current.to_dict()
  target = shapes_fn(current)
  saved_cfg = ml_collections.ConfigDict(saved)
  try:
    if shapes_fn(saved_cfg) == target:
      return []
  except Exception:  # A saved config the current code cannot build: compare field by field.
    pass
  flat_saved, flat_now = flatten(saved), flatten(now)
  changed = []
  for key in sorted(set(flat_saved) | set(flat_now)):
    if flat_saved.get(key) == flat_now.get(key) or key.startswith(('dataset.', 'doctor.')):
      continue
    probe = ml_collections.ConfigDict(now)
    try:
      node = probe
      parts = key.split('.')
      for part in parts[:-1]:
        node = node[part]
      node[parts[-1]] = flat_saved[key]
      if shapes_fn(probe) != target:
        changed.append(key)
    except Exception:
      changed.append(key)
  return changed or ['model']
