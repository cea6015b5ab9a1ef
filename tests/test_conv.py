"""models/conv.py: the CPU convolution whose kernel gradient is an im2col product equals XLA's.

Forward values are XLA's own (the same call); the gradients must match ``lax``'s to float32
rounding for every shape the CNNs use (3x3 and 1x1, stride 1 and 2, explicit, SAME and VALID
padding, the 2x2 stem without padding) and calls it does not cover fall back to ``lax``.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from models import conv

NHWC = ('NHWC', 'HWIO', 'NHWC')


def _grads(fn, x, w, strides, padding, **kwargs):
  def loss(x, w):
    y = fn(x, w, strides, padding, dimension_numbers=NHWC, **kwargs)
    return jnp.sum(y * jnp.cos(y))  # A non-trivial output gradient.
  return jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)


@pytest.mark.parametrize('kernel, strides, padding', [
    (3, (1, 1), ((1, 1), (1, 1))),
    (3, (2, 2), ((1, 1), (1, 1))),
    (1, (2, 2), ((0, 0), (0, 0))),
    (2, (1, 1), 'VALID'),
    (3, (1, 1), 'SAME'),
    (3, (2, 1), ((2, 0), (1, 1))),
])
def test_gradients_equal_xla(kernel, strides, padding):
  kx, kw = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (3, 9, 8, 5))
  w = jax.random.normal(kw, (kernel, kernel, 5, 7))
  fast = conv.make_conv_general_dilated('im2col_grad')
  assert fast is not lax.conv_general_dilated
  got = _grads(fast, x, w, strides, padding)
  want = _grads(lax.conv_general_dilated, x, w, strides, padding)
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=2e-5, atol=2e-5 * float(jnp.abs(r).max()))
  np.testing.assert_array_equal(
      fast(x, w, strides, padding, dimension_numbers=NHWC),
      lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=NHWC))


def test_uncovered_calls_fall_back_to_xla():
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 4))
  w = jax.random.normal(jax.random.key(2), (3, 3, 2, 6))  # Two feature groups.
  fast = conv.make_conv_general_dilated('im2col_grad')
  got = _grads(fast, x, w, (1, 1), 'SAME', feature_group_count=2, rhs_dilation=(2, 2))
  want = _grads(lax.conv_general_dilated, x, w, (1, 1), 'SAME', feature_group_count=2,
                rhs_dilation=(2, 2))
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=1e-6, atol=1e-6)


def test_a_flax_conv_with_the_kernel_trains_like_the_default():
  x = jax.random.normal(jax.random.key(3), (4, 10, 10, 3))
  default = nn.Conv(8, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
  fast = nn.Conv(8, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                 conv_general_dilated=conv.make_conv_general_dilated('im2col_grad'))
  params = default.init(jax.random.key(4), x)

  def grads(module):
    return jax.grad(lambda p: jnp.sum(module.apply(p, x) ** 2))(params)

  for g, r in zip(jax.tree.leaves(grads(fast)), jax.tree.leaves(grads(default))):
    np.testing.assert_allclose(g, r, rtol=2e-5, atol=1e-4)


def test_the_choice_by_backend_and_bad_names():
  assert conv.choose('auto', 'cpu') == 'im2col_grad'
  assert conv.choose('auto', 'gpu') == conv.choose('auto', 'tpu') == 'xla'
  assert conv.choose('xla', 'cpu') == 'xla'
  assert conv.make_conv_general_dilated('auto', 'gpu') is lax.conv_general_dilated
  with pytest.raises(ValueError, match="'winograd': choose from auto, xla, im2col_grad"):
    conv.choose('winograd')
