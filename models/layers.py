"""Transformer building blocks shared by the ViT, the Transformer LM and the sequence models."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models import attention
from models import inits

_INV_SQRT2 = np.float32(1 / np.sqrt(2))


def gelu_exact(x):
  """The exact GELU, ``x * Phi(x)``, written with ``erf`` as PyTorch's ``nn.GELU`` is.

  ``jax.nn.gelu(approximate=False)`` is the same function written with ``erfc``. Under
  ``jax.grad`` on a CPU its forward and backward passes take about 40 % longer (an MLP block's
  [8,320 x 512] activation, docs/benchmarks.md). The two forms agree to float32 rounding; the
  ``erfc`` form keeps relative accuracy far into the negative tail, where both are below 1e-20.
  """
  return x * (0.5 + 0.5 * jax.lax.erf(x * _INV_SQRT2.astype(x.dtype)))


class MultiHeadAttention(nn.Module):
  """Self-attention with Q/K/V/output projections (with biases).

  Q, K and V come from one [width, 3, heads, head_dim] projection (``qkv``), as in PyTorch's
  ``nn.MultiheadAttention`` (one ``in_proj_weight``, Xavier-uniform over all three): one matmul
  three times the size of each separate one, which launches a third of the kernels on GPUs.
  The attention itself is ``attention_fn`` (models/attention.py: ``kernel``), as in
  ``flax.linen.MultiHeadDotProductAttention``; the default picks by JAX's default backend.
  """
  num_heads: int
  dtype: jnp.dtype = jnp.float32
  dropout: float = 0.0
  causal: bool = False
  param_init: str = 'flax'
  attention_fn: attention.AttentionFn = attention.dot_product_attention

  @nn.compact
  def __call__(self, x, *, train: bool, mask=None):
    width = x.shape[-1]
    head_dim = width // self.num_heads
    # Every projection has fan-in `width`, as four separate [width, width] layers would.
    qkv = nn.DenseGeneral((3, self.num_heads, head_dim), dtype=self.dtype,
                          kernel_init=inits.dense_kernel(self.param_init, width),
                          bias_init=inits.dense_bias(self.param_init, width),
                          name='qkv')(x)
    q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
    y = self.attention_fn(q, k, v, mask=mask, is_causal=self.causal)
    y = nn.DenseGeneral(width, axis=(-2, -1), dtype=self.dtype,
                        kernel_init=inits.dense_kernel(self.param_init, width),
                        bias_init=inits.dense_bias(self.param_init, width),
                        name='out')(y)
    return nn.Dropout(self.dropout)(y, deterministic=not train)


class MlpBlock(nn.Module):
  """Dense -> GELU -> Dense, with dropout after each."""
  hidden: int
  dtype: jnp.dtype = jnp.float32
  dropout: float = 0.0
  param_init: str = 'flax'

  @nn.compact
  def __call__(self, x, *, train: bool):
    width = x.shape[-1]
    x = nn.Dense(self.hidden, dtype=self.dtype,
                 kernel_init=inits.dense_kernel(self.param_init, width),
                 bias_init=inits.dense_bias(self.param_init, width))(x)
    x = gelu_exact(x)
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    x = nn.Dense(width, dtype=self.dtype,
                 kernel_init=inits.dense_kernel(self.param_init, self.hidden),
                 bias_init=inits.dense_bias(self.param_init, self.hidden))(x)
    return nn.Dropout(self.dropout)(x, deterministic=not train)


class DropPath(nn.Module):
  """Stochastic depth: drops a residual branch for whole examples (scaled by 1/(1-rate)).

  A dropout whose mask is shared by every position and channel of an example, so each example
  either keeps or skips the branch. It draws from the ``dropout`` rng and has no parameters.
  """
  rate: float

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    keep_all_but_batch = tuple(range(1, x.ndim))
    return nn.Dropout(self.rate, broadcast_dims=keep_all_but_batch)(x, deterministic=deterministic)


class EncoderBlock(nn.Module):
  """One Transformer encoder block, pre- or post-norm.

  ``drop_path`` is the stochastic-depth rate of each residual branch (0 = off: the block is the
  plain reference block, same parameters and outputs). ``attention_fn`` is the attention kernel
  (models/attention.py: ``kernel``).
  """
  num_heads: int
  mlp_dim: int
  block: str = 'prenorm'
  dropout: float = 0.0
  layer_norm_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32
  causal: bool = False
  drop_path: float = 0.0
  param_init: str = 'flax'
  attention_fn: attention.AttentionFn = attention.dot_product_attention

  @nn.compact
  def __call__(self, x, *, train: bool):
    norm1 = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name='norm1')
    norm2 = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name='norm2')
    attn = MultiHeadAttention(self.num_heads, dtype=self.dtype, dropout=self.dropout,
                              causal=self.causal, param_init=self.param_init,
                              attention_fn=self.attention_fn, name='attn')
    mlp = MlpBlock(self.mlp_dim, dtype=self.dtype, dropout=self.dropout,
                   param_init=self.param_init, name='mlp')

    def skip(y, name):
      if not self.drop_path:  # Off: no module at all, so the reference block is unchanged.
        return y
      return DropPath(self.drop_path, name=name)(y, deterministic=not train)

    if self.block == 'prenorm':
      x = x + skip(attn(norm1(x), train=train), 'drop_path_attn')
      return x + skip(mlp(norm2(x), train=train), 'drop_path_mlp')
    x = norm1(x + skip(attn(x, train=train), 'drop_path_attn'))
    return norm2(x + skip(mlp(x, train=train), 'drop_path_mlp'))
