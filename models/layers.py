"""Transformer building blocks shared by the ViT, the Transformer LM and the sequence models."""

import flax.linen as nn
import jax
import jax.numpy as jnp


class MultiHeadAttention(nn.Module):
  """Self-attention with Q/K/V/output projections (with biases) and a fused kernel where present.

  ``jax.nn.dot_product_attention`` picks cuDNN's fused attention on GPUs that have it and the
  plain XLA implementation elsewhere, so the same module is fast on GPU and exact on CPU.
  """
  num_heads: int
  dtype: jnp.dtype = jnp.float32
  dropout: float = 0.0
  causal: bool = False

  @nn.compact
  def __call__(self, x, *, train: bool, mask=None):
    width = x.shape[-1]
    head_dim = width // self.num_heads
    dense = lambda name: nn.DenseGeneral((self.num_heads, head_dim), dtype=self.dtype,
                                         kernel_init=nn.initializers.xavier_uniform(), name=name)
    q, k, v = dense('query')(x), dense('key')(x), dense('value')(x)
    y = jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=self.causal)
    y = nn.DenseGeneral(width, axis=(-2, -1), dtype=self.dtype,
                        kernel_init=nn.initializers.xavier_uniform(), name='out')(y)
    return nn.Dropout(self.dropout)(y, deterministic=not train)


class MlpBlock(nn.Module):
  """Dense -> GELU -> Dense, with dropout after each."""
  hidden: int
  dtype: jnp.dtype = jnp.float32
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool):
    width = x.shape[-1]
    init = nn.initializers.xavier_uniform()
    x = nn.Dense(self.hidden, dtype=self.dtype, kernel_init=init)(x)
    x = nn.gelu(x, approximate=False)
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    x = nn.Dense(width, dtype=self.dtype, kernel_init=init)(x)
    return nn.Dropout(self.dropout)(x, deterministic=not train)


class EncoderBlock(nn.Module):
  """One Transformer encoder block, pre- or post-norm."""
  num_heads: int
  mlp_dim: int
  block: str = 'prenorm'
  dropout: float = 0.0
  layer_norm_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32
  causal: bool = False

  @nn.compact
  def __call__(self, x, *, train: bool):
    norm1 = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name='norm1')
    norm2 = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name='norm2')
    attn = MultiHeadAttention(self.num_heads, dtype=self.dtype, dropout=self.dropout,
                              causal=self.causal, name='attn')
    mlp = MlpBlock(self.mlp_dim, dtype=self.dtype, dropout=self.dropout, name='mlp')
    if self.block == 'prenorm':
      x = x + attn(norm1(x), train=train)
      return x + mlp(norm2(x), train=train)
    x = norm1(x + attn(x, train=train))
    return norm2(x + mlp(x, train=train))
