"""CTC recogniser: temporal conv front-end + BiLSTM or Transformer encoder + vocabulary head.

inputs [B, T, F] (float features, ``input_mask`` [B, T]) -> conv front-end subsampling by the
product of ``conv_strides`` -> encoder -> Dense to the vocabulary (id 0 = blank) ->
``{'logits': [B, T', V], 'mask': [B, T']}`` with ``T' = ceil(T / prod(conv_strides))``.
"""

import math

import flax.linen as nn
import jax.numpy as jnp

from curvelab import errors
from models import attention
from models import check_positive_ints
from models import register
from models import seq_layers

ENCODERS = ('bilstm', 'transformer')


class CTCModel(nn.Module):
  """Attributes mirror ``config.model`` (see configs/ctc_bilstm.py, configs/ctc_transformer.py).

  ``attention_fn`` is the Transformer encoder's attention kernel (models/attention.py: ``kernel``).
  """
  vocab_size: int
  encoder: str = 'bilstm'
  conv_strides: tuple = (2,)
  conv_channels: int = 128
  conv_kernel: int = 5
  num_layers: int = 2
  hidden_size: int = 256
  num_heads: int = 4
  mlp_dim: int = 1024
  dropout: float = 0.0
  dtype: jnp.dtype = jnp.float32
  attention_fn: attention.AttentionFn = attention.dot_product_attention

  @nn.compact
  def __call__(self, inputs, input_mask, *, train: bool):
    x = inputs.astype(self.dtype)
    mask = input_mask
    if self.conv_strides:
      x, mask = seq_layers.ConvFrontEnd(self.conv_channels, tuple(self.conv_strides),
                                        self.conv_kernel, self.dtype, name='frontend')(x, mask)
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    if self.encoder == 'bilstm':
      x = seq_layers.LSTMEncoder(self.hidden_size, self.num_layers, bidirectional=True,
                                 dropout=self.dropout, dtype=self.dtype, name='encoder')(
                                     x, mask, train=train)
    else:
      x = seq_layers.TransformerEncoder(self.hidden_size, self.num_layers, self.num_heads,
                                        self.mlp_dim, self.dropout, self.dtype,
                                        self.attention_fn, name='encoder')(x, mask, train=train)
    logits = nn.Dense(self.vocab_size, dtype=self.dtype, name='head')(x)
    return {'logits': logits.astype(jnp.float32), 'mask': mask.astype(jnp.float32)}


def subsampling(model_config) -> int:
  """Time subsampling of the front-end (product of ``conv_strides``)."""
  return int(math.prod(model_config.get('conv_strides', ()) or (1,)))


def validate(model_config, *, example_shape=None) -> None:
  """Checks ``config.model`` of a CTC model (and its front-end against the input length)."""
  if model_config.encoder not in ENCODERS:
    raise errors.ConfigError(
        f'model.encoder={model_config.encoder!r} is unknown; allowed: {", ".join(ENCODERS)}.')
  for field in ('conv_channels', 'conv_kernel', 'num_layers', 'hidden_size'):
    check_positive_ints(model_config, field)
  validate_strides(model_config)
  if not 0.0 <= model_config.dropout < 1.0:
    raise errors.ConfigError(f'model.dropout must be in [0, 1), got {model_config.dropout}.')
  if model_config.encoder == 'transformer':
    for field in ('num_heads', 'mlp_dim'):
      check_positive_ints(model_config, field)
    if model_config.hidden_size % model_config.num_heads:
      raise errors.ConfigError(
          f'model.num_heads={model_config.num_heads} must divide model.hidden_size='
          f'{model_config.hidden_size} (the Transformer width).')
  if example_shape is not None and len(example_shape) != 2:
    raise errors.ConfigError(f'the CTC model needs [time, features] inputs, got shape '
                             f'{tuple(example_shape)}.')


def validate_strides(model_config) -> None:
  strides = tuple(model_config.get('conv_strides', ()))
  if any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in strides):
    raise errors.ConfigError(
        f'model.conv_strides must be a tuple of positive integers (one per conv layer; () = no '
        f'front-end), got {strides!r}.')


@register('ctc', validator=validate, takes_attention=True)
def build(model_config, *, num_outputs: int, dtype: str = 'float32',
          attention_fn: attention.AttentionFn = attention.dot_product_attention) -> CTCModel:
  validate(model_config)
  return CTCModel(
      vocab_size=num_outputs, encoder=model_config.encoder,
      conv_strides=tuple(model_config.conv_strides), conv_channels=model_config.conv_channels,
      conv_kernel=model_config.conv_kernel, num_layers=model_config.num_layers,
      hidden_size=model_config.hidden_size, num_heads=model_config.get('num_heads', 4),
      mlp_dim=model_config.get('mlp_dim', 1024), dropout=model_config.dropout,
      dtype=jnp.dtype(dtype), attention_fn=attention_fn)
