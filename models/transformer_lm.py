"""Causal pre-norm Transformer language model with tied input/output embeddings.

Token embedding + learned or sinusoidal positions -> L pre-norm causal blocks -> LayerNorm ->
logits through the transposed embedding (+ bias). Attention is the builder's ``attention_fn``
(models/attention.py: ``kernel``) with ``is_causal``. Padding sits at the end of sequences, so causal attention already keeps it
from touching real positions.
"""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from curvelab import errors
from models import attention
from models import check_positive_ints
from models import embeddings
from models import lstm_lm
from models import register
from models.layers import EncoderBlock

POSITIONS = ('learned', 'sinusoidal')


def sinusoidal(length: int, width: int) -> np.ndarray:
  """The fixed sin/cos position table of Vaswani et al. (2017)."""
  pos = np.arange(length)[:, None]
  div = np.exp(np.arange(0, width, 2) * (-np.log(10000.0) / width))
  table = np.zeros((length, width), np.float32)
  table[:, 0::2] = np.sin(pos * div)
  table[:, 1::2] = np.cos(pos * div)[:, :width // 2]
  return table


class TransformerLanguageModel(nn.Module):
  """Attributes mirror ``config.model`` (see configs/transformer_lm.py)."""
  vocab_size: int
  num_layers: int = 4
  embed_size: int = 512
  num_heads: int = 8
  mlp_dim: int = 2048
  dropout: float = 0.0
  positions: str = 'learned'
  max_length: int = 1024
  embedding_init: np.ndarray | None = None
  freeze_embeddings: bool = False
  dtype: jnp.dtype = jnp.float32
  attention_fn: attention.AttentionFn = attention.dot_product_attention

  @nn.compact
  def __call__(self, inputs, *, train: bool):
    length = inputs.shape[1]
    embed = embeddings.Embedding(self.vocab_size, self.embed_size, initial=self.embedding_init,
                                 frozen=self.freeze_embeddings, name='embed')
    x = embed(inputs)
    if self.positions == 'learned':
      pos = self.param('pos_embed', nn.initializers.normal(0.02), (self.max_length, self.embed_size))
    else:
      pos = jnp.asarray(sinusoidal(self.max_length, self.embed_size))
    x = (x + pos[None, :length]).astype(self.dtype)
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    for i in range(self.num_layers):
      x = EncoderBlock(self.num_heads, self.mlp_dim, block='prenorm', dropout=self.dropout,
                       dtype=self.dtype, causal=True, attention_fn=self.attention_fn,
                       name=f'block_{i}')(x, train=train)
    x = nn.LayerNorm(dtype=self.dtype, name='final_norm')(x)
    bias = self.param('head_bias', nn.initializers.zeros, (self.vocab_size,))
    return embed.attend(x, bias)


def validate(model_config, *, example_shape=None) -> None:
  for field in ('num_layers', 'embed_size', 'num_heads', 'mlp_dim', 'max_length'):
    check_positive_ints(model_config, field)
  if model_config.embed_size % model_config.num_heads:
    raise errors.ConfigError(f'model.embed_size={model_config.embed_size} is not divisible by '
                             f'model.num_heads={model_config.num_heads}.')
  if model_config.positions not in POSITIONS:
    raise errors.ConfigError(f'model.positions={model_config.positions!r} is unknown; allowed: '
                             f'{", ".join(POSITIONS)}.')
  if example_shape is not None and example_shape[0] > model_config.max_length:
    raise errors.ConfigError(f'dataset.sequence_length={example_shape[0]} exceeds '
                             f'model.max_length={model_config.max_length}.')
  if model_config.freeze_embeddings and not model_config.embedding_path:
    raise errors.ConfigError('model.freeze_embeddings=True needs model.embedding_path.')


@register('transformer_lm', validator=validate, takes_attention=True)
def build(model_config, *, num_outputs: int, dtype: str = 'float32',
          attention_fn: attention.AttentionFn = attention.dot_product_attention,
          ) -> TransformerLanguageModel:
  validate(model_config)
  return TransformerLanguageModel(
      vocab_size=num_outputs, num_layers=model_config.num_layers,
      embed_size=model_config.embed_size, num_heads=model_config.num_heads,
      mlp_dim=model_config.mlp_dim, dropout=model_config.dropout,
      positions=model_config.positions, max_length=model_config.max_length,
      embedding_init=lstm_lm.initial_embedding(model_config, num_outputs),
      freeze_embeddings=model_config.freeze_embeddings, dtype=jnp.dtype(dtype),
      attention_fn=attention_fn)
