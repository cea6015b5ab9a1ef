"""Token embeddings that can start from a file and stay frozen.

A frozen table lives in the ``frozen`` variable collection rather than in ``params``: it gets no
gradient and no weight decay (optimizers only see ``params``), yet it is saved and restored with
the rest of the state.
"""

import os

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from curvelab import errors


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

  def setup(self):
    if self.initial is not None and self.initial.shape != (self.vocab_size, self.features):
      raise errors.ConfigError(
          f'model.embed_size={self.features} does not match the embedding file '
          f'({self.initial.shape[1]} columns).')
    if self.initial is not None:
      init = lambda *_: jnp.asarray(self.initial)
    else:
      init = nn.initializers.normal(stddev=self.features ** -0.5)
    if self.frozen:
      self.table = self.variable('frozen', 'embedding',
                                 lambda: init(None, (self.vocab_size, self.features))).value
    else:
      self.table = self.param('embedding', init, (self.vocab_size, self.features))

  def __call__(self, ids):
    return jnp.take(self.table, ids, axis=0)

  def attend(self, x):
    return x @ self.table.T.astype(x.dtype)
