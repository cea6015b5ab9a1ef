"""The CIFAR CNNs (models/cnn*.py) and stochastic depth in the ViT.

Parameter counts are pinned from shapes alone. Variables are drawn on the host
(:func:`host_variables`): on CPU, compiling the random initialiser costs seconds per distinct
kernel shape, and these tests need values, not Flax's exact initial ones.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
from configs import cnn as cnn_configs
from configs import vit_prenorm
from configs import vit_recipe
from curvelab import errors

SMALL_ARCHS = ('googlenet', 'resnet', 'preact_resnet', 'densenet')
DIGITS = (8, 8, 1)


def host_variables(model, shape, *, seed: int = 0) -> dict:
  """Variables for ``model`` on inputs of ``shape``, drawn with numpy (no compiled initialiser).

  Kernels are He-normal on their fan-in; BatchNorm scales 1, biases and means 0, variances 1.
  """
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = jax.tree_util.keystr(path[-1:])
    if 'kernel' in name:
      fan_in = int(np.prod(leaf.shape[:-1]))
      return rng.normal(0.0, np.sqrt(2.0 / fan_in), leaf.shape).astype(np.float32)
    if 'scale' in name or 'var' in name:
      return np.ones(leaf.shape, np.float32)
    return np.zeros(leaf.shape, np.float32)

  return jax.tree_util.tree_map_with_path(draw, dict(abstract))


def _count(model, shape=(1, 32, 32, 3)) -> int:
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables['params']))


@pytest.mark.parametrize('arch, expected', [
    ('googlenet', 257_530), ('resnet', 269_722), ('preact_resnet', 269_722),
    ('densenet', 264_586), ('resnet18', 11_173_962), ('fast', 1_088_888)])
def test_parameter_counts(arch, expected):
  """10 classes on 32x32x3; the small four sit in the 0.24-0.27 M of the tutorial CNNs."""
  model = models.build(cnn_configs.model_for(arch), num_outputs=10)
  count = _count(model)
  assert count == expected
  if arch in SMALL_ARCHS:
    assert 240_000 <= count <= 270_000


@pytest.mark.parametrize('layers, expected', [(2, 1_086_730), (4, 2_140_938), (6, 3_195_146)])
def test_stochastic_depth_adds_no_parameters(layers, expected):
  """The recipe's ViT (drop_path 0.1) has exactly the reference ViT's parameters."""
  config = vit_recipe.get_config(f'layers={layers}')
  assert config.model.drop_path == 0.1
  assert _count(models.build(config.model, num_outputs=10)) == expected


def _tiny(arch):
  return cnn_configs.get_config(f'arch={arch},tiny=True').model


def _modes(model):
  """One compiled function: train-mode outputs and state, eval outputs and eval-mode state."""

  def run(variables, x):
    train_out, train_state = model.apply(variables, x, train=True, mutable=['batch_stats'])
    eval_out, eval_state = model.apply(variables, x, train=False, mutable=['batch_stats'])
    first_only = model.apply(variables, x[:1], train=False)
    return train_out, train_state, eval_out, eval_state, first_only

  return jax.jit(run)


@pytest.mark.parametrize('arch', SMALL_ARCHS + ('resnet18', 'fast'))
def test_batch_norm_state_changes_in_training_not_in_eval(arch):
  """Training updates every running mean/variance; evaluation reads them and changes nothing.

  In evaluation an example's output does not depend on the rest of the batch (running
  statistics); in training it does (batch statistics).
  """
  model = models.build(_tiny(arch), num_outputs=10)
  variables = host_variables(model, (1,) + DIGITS)
  x = jax.random.normal(jax.random.key(1), (6,) + DIGITS) * 2.0 + 1.0
  train_out, train_state, eval_out, eval_state, first_only = _modes(model)(variables, x)
  before = jax.tree_util.tree_leaves_with_path(variables['batch_stats'])
  after = jax.tree.leaves(train_state['batch_stats'])
  assert len(before) == len(after) > 0
  for (path, old), new in zip(before, after):
    assert np.abs(np.asarray(new) - old).max() > 1e-4, f'{jax.tree_util.keystr(path)} unchanged'
  for old, new in zip(jax.tree.leaves(variables['batch_stats']),
                      jax.tree.leaves(eval_state['batch_stats'])):
    np.testing.assert_array_equal(new, old)
  assert train_out.shape == eval_out.shape == (6, 10)
  np.testing.assert_allclose(first_only[0], eval_out[0], rtol=1e-5, atol=1e-5)
  assert np.abs(np.asarray(train_out - eval_out)).max() > 1e-3


def test_first_batch_norm_update_is_momentum_average():
  """With momentum 0.9 (PyTorch's 0.1) the stem's running mean moves 10 % toward the batch mean."""
  model = models.build(_tiny('resnet'), num_outputs=10)
  variables = host_variables(model, (1,) + DIGITS)
  x = jax.random.normal(jax.random.key(2), (5,) + DIGITS)
  _, state = jax.jit(lambda v: model.apply(v, x, train=True, mutable=['batch_stats']))(variables)
  kernel = variables['params']['stem']['conv']['kernel']
  conv = jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(state['batch_stats']['stem']['bn']['mean'],
                             0.1 * conv.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)


def test_bfloat16_compute_keeps_float32_parameters_statistics_and_logits():
  model = models.build(_tiny('resnet'), num_outputs=10, dtype='bfloat16')
  variables = host_variables(model, (1,) + DIGITS)
  x = jnp.ones((2,) + DIGITS)
  logits, state = jax.jit(lambda v: model.apply(v, x, train=True, mutable=['batch_stats']))(
      variables)
  assert logits.dtype == jnp.float32
  assert {a.dtype for a in jax.tree.leaves(state)} == {jnp.dtype('float32')}


def test_registry_has_every_arch():
  assert set(SMALL_ARCHS) <= set(models.names())


@pytest.mark.parametrize('arch', SMALL_ARCHS + ('resnet18',))
def test_recipe_configs_validate_against_cifar_and_digits(arch):
  models.validate(cnn_configs.model_for(arch), example_shape=(32, 32, 3))
  models.validate(_tiny(arch), example_shape=DIGITS)


@pytest.mark.parametrize('arch, field, value, message', [
    ('resnet', 'shortcut', 'dense', 'model.shortcut'),
    ('resnet', 'stage_widths', (16, 32), 'one value per stage'),
    ('resnet', 'stage_widths', (32, 16, 64), 'non-decreasing'),
    ('resnet', 'blocks_per_stage', (3, 0, 3), 'model.blocks_per_stage'),
    ('googlenet', 'stage_widths', (80, 120, 160), 'multiples of 16'),
    ('densenet', 'compression', 0.0, 'model.compression'),
    ('densenet', 'growth_rate', -4, 'model.growth_rate'),
    ('fast', 'activation', 'swish', 'model.activation'),
    ('fast', 'widths', (32, 0, 64), 'model.widths'),
    ('fast', 'bn_momentum', 1.0, 'model.bn_momentum'),
    ('fast', 'conv_impl', 'winograd', 'model.conv_impl'),
])
def test_bad_model_fields_are_config_errors(arch, field, value, message):
  config = cnn_configs.model_for(arch)
  config[field] = value
  with pytest.raises(errors.ConfigError, match=message):
    models.validate(config, example_shape=(32, 32, 3))


def test_image_too_small_for_the_stages_is_a_config_error():
  with pytest.raises(errors.ConfigError, match='too small'):
    models.validate(cnn_configs.model_for('resnet18'), example_shape=(4, 4, 3))
  with pytest.raises(errors.ConfigError, match='too small for 3 groups'):
    models.validate(cnn_configs.model_for('fast'), example_shape=(8, 8, 1))


def test_fast_cnn_evaluation_averages_the_image_and_its_mirror():
  config = cnn_configs.model_for('fast')
  config.widths, config.stem_width = (8, 16), 4
  model = models.build(config, num_outputs=10)
  variables = host_variables(model, (1, 16, 16, 3))
  x = jax.random.normal(jax.random.key(2), (3, 16, 16, 3))
  both = model.apply(variables, x, train=False)
  one = model.apply(variables, x, train=False, method=model.logits)
  mirrored = model.apply(variables, x[:, :, ::-1], train=False, method=model.logits)
  np.testing.assert_allclose(both, (one + mirrored) / 2, rtol=1e-5, atol=1e-6)
  # A mirrored image gets the same prediction: the average is symmetric.
  np.testing.assert_allclose(model.apply(variables, x[:, :, ::-1], train=False), both,
                             rtol=1e-5, atol=1e-6)


def test_unknown_arch_is_a_config_error():
  with pytest.raises(errors.ConfigError, match='arch=.*allowed: googlenet'):
    cnn_configs.get_config('arch=vgg')


# ----------------------------------------------------------------------------------- drop path

def _tiny_vit(drop_path):
  cfg = vit_prenorm.vit_model(layers=3, block='prenorm')
  cfg.patch_size, cfg.embed_dim, cfg.mlp_dim, cfg.num_heads = 2, 16, 32, 4
  cfg.drop_path = drop_path
  return models.build(cfg, num_outputs=10)


def test_drop_path_acts_in_training_only():
  """Stochastic depth: train outputs vary with the rng; eval equals the model without it."""
  x = jax.random.normal(jax.random.key(0), (8, 8, 8, 1))
  plain, dropped = _tiny_vit(0.0), _tiny_vit(0.5)
  variables = host_variables(plain, (1, 8, 8, 1))

  @jax.jit
  def outputs(variables):
    train = lambda seed: dropped.apply(variables, x, train=True,
                                       rngs={'dropout': jax.random.key(seed)})
    return (train(1), train(2), dropped.apply(variables, x, train=False),
            plain.apply(variables, x, train=False), plain.apply(variables, x, train=True))

  train_a, train_b, eval_dropped, eval_plain, train_plain = outputs(variables)
  np.testing.assert_allclose(eval_dropped, eval_plain, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(train_plain, eval_plain, rtol=1e-6, atol=1e-6)
  assert np.abs(np.asarray(train_a - train_b)).max() > 1e-3
  assert np.abs(np.asarray(train_a - eval_plain)).max() > 1e-3


def test_drop_path_rate_grows_linearly_with_depth():
  vit = _tiny_vit(0.3)
  rates = [vit._drop_path_rate(i) for i in range(3)]  # pylint: disable=protected-access
  np.testing.assert_allclose(rates, [0.0, 0.15, 0.3])


def test_bad_drop_path_is_a_config_error():
  cfg = vit_prenorm.vit_model(layers=2, block='prenorm')
  cfg.drop_path = 1.0
  with pytest.raises(errors.ConfigError, match='model.drop_path'):
    models.validate(cfg, example_shape=(32, 32, 3))
