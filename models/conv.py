"""Convolution, fast on each backend: the one ``conv_general_dilated`` every CNN layer calls.

On GPUs and TPUs it is ``lax.conv_general_dilated`` with XLA's own gradient. On CPUs the forward
pass and the input gradient are XLA's too, but the kernel (weight) gradient is computed as one
matrix product of the im2col patches with the output gradient. XLA:CPU lowers the kernel
gradient of a convolution to a slow generic path: on the development machine's two cores it ran
at 2.2-9.1 GFLOP/s for the early 3x3 layers of the CIFAR networks, against 40-57 GFLOP/s for the
forward pass; the im2col product ran at 5.6-26.6 GFLOP/s there and made the fast CNN's train step
2.09x faster (docs/recipes.md; ``benchmarks/conv_step.py`` repeats it).
``tests/test_conv.py`` checks the two gradients equal to float32 rounding.
"""

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

import models

# 'auto' picks by backend; 'xla' and 'im2col_grad' force one (benchmarks' A/B timings).
IMPLEMENTATIONS = ('auto', 'xla', 'im2col_grad')

_NHWC = ('NHWC', 'HWIO', 'NHWC')


def choose(implementation: str, backend: str | None = None) -> str:
  """The implementation ``implementation`` stands for on ``backend`` (default: JAX's default)."""
  return models.choose_by_backend(implementation, IMPLEMENTATIONS, what='convolution',
                                  cpu='im2col_grad', accelerator='xla', backend=backend)


def make_conv_general_dilated(implementation: str = 'auto', backend: str | None = None):
  """A drop-in ``lax.conv_general_dilated`` for ``flax.linen.Conv(conv_general_dilated=...)``.

  The im2col gradient covers what CIFAR networks use (2-D, NHWC, no dilation, one feature
  group); any other call falls back to XLA's convolution, so the result is always correct.
  """
  if choose(implementation, backend) == 'xla':
    return lax.conv_general_dilated
  return _dispatching_conv


def _pads(padding, lhs_shape, rhs_shape, strides) -> tuple[tuple[int, int], ...]:
  if isinstance(padding, str):
    return tuple(lax.padtype_to_pads(lhs_shape[1:3], rhs_shape[:2], strides, padding))
  return tuple((int(lo), int(hi)) for lo, hi in padding)


def _is_nhwc(dimension_numbers, ndim: int) -> bool:
  if ndim != 4:
    return False
  if dimension_numbers is None:
    return False
  wanted = lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), _NHWC)
  given = lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), dimension_numbers)
  return tuple(given) == tuple(wanted)


def _dispatching_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                      dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                      precision=None, preferred_element_type=None):
  """``lax.conv_general_dilated``'s signature; the im2col gradient where it applies."""
  plain = (_is_nhwc(dimension_numbers, lhs.ndim) and feature_group_count == 1
           and batch_group_count == 1 and preferred_element_type is None
           and all(d == 1 for d in (lhs_dilation or (1, 1)))
           and all(d == 1 for d in (rhs_dilation or (1, 1))))
  if not plain:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type)
  strides = tuple(int(s) for s in window_strides)
  pads = _pads(padding, lhs.shape, rhs.shape, strides)
  return conv_nhwc(lhs, rhs, strides, pads, precision)


def _xla_conv(lhs, rhs, strides, pads, precision):
  return lax.conv_general_dilated(lhs, rhs, strides, pads, dimension_numbers=_NHWC,
                                  precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_nhwc(lhs, rhs, strides: Sequence[int], pads, precision=None):
  """A 2-D NHWC/HWIO convolution whose kernel gradient is an im2col matrix product.

  Args:
    lhs: inputs [B, H, W, C].
    rhs: kernel [KH, KW, C, K].
    strides: (sh, sw).
    pads: ((top, bottom), (left, right)).
    precision: passed to XLA's convolution and to the matrix product.

  Returns:
    [B, Ho, Wo, K], exactly ``lax.conv_general_dilated``'s result.
  """
  return _xla_conv(lhs, rhs, strides, pads, precision)


def _fwd(lhs, rhs, strides, pads, precision):
  return _xla_conv(lhs, rhs, strides, pads, precision), (lhs, rhs)


def _bwd(strides, pads, precision, residuals, g):
  lhs, rhs = residuals
  # The input gradient is a transposed convolution, which XLA:CPU runs as fast as the forward.
  _, input_vjp = jax.vjp(lambda x: _xla_conv(x, rhs, strides, pads, precision), lhs)
  (d_lhs,) = input_vjp(g)
  return d_lhs, kernel_gradient(lhs, g, rhs.shape, strides, pads, precision).astype(rhs.dtype)


def patches(lhs, kernel_hw: tuple[int, int], strides, pads, out_hw: tuple[int, int]):
  """im2col: [B, Ho, Wo, KH*KW*C], the window of each output position, kernel-major order."""
  kh, kw = kernel_hw
  (sh, sw), (ho, wo) = strides, out_hw
  padded = jnp.pad(lhs, ((0, 0), pads[0], pads[1], (0, 0)))
  views = [padded[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]
           for i in range(kh) for j in range(kw)]
  return jnp.concatenate(views, axis=-1) if len(views) > 1 else views[0]


def kernel_gradient(lhs, g, rhs_shape, strides, pads, precision=None):
  """d(loss)/d(kernel) [KH, KW, C, K] from the inputs and the output gradient ``g``."""
  kh, kw, c, k = rhs_shape
  b, ho, wo, _ = g.shape
  cols = patches(lhs, (kh, kw), strides, pads, (ho, wo)).reshape(b * ho * wo, kh * kw * c)
  grad = jnp.matmul(cols.T, g.reshape(b * ho * wo, k), precision=precision)
  return grad.reshape(kh, kw, c, k)


conv_nhwc.defvjp(_fwd, _bwd)
