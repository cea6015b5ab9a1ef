"""Building blocks of the sequence models (CTC, encoder-decoder, captioners), all mask-aware.

Every block here takes a frame/token mask and guarantees that padding never changes the outputs
at real positions: padded frames are zeroed before each convolution, convolutions use fixed
(length-independent) padding, attention never attends to padded keys, and recurrent layers stop
at each sequence's length.
"""

import functools
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models import attention
from models import recurrent

XAVIER = nn.initializers.xavier_uniform()


def sinusoidal(length: int, width: int) -> np.ndarray:
  """The fixed sin/cos position table of Vaswani et al. (2017), [length, width]."""
  pos = np.arange(length)[:, None]
  div = np.exp(np.arange(0, width, 2) * (-math.log(10000.0) / width))
  table = np.zeros((length, width), np.float32)
  table[:, 0::2] = np.sin(pos * div)
  table[:, 1::2] = np.cos(pos * div)[:, :width // 2]
  return table


def output_frames(num_frames, strides: Sequence[int]):
  """Frames left after a stack of strided convolutions: ``ceil`` per layer (ints or arrays)."""
  for s in strides:
    num_frames = -(-num_frames // s)
  return num_frames


def lengths(mask: jax.Array) -> jax.Array:
  """Real positions per row of a prefix mask."""
  return (mask > 0).sum(axis=-1).astype(jnp.int32)


class TimeConv(nn.Module):
  """A 1-D convolution over time, written as one matmul over the stacked windows (im2col).

  The same parameters (``kernel`` [k, in, out], ``bias`` [out]), initialisation and result as
  ``nn.Conv`` with explicit padding. Why not ``nn.Conv``: inside a loop (the step's micro-batch
  accumulation) XLA:CPU computes a strided convolution's kernel gradient on a generic path, 92-99
  ms a call for the seq2seq front end; outside a loop it rewrites it into a window-dilated
  convolution that was not among the step's costly operations (docs/benchmarks.md). As a matmul
  the gradient is a GEMM everywhere, for a window copy of ``kernel_size / stride`` times the
  input.
  """
  features: int
  kernel_size: int
  stride: int
  padding: tuple[int, int]
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (self.kernel_size, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    x = jnp.pad(x, ((0, 0), self.padding, (0, 0)))
    out_frames = (x.shape[1] - self.kernel_size) // self.stride + 1
    span = self.stride * (out_frames - 1) + 1
    # [B, T', k * C], window j's channels at j * C + c, as in kernel.reshape(k * C, out).
    windows = jnp.concatenate([x[:, j:j + span:self.stride] for j in range(self.kernel_size)],
                              axis=-1)
    windows, kernel, bias = nn.dtypes.promote_dtype(windows, kernel, bias, dtype=self.dtype)
    return windows @ kernel.reshape(-1, self.features) + bias


class ConvFrontEnd(nn.Module):
  """Temporal 1-D convolutions (GELU, LayerNorm), subsampling by the product of ``strides``.

  Padding is fixed to ``((k-1)//2, k//2)`` rather than ``SAME`` (whose split depends on the
  padded length), so output frame ``t`` always covers the same input frames; an output frame is
  real when the input frame it is centred on is (``mask[:, ::stride]``).
  """
  channels: int
  strides: Sequence[int] = (2,)
  kernel_size: int = 5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, mask):
    pad = ((self.kernel_size - 1) // 2, self.kernel_size // 2)
    for i, stride in enumerate(self.strides):
      x = x * mask[..., None].astype(x.dtype)
      x = TimeConv(self.channels, self.kernel_size, stride, pad, dtype=self.dtype,
                   name=f'conv_{i}')(x)
      x = nn.LayerNorm(dtype=self.dtype, name=f'conv_norm_{i}')(nn.gelu(x))
      mask = mask[:, ::stride]
    return x * mask[..., None].astype(x.dtype), mask


class FeedForward(nn.Module):
  """Dense -> GELU -> dropout -> Dense -> dropout."""
  hidden: int
  dropout: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    width = x.shape[-1]
    x = nn.gelu(nn.Dense(self.hidden, dtype=self.dtype, kernel_init=XAVIER, name='wi')(x))
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    x = nn.Dense(width, dtype=self.dtype, kernel_init=XAVIER, name='wo')(x)
    return nn.Dropout(self.dropout)(x, deterministic=not train)


class Attention(nn.Module):
  """Multi-head dot-product attention of ``x`` over ``memory`` (``x`` itself for self-attention).

  ``key_mask`` [B, S] hides padded keys; ``causal`` hides later positions. ``attention_fn`` is
  the attention kernel (models/attention.py: ``kernel``), as in Flax's
  ``MultiHeadDotProductAttention``; the default picks by JAX's default backend.
  """
  num_heads: int
  dropout: float = 0.0
  dtype: jnp.dtype = jnp.float32
  attention_fn: attention.AttentionFn = attention.dot_product_attention

  @nn.compact
  def __call__(self, x, memory=None, *, key_mask=None, causal: bool = False, train: bool):
    memory = x if memory is None else memory
    width = x.shape[-1]
    head_dim = width // self.num_heads
    proj = lambda name: nn.DenseGeneral((self.num_heads, head_dim), dtype=self.dtype,
                                        kernel_init=XAVIER, name=name)
    q, k, v = proj('query')(x), proj('key')(memory), proj('value')(memory)
    mask = None if key_mask is None else (key_mask > 0)[:, None, None, :]
    y = self.attention_fn(q, k, v, mask=mask, is_causal=causal)
    y = nn.DenseGeneral(width, axis=(-2, -1), dtype=self.dtype, kernel_init=XAVIER,
                        name='out')(y)
    return nn.Dropout(self.dropout)(y, deterministic=not train)


class EncoderLayer(nn.Module):
  """Pre-norm Transformer encoder layer with a key padding mask."""
  num_heads: int
  mlp_dim: int
  dropout: float = 0.0
  dtype: jnp.dtype = jnp.float32
  attention_fn: attention.AttentionFn = attention.dot_product_attention

  @nn.compact
  def __call__(self, x, mask, *, train: bool):
    norm = lambda name: nn.LayerNorm(dtype=self.dtype, name=name)
    x = x + Attention(self.num_heads, self.dropout, self.dtype, self.attention_fn,
                      name='self_attn')(norm('norm1')(x), key_mask=mask, train=train)
    return x + FeedForward(self.mlp_dim, self.dropout, self.dtype, name='mlp')(
        norm('norm2')(x), train=train)


class DecoderLayer(nn.Module):
  """Pre-norm Transformer decoder layer: causal self-attention, cross-attention, MLP."""
  num_heads: int
  mlp_dim: int
  dropout: float = 0.0
  dtype: jnp.dtype = jnp.float32
  attention_fn: attention.AttentionFn = attention.dot_product_attention

  @nn.compact
  def __call__(self, y, memory, memory_mask, *, train: bool):
    norm = lambda name: nn.LayerNorm(dtype=self.dtype, name=name)
    y = y + Attention(self.num_heads, self.dropout, self.dtype, self.attention_fn,
                      name='self_attn')(norm('norm1')(y), causal=True, train=train)
    y = y + Attention(self.num_heads, self.dropout, self.dtype, self.attention_fn,
                      name='cross_attn')(norm('norm2')(y), memory, key_mask=memory_mask,
                                         train=train)
    return y + FeedForward(self.mlp_dim, self.dropout, self.dtype, name='mlp')(
        norm('norm3')(y), train=train)


class TransformerEncoder(nn.Module):
  """Projection to ``width`` + sinusoidal positions + pre-norm layers + final LayerNorm."""
  width: int
  num_layers: int
  num_heads: int
  mlp_dim: int
  dropout: float = 0.0
  dtype: jnp.dtype = jnp.float32
  attention_fn: attention.AttentionFn = attention.dot_product_attention

  @nn.compact
  def __call__(self, x, mask, *, train: bool):
    x = nn.Dense(self.width, dtype=self.dtype, kernel_init=XAVIER, name='input_proj')(x)
    x = x + jnp.asarray(sinusoidal(x.shape[1], self.width), self.dtype)[None]
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    for i in range(self.num_layers):
      x = EncoderLayer(self.num_heads, self.mlp_dim, self.dropout, self.dtype, self.attention_fn,
                       name=f'layer_{i}')(x, mask, train=train)
    return nn.LayerNorm(dtype=self.dtype, name='final_norm')(x)


class LSTMEncoder(nn.Module):
  """Stacked (bi)directional LSTMs that stop at each sequence's length.

  The backward direction reverses only the real frames (``seq_lengths``), so padding reaches
  neither direction's outputs at real positions. Each direction is ``recurrent.LSTM``: the input
  projection runs once over the sequence, outside the time loop (the same function as
  ``nn.RNN(nn.OptimizedLSTMCell)``, with the gates' weights fused), unrolled per
  ``recurrent.resolve_unroll``.
  """
  hidden_size: int
  num_layers: int = 1
  bidirectional: bool = True
  dropout: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, mask, *, train: bool):
    seq_lengths = lengths(mask)
    unroll = recurrent.resolve_unroll(0)
    for i in range(self.num_layers):
      lstm = functools.partial(recurrent.LSTM, self.hidden_size, dtype=self.dtype, unroll=unroll)
      forward = lstm(name=f'lstm_{i}_fwd')(x)
      if self.bidirectional:
        backward = lstm(reverse=True, name=f'lstm_{i}_bwd')(x, seq_lengths)
        x = jnp.concatenate([forward, backward], axis=-1)
      else:
        x = forward
      x = nn.Dropout(self.dropout)(x, deterministic=not train)
    return x * mask[..., None].astype(x.dtype)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean over real positions: [B, T, D], [B, T] -> [B, D]."""
  m = mask[..., None].astype(x.dtype)
  return (x * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1.0)
