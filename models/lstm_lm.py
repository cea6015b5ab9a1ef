"""Stacked LSTM language model with a tied output head, as in the reference study.

embedding (V x E) -> dropout -> L x LSTM(H) (each followed by dropout) -> Dense(H -> E) + ReLU ->
logits = h @ embedding^T + bias (tied). The recurrence is ``models.recurrent.LSTM``: the input
projection as one matmul over the whole sequence, then one ``lax.scan`` over time for the recurrent
part, never a Python loop.
"""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from curvelab import errors
from models import check_init
from models import check_positive_ints
from models import embeddings
from models import inits
from models import recurrent
from models import register


class LSTMLanguageModel(nn.Module):
  """Attributes mirror ``config.model`` (see configs/lstm_lm.py)."""
  vocab_size: int
  num_layers: int = 1
  hidden_size: int = 512
  embed_size: int = 768
  dropout: float = 0.0
  embedding_init: np.ndarray | None = None
  freeze_embeddings: bool = False
  scan_unroll: int = 1
  # models/inits.py; ``reference``: PyTorch's Embedding/LSTM/Linear defaults.
  param_init: str = 'flax'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs, *, train: bool):
    embed = embeddings.Embedding(self.vocab_size, self.embed_size, initial=self.embedding_init,
                                 frozen=self.freeze_embeddings, param_init=self.param_init,
                                 name='embed')
    drop = nn.Dropout(self.dropout, deterministic=not train)
    x = drop(embed(inputs).astype(self.dtype))
    for i in range(self.num_layers):
      x = drop(recurrent.LSTM(self.hidden_size, dtype=self.dtype, unroll=self.scan_unroll,
                              param_init=self.param_init, name=f'lstm_{i}')(x))
    h = nn.relu(nn.Dense(self.embed_size, dtype=self.dtype,
                         kernel_init=inits.dense_kernel(self.param_init, self.hidden_size,
                                                        nn.initializers.lecun_normal()),
                         bias_init=inits.dense_bias(self.param_init, self.hidden_size),
                         name='head_proj')(x))
    # The tied output layer is a Linear(embed_size -> vocab) whose weight is the embedding.
    bias = self.param('head_bias', inits.dense_bias(self.param_init, self.embed_size),
                      (self.vocab_size,))
    return embed.attend(h, bias)


def validate(model_config, *, example_shape=None) -> None:
  del example_shape
  for field in ('num_layers', 'hidden_size', 'embed_size'):
    check_positive_ints(model_config, field)
  unroll = model_config.get('scan_unroll', 0)  # Configs written before the field lack it.
  if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 0:
    raise errors.ConfigError(
        f'model.scan_unroll must be 0 (automatic) or a positive integer, got {unroll!r}.')
  check_init(model_config)
  if not 0.0 <= model_config.dropout < 1.0:
    raise errors.ConfigError(f'model.dropout must be in [0, 1), got {model_config.dropout}.')
  if model_config.freeze_embeddings and not model_config.embedding_path:
    raise errors.ConfigError('model.freeze_embeddings=True needs model.embedding_path.')


def initial_embedding(model_config, vocab_size: int):
  if not model_config.embedding_path:
    return None
  return embeddings.load_matrix(model_config.embedding_path, vocab_size=vocab_size)


@register('lstm_lm', validator=validate)
def build(model_config, *, num_outputs: int, dtype: str = 'float32') -> LSTMLanguageModel:
  validate(model_config)
  return LSTMLanguageModel(
      vocab_size=num_outputs, num_layers=model_config.num_layers,
      hidden_size=model_config.hidden_size, embed_size=model_config.embed_size,
      dropout=model_config.dropout, embedding_init=initial_embedding(model_config, num_outputs),
      freeze_embeddings=model_config.freeze_embeddings,
      scan_unroll=recurrent.resolve_unroll(model_config.get('scan_unroll', 0)),
      param_init=model_config.get('init', 'flax'), dtype=jnp.dtype(dtype))
