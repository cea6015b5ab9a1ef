"""Encoder-decoder Transformer (pre-norm) from feature sequences to text.

The interface every encoder-decoder model here shares (the captioners too), used by
``tasks/seq2seq.py`` for teacher forcing and for decoding:

* ``encode(inputs, input_mask, *, train) -> memory`` (a pytree whose leaves have the batch axis
  first; beam search repeats them per beam),
* ``decode(memory, decoder_inputs, *, train) -> logits [B, L, V]`` (causal: position ``t`` sees
  decoder inputs ``0..t`` only),
* ``__call__(inputs, input_mask, decoder_inputs, *, train) = decode(encode(...), ...)``.

Decoder inputs are ``BOS, y_1 .. y_{n}`` (teacher forcing), padded with 0; the output head is tied
to the token embedding.
"""

import flax.linen as nn
import jax.numpy as jnp

from curvelab import errors
from models import attention
from models import check_positive_ints
from models import ctc as ctc_model
from models import embeddings
from models import register
from models import seq_layers


class Seq2SeqTransformer(nn.Module):
  """Attributes mirror ``config.model`` (see configs/seq2seq_transformer.py).

  ``attention_fn`` is every attention layer's kernel (models/attention.py: ``kernel``).
  """
  vocab_size: int
  d_model: int = 256
  num_heads: int = 4
  encoder_layers: int = 2
  decoder_layers: int = 2
  mlp_dim: int = 1024
  dropout: float = 0.0
  conv_strides: tuple = ()
  conv_kernel: int = 5
  dtype: jnp.dtype = jnp.float32
  attention_fn: attention.AttentionFn = attention.dot_product_attention

  def setup(self):
    if self.conv_strides:
      self.frontend = seq_layers.ConvFrontEnd(self.d_model, tuple(self.conv_strides),
                                              self.conv_kernel, self.dtype)
    self.encoder = seq_layers.TransformerEncoder(self.d_model, self.encoder_layers,
                                                 self.num_heads, self.mlp_dim, self.dropout,
                                                 self.dtype, self.attention_fn)
    self.embed = nn.Embed(self.vocab_size, self.d_model,
                          embedding_init=nn.initializers.normal(self.d_model ** -0.5))
    self.decoder = [seq_layers.DecoderLayer(self.num_heads, self.mlp_dim, self.dropout,
                                            self.dtype, self.attention_fn)
                    for _ in range(self.decoder_layers)]
    self.decoder_norm = nn.LayerNorm(dtype=self.dtype)
    self.head_bias = self.param('head_bias', nn.initializers.zeros, (self.vocab_size,))
    self.embed_dropout = nn.Dropout(self.dropout)

  def encode(self, inputs, input_mask, *, train: bool):
    x, mask = inputs.astype(self.dtype), input_mask
    if self.conv_strides:
      x, mask = self.frontend(x, mask)
    return {'memory': self.encoder(x, mask, train=train), 'mask': mask.astype(jnp.float32)}

  def decode(self, memory, decoder_inputs, *, train: bool):
    length = decoder_inputs.shape[1]
    y = self.embed(decoder_inputs) * jnp.sqrt(float(self.d_model))
    y = (y + seq_layers.sinusoidal(length, self.d_model)[None]).astype(self.dtype)
    y = self.embed_dropout(y, deterministic=not train)
    for layer in self.decoder:
      y = layer(y, memory['memory'], memory['mask'], train=train)
    y = self.decoder_norm(y)
    return embeddings.add_bias(self.embed.attend(y.astype(jnp.float32)), self.head_bias)

  def __call__(self, inputs, input_mask, decoder_inputs, *, train: bool):
    return self.decode(self.encode(inputs, input_mask, train=train), decoder_inputs, train=train)


def validate(model_config, *, example_shape=None) -> None:
  """Checks ``config.model`` of the encoder-decoder Transformer."""
  for field in ('d_model', 'num_heads', 'encoder_layers', 'decoder_layers', 'mlp_dim',
                'conv_kernel'):
    check_positive_ints(model_config, field)
  if model_config.d_model % model_config.num_heads:
    raise errors.ConfigError(f'model.num_heads={model_config.num_heads} must divide '
                             f'model.d_model={model_config.d_model}.')
  if not 0.0 <= model_config.dropout < 1.0:
    raise errors.ConfigError(f'model.dropout must be in [0, 1), got {model_config.dropout}.')
  ctc_model.validate_strides(model_config)
  if example_shape is not None and len(example_shape) != 2:
    raise errors.ConfigError(f'the encoder-decoder needs [time, features] inputs, got shape '
                             f'{tuple(example_shape)}.')


def from_config(model_config, *, num_outputs: int, dtype: str,
                attention_fn: attention.AttentionFn = attention.dot_product_attention,
                ) -> Seq2SeqTransformer:
  return Seq2SeqTransformer(
      vocab_size=num_outputs, d_model=model_config.d_model, num_heads=model_config.num_heads,
      encoder_layers=model_config.encoder_layers, decoder_layers=model_config.decoder_layers,
      mlp_dim=model_config.mlp_dim, dropout=model_config.dropout,
      conv_strides=tuple(model_config.conv_strides), conv_kernel=model_config.conv_kernel,
      dtype=jnp.dtype(dtype), attention_fn=attention_fn)


@register('seq2seq_transformer', validator=validate, takes_attention=True)
def build(model_config, *, num_outputs: int, dtype: str = 'float32',
          attention_fn: attention.AttentionFn = attention.dot_product_attention,
          ) -> Seq2SeqTransformer:
  validate(model_config)
  return from_config(model_config, num_outputs=num_outputs, dtype=dtype,
                     attention_fn=attention_fn)
