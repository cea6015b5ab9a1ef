"""The captioner family: four encoder-decoders from feature sequences to text, one interface.

``model.arch``:

* ``baseline``: conv front-end + unidirectional LSTM encoder; an LSTM decoder fed the token
  embedding and the mean of the encoder outputs (one fixed context for the whole caption).
* ``improved``: the baseline with a bidirectional, deeper encoder, the decoder state initialised
  from the context, LayerNorm on the context and dropout throughout.
* ``attention``: the improved encoder with an LSTM decoder using additive (Bahdanau) attention:
  at every step the previous decoder state scores every encoder frame, and the attended context
  joins the token embedding as input and the LSTM output before the vocabulary head.
* ``transformer``: the pre-norm encoder-decoder Transformer of models/seq2seq.py.

All four implement ``encode``/``decode``/``__call__`` as described in models/seq2seq.py, so the
seq2seq task trains and decodes (greedy or beam search) every one of them the same way.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from curvelab import errors
from models import attention
from models import check_positive_ints
from models import ctc as ctc_model
from models import register
from models import seq2seq
from models import seq_layers

ARCHS = ('baseline', 'improved', 'attention', 'transformer')


class AdditiveAttentionStep(nn.Module):
  """One decoder step with Bahdanau attention; scanned over time by :class:`LSTMCaptioner`."""
  hidden_size: int
  attention_size: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, carry, embedded, keys, memory, mask):
    _, h = carry
    query = nn.Dense(self.attention_size, use_bias=False, dtype=self.dtype, name='query')(h)
    energy = nn.Dense(1, use_bias=False, dtype=self.dtype, name='energy')(
        jnp.tanh(keys + query[:, None, :]))[..., 0]
    energy = jnp.where(mask > 0, energy.astype(jnp.float32), -1e9)
    weights = jax.nn.softmax(energy, axis=-1).astype(memory.dtype)
    context = jnp.einsum('bt,btd->bd', weights, memory)
    cell = nn.OptimizedLSTMCell(self.hidden_size, dtype=self.dtype, name='cell')
    carry, out = cell(carry, jnp.concatenate([embedded, context], axis=-1))
    return carry, jnp.concatenate([out, context], axis=-1)


class LSTMCaptioner(nn.Module):
  """The LSTM captioners (``baseline``, ``improved``, ``attention``); see the module docstring."""
  vocab_size: int
  arch: str = 'baseline'
  conv_strides: tuple = (2,)
  conv_channels: int = 128
  conv_kernel: int = 5
  encoder_layers: int = 1
  hidden_size: int = 256
  embed_size: int = 128
  attention_size: int = 128
  dropout: float = 0.0
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    improved = self.arch != 'baseline'
    if self.conv_strides:
      self.frontend = seq_layers.ConvFrontEnd(self.conv_channels, tuple(self.conv_strides),
                                              self.conv_kernel, self.dtype)
    self.encoder = seq_layers.LSTMEncoder(self.hidden_size, self.encoder_layers,
                                          bidirectional=improved, dropout=self.dropout,
                                          dtype=self.dtype)
    self.embed = nn.Embed(self.vocab_size, self.embed_size)
    self.drop = nn.Dropout(self.dropout)
    if improved:
      self.context_norm = nn.LayerNorm(dtype=self.dtype)
      self.init_state = nn.Dense(2 * self.hidden_size, dtype=self.dtype)
    if self.arch == 'attention':
      self.keys = nn.Dense(self.attention_size, use_bias=False, dtype=self.dtype)
      self.attend_step = nn.scan(
          AdditiveAttentionStep, variable_broadcast='params', split_rngs={'params': False},
          in_axes=(1, nn.broadcast, nn.broadcast, nn.broadcast), out_axes=1)(
              self.hidden_size, self.attention_size, self.dtype)
    else:
      self.rnn = nn.RNN(nn.OptimizedLSTMCell(self.hidden_size, dtype=self.dtype))
    self.head = nn.Dense(self.vocab_size, dtype=self.dtype)

  def encode(self, inputs, input_mask, *, train: bool):
    x, mask = inputs.astype(self.dtype), input_mask
    if self.conv_strides:
      x, mask = self.frontend(x, mask)
    memory = self.encoder(self.drop(x, deterministic=not train), mask, train=train)
    return {'memory': memory, 'mask': mask.astype(jnp.float32)}

  def _initial_carry(self, context):
    batch = context.shape[0]
    if self.arch == 'baseline':
      zeros = jnp.zeros((batch, self.hidden_size), self.dtype)
      return zeros, zeros
    c, h = jnp.split(jnp.tanh(self.init_state(context)), 2, axis=-1)
    return c, h

  def decode(self, memory, decoder_inputs, *, train: bool):
    states, mask = memory['memory'], memory['mask']
    context = seq_layers.masked_mean(states, mask)
    if self.arch != 'baseline':
      context = self.context_norm(context)
    carry = self._initial_carry(context)
    embedded = self.drop(self.embed(decoder_inputs).astype(self.dtype), deterministic=not train)
    if self.arch == 'attention':
      _, out = self.attend_step(carry, embedded, self.keys(states), states, mask)
    else:
      steps = embedded.shape[1]
      fixed = jnp.broadcast_to(context[:, None, :], (context.shape[0], steps, context.shape[-1]))
      out = self.rnn(jnp.concatenate([embedded, fixed.astype(embedded.dtype)], axis=-1),
                     initial_carry=carry)
    return self.head(self.drop(out, deterministic=not train)).astype(jnp.float32)

  def __call__(self, inputs, input_mask, decoder_inputs, *, train: bool):
    return self.decode(self.encode(inputs, input_mask, train=train), decoder_inputs, train=train)


def validate(model_config, *, example_shape=None) -> None:
  """Checks ``config.model`` of a captioner (``arch`` picks which fields matter)."""
  if model_config.arch not in ARCHS:
    raise errors.ConfigError(
        f'model.arch={model_config.arch!r} is unknown; allowed: {", ".join(ARCHS)}.')
  if model_config.arch == 'transformer':
    seq2seq.validate(model_config, example_shape=example_shape)
    return
  for field in ('conv_channels', 'conv_kernel', 'encoder_layers', 'hidden_size', 'embed_size',
                'attention_size'):
    check_positive_ints(model_config, field)
  ctc_model.validate_strides(model_config)
  if not 0.0 <= model_config.dropout < 1.0:
    raise errors.ConfigError(f'model.dropout must be in [0, 1), got {model_config.dropout}.')


@register('captioner', validator=validate, takes_attention=True)
def build(model_config, *, num_outputs: int, dtype: str = 'float32',
          attention_fn: attention.AttentionFn = attention.dot_product_attention) -> nn.Module:
  """The captioner ``model.arch`` names; ``attention_fn`` serves the ``transformer`` arch only.

  The LSTM archs' additive attention is a different computation, not a dot-product kernel.
  """
  validate(model_config)
  if model_config.arch == 'transformer':
    return seq2seq.from_config(model_config, num_outputs=num_outputs, dtype=dtype,
                               attention_fn=attention_fn)
  return LSTMCaptioner(
      vocab_size=num_outputs, arch=model_config.arch,
      conv_strides=tuple(model_config.conv_strides), conv_channels=model_config.conv_channels,
      conv_kernel=model_config.conv_kernel, encoder_layers=model_config.encoder_layers,
      hidden_size=model_config.hidden_size, embed_size=model_config.embed_size,
      attention_size=model_config.attention_size, dropout=model_config.dropout,
      dtype=jnp.dtype(dtype))
