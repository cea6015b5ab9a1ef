"""Parameter initialisation schemes, chosen by ``config.model.init``.

``reference`` draws every parameter as the reference study's PyTorch code did, with PyTorch's
defaults (torch.nn, 2.x):

* ``nn.Linear(fan_in, out)`` and ``nn.Conv2d``: weights ``kaiming_uniform_(a=sqrt(5))``, which is
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Q, K, V
  and the output projection are four such layers of fan-in ``width``: the fused ``qkv`` kernel
  drawn element-wise from the same bound has the same distribution.
* ``nn.Parameter(torch.randn(...))``, the ViT's CLS token and position embedding: N(0, 1).
* ``nn.Embedding``: N(0, 1).
* ``nn.LSTM(hidden)``: every weight U(-1/sqrt(hidden), 1/sqrt(hidden)); its two biases per gate
  (``bias_ih + bias_hh``) are one bias here, the sum of two such draws.
* ``nn.LayerNorm``: ones and zeros (as Flax's).

``flax`` is curvelab's own choice, the conventions of Flax and big_vision: Xavier-uniform
kernels, zero biases, a zero CLS token and N(0, 0.02) positions, LeCun-normal input and orthogonal
recurrent LSTM kernels, N(0, 1/sqrt(features)) embeddings. The recipes use it.

Modules ask this module for an initializer by role (``dense_kernel(scheme, fan_in)``...), so
no layer holds a scheme's facts.
"""

import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

SCHEMES = ('reference', 'flax')

Initializer = Callable[..., jax.Array]


def check(scheme: str) -> str:
  if scheme not in SCHEMES:
    raise ValueError(f'unknown initialisation scheme {scheme!r}; allowed: {", ".join(SCHEMES)}')
  return scheme


def uniform(bound: float) -> Initializer:
  """U(-bound, bound), element-wise."""
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def sum_of_uniforms(bound: float) -> Initializer:
  """U(-bound, bound) + U(-bound, bound): PyTorch's two LSTM biases folded into one."""
  def init(key, shape, dtype=jnp.float32):
    a, b = jax.random.split(key)
    return uniform(bound)(a, shape, dtype) + uniform(bound)(b, shape, dtype)
  return init


def torch_fan_in_bound(fan_in: int) -> float:
  """The bound of PyTorch's default Linear/Conv weights and biases: 1/sqrt(fan_in)."""
  return 1.0 / math.sqrt(fan_in)


def dense_kernel(scheme: str, fan_in: int,
                 flax_default: Initializer | None = None) -> Initializer:
  """A Linear kernel with ``fan_in`` inputs per output.

  ``flax_default`` is the layer's own choice under ``flax`` (Xavier-uniform when None).
  """
  if check(scheme) == 'reference':
    return uniform(torch_fan_in_bound(fan_in))
  return flax_default or nn.initializers.xavier_uniform()


def dense_bias(scheme: str, fan_in: int) -> Initializer:
  if check(scheme) == 'reference':
    return uniform(torch_fan_in_bound(fan_in))
  return nn.initializers.zeros


def conv_kernel(scheme: str, fan_in: int) -> Initializer:
  """A convolution kernel; ``flax`` keeps nn.Conv's own default (LeCun normal)."""
  if check(scheme) == 'reference':
    return uniform(torch_fan_in_bound(fan_in))
  return nn.initializers.lecun_normal()


def class_token(scheme: str) -> Initializer:
  return nn.initializers.normal(1.0) if check(scheme) == 'reference' else nn.initializers.zeros


def position_embedding(scheme: str) -> Initializer:
  return nn.initializers.normal(1.0 if check(scheme) == 'reference' else 0.02)


def embedding(scheme: str, features: int) -> Initializer:
  if check(scheme) == 'reference':
    return nn.initializers.normal(1.0)
  return nn.initializers.normal(stddev=features ** -0.5)


def lstm_input_kernel(scheme: str, hidden: int) -> Initializer:
  if check(scheme) == 'reference':
    return uniform(torch_fan_in_bound(hidden))
  return nn.initializers.lecun_normal()


def lstm_recurrent_kernel(scheme: str, hidden: int, flax_default: Initializer) -> Initializer:
  """The [H, 4H] recurrent kernel; ``flax_default`` is the recurrence's own (block orthogonal)."""
  if check(scheme) == 'reference':
    return uniform(torch_fan_in_bound(hidden))
  return flax_default


def lstm_bias(scheme: str, hidden: int) -> Initializer:
  if check(scheme) == 'reference':
    return sum_of_uniforms(torch_fan_in_bound(hidden))
  return nn.initializers.zeros
