"""Vision Transformer for small images, as in the reference study.

Patches (a strided convolution) + a learned CLS token + learned position embeddings, then
``num_layers`` blocks, then LayerNorm + Dense on the CLS token. Blocks are pre-norm
(``x + f(LN(x))``, the ViT paper's) or post-norm (``LN(x + f(x))``, the original Transformer's).
With the reference sizes (patch 4 on 32x32x3, width 256, MLP 512, 8 heads, 10 classes) the
parameter counts are 1,086,730 / 2,140,938 / 3,195,146 for 2 / 4 / 6 layers.
"""

import flax.linen as nn
import jax.numpy as jnp

from curvelab import errors
from models import attention
from models import check_init
from models import check_positive_ints
from models import inits
from models import register
from models.layers import EncoderBlock

BLOCKS = ('prenorm', 'postnorm')


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
    drop_path: stochastic-depth rate of the last block; block ``i`` of ``L`` uses
      ``drop_path * i / (L - 1)`` (the first block is never dropped), as in DeiT. 0 = off.
    layer_norm_eps: LayerNorm epsilon (PyTorch's default 1e-5).
    param_init: parameter initialisation (models/inits.py): ``reference`` draws as the study's
      PyTorch model, ``flax`` with Xavier kernels, zero biases and CLS, N(0, 0.02) positions.
    dtype: compute dtype; parameters stay float32.
    attention_fn: every block's attention kernel (models/attention.py: ``kernel``).
  """
  num_classes: int
  patch_size: int = 4
  embed_dim: int = 256
  num_layers: int = 2
  num_heads: int = 8
  mlp_dim: int = 512
  block: str = 'prenorm'
  dropout: float = 0.0
  drop_path: float = 0.0
  layer_norm_eps: float = 1e-5
  param_init: str = 'flax'
  dtype: jnp.dtype = jnp.float32
  attention_fn: attention.AttentionFn = attention.dot_product_attention

  def _drop_path_rate(self, index: int) -> float:
    # Deeper blocks are dropped more often: early features feed everything after them.
    return self.drop_path * index / max(self.num_layers - 1, 1)

  @nn.compact
  def __call__(self, inputs, *, train: bool):
    p = self.patch_size
    fan_in = p * p * inputs.shape[-1]  # The study's patch projection: a Linear on p*p*C pixels.
    x = nn.Conv(self.embed_dim, (p, p), strides=(p, p), padding='VALID', dtype=self.dtype,
                kernel_init=inits.conv_kernel(self.param_init, fan_in),
                bias_init=inits.dense_bias(self.param_init, fan_in),
                name='patch_embed')(inputs.astype(self.dtype))
    b, h, w, c = x.shape
    x = x.reshape(b, h * w, c)
    cls = self.param('cls_token', inits.class_token(self.param_init), (1, 1, c))
    x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, c)).astype(x.dtype), x], axis=1)
    pos = self.param('pos_embed', inits.position_embedding(self.param_init),
                     (1, h * w + 1, c))
    x = x + pos.astype(x.dtype)
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    for i in range(self.num_layers):
      x = EncoderBlock(self.num_heads, self.mlp_dim, block=self.block, dropout=self.dropout,
                       layer_norm_eps=self.layer_norm_eps, dtype=self.dtype,
                       drop_path=self._drop_path_rate(i), param_init=self.param_init,
                       attention_fn=self.attention_fn, name=f'block_{i}')(x, train=train)
    x = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name='head_norm')(x[:, 0])
    logits = nn.Dense(self.num_classes, dtype=self.dtype,
                      kernel_init=inits.dense_kernel(self.param_init, c,
                                                     nn.initializers.lecun_normal()),
                      bias_init=inits.dense_bias(self.param_init, c), name='head')(x)
    # Losses and metrics are computed in float32 whatever the compute dtype.
    return logits.astype(jnp.float32)


def validate(model_config, *, example_shape: tuple | None = None) -> None:
  """Refuses ViT settings that cannot build, naming the field and the allowed values."""
  image_size = tuple(example_shape[:2]) if example_shape is not None else None
  for field in ('num_layers', 'embed_dim', 'num_heads', 'mlp_dim', 'patch_size'):
    check_positive_ints(model_config, field)
  if model_config.block not in BLOCKS:
    raise errors.ConfigError(
        f'model.block={model_config.block!r} is unknown; allowed: {", ".join(BLOCKS)}.')
  if model_config.embed_dim % model_config.num_heads:
    raise errors.ConfigError(
        f'model.embed_dim={model_config.embed_dim} is not divisible by '
        f'model.num_heads={model_config.num_heads}.')
  check_init(model_config)
  if not 0.0 <= model_config.dropout < 1.0:
    raise errors.ConfigError(f'model.dropout must be in [0, 1), got {model_config.dropout}.')
  drop_path = model_config.get('drop_path', 0.0)  # Optional: configs without it keep 0.
  if not 0.0 <= drop_path < 1.0:
    raise errors.ConfigError(f'model.drop_path must be in [0, 1), got {drop_path}.')
  if image_size is not None:
    for side in image_size:
      if side % model_config.patch_size:
        raise errors.ConfigError(
            f'image size {image_size[0]}x{image_size[1]} is not divisible by '
            f'model.patch_size={model_config.patch_size}.')


@register('vit', validator=validate, takes_attention=True)
def build(model_config, *, num_outputs: int, dtype: str = 'float32',
          attention_fn: attention.AttentionFn = attention.dot_product_attention) -> ViT:
  validate(model_config)
  return ViT(num_classes=num_outputs, patch_size=model_config.patch_size,
             embed_dim=model_config.embed_dim, num_layers=model_config.num_layers,
             num_heads=model_config.num_heads, mlp_dim=model_config.mlp_dim,
             block=model_config.block, dropout=model_config.dropout,
             drop_path=float(model_config.get('drop_path', 0.0)),
             layer_norm_eps=model_config.layer_norm_eps,
             param_init=model_config.get('init', 'flax'), dtype=jnp.dtype(dtype),
             attention_fn=attention_fn)
