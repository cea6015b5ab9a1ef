"""Small CIFAR convolutional networks with BatchNorm: ResNet and pre-activation ResNet.

The baselines the reference ViT study could only quote, trained here in the same loop. Every
network takes ``[B, H, W, C]`` images and returns float32 logits; BatchNorm keeps its running
statistics in the ``batch_stats`` collection, which the loop carries in ``TrainState.model_state``
(updated by training steps, read by evaluation, checkpointed and replicated like the parameters).

Sizes with 10 classes on 32x32x3 (pinned in tests/test_cnn_models.py):

* ``resnet``: ResNet-20 (He et al. 2016, CIFAR): 3 stages of 3 basic blocks, widths 16/32/64,
  parameter-free shortcuts (subsample + zero channels): 269,722 parameters.
* ``preact_resnet``: the same with pre-activation blocks (He et al. 2016, "Identity Mappings"):
  269,722 parameters (one BatchNorm moves from the stem to the head; same count).
* ``resnet`` with widths 64/128/256/512, 2 blocks each and projection shortcuts: ResNet-18 for
  CIFAR (3x3 stem, no max-pool): 11,173,962 parameters.

GoogLeNet and DenseNet live in models/cnn_googlenet.py and models/cnn_densenet.py and share the
pieces defined here.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from curvelab import errors
from models import conv as conv_lib
from models import check_positive_ints
from models import register

SHORTCUTS = ('pad', 'projection')

# He (fan-out) initialisation of convolutions, the usual choice for ReLU networks with BatchNorm.
CONV_INIT = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


# --------------------------------------------------------------------------------- shared pieces

def conv(features: int, kernel: int, *, strides: int = 1, dtype=jnp.float32,
         name: str | None = None, conv_impl: str = 'auto') -> nn.Conv:
  """A bias-free convolution (a BatchNorm follows) with PyTorch-style symmetric padding.

  Symmetric ``kernel // 2`` padding rather than 'SAME' keeps stride-2 outputs aligned the way the
  CIFAR networks were designed (with 'SAME' XLA pads only the bottom/right for even inputs).
  ``conv_impl`` is models/conv.py's implementation ('auto': the CPU kernel gradient on CPUs).
  """
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(strides, strides),
                 padding=((pad, pad), (pad, pad)), use_bias=False, kernel_init=CONV_INIT,
                 dtype=dtype, name=name,
                 conv_general_dilated=conv_lib.make_conv_general_dilated(conv_impl))


def batch_norm(*, train: bool, dtype=jnp.float32, name: str | None = None) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults (running average 0.9, epsilon 1e-5).

  In training it normalises with the batch statistics and updates ``batch_stats``; under jit with
  a batch sharded over devices the mean and variance are those of the global batch. In
  evaluation it uses the running statistics and changes nothing.
  """
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                      name=name)


class ConvBN(nn.Module):
  """Conv -> BatchNorm -> ReLU (post-activation unit of ResNet stems and Inception branches)."""
  features: int
  kernel: int = 3
  strides: int = 1
  dtype: jnp.dtype = jnp.float32
  conv_impl: str = 'auto'

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = conv(self.features, self.kernel, strides=self.strides, dtype=self.dtype, name='conv',
             conv_impl=self.conv_impl)(x)
    return nn.relu(batch_norm(train=train, dtype=self.dtype, name='bn')(x))


class Head(nn.Module):
  """Global average pooling -> Dense, with float32 logits whatever the compute dtype."""
  num_classes: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = x.mean(axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, name='dense')(x).astype(jnp.float32)


def pad_shortcut(x, *, features: int, strides: int):
  """He et al.'s parameter-free shortcut: subsample, then zero channels up to ``features``."""
  if strides > 1:
    x = x[:, ::strides, ::strides, :]
  extra = features - x.shape[-1]
  if extra:
    x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
  return x


# --------------------------------------------------------------------------------- ResNets

class BasicBlock(nn.Module):
  """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU (the original ResNet block)."""
  features: int
  strides: int = 1
  shortcut: str = 'pad'
  dtype: jnp.dtype = jnp.float32
  conv_impl: str = 'auto'

  @nn.compact
  def __call__(self, x, *, train: bool):
    y = conv(self.features, 3, strides=self.strides, dtype=self.dtype, name='conv1',
             conv_impl=self.conv_impl)(x)
    y = nn.relu(batch_norm(train=train, dtype=self.dtype, name='bn1')(y))
    y = conv(self.features, 3, dtype=self.dtype, name='conv2',
             conv_impl=self.conv_impl)(y)
    y = batch_norm(train=train, dtype=self.dtype, name='bn2')(y)
    return nn.relu(y + self._shortcut(x, train=train))

  def _shortcut(self, x, *, train: bool):
    if x.shape[-1] == self.features and self.strides == 1:
      return x
    if self.shortcut == 'pad':
      return pad_shortcut(x, features=self.features, strides=self.strides)
    x = conv(self.features, 1, strides=self.strides, dtype=self.dtype, name='proj_conv',
             conv_impl=self.conv_impl)(x)
    return batch_norm(train=train, dtype=self.dtype, name='proj_bn')(x)


class PreActBlock(nn.Module):
  """BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus the shortcut; nothing after the add (identity mapping)."""
  features: int
  strides: int = 1
  shortcut: str = 'pad'
  dtype: jnp.dtype = jnp.float32
  conv_impl: str = 'auto'

  @nn.compact
  def __call__(self, x, *, train: bool):
    pre = nn.relu(batch_norm(train=train, dtype=self.dtype, name='bn1')(x))
    y = conv(self.features, 3, strides=self.strides, dtype=self.dtype, name='conv1',
             conv_impl=self.conv_impl)(pre)
    y = nn.relu(batch_norm(train=train, dtype=self.dtype, name='bn2')(y))
    y = conv(self.features, 3, dtype=self.dtype, name='conv2',
             conv_impl=self.conv_impl)(y)
    return y + self._shortcut(x, pre)

  def _shortcut(self, x, pre):
    if x.shape[-1] == self.features and self.strides == 1:
      return x
    if self.shortcut == 'pad':
      return pad_shortcut(x, features=self.features, strides=self.strides)
    # A projection reads the pre-activated input, as in He et al.'s pre-activation ResNets.
    return conv(self.features, 1, strides=self.strides, dtype=self.dtype, name='proj_conv',
             conv_impl=self.conv_impl)(pre)


class ResNet(nn.Module):
  """A CIFAR ResNet: 3x3 stem, stages of basic blocks (stride 2 from the second), pool, Dense.

  Attributes:
    num_classes: output classes.
    stage_widths: channels of each stage (the stem has the first stage's width).
    blocks_per_stage: basic blocks in each stage.
    preact: pre-activation blocks (BN-ReLU before each conv, a final BN-ReLU before pooling).
    shortcut: ``pad`` (parameter-free, He et al.'s CIFAR option A) or ``projection`` (1x1 conv).
    dtype: compute dtype; parameters and BatchNorm statistics stay float32.
    conv_impl: models/conv.py's implementation of every convolution (``auto``: by backend).
  """
  num_classes: int
  stage_widths: Sequence[int] = (16, 32, 64)
  blocks_per_stage: Sequence[int] = (3, 3, 3)
  preact: bool = False
  shortcut: str = 'pad'
  dtype: jnp.dtype = jnp.float32
  conv_impl: str = 'auto'

  @nn.compact
  def __call__(self, inputs, *, train: bool):
    x = inputs.astype(self.dtype)
    if self.preact:  # The first block's BN-ReLU activates the stem's output.
      x = conv(self.stage_widths[0], 3, dtype=self.dtype, name='stem', conv_impl=self.conv_impl)(x)
    else:
      x = ConvBN(self.stage_widths[0], dtype=self.dtype, conv_impl=self.conv_impl,
                 name='stem')(x, train=train)
    block = PreActBlock if self.preact else BasicBlock
    for s, (width, count) in enumerate(zip(self.stage_widths, self.blocks_per_stage)):
      for b in range(count):
        strides = 2 if s > 0 and b == 0 else 1
        x = block(width, strides=strides, shortcut=self.shortcut, dtype=self.dtype,
                  conv_impl=self.conv_impl, name=f'stage{s + 1}_block{b}')(x, train=train)
    if self.preact:
      x = nn.relu(batch_norm(train=train, dtype=self.dtype, name='final_bn')(x))
    return Head(self.num_classes, dtype=self.dtype, name='head')(x)


# --------------------------------------------------------------------------------- validation

def check_same_length(model_config, first: str, second: str) -> None:
  a, b = model_config[first], model_config[second]
  if len(a) != len(b):
    raise errors.ConfigError(f'model.{first} ({len(a)} values) and model.{second} '
                             f'({len(b)} values) must have one value per stage.')


def check_image_size(example_shape: tuple | None, *, stages: int, name: str) -> None:
  """Every stage after the first halves the image; refuse images that would vanish."""
  if example_shape is None:
    return
  smallest = 2 ** (stages - 1)
  if min(example_shape[:2]) < smallest:
    raise errors.ConfigError(
        f'image size {example_shape[0]}x{example_shape[1]} is too small for a {stages}-stage '
        f'{name} (each stage after the first halves it; need sides >= {smallest}).')


def validate_resnet(model_config, *, example_shape: tuple | None = None) -> None:
  """Refuses ResNet settings that cannot build, naming the field and the allowed values."""
  widths = check_positive_ints(model_config, 'stage_widths')
  check_positive_ints(model_config, 'blocks_per_stage')
  check_same_length(model_config, 'stage_widths', 'blocks_per_stage')
  if model_config.shortcut not in SHORTCUTS:
    raise errors.ConfigError(f'model.shortcut={model_config.shortcut!r} is unknown; allowed: '
                             f'{", ".join(SHORTCUTS)}.')
  if model_config.shortcut == 'pad' and any(b < a for a, b in zip(widths, widths[1:])):
    raise errors.ConfigError(f'model.shortcut=pad needs non-decreasing model.stage_widths, got '
                             f'{widths}; use shortcut=projection.')
  if model_config.get('conv_impl', 'auto') not in conv_lib.IMPLEMENTATIONS:
    raise errors.ConfigError(f'model.conv_impl={model_config.conv_impl!r} is unknown; allowed: '
                             f'{", ".join(conv_lib.IMPLEMENTATIONS)}.')
  check_image_size(example_shape, stages=len(widths), name=model_config.name)


def _build_resnet(model_config, *, num_outputs: int, dtype: str, preact: bool) -> ResNet:
  validate_resnet(model_config)
  return ResNet(num_classes=num_outputs, stage_widths=tuple(model_config.stage_widths),
                blocks_per_stage=tuple(model_config.blocks_per_stage), preact=preact,
                shortcut=model_config.shortcut, dtype=jnp.dtype(dtype),
                conv_impl=model_config.get('conv_impl', 'auto'))


@register('resnet', validator=validate_resnet)
def build_resnet(model_config, *, num_outputs: int, dtype: str = 'float32') -> ResNet:
  return _build_resnet(model_config, num_outputs=num_outputs, dtype=dtype, preact=False)


@register('preact_resnet', validator=validate_resnet)
def build_preact_resnet(model_config, *, num_outputs: int, dtype: str = 'float32') -> ResNet:
  return _build_resnet(model_config, num_outputs=num_outputs, dtype=dtype, preact=True)
