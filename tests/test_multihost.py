"""Two processes (CPU backend, loopback coordinator, two fake devices each) train exactly as one
process with four devices, each reading its own disjoint share of every batch."""

import collections
import json
import socket
import subprocess
import sys
import textwrap

import pytest

from tests import helpers

DRIVER = textwrap.dedent('''
    import json, os, sys
    import jax
    pid, nproc, port, workdir, log = sys.argv[1:6]
    pid, nproc = int(pid), int(nproc)
    if nproc > 1:
      jax.config.update('jax_cpu_collectives_implementation', 'gloo')
      jax.distributed.initialize(coordinator_address=f'127.0.0.1:{port}', num_processes=nproc,
                                 process_id=pid)
    from input_pipeline import sources
    from tests import helpers
    import train
    read = []
    original = sources.ArraySplit.take
    def take(self, indices):
      if len(self) == 256:  # The training split: record which examples this process reads.
        # One append per batch: grain's threads call this concurrently, and an extend over a
        # generator could interleave two batches' indices.
        read.append([int(i) for i in indices])
      return original(self, indices)
    sources.ArraySplit.take = take
    config = helpers.tiny_config(loop__num_epochs=2, loop__metric_writer='events')
    summary = train.train_and_evaluate(config, workdir)
    with open(f'{log}.{pid}', 'w') as f:
      json.dump({'read': read, 'devices': jax.device_count(), 'local': jax.local_device_count(),
                 'processes': jax.process_count(), 'test_accuracy': summary.get('test_accuracy')}, f)
''')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _start(tmp_path, name: str, *, processes: int, devices_each: int):
  """Starts one launch (``processes`` drivers); :func:`_finish` waits for it."""
  driver = tmp_path / f'{name}_driver.py'  # One per launch: launches may run at once.
  driver.write_text(DRIVER)
  workdir, log = tmp_path / name, tmp_path / f'{name}.log'
  env = helpers.child_env(XLA_FLAGS=f'--xla_force_host_platform_device_count={devices_each}')
  port = str(_free_port())
  procs = [subprocess.Popen([sys.executable, str(driver), str(i), str(processes), port,
                             str(workdir), str(log)], cwd=helpers.REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(processes)]
  return workdir, log, procs


def _kill(launch):
  for p in launch[2]:
    if p.poll() is None:
      p.kill()
    p.communicate()


def _finish(launch):
  workdir, log, procs = launch
  try:
    outs = [p.communicate(timeout=480) for p in procs]
  except BaseException:
    _kill(launch)
    raise
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  logs = [json.loads(pathlib_read(f'{log}.{i}')) for i in range(len(procs))]
  return workdir, logs


def _launch(tmp_path, name: str, *, processes: int, devices_each: int):
  return _finish(_start(tmp_path, name, processes=processes, devices_each=devices_each))


def pathlib_read(path: str) -> str:
  with open(path) as f:
    return f.read()


def test_two_processes_equal_one_process_with_four_devices(tmp_path):
  # Both launches run at once (separate workdirs, logs and ports): each process spends most of
  # its time in single-threaded imports, tracing and compilation, so on a 2-core machine the
  # reference run costs little extra wall time next to the two-process run.
  multi_launch = _start(tmp_path, 'multi', processes=2, devices_each=2)
  try:
    single, (one,) = _launch(tmp_path, 'single', processes=1, devices_each=4)
  except BaseException:
    _kill(multi_launch)
    raise
  multi, (p0, p1) = _finish(multi_launch)
  assert one['devices'] == 4 and one['processes'] == 1
  assert p0['devices'] == 4 and p0['local'] == 2 and p0['processes'] == 2

  # Each process read its own half of every batch; together exactly what one process read.
  assert _halves_make_up_the_batches(p0['read'], p1['read'], one['read'])
  assert len(p0['read']) == len(p1['read']) == len(one['read'])

  # Process 0 alone wrote the run files; the history equals the one-process run's.
  reference = helpers.without_timing(helpers.read_history(single))
  history = helpers.without_timing(helpers.read_history(multi))
  assert [r['epoch'] for r in history] == [1, 2]
  # Equal up to float summation order: the all-reduce over 2 x 2 devices adds in another order.
  for got, want in zip(history, reference):
    assert got.keys() == want.keys()
    for key, value in want.items():
      _assert_close(got[key], value, key)
  assert p0['test_accuracy'] == pytest.approx(one['test_accuracy'], abs=1e-6)


def _assert_close(got, want, key):
  if isinstance(want, dict):
    assert got.keys() == want.keys(), key
    for k in want:
      _assert_close(got[k], want[k], f'{key}.{k}')
  elif isinstance(want, list):
    assert len(got) == len(want), key
    for g, w in zip(got, want):
      _assert_close(g, w, key)
  elif isinstance(want, float):
    assert got == pytest.approx(want, rel=1e-5, abs=1e-7), key
  else:
    assert got == want, key


def _halves_make_up_the_batches(a: list[list[int]], b: list[list[int]],
                                whole: list[list[int]]) -> bool:
  """Every batch of the one-process run is one batch of each process, disjoint halves of it.

  Batches are matched as sets, not by position: the reading threads may record them in any order.
  """
  unmatched_b = [frozenset(x) for x in b]
  wanted = collections.Counter(frozenset(x) for x in whole)
  for half in map(frozenset, a):
    other = next((x for x in unmatched_b if not x & half and wanted[x | half]), None)
    if other is None or len(half) != len(other):
      return False
    unmatched_b.remove(other)
    wanted[other | half] -= 1
  return not unmatched_b and not +wanted
