"""Vision Transformer for small images, as in the reference study.

Patches (a strided convolution) + a learned CLS token + learned position embeddings, then
``num_layers`` blocks, then LayerNorm + Dense on the CLS token. Blocks are pre-norm
(``x + f(LN(x))``, the ViT paper's) or post-norm (``LN(x + f(x))``, the original Transformer's).
With the reference sizes (patch 4 on 32x32x3, width 256, MLP 512, 8 heads, 10 classes) the
parameter counts are 1,086,730 / 2,140,938 / 3,195,146 for 2 / 4 / 6 layers.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from curvelab import errors
from models import register

BLOCKS = ('prenorm', 'postnorm')


class MultiHeadAttention(nn.Module):
  """Self-attention with Q/K/V/output projections (with biases) and a fused kernel where present.

  ``jax.nn.dot_product_attention`` picks cuDNN's fused attention on GPUs that have it and the
  plain XLA implementation elsewhere, so the same module is fast on GPU and exact on CPU.
  """
  num_heads: int
  dtype: jnp.dtype = jnp.float32
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool, mask=None):
    width = x.shape[-1]
    head_dim = width // self.num_heads
    dense = lambda name: nn.DenseGeneral((self.num_heads, head_dim), dtype=self.dtype,
                                         kernel_init=nn.initializers.xavier_uniform(), name=name)
    q, k, v = dense('query')(x), dense('key')(x), dense('value')(x)
    y = jax.nn.dot_product_attention(q, k, v, mask=mask)
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

  @nn.compact
  def __call__(self, x, *, train: bool):
    norm1 = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name='norm1')
    norm2 = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name='norm2')
    attn = MultiHeadAttention(self.num_heads, dtype=self.dtype, dropout=self.dropout, name='attn')
    mlp = MlpBlock(self.mlp_dim, dtype=self.dtype, dropout=self.dropout, name='mlp')
    if self.block == 'prenorm':
      x = x + attn(norm1(x), train=train)
      return x + mlp(norm2(x), train=train)
    x = norm1(x + attn(x, train=train))
    return norm2(x + mlp(x, train=train))


class ViT(nn.Module):
  """Vision Transformer classifier.

  Attributes:
    num_classes: output classes.
    patch_size: square patch side in pixels.
    embed_dim: token width.
    num_layers: encoder blocks.
    num_heads: attention heads (must divide ``embed_dim``).
    mlp_dim: hidden width of the MLP.
    block: ``prenorm`` or ``postnorm``.
    dropout: dropout rate after embeddings, attention and MLP layers.
    layer_norm_eps: LayerNorm epsilon (PyTorch's default 1e-5).
    dtype: compute dtype; parameters stay float32.
  """
  num_classes: int
  patch_size: int = 4
  embed_dim: int = 256
  num_layers: int = 2
  num_heads: int = 8
  mlp_dim: int = 512
  block: str = 'prenorm'
  dropout: float = 0.0
  layer_norm_eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs, *, train: bool):
    p = self.patch_size
    x = nn.Conv(self.embed_dim, (p, p), strides=(p, p), padding='VALID', dtype=self.dtype,
                name='patch_embed')(inputs.astype(self.dtype))
    b, h, w, c = x.shape
    x = x.reshape(b, h * w, c)
    cls = self.param('cls_token', nn.initializers.zeros, (1, 1, c))
    x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, c)).astype(x.dtype), x], axis=1)
    pos = self.param('pos_embed', nn.initializers.normal(0.02), (1, h * w + 1, c))
    x = x + pos.astype(x.dtype)
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    for i in range(self.num_layers):
      x = EncoderBlock(self.num_heads, self.mlp_dim, block=self.block, dropout=self.dropout,
                       layer_norm_eps=self.layer_norm_eps, dtype=self.dtype,
                       name=f'block_{i}')(x, train=train)
    x = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name='head_norm')(x[:, 0])
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name='head')(x)
    # Losses and metrics are computed in float32 whatever the compute dtype.
    return logits.astype(jnp.float32)


def validate(model_config, *, example_shape: tuple | None = None) -> None:
  """Refuses ViT settings that cannot build, naming the field and the allowed values."""
  image_size = tuple(example_shape[:2]) if example_shape is not None else None
  for field in ('num_layers', 'embed_dim', 'num_heads', 'mlp_dim', 'patch_size'):
    value = model_config[field]
    if not isinstance(value, int) or value <= 0:
      raise errors.ConfigError(f'model.{field} must be a positive integer, got {value!r}.')
  if model_config.block not in BLOCKS:
    raise errors.ConfigError(
        f'model.block={model_config.block!r} is unknown; allowed: {", ".join(BLOCKS)}.')
  if model_config.embed_dim % model_config.num_heads:
    raise errors.ConfigError(
        f'model.embed_dim={model_config.embed_dim} is not divisible by '
        f'model.num_heads={model_config.num_heads}.')
  if not 0.0 <= model_config.dropout < 1.0:
    raise errors.ConfigError(f'model.dropout must be in [0, 1), got {model_config.dropout}.')
  if image_size is not None:
    for side in image_size:
      if side % model_config.patch_size:
        raise errors.ConfigError(
            f'image size {image_size[0]}x{image_size[1]} is not divisible by '
            f'model.patch_size={model_config.patch_size}.')


@register('vit', validator=validate)
def build(model_config, *, num_outputs: int, dtype: str = 'float32') -> ViT:
  validate(model_config)
  return ViT(num_classes=num_outputs, patch_size=model_config.patch_size,
             embed_dim=model_config.embed_dim, num_layers=model_config.num_layers,
             num_heads=model_config.num_heads, mlp_dim=model_config.mlp_dim,
             block=model_config.block, dropout=model_config.dropout,
             layer_norm_eps=model_config.layer_norm_eps, dtype=jnp.dtype(dtype))
