"""A small DenseNet-BC for CIFAR, with BatchNorm.

A 3x3 stem to ``2 * growth_rate`` channels, then dense blocks separated by transitions, then
BN-ReLU, global average pooling and a Dense head (Huang et al. 2017, the "BC" variant):

* a dense layer is BN-ReLU-1x1 conv to ``bottleneck * growth_rate`` channels (the "B"), then
  BN-ReLU-3x3 conv to ``growth_rate`` channels, concatenated to its input;
* a transition is BN-ReLU-1x1 conv to ``floor(compression * channels)`` (the "C"), then 2x2
  average pooling.

With the defaults (growth 12, bottleneck 4, compression 0.5, three blocks of 8 layers: a
DenseNet-BC of depth 52) and 10 classes on 32x32x3 it has 264,586 parameters (pinned in
tests/test_cnn_models.py), the size of the widely used CIFAR tutorial DenseNet.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from curvelab import errors
from models import register
from models import check_positive_ints
from models.cnn import Head, batch_norm, check_image_size, check_same_length, conv


class BnReluConv(nn.Module):
  """BN -> ReLU -> conv: the pre-activation unit every DenseNet convolution (but the stem) uses."""
  features: int
  kernel: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.relu(batch_norm(train=train, dtype=self.dtype, name='bn')(x))
    return conv(self.features, self.kernel, dtype=self.dtype, name='conv')(x)


class DenseLayer(nn.Module):
  """Bottleneck then 3x3 conv to ``growth_rate`` new channels, appended to the input's."""
  growth_rate: int
  bottleneck: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    y = BnReluConv(self.bottleneck * self.growth_rate, 1, dtype=self.dtype, name='reduce')(
        x, train=train)
    y = BnReluConv(self.growth_rate, 3, dtype=self.dtype, name='grow')(y, train=train)
    return jnp.concatenate([x, y], axis=-1)


class Transition(nn.Module):
  """Compresses the channels (1x1 conv) and halves the image (2x2 average pooling)."""
  features: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = BnReluConv(self.features, 1, dtype=self.dtype, name='compress')(x, train=train)
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


class DenseNet(nn.Module):
  """DenseNet-BC: stem, dense blocks with transitions between them, BN-ReLU, pooling head.

  Attributes:
    num_classes: output classes.
    growth_rate: channels each dense layer adds.
    layers_per_block: dense layers in each block (one block per stage).
    bottleneck: width of the 1x1 bottleneck as a multiple of ``growth_rate``.
    compression: fraction of channels a transition keeps, in (0, 1].
    dtype: compute dtype; parameters and BatchNorm statistics stay float32.
  """
  num_classes: int
  growth_rate: int = 12
  layers_per_block: Sequence[int] = (8, 8, 8)
  bottleneck: int = 4
  compression: float = 0.5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs, *, train: bool):
    x = conv(2 * self.growth_rate, 3, dtype=self.dtype, name='stem')(inputs.astype(self.dtype))
    for s, count in enumerate(self.layers_per_block):
      if s > 0:
        features = int(x.shape[-1] * self.compression)
        x = Transition(features, dtype=self.dtype, name=f'transition{s}')(x, train=train)
      for i in range(count):
        x = DenseLayer(self.growth_rate, self.bottleneck, dtype=self.dtype,
                       name=f'block{s + 1}_layer{i}')(x, train=train)
    x = nn.relu(batch_norm(train=train, dtype=self.dtype, name='final_bn')(x))
    return Head(self.num_classes, dtype=self.dtype, name='head')(x)


def validate(model_config, *, example_shape: tuple | None = None) -> None:
  """Refuses DenseNet settings that cannot build, naming the field and the allowed values."""
  check_positive_ints(model_config, 'growth_rate')
  check_positive_ints(model_config, 'bottleneck')
  blocks = check_positive_ints(model_config, 'layers_per_block')
  if not 0.0 < model_config.compression <= 1.0:
    raise errors.ConfigError(
        f'model.compression must be in (0, 1], got {model_config.compression!r}.')
  check_image_size(example_shape, stages=len(blocks), name='densenet')


@register('densenet', validator=validate)
def build(model_config, *, num_outputs: int, dtype: str = 'float32') -> DenseNet:
  validate(model_config)
  return DenseNet(num_classes=num_outputs, growth_rate=model_config.growth_rate,
                  layers_per_block=tuple(model_config.layers_per_block),
                  bottleneck=model_config.bottleneck,
                  compression=float(model_config.compression), dtype=jnp.dtype(dtype))
