"""BatchNorm CNNs in the loop: learning, checkpointed statistics, data parallelism, soft targets.

One tiny ResNet run on scikit-learn digits (module fixture) serves the learning and checkpoint
tests; the 4-device check runs in a child python with virtual CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4`` must be set before jax is imported).
"""

import json
import pathlib
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from configs import cnn as cnn_configs
from configs import vit_recipe
from curvelab import build as build_lib
from curvelab import validate
from input_pipeline import pipeline
import sweeps
import tasks
import train


def _tiny_cnn(**fields):
  """configs/cnn.py:arch=resnet,tiny=True: a 9,690-parameter ResNet on digits, doctor off.

  These runs are in-process, so they keep the default (clu) writer, as helpers.fast_writer_fields
  says: the ``events`` writer sets TensorBoard's process-wide ``tensorboard.compat.notf`` switch
  when TensorFlow is not loaded yet, after which every later clu-writer run in this pytest process
  (conftest.straight_run, ...) fails in ``tf.summary.scalar`` ("cannot import tensorflow 2.0 API").
  """
  config = cnn_configs.get_config('arch=resnet,tiny=True')
  fields = {'doctor.enabled': False, **fields}
  return helpers.set_fields(config, fields)


@pytest.fixture(scope='module')
def digits_run(tmp_path_factory):
  """8 epochs of the tiny ResNet on 1,200 digits: ``(workdir, summary)``."""
  workdir = tmp_path_factory.mktemp('cnn_digits')
  summary = train.train_and_evaluate(_tiny_cnn(), str(workdir))
  return workdir, summary


def test_tiny_cnn_learns_digits(digits_run):
  """A BatchNorm ResNet trained in the loop reaches >= 95 % test accuracy on digits."""
  _, summary = digits_run
  assert summary['status'] == 'finished'
  assert summary['num_params'] == 9_690
  assert summary['test_accuracy'] >= 0.95


def _saved_batch_stats(workdir, step: int) -> dict:
  """``model_state['batch_stats']`` as written at ``step``, read straight from the Orbax files."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(workdir).absolute() / 'checkpoints' / str(step) / 'state'
  return ocp.StandardCheckpointer().restore(path)['model_state']['batch_stats']


def _restored_state(workdir, step: int):
  """The train state at ``step`` restored as the loop restores it (abstract target, shardings)."""
  from curvelab import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  from curvelab import optim  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(helpers.read_json(pathlib.Path(workdir) / 'config.json'))
  setup = train.build(config)
  example = next(pipeline.eval_batches(setup.data.load('val'), global_batch=config.loop.batch_size,
                                       preprocess=setup.data.eval_preprocess))
  tx, _ = optim.make_optimizer(config, steps_per_epoch=1)
  state = build_lib.init_state(setup, tx, example)
  checkpointer = ckpt_lib.Checkpointer(pathlib.Path(workdir) / 'checkpoints',
                                       best_metric=setup.best_metric, best_mode=setup.best_mode)
  try:
    return checkpointer.restore(step, ckpt_lib.abstract(state))[0], state
  finally:
    checkpointer.close()


def test_batch_statistics_round_trip_through_checkpoints(digits_run):
  """Saved statistics are trained ones; restoring gives them back and reproduces the test metrics.

  eval.py restores the best checkpoint from disk and evaluates it in eval mode, which reads the
  running statistics: equal test metrics mean the statistics the run tested with came back.
  """
  import eval as eval_lib  # pylint: disable=g-import-not-at-top
  workdir, summary = digits_run
  step = summary['best_step']
  saved = _saved_batch_stats(workdir, step)
  restored, initial = _restored_state(workdir, step)
  assert int(restored.step) == step
  flat_saved = jax.tree_util.tree_leaves_with_path(saved)
  flat_restored = jax.tree.leaves(restored.model_state['batch_stats'])
  flat_initial = jax.tree.leaves(initial.model_state['batch_stats'])
  assert len(flat_saved) == len(flat_restored) == len(flat_initial) == 10  # 5 BatchNorms.
  for (path, s), r, i in zip(flat_saved, flat_restored, flat_initial):
    np.testing.assert_array_equal(np.asarray(r), s, err_msg=jax.tree_util.keystr(path))
    assert np.abs(s - np.asarray(i)).max() > 1e-3, f'{jax.tree_util.keystr(path)} never trained'
  result = eval_lib.evaluate_checkpoint(str(workdir), split='test', checkpoint='best')
  assert result['test_accuracy'] == pytest.approx(summary['test_accuracy'], abs=1e-6)
  assert result['test_loss'] == pytest.approx(summary['test_loss'], rel=1e-5)


def test_modern_recipe_augmentations_run_through_the_loop(tmp_path):
  """RandAugment, padded crops, mixup/CutMix soft targets and label smoothing, one short epoch."""
  config = _tiny_cnn(**{
      'dataset.train_split': 'train[:256]', 'loop.num_epochs': 1, 'task.label_smoothing': 0.1,
      'dataset.augment.pad_crop': 1, 'dataset.augment.randaugment_ops': 2,
      'dataset.augment.mixup_alpha': 0.8, 'dataset.augment.cutmix_alpha': 1.0})
  summary = train.train_and_evaluate(config, str(tmp_path))
  history = helpers.read_history(tmp_path)
  assert summary['status'] == 'finished'
  assert np.isfinite(history[-1]['train_loss']) and np.isfinite(summary['test_loss'])


# ----------------------------------------------------------------------------------- 4 devices

CHILD = textwrap.dedent('''
    import os
    os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=4'
    import json, traceback
    import jax, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import helpers, train
    from configs import cnn as cnn_configs
    from curvelab import metrics as metrics_lib, optim, state as state_lib, steps as steps_lib
    from input_pipeline import pipeline
    from test_cnn_models import host_variables

    def sharded_vs_single():
      config = train.prepare_config(cnn_configs.get_config('arch=resnet,tiny=True'))
      setup = train.build(config)
      ds = pipeline.train_dataset(setup.data.load('train'), global_batch=32, num_epochs=1, seed=0,
                                  preprocess=setup.data.train_preprocess)
      batches = [ds[0], ds[1]]
      tx, _ = optim.make_optimizer(config, steps_per_epoch=8)
      variables = host_variables(setup.model, (1, 8, 8, 1))

      class HostInit:  # The loop's state factory, fed host-drawn variables (no compiled init).
        def init(self, rngs, **inputs):
          return variables

      state0 = state_lib.create(HostInit(), tx, {}, jax.random.key(0))
      step = steps_lib.make_train_step(model=setup.model, task=setup.task, tx=tx)

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
        stats = state.model_state['batch_stats']
        return (jax.device_get(stats), jax.device_get(state.params), shards,
                len(jax.tree.leaves(stats)[0].sharding.device_set))

      stats1, params1, shards1, _ = run(jax.devices()[:1])
      stats4, params4, shards4, ndev = run(jax.devices())
      mismatch = []
      for tree1, tree4 in ((stats1, stats4), (params1, params4)):
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(tree1), jax.tree.leaves(tree4)):
          try:
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
          except AssertionError as e:
            mismatch.append(jax.tree_util.keystr(path) + ' '.join(str(e).splitlines()[3:7]))
      moved = min(float(np.abs(np.asarray(a) - b).max()) for a, b in zip(
          jax.tree.leaves(stats1), jax.tree.leaves(variables['batch_stats'])))
      return {'mismatch': mismatch, 'shards1': shards1, 'shards4': shards4,
              'stats_devices': ndev, 'moved': moved}

    try:
      out = sharded_vs_single()
    except Exception as e:
      out = {'exception': type(e).__name__, 'traceback': traceback.format_exc()[-3000:]}
    print(json.dumps(out))
''')


@pytest.fixture(scope='module', autouse=True)
def _four_devices_process(request, tmp_path_factory):
  """Starts the 4-device child when this module starts: it runs alongside the in-process
  digits run instead of after it."""
  if not helpers.module_uses(request, 'four_devices'):
    yield None
    return
  folder = tmp_path_factory.mktemp('cnn_child')
  script = folder / 'four_devices.py'
  script.write_text(CHILD)
  env = helpers.child_env(PYTHONPATH=f'{helpers.REPO}:{helpers.REPO / "tests"}')
  background = helpers.BackgroundProcess([sys.executable, str(script)], folder=folder, env=env)
  yield background
  background.kill()


@pytest.fixture(scope='module')
def four_devices(_four_devices_process):
  proc = _four_devices_process.wait(timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(helpers.last_line(proc.stdout))
  assert 'exception' not in result, result.get('traceback')
  return result


def test_batch_statistics_after_sharded_steps_equal_single_device(four_devices):
  """2 steps with the batch split over 4 devices: BatchNorm statistics (and parameters) equal
  those of 1 device, i.e. the batch mean and variance are the global batch's, not per device."""
  r = four_devices
  assert r['shards1'] == [[32], [32]]
  assert r['shards4'] == [[8], [8]]
  assert r['stats_devices'] == 4  # Statistics are replicated like the parameters.
  assert r['moved'] > 1e-4  # Every statistic did change.
  assert r['mismatch'] == []


# ----------------------------------------------------------------------------------- soft targets

def _task(smoothing=0.0):
  config = cnn_configs.get_config('arch=resnet,tiny=True')
  config.task.label_smoothing = smoothing
  return tasks.build(config)


@pytest.fixture(scope='module')
def logits_batch():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
  label = jnp.asarray([0, 1, 2, 3, 0, 1], jnp.int32)
  return logits, {'label': label, 'weight': jnp.ones(6, jnp.float32)}


def test_one_hot_label_probs_give_the_plain_loss(logits_batch):
  logits, batch = logits_batch
  plain = _task(0.1).loss_terms(logits, batch)[0]
  soft = _task(0.1).loss_terms(logits, {**batch, 'label_probs': jax.nn.one_hot(batch['label'], 4)})
  np.testing.assert_allclose(soft[0], plain, rtol=1e-6)


def test_soft_targets_give_their_cross_entropy_and_accuracy_uses_label(logits_batch):
  logits, batch = logits_batch
  probs = jax.nn.softmax(jnp.asarray(np.random.default_rng(1).normal(size=(6, 4)), jnp.float32))
  task = _task()
  loss_sum, weight_sum, per_example = task.loss_terms(logits, {**batch, 'label_probs': probs})
  expected = -(probs * jax.nn.log_softmax(logits)).sum(-1)
  np.testing.assert_allclose(per_example['loss'], expected, rtol=1e-5)
  assert float(weight_sum) == 6.0
  inputs = task.metric_inputs(logits, {**batch, 'label_probs': probs}, per_example)
  np.testing.assert_array_equal(inputs['correct'], logits.argmax(-1) == batch['label'])


# ----------------------------------------------------------------------------------- configs

@pytest.mark.parametrize('arch', cnn_configs.ARCHS)
def test_cnn_recipes_pass_config_validation(arch):
  config = cnn_configs.get_config(f'arch={arch}')
  validate.check(config)
  assert config.optimizer.name == 'momentum'
  if arch == 'fast':  # The few-epoch CPU recipe.
    assert (config.loop.num_epochs, config.dataset.augment.pad_crop, config.optimizer.nesterov) == (10, 2, True)
    assert (config.schedule.name, config.task.label_smoothing, config.speed.input_mode) == (
        'linear', 0.2, 'host')
  else:
    assert config.dataset.augment.pad_crop == 4 and not config.optimizer.nesterov
    assert config.loop.num_epochs == (200 if arch == 'resnet18' else 180)


def test_the_fast_cnn_recipe_learns_digits(tmp_path):
  """configs/cnn.py:arch=fast,tiny=True through the loop: BatchNorm, flip TTA, the CPU kernel."""
  config = helpers.set_fields(cnn_configs.get_config('arch=fast,tiny=True'),
                              {'doctor.enabled': False})
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary['status'] == 'finished' and summary['plan']['conv'] == 'im2col_grad'
  assert summary['test_accuracy'] >= 0.9


def test_vit_recipe_batches_carry_soft_targets():
  """The recipe's training preprocess (digits, tiny) mixes; its evaluation does not."""
  config = train.prepare_config(vit_recipe.get_config('tiny=True'))
  validate.check(config)
  setup = train.build(config)
  split = setup.data.load('val')
  batch = setup.data.train_preprocess(split.take(np.arange(16)), np.random.default_rng(0))
  assert batch['label_probs'].shape == (16, 10)
  np.testing.assert_allclose(batch['label_probs'].sum(1), 1.0, rtol=1e-6)
  assert 'label_probs' not in setup.data.eval_preprocess(split.take(np.arange(16)))


def test_reference_vs_cnn_experiment_set():
  """22 runs: 7 reference ViTs + 4 small CNNs, for 10 epochs and for the same time budget."""
  from experiments import reference_vs_cnn as exp  # pylint: disable=g-import-not-at-top
  loaded = sweeps.load_experiment_set(helpers.REPO / 'experiments' / 'reference_vs_cnn.py')
  assert len(loaded.runs) == 22 and loaded.seeds == (0, 1, 2)
  epochs = [r for r in loaded.runs if r.name.startswith('epochs10_')]
  budget = [r for r in loaded.runs if r.name.startswith('budget')]
  assert len(epochs) == len(budget) == 11
  assert sum('cnn.py' in r.config for r in epochs) == sum('cnn.py' in r.config for r in budget) == 4
  for run in loaded.runs:
    module, _, arg = run.config.partition(':')
    config = _load_config(module).get_config(arg)
    helpers.set_fields(config, dict(run.overrides))  # Every override names an existing field.
    validate.check(config)
    if run in budget:
      assert config.stopping.max_train_seconds == exp.BUDGET_S and config.schedule.name == 'constant'
    else:
      assert config.loop.num_epochs == 10 and config.stopping.max_train_seconds == 0


def _load_config(path: str):
  import importlib  # pylint: disable=g-import-not-at-top
  return importlib.import_module(path.removesuffix('.py').replace('/', '.'))
