"""Token embeddings that can start from a file and stay frozen.

A frozen table lives in the ``frozen`` variable collection rather than in ``params``: it gets no
gradient and no weight decay (optimizers only see ``params``), yet it is saved and restored with
the rest of the state.
"""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from curvelab import errors
from models import inits


def load_matrix(path: str, *, vocab_size: int, field: str = 'model.embedding_path') -> np.ndarray:
  """Reads a [vocab, embed] matrix from ``.npy`` or ``.npz`` (array ``tokens`` or the only one)."""
  path = os.path.expanduser(path)
  if not os.path.isfile(path):
    raise errors.DataError(f'{field}={path!r}: file not found.')
  loaded = np.load(path)
  if isinstance(loaded, np.lib.npyio.NpzFile):
    with loaded:
      names = loaded.files
      if 'tokens' in names:
        matrix = loaded['tokens']
      elif len(names) == 1:
        matrix = loaded[names[0]]
      else:
        raise errors.DataError(f'{field}={path!r} holds {len(names)} arrays ({", ".join(names)}); '
                               'name the embedding "tokens" or keep only one.')
  else:
    matrix = loaded
  if matrix.ndim != 2 or matrix.shape[0] != vocab_size:
    raise errors.DataError(f'{field}={path!r}: expected a [{vocab_size}, embed] matrix for the '
                           f'vocabulary, got shape {matrix.shape}.')
  return matrix.astype(np.float32)


class Embedding(nn.Module):
  """An embedding table with a tied output projection (``attend``)."""
  vocab_size: int
  features: int
  initial: np.ndarray | None = None
  frozen: bool = False
  param_init: str = 'flax'  # models/inits.py: drawn table when no ``initial`` is given.

  def setup(self):
    if self.initial is not None and self.initial.shape != (self.vocab_size, self.features):
      raise errors.ConfigError(
          f'model.embed_size={self.features} does not match the embedding file '
          f'({self.initial.shape[1]} columns).')
    if self.initial is not None:
      init = lambda *_: jnp.asarray(self.initial)
    else:
      init = inits.embedding(self.param_init, self.features)
    if self.frozen:
      self.table = self.variable('frozen', 'embedding',
                                 lambda: init(None, (self.vocab_size, self.features))).value
    else:
      self.table = self.param('embedding', init, (self.vocab_size, self.features))

  def __call__(self, ids):
    return jnp.take(self.table, ids, axis=0)

  def attend(self, x, bias=None):
    """Tied output logits ``x @ table.T (+ bias)``, float32, computed in ``x``'s dtype.

    Args:
      x: [..., features] activations; a bfloat16 ``x`` gives a bfloat16 product, returned as
        float32 (the logits feed a softmax over the whole vocabulary).
      bias: optional [vocab] bias, added by ``add_bias``.

    Returns:
      [..., vocab] float32 logits.
    """
    # The product in x's dtype, then float32: XLA:CPU has no bf16 x bf16 -> f32 dot, and GPUs
    # accumulate a bf16 product in float32 anyway.
    logits = (x @ self.table.T.astype(x.dtype)).astype(jnp.float32)
    return logits if bias is None else add_bias(logits, bias)


@jax.custom_vjp
def add_bias(logits, bias):
  """``logits + bias`` whose bias gradient is a matmul with a ones row, not a column reduction.

  The bias gradient sums the [tokens, vocab] logit gradient over tokens. XLA:CPU runs that
  reduction over the major axis at ~0.3 GB/s (1.6 s for the reference LSTM's 4,096 x 33,278
  logits, a sixth of its whole step); ``ones[1, tokens] @ g`` reads the same bytes in 0.03 s, and on
  a GPU either form is a single memory-bound pass.
  """
  return logits + bias


def _add_bias_fwd(logits, bias):
  return logits + bias, None


def _add_bias_bwd(_, grad):
  flat = grad.reshape(-1, grad.shape[-1])
  ones = jnp.ones((1, flat.shape[0]), flat.dtype)
  # HIGHEST: a GPU would otherwise round g to TF32 before summing 10^3-10^4 terms.
  bias_grad = jnp.dot(ones, flat, precision=jax.lax.Precision.HIGHEST)[0]
  return grad, bias_grad


add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)
