"""Model FLOPs counted from the jaxpr: exact on hand-computed programs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from curvelab import flops


def test_matmul_is_two_m_n_k():
  x, w = jnp.zeros((8, 16)), jnp.zeros((16, 32))
  assert flops.count(jnp.dot, x, w) == 2 * 8 * 16 * 32


def test_batched_einsum_counts_batch_dimensions():
  q, k = jnp.zeros((4, 3, 5, 7)), jnp.zeros((4, 3, 6, 7))
  assert flops.count(lambda a, b: jnp.einsum('bhqd,bhkd->bhqk', a, b), q, k) == 2 * 4 * 3 * 5 * 6 * 7


def test_convolution_counts_kernel_window_and_groups():
  x = jnp.zeros((2, 10, 10, 4))
  conv = nn.Conv(8, (3, 3), padding='SAME', use_bias=False)
  params = conv.init(jax.random.key(0), x)
  assert flops.count(lambda p, x: conv.apply(p, x), params, x) == 2 * (2 * 10 * 10 * 8) * (3 * 3 * 4)
  grouped = nn.Conv(8, (3, 3), padding='VALID', feature_group_count=2, use_bias=False)
  gparams = grouped.init(jax.random.key(0), x)
  assert flops.count(lambda p, x: grouped.apply(p, x), gparams, x) == 2 * (2 * 8 * 8 * 8) * (3 * 3 * 2)


def test_scan_multiplies_by_length_and_jit_is_transparent():
  w = jnp.zeros((6, 6))

  def body(h, _):
    return jnp.tanh(h @ w), None

  fn = jax.jit(lambda h: jax.lax.scan(body, h, None, length=9)[0])
  assert flops.count(fn, jnp.zeros((2, 6))) == 9 * 2 * 2 * 6 * 6


def test_gradient_of_a_dense_layer_is_three_matmuls():
  x, w = jnp.zeros((8, 16)), jnp.zeros((16, 32))
  forward = 2 * 8 * 16 * 32
  assert flops.count(jax.grad(lambda w, x: jnp.sum(x @ w), argnums=(0, 1)), w, x) == 3 * forward
  # Only the weight gradient: the input-gradient matmul is never built.
  assert flops.count(jax.grad(lambda w: jnp.sum(x @ w)), w) == 2 * forward


def test_cond_counts_the_costliest_branch():
  x = jnp.zeros((4, 4))
  fn = lambda p, x: jax.lax.cond(p, lambda x: x @ x @ x, lambda x: x @ x, x)
  assert flops.count(fn, True, x) == 2 * (2 * 4 * 4 * 4)


@pytest.mark.parametrize('layers', [2, 6])
def test_reference_vit_forward_matches_the_analytic_count(layers):
  from models import vit  # pylint: disable=g-import-not-at-top
  model = vit.ViT(num_classes=10, num_layers=layers, patch_size=4, embed_dim=256, mlp_dim=512,
                  num_heads=8)
  x = jnp.zeros((1, 32, 32, 3))
  params = model.init(jax.random.key(0), x, train=False)
  tokens, d, mlp = 65, 256, 512
  per_block = 2 * tokens * (4 * d * d + 2 * d * mlp) + 2 * 2 * tokens * tokens * d
  analytic = 2 * 64 * 48 * d + layers * per_block + 2 * d * 10
  assert flops.count(lambda p, x: model.apply(p, x, train=False), params, x) == analytic
