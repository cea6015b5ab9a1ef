"""The reference ViT (models/vit.py): parameter counts, shapes, pre/post-norm blocks, dropout.

Every ViT variant here (pre/post-norm, dropout, bfloat16) has the same parameter tree, so one
jitted init serves them all; forward passes are jitted too (one compilation instead of one per
operation).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
from configs import vit_prenorm
from models import vit


def _param_count(model, shape) -> int:
  """Parameters of ``model`` for inputs of ``shape``, from shapes only (no real init)."""
  variables = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros(shape, jnp.float32), train=False))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables['params']))


@pytest.mark.parametrize('layers, expected', [(2, 1_086_730), (4, 2_140_938), (6, 3_195_146)])
@pytest.mark.parametrize('block', ['prenorm', 'postnorm'])
def test_reference_parameter_counts(layers, expected, block):
  """The reference sizes (patch 4, width 256, MLP 512, 8 heads) on 32x32x3, 10 classes."""
  model = models.build(vit_prenorm.vit_model(layers=layers, block=block), num_outputs=10)
  assert _param_count(model, (1, 32, 32, 3)) == expected


def _tiny_vit(dtype='float32', **overrides):
  cfg = vit_prenorm.vit_model(layers=2, block=overrides.pop('block', 'prenorm'))
  cfg.patch_size, cfg.embed_dim, cfg.mlp_dim, cfg.num_heads = 2, 16, 32, 4
  for key, value in overrides.items():
    cfg[key] = value
  return models.build(cfg, num_outputs=7, dtype=dtype)


def _apply(module, variables, x, *, train=False, rng=0):
  """Jitted forward pass; ``rng`` seeds dropout (an argument, so no recompilation per seed)."""
  fn = jax.jit(lambda v, x, k: module.apply(v, x, train=train, rngs={'dropout': k}))
  return fn(variables, x, jax.random.key(rng))


@pytest.fixture(scope='module')
def images():
  return jax.random.normal(jax.random.key(1), (3, 8, 8, 1))


@pytest.fixture(scope='module')
def variables(images):
  """Initial variables of the tiny ViT (shared by every variant)."""
  model = _tiny_vit()
  return jax.jit(lambda k, x: model.init(k, x, train=False))(jax.random.key(0), images)


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_output_shape_and_dtype(images, variables, dtype):
  """Logits are [batch, classes] and float32 whatever the compute dtype; params stay float32."""
  logits = _apply(_tiny_vit(dtype), variables, images)
  assert logits.shape == (3, 7)
  assert logits.dtype == jnp.float32
  assert bool(jnp.isfinite(logits).all())
  assert {x.dtype for x in jax.tree.leaves(variables['params'])} == {jnp.dtype('float32')}


def test_parameter_tree_has_one_group_per_block(images):
  """Top-level groups: patch embedding, CLS, positions, one per block, head norm and head."""
  model = _tiny_vit(num_layers=3)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))['params']
  assert set(params) == {'patch_embed', 'cls_token', 'pos_embed', 'block_0', 'block_1',
                         'block_2', 'head_norm', 'head'}
  assert params['pos_embed'].shape == (1, 16 + 1, 16)  # 4x4 patches of 2x2 + CLS, width 16.
  assert params['head']['kernel'].shape == (16, 7)


def test_postnorm_block_ends_with_layernorm():
  """Post-norm LN(x + f(x)): output tokens have mean ~0, std ~1; pre-norm's keep x's scale.

  Both blocks are applied with the *same* parameters (their structures are identical).
  """
  tokens = 3.0 + 5.0 * jax.random.normal(jax.random.key(2), (2, 5, 16))
  pre = vit.EncoderBlock(num_heads=4, mlp_dim=32, block='prenorm')
  post = vit.EncoderBlock(num_heads=4, mlp_dim=32, block='postnorm')
  params = jax.jit(lambda k, x: pre.init(k, x, train=False))(jax.random.key(0), tokens)
  assert jax.tree.structure(params) == jax.tree.structure(
      jax.eval_shape(lambda: post.init(jax.random.key(0), tokens, train=False)))
  pre_out, post_out = _apply(pre, params, tokens), _apply(post, params, tokens)
  np.testing.assert_allclose(post_out.mean(-1), 0.0, atol=1e-4)
  np.testing.assert_allclose(post_out.std(-1), 1.0, atol=1e-3)
  # Pre-norm x + f(LN(x)) keeps the residual stream (mean ~3, std ~5 per token).
  assert np.abs(np.asarray(pre_out.mean(-1))).min() > 0.5
  assert np.asarray(pre_out.std(-1)).min() > 2.0


def test_prenorm_and_postnorm_models_differ_with_same_params(images, variables):
  """The two placements compute different functions of the same parameters."""
  pre = _apply(_tiny_vit(block='prenorm'), variables, images)
  post = _apply(_tiny_vit(block='postnorm'), variables, images)
  assert np.abs(np.asarray(pre - post)).max() > 1e-3


def test_dropout_only_in_training(images, variables):
  """Dropout changes outputs with train=True (differently per rng), never with train=False."""
  model = _tiny_vit(dropout=0.5)
  eval_a = _apply(model, variables, images, rng=1)
  eval_b = _apply(model, variables, images, rng=2)
  np.testing.assert_array_equal(eval_a, eval_b)
  train_a = _apply(model, variables, images, train=True, rng=1)
  train_b = _apply(model, variables, images, train=True, rng=2)
  assert np.abs(np.asarray(train_a - eval_a)).max() > 1e-3
  assert np.abs(np.asarray(train_a - train_b)).max() > 1e-3
  np.testing.assert_array_equal(train_a, _apply(model, variables, images, train=True, rng=1))


def test_no_dropout_means_train_equals_eval(images, variables):
  """With dropout=0 the train-mode forward pass is the inference one."""
  model = _tiny_vit(dropout=0.0)
  np.testing.assert_allclose(_apply(model, variables, images, train=True, rng=1),
                             _apply(model, variables, images), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('dtype, atol', [(jnp.float32, 2e-6), (jnp.bfloat16, 0.07)])
def test_gelu_exact_is_jax_exact_gelu(dtype, atol):
  """The MLP's erf-form GELU is jax.nn.gelu(approximate=False), values and derivative, from the
  far negative tail (where both are ~0) to large inputs, and keeps the input dtype."""
  from models import layers  # pylint: disable=g-import-not-at-top
  x = jnp.linspace(-12.0, 12.0, 4001).astype(dtype)
  ours, reference = layers.gelu_exact(x), jax.nn.gelu(x, approximate=False)
  assert ours.dtype == dtype
  np.testing.assert_allclose(np.asarray(ours, np.float32), np.asarray(reference, np.float32),
                             atol=atol, rtol=1e-6 if dtype == jnp.float32 else 1e-2)
  if dtype == jnp.float32:
    grad = jax.vmap(jax.grad(layers.gelu_exact))(x)
    ref_grad = jax.vmap(jax.grad(lambda v: jax.nn.gelu(v, approximate=False)))(x)
    np.testing.assert_allclose(grad, ref_grad, atol=1e-6)
    # Not the tanh approximation, which differs by up to ~5e-4 near |x| = 2.
    assert float(jnp.max(jnp.abs(ours - jax.nn.gelu(x, approximate=True)))) > 1e-4
