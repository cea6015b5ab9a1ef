"""Data parallelism and gradient accumulation give the update of one big batch on one device.

The multi-device checks run in a child python with 4 virtual CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4`` must be set before jax is imported).
The step-equivalence checks use helpers.small_step_setup (a small classifier on real digits
batches); the full run in the child uses the tiny ViT config.
"""

import json
import sys
import textwrap

import jax
import numpy as np
import pytest

import helpers
from curvelab import compiled
from curvelab import build as build_lib
from curvelab import metrics as metrics_lib
from curvelab import optim
from curvelab import sharding
from curvelab import steps as steps_lib

CHILD = textwrap.dedent('''
    import os
    os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=4'
    import json, tempfile, traceback
    import jax, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import helpers, train
    from curvelab import errors, metrics as metrics_lib, steps as steps_lib

    out = {'device_count': jax.device_count()}

    def attempt(name, fn):
      try:
        out[name] = fn()
      except Exception as e:
        out[name] = {'exception': type(e).__name__, 'message': str(e),
                     'traceback': traceback.format_exc()[-3000:]}

    def sharded_vs_single():
      model, task, tx, batches, state0 = helpers.small_step_setup()
      step = steps_lib.make_train_step(model=model, task=task, tx=tx)

      def run(devices):
        mesh = Mesh(np.asarray(devices), ('data',))
        repl, shard = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
        state = jax.device_put(state0, repl)
        metrics = jax.device_put(metrics_lib.zeros_like(
            jax.eval_shape(step.single, state, batches[0])[1]), repl)
        fn = jax.jit(step, out_shardings=(repl, repl))
        shards = []
        for b in batches:
          b = jax.device_put(b, shard)
          shards.append(sorted({s.data.shape[0] for s in b['inputs'].addressable_shards}))
          state, metrics = fn(state, b, metrics)
        leaf = jax.tree.leaves(state.params)[0]
        return (jax.device_get(state.params), float(metrics[0].loss.compute()), shards,
                len(leaf.sharding.device_set))

      p1, loss1, shards1, _ = run(jax.devices()[:1])
      p4, loss4, shards4, ndev = run(jax.devices())
      mismatch = []
      for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(p1), jax.tree.leaves(p4)):
        try:
          np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
        except AssertionError as e:
          mismatch.append(jax.tree_util.keystr(path) + ' '.join(str(e).splitlines()[3:7]))
      moved = max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(
          jax.tree.leaves(p1), jax.tree.leaves(jax.device_get(state0.params))))
      return {'mismatch': mismatch, 'loss1': loss1, 'loss4': loss4, 'shards1': shards1,
              'shards4': shards4, 'param_devices': ndev, 'moved': moved}

    def full_run():
      workdir = tempfile.mkdtemp()
      config = helpers.set_fields(helpers.tiny_config(), helpers.fast_writer_fields())
      summary = train.train_and_evaluate(config, workdir)
      return {'summary': {k: v for k, v in summary.items() if k != 'config'},
              'history': helpers.read_history(workdir)}

    def bad_batch():
      try:
        train.train_and_evaluate(helpers.tiny_config(loop__batch_size=30), tempfile.mkdtemp())
      except errors.CurvelabError as e:
        return {'type': type(e).__name__, 'message': str(e)}
      return {'type': None}

    attempt('bad_batch', bad_batch)
    attempt('sharded_vs_single', sharded_vs_single)
    attempt('full_run', full_run)
    print(json.dumps(out))
''')


@pytest.fixture(scope='module', autouse=True)
def _child_process(request, tmp_path_factory):
  """Starts the 4-device child when this module starts: it runs while the in-process
  accumulation tests (first in this file) do."""
  if not helpers.module_uses(request, 'child'):
    yield None
    return
  folder = tmp_path_factory.mktemp('child')
  script = folder / 'four_devices.py'
  script.write_text(CHILD)
  env = helpers.child_env()
  env['PYTHONPATH'] = f'{helpers.REPO}:{helpers.REPO / "tests"}'
  background = helpers.BackgroundProcess([sys.executable, str(script)], folder=folder, env=env)
  yield background
  background.kill()


@pytest.fixture(scope='module')
def child(_child_process):
  """Waits for the 4-device child (run once); returns its JSON results."""
  proc = _child_process.wait(timeout=400)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(helpers.last_line(proc.stdout))


# ----------------------------------------------------------------------------------- accumulation

def _two_steps(model, task, tx, batches, state, accum, concurrent=1):
  step = steps_lib.make_train_step(model=model, task=task, tx=tx, grad_accum_steps=accum,
                                   concurrent_microbatches=concurrent)
  metrics = metrics_lib.zeros_like(jax.eval_shape(step.single, state, batches[0])[1])
  fn = jax.jit(step)
  for b in batches:
    state, metrics = fn(state, b, metrics)
  return state, metrics


def test_grad_accumulation_equals_one_big_batch():
  """grad_accum_steps=2 (two micro-batches of 16) gives the update of one batch of 32."""
  model, task, tx, batches, state = helpers.small_step_setup()
  big, big_m = _two_steps(model, task, tx, batches, state, accum=1)
  acc, acc_m = _two_steps(model, task, tx, batches, state, accum=2)
  moved = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
              for a, b in zip(jax.tree.leaves(big.params), jax.tree.leaves(state.params)))
  assert moved > 1e-3
  for a, b in zip(jax.tree.leaves(big.params), jax.tree.leaves(acc.params)):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
  assert float(acc_m[0].loss.compute()) == pytest.approx(float(big_m[0].loss.compute()), rel=1e-5)
  assert float(acc_m[0].accuracy.compute()) == float(big_m[0].accuracy.compute())
  assert float(acc_m[0].loss.count) == float(big_m[0].loss.count) == 64.0


@pytest.mark.parametrize('accum,concurrent', [(1, 2), (2, 2), (1, 4)])
def test_concurrent_microbatches_equal_one_big_batch(accum, concurrent):
  """Micro-batches run side by side (alone or inside accumulation) give one batch's update."""
  model, task, tx, batches, state = helpers.small_step_setup()
  big, big_m = _two_steps(model, task, tx, batches, state, accum=1)
  split, split_m = _two_steps(model, task, tx, batches, state, accum=accum, concurrent=concurrent)
  for a, b in zip(jax.tree.leaves(big.params), jax.tree.leaves(split.params)):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
  assert float(split_m[0].loss.compute()) == pytest.approx(float(big_m[0].loss.compute()),
                                                           rel=1e-5)
  assert float(split_m[0].accuracy.compute()) == float(big_m[0].accuracy.compute())
  assert float(split_m[1].grad_norm.compute()) == pytest.approx(
      float(big_m[1].grad_norm.compute()), rel=1e-5)


def test_concurrent_microbatches_are_unrolled_not_looped():
  """Side-by-side micro-batches compile to straight-line passes (no loop would let them overlap);
  accumulation alone stays a loop, one micro-batch's memory at a time."""
  model, task, tx, batches, state = helpers.small_step_setup()

  def hlo(accum, concurrent):
    step = steps_lib.make_train_step(model=model, task=task, tx=tx, grad_accum_steps=accum,
                                     concurrent_microbatches=concurrent)
    metrics = metrics_lib.zeros_like(jax.eval_shape(step.single, state, batches[0])[1])
    return jax.jit(step).lower(state, batches[0], metrics).compile().as_text()

  assert ' while(' not in hlo(1, 2)
  assert ' while(' in hlo(2, 1)


_REFERENCE_CPU_STEP = dict(requested=0, per_device_batch=128, grad_accum_steps=1,
                          has_model_state=False, platform='cpu')


@pytest.mark.parametrize('changes,expected', [
    ({}, 2),
    ({'grad_accum_steps': 2}, 2),
    ({'platform': 'gpu'}, 1),
    ({'platform': 'tpu'}, 1),
    # BatchNorm statistics per half-batch would change the update: automatic keeps one.
    ({'has_model_state': True}, 1),
    # Odd per-device batches (5 sanity examples), or halves that accumulation cannot split.
    ({'per_device_batch': 5}, 1),
    ({'per_device_batch': 6, 'grad_accum_steps': 2}, 1),
    # An explicit value is used as given, BatchNorm and accelerators included.
    ({'requested': 4, 'has_model_state': True, 'platform': 'gpu'}, 4),
    ({'requested': 1}, 1),
])
def test_resolve_concurrent_microbatches(changes, expected):
  kwargs = {**_REFERENCE_CPU_STEP, **changes}
  assert steps_lib.resolve_concurrent_microbatches(**kwargs) == expected


_REFERENCE_CPU_GROUPS = dict(cpu_microbatch_size=4, per_device_batch=128, grad_accum_steps=1,
                             concurrent_microbatches=2, has_model_state=False, platform='cpu')


@pytest.mark.parametrize('changes,expected', [
    # 128 examples, 2 side by side: 16 groups of 2 x 4.
    ({}, 16),
    ({'cpu_microbatch_size': 8}, 8),
    ({'cpu_microbatch_size': 64}, 1),
    ({'cpu_microbatch_size': 0}, 1),
    # The user's accumulation is kept and multiplied: 2 x (32 examples -> 8 micro-batches of 4).
    ({'grad_accum_steps': 2}, 16),
    # 60 examples per group: 6 micro-batches of 10 (the largest divisor leaving at least 8).
    ({'per_device_batch': 60, 'concurrent_microbatches': 1, 'cpu_microbatch_size': 8}, 6),
    # A group already smaller than the size, or prime, is not split.
    ({'per_device_batch': 6}, 1),
    ({'per_device_batch': 14, 'concurrent_microbatches': 1, 'cpu_microbatch_size': 2}, 7),
    ({'per_device_batch': 13, 'concurrent_microbatches': 1, 'cpu_microbatch_size': 2}, 1),
    # Accelerators and BatchNorm models keep grad_accum_steps.
    ({'platform': 'gpu', 'grad_accum_steps': 2}, 2),
    ({'platform': 'tpu'}, 1),
    ({'has_model_state': True, 'grad_accum_steps': 4}, 4),
])
def test_resolve_sequential_microbatches(changes, expected):
  kwargs = {**_REFERENCE_CPU_GROUPS, **changes}
  size = kwargs.pop('cpu_microbatch_size')
  assert steps_lib.resolve_sequential_microbatches(size, **kwargs) == expected


def _digits_batch(batch_size: int) -> dict:
  rng = np.random.default_rng(0)
  return sharding.to_global({
      'inputs': rng.normal(size=(batch_size, 8, 8, 1)).astype(np.float32),
      'label': rng.integers(0, 10, batch_size).astype(np.int32),
      'weight': np.ones(batch_size, np.float32)}, sharding.make_mesh())


def _train_step_for(config, batch):
  setup = build_lib.build_without_data(config, num_outputs=10)
  tx, _ = optim.make_optimizer(config, steps_per_epoch=10)
  state = build_lib.init_state(setup, tx, batch)
  return setup, state, compiled.make_train_step(setup, tx, state)


def test_train_step_splits_into_cpu_microbatches_with_the_same_update():
  """compiled.make_train_step with cpu_microbatch_size loops over cache-sized micro-batches (two side
  by side in each iteration), and the update is the one of the step without the loop."""
  # SGD: Adam's first update is about lr * sign(g), which float rounding flips where g is ~0.
  config = helpers.tiny_config(speed__concurrent_microbatches=2, optimizer__name='sgd', optimizer__learning_rate=0.1)
  batch = _digits_batch(config.loop.batch_size)
  results = {}
  for size in (0, 4):
    config.speed.cpu_microbatch_size = size
    setup, state, step = _train_step_for(config, batch)
    metrics = metrics_lib.zeros_like(jax.eval_shape(step.single, state, batch)[1])
    executable = jax.jit(step).lower(state, batch, metrics).compile()
    results[size] = (compiled.microbatching(setup, state), ' while(' in executable.as_text(),
                     executable(state, batch, metrics)[0].params)
  # 32 examples: 2 side by side of 16, or 4 in sequence x 2 side by side of 4.
  assert results[0][:2] == ((1, 2), False) and results[4][:2] == ((4, 2), True)
  for a, b in zip(jax.tree.leaves(results[0][2]), jax.tree.leaves(results[4][2])):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_batchnorm_models_are_not_split_on_cpus():
  """A model with BatchNorm statistics keeps one micro-batch: smaller ones would change the
  statistics, hence the update."""
  from configs import cnn  # pylint: disable=g-import-not-at-top
  config = cnn.get_config('tiny=True')
  config.loop.metric_writer = 'events'
  config.speed.cpu_microbatch_size = 2
  batch = _digits_batch(config.loop.batch_size)
  setup, state, _ = _train_step_for(config, batch)
  assert state.model_state
  assert compiled.microbatching(setup, state) == (config.speed.grad_accum_steps, 1)


def test_microbatches_are_strided():
  """[B, ...] -> [k, B/k, ...] with micro-batch j holding examples j, j+k, j+2k, ..."""
  micro = steps_lib._microbatches({'x': np.arange(8)}, 2)  # pylint: disable=protected-access
  np.testing.assert_array_equal(micro['x'], [[0, 2, 4, 6], [1, 3, 5, 7]])


# ----------------------------------------------------------------------------------- 4 devices

def _ok(result):
  assert 'exception' not in result, result.get('traceback')
  return result


def test_sharded_step_equals_single_device_step(child):
  """2 train steps with the batch split over 4 devices == the same steps on 1 device.

  Parameters agree to rtol 1e-5 (atol 1e-7 for entries near 0).
  """
  assert child['device_count'] == 4
  r = _ok(child['sharded_vs_single'])
  assert r['shards1'] == [[32], [32]]  # 1 device holds the whole batch ...
  assert r['shards4'] == [[8], [8]]    # ... 4 devices hold 8 examples each.
  assert r['param_devices'] == 4       # Parameters are replicated on all 4.
  assert r['moved'] > 1e-3             # The steps did move the parameters.
  assert r['mismatch'] == []
  assert r['loss4'] == pytest.approx(r['loss1'], rel=1e-5)


def test_train_and_evaluate_on_four_devices(child):
  """A full tiny ViT run works with data parallelism over 4 devices."""
  r = _ok(child['full_run'])
  assert r['summary']['device_count'] == 4
  assert r['summary']['status'] == 'finished'
  assert [row['epoch'] for row in r['history']] == [1, 2]
  assert np.isfinite(r['summary']['test_loss'])


def test_batch_not_divisible_by_device_count_is_config_error(child):
  """batch_size=30 on 4 devices: ConfigError naming batch_size and the device count."""
  r = _ok(child['bad_batch'])
  assert r['type'] == 'ConfigError'
  assert 'batch_size=30' in r['message'] and 'device count (4)' in r['message']
