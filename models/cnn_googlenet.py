"""A small GoogLeNet (Inception) for CIFAR, with BatchNorm.

A 3x3 stem, then stages of Inception blocks separated by 3x3/2 max-pooling, then global average
pooling and a Dense head. Each Inception block concatenates four branches whose widths are fixed
fractions of the block's output width ``W`` (a multiple of 16):

* 1x1 conv to ``W/4``;
* 1x1 reduction to ``W/4``, then 3x3 conv to ``W/2``;
* 1x1 reduction to ``W/16``, then 5x5 conv to ``W/8``;
* 3x3/1 max-pool, then 1x1 projection to ``W/8``.

Every convolution is followed by BatchNorm and ReLU. With the default sizes (stem 64; stages of
2, 4, 2 blocks of width 80, 128, 160) and 10 classes on 32x32x3 it has 257,530 parameters
(pinned in tests/test_cnn_models.py), the size of the widely used CIFAR tutorial GoogLeNet.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from curvelab import errors
from models import register
from models import check_positive_ints
from models.cnn import ConvBN, Head, check_image_size, check_same_length

# The block width must split into these branch widths exactly: W/4, W/2, W/8, W/8 (and W/16 for
# the 5x5 reduction).
WIDTH_MULTIPLE = 16


def branch_widths(width: int) -> dict[str, int]:
  """Output and reduction widths of an Inception block's branches for block width ``width``."""
  return {'b1': width // 4, 'b3_reduce': width // 4, 'b3': width // 2,
          'b5_reduce': width // 16, 'b5': width // 8, 'pool_proj': width // 8}


class InceptionBlock(nn.Module):
  """Four parallel branches (1x1, 3x3, 5x5, pool) concatenated along channels."""
  width: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    w = branch_widths(self.width)
    unit = lambda features, kernel, name: ConvBN(features, kernel, dtype=self.dtype, name=name)
    b1 = unit(w['b1'], 1, 'b1')(x, train=train)
    b3 = unit(w['b3_reduce'], 1, 'b3_reduce')(x, train=train)
    b3 = unit(w['b3'], 3, 'b3')(b3, train=train)
    b5 = unit(w['b5_reduce'], 1, 'b5_reduce')(x, train=train)
    b5 = unit(w['b5'], 5, 'b5')(b5, train=train)
    pool = nn.max_pool(x, (3, 3), strides=(1, 1), padding='SAME')
    pool = unit(w['pool_proj'], 1, 'pool_proj')(pool, train=train)
    return jnp.concatenate([b1, b3, b5, pool], axis=-1)


class GoogLeNet(nn.Module):
  """Stem, stages of Inception blocks with max-pooling between stages, pooling head.

  Attributes:
    num_classes: output classes.
    stem_width: channels of the 3x3 stem convolution.
    stage_widths: output width of every Inception block of each stage (multiples of 16).
    blocks_per_stage: Inception blocks in each stage.
    dtype: compute dtype; parameters and BatchNorm statistics stay float32.
  """
  num_classes: int
  stem_width: int = 64
  stage_widths: Sequence[int] = (80, 128, 160)
  blocks_per_stage: Sequence[int] = (2, 4, 2)
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs, *, train: bool):
    x = ConvBN(self.stem_width, dtype=self.dtype, name='stem')(inputs.astype(self.dtype),
                                                               train=train)
    for s, (width, count) in enumerate(zip(self.stage_widths, self.blocks_per_stage)):
      if s > 0:
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
      for b in range(count):
        x = InceptionBlock(width, dtype=self.dtype, name=f'stage{s + 1}_block{b}')(x, train=train)
    return Head(self.num_classes, dtype=self.dtype, name='head')(x)


def validate(model_config, *, example_shape: tuple | None = None) -> None:
  """Refuses GoogLeNet settings that cannot build, naming the field and the allowed values."""
  check_positive_ints(model_config, 'stem_width')
  widths = check_positive_ints(model_config, 'stage_widths')
  check_positive_ints(model_config, 'blocks_per_stage')
  check_same_length(model_config, 'stage_widths', 'blocks_per_stage')
  if any(w % WIDTH_MULTIPLE for w in widths):
    raise errors.ConfigError(f'model.stage_widths must be multiples of {WIDTH_MULTIPLE} (the '
                             f'block splits into W/4, W/2, W/8, W/8 branches), got {widths}.')
  check_image_size(example_shape, stages=len(widths), name='googlenet')


@register('googlenet', validator=validate)
def build(model_config, *, num_outputs: int, dtype: str = 'float32') -> GoogLeNet:
  validate(model_config)
  return GoogLeNet(num_classes=num_outputs, stem_width=model_config.stem_width,
                   stage_widths=tuple(model_config.stage_widths),
                   blocks_per_stage=tuple(model_config.blocks_per_stage),
                   dtype=jnp.dtype(dtype))
