"""A fast CIFAR CNN for few-epoch training: three conv-pool groups, BatchNorm, GELU, flip TTA.

The network the CPU recipe (``configs/cnn.py:arch=fast``) trains to about 90 % in under an hour
on two cores. Its shape follows the fast-training line of work on CIFAR-10 (Page's ResNet-9
experiments, Jordan's airbench): a small 2x2 stem without padding (32 -> 31 pixels), then groups
of ``conv3x3 -> 2x2 max-pool -> BN -> act -> conv3x3 -> BN -> act``, a global max-pool, a linear
head without bias and a fixed down-scaling of the logits. Pooling inside every group puts most
of the computation at 15x15 and 7x7, where wide convolutions run efficiently on CPUs.

Test-time augmentation: with ``tta_flip``, evaluation averages the logits of each image and its
mirror image (the recipe trains with random flips, so both are in-distribution).

Sizes with 10 classes on 32x32x3 (pinned in tests/test_cnn_models.py): widths (32, 128, 256):
1,088,888 parameters.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from curvelab import errors
from models import cnn
from models import conv as conv_lib
from models import check_positive_ints
from models import register

ACTIVATIONS = {'gelu': lambda x: nn.gelu(x, approximate=True), 'relu': nn.relu}


def max_pool2(x):
  """2x2 max-pool with stride 2, flooring odd sizes (31 -> 15), as ``torch.nn.MaxPool2d(2)``.

  A reshape and a max rather than ``nn.max_pool``: XLA:CPU's gradient of the reshape form is a
  plain comparison, measurably faster than the generic select-and-scatter of a pooling window.
  """
  b, h, w, c = x.shape
  h2, w2 = h // 2, w // 2
  return x[:, :2 * h2, :2 * w2].reshape(b, h2, 2, w2, 2, c).max(axis=(2, 4))


class FastCNN(nn.Module):
  """Stem, conv-pool groups, global max-pool, scaled linear head (see the module docstring).

  Attributes:
    num_classes: output classes.
    widths: channels of each group; every group halves the image.
    stem_width: channels of the 2x2 stem.
    activation: ``gelu`` (tanh approximation) or ``relu``.
    bn_momentum: running-average decay of BatchNorm (flax convention; 0.6 follows few-epoch
      runs, whose statistics must catch up with fast-moving weights).
    logit_scale: fixed factor on the logits; small values keep the early softmax soft.
    tta_flip: evaluation averages the logits of the image and its horizontal mirror.
    conv_impl: ``models/conv.py`` implementation (``auto`` picks by backend).
    dtype: compute dtype; parameters and BatchNorm statistics stay float32.
  """
  num_classes: int
  widths: Sequence[int] = (32, 128, 256)
  stem_width: int = 24
  activation: str = 'gelu'
  bn_momentum: float = 0.6
  logit_scale: float = 0.125
  tta_flip: bool = True
  conv_impl: str = 'auto'
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    conv_fn = conv_lib.make_conv_general_dilated(self.conv_impl)

    def conv(features, kernel, padding, use_bias, name):
      return nn.Conv(features, (kernel, kernel), padding=padding, use_bias=use_bias,
                     kernel_init=cnn.CONV_INIT, dtype=self.dtype, conv_general_dilated=conv_fn,
                     name=name)

    self.stem = conv(self.stem_width, 2, 'VALID', True, 'stem')
    self.convs = [(conv(w, 3, ((1, 1), (1, 1)), False, f'group{g + 1}_conv1'),
                   conv(w, 3, ((1, 1), (1, 1)), False, f'group{g + 1}_conv2'))
                  for g, w in enumerate(self.widths)]
    # BatchNorm's scale stays 1 (use_scale=False): with few epochs a learned scale mostly adds
    # noise; the shift (bias) is kept.
    self.norms = [tuple(nn.BatchNorm(momentum=self.bn_momentum, epsilon=1e-5, use_scale=False,
                                     dtype=self.dtype, name=f'group{g + 1}_bn{i}')
                        for i in (1, 2)) for g in range(len(self.widths))]
    self.head = nn.Dense(self.num_classes, use_bias=False, dtype=self.dtype, name='head')

  def logits(self, x, *, train: bool):
    act = ACTIVATIONS[self.activation]
    x = act(self.stem(x.astype(self.dtype)))
    for (conv1, conv2), (bn1, bn2) in zip(self.convs, self.norms):
      x = max_pool2(conv1(x))
      x = act(bn1(x, use_running_average=not train))
      x = act(bn2(conv2(x), use_running_average=not train))
    x = x.max(axis=(1, 2))
    return (self.head(x) * self.logit_scale).astype(jnp.float32)

  def __call__(self, inputs, *, train: bool):
    if train or not self.tta_flip:
      return self.logits(inputs, train=train)
    return 0.5 * (self.logits(inputs, train=False) + self.logits(inputs[:, :, ::-1], train=False))


def validate_fast_cnn(model_config, *, example_shape: tuple | None = None) -> None:
  """Refuses settings that cannot build, naming the field and the allowed values."""
  widths = check_positive_ints(model_config, 'widths')
  check_positive_ints(model_config, 'stem_width')
  if model_config.activation not in ACTIVATIONS:
    raise errors.ConfigError(f'model.activation={model_config.activation!r} is unknown; '
                             f'allowed: {", ".join(ACTIVATIONS)}.')
  if not 0.0 <= float(model_config.bn_momentum) < 1.0:
    raise errors.ConfigError(f'model.bn_momentum must be in [0, 1), got '
                             f'{model_config.bn_momentum!r}.')
  if model_config.conv_impl not in conv_lib.IMPLEMENTATIONS:
    raise errors.ConfigError(f'model.conv_impl={model_config.conv_impl!r} is unknown; allowed: '
                             f'{", ".join(conv_lib.IMPLEMENTATIONS)}.')
  if example_shape is not None:
    # The stem takes one pixel off; each group then halves (flooring) and must leave >= 1.
    side = min(example_shape[:2]) - 1
    for _ in widths:
      side //= 2
    if side < 1:
      raise errors.ConfigError(
          f'image size {example_shape[0]}x{example_shape[1]} is too small for '
          f'{len(widths)} groups of model.widths (each halves the image after the 2x2 stem).')


@register('fast_cnn', validator=validate_fast_cnn)
def build_fast_cnn(model_config, *, num_outputs: int, dtype: str = 'float32') -> FastCNN:
  validate_fast_cnn(model_config)
  return FastCNN(num_classes=num_outputs, widths=tuple(model_config.widths),
                 stem_width=int(model_config.stem_width), activation=model_config.activation,
                 bn_momentum=float(model_config.bn_momentum),
                 logit_scale=float(model_config.logit_scale), tta_flip=bool(model_config.tta_flip),
                 conv_impl=model_config.conv_impl, dtype=jnp.dtype(dtype))
