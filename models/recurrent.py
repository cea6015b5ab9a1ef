"""A unidirectional LSTM layer whose input projection runs once for the whole sequence.

``flax.linen.RNN(OptimizedLSTMCell)`` multiplies ``[x_t, h_t]`` by the gate kernels inside the
time loop, so every one of the T iterations runs a small [B, E + H] x [E + H, 4H] product, and its
backward pass does the same. Only the recurrent half depends on the previous step: here
``x @ W_x`` is one [B*T, E] x [E, 4H] matmul before the loop (and one for its gradient after it),
and the loop body is left with ``h @ W_h`` and the gate nonlinearities. This is the standard
layout of cuDNN's and PyTorch's LSTMs. On the 2-core CPU the recurrence of the reference LSTM
step (batch 16 x 256) went from ~2.9 s to ~0.8 s in XLA's profile (docs/benchmarks.md).

Gates follow PyTorch's order (input, forget, cell, output). The parameter count equals
``OptimizedLSTMCell``'s: ``E*4H`` input weights, ``H*4H`` recurrent weights, ``4H`` biases.

``reverse=True`` with per-example ``seq_lengths`` runs each sequence backwards from its last real
step, as ``nn.RNN(..., reverse=True, keep_order=True)`` does, for bidirectional encoders of padded
batches.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import inits

# Time steps per loop iteration of a recurrence where the config asks for the automatic choice.
# On an H200 the float32 lm1 epoch took 8.0 s unrolled 1, 5.9 s at 8, 5.7 s at 16 and 5.5 s at 32,
# compiling in 10.8 s at 16 and 13.5 s at 32 (docs/benchmarks.md). On the 2-core CPU unrolling
# 8 steps made no measurable difference (375 and 419 tokens/s against 406 and 405) and doubled
# the compile time (6-7 s against 3.5 s), so CPUs keep 1. TPUs, not measured, get the GPU's.
ACCELERATOR_UNROLL = 16


def resolve_unroll(value: int, backend: str | None = None) -> int:
  """A configured unroll as used: itself when positive; for 0, the backend's default."""
  if value:
    return value
  return 1 if (backend or jax.default_backend()) == 'cpu' else ACCELERATOR_UNROLL


def flip_sequences(x: jax.Array, lengths: jax.Array) -> jax.Array:
  """Reverses the first ``lengths[b]`` steps of each sequence of ``x`` [B, T, ...].

  Steps past a sequence's length (padding) stay where they are, so a backward recurrence over the
  flipped batch reaches every real step before any padding. Applying it twice is the identity.
  """
  steps = jnp.arange(x.shape[1])
  # Clipped to [0, T]: a length past the end would index outside the sequence.
  lengths = jnp.clip(jnp.asarray(lengths).astype(steps.dtype), 0, x.shape[1])[:, None]
  index = jnp.where(steps < lengths, lengths - 1 - steps, steps)
  return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


def _blockwise_orthogonal(key, shape, dtype=jnp.float32):
  """[H, 4H]: four independent orthogonal [H, H] blocks, one per gate (as flax's cell does)."""
  hidden, gates = shape
  keys = jax.random.split(key, gates // hidden)
  init = nn.initializers.orthogonal()
  return jnp.concatenate([init(k, (hidden, hidden), dtype) for k in keys], axis=1)


class LSTM(nn.Module):
  """LSTM over [B, T, E] inputs returning all hidden states [B, T, H].

  Attributes:
    hidden_size: H, the width of the hidden and cell state.
    dtype: compute dtype of the matmuls. The cell state and the gate arithmetic stay float32, so a
      bfloat16 run does not accumulate rounding error over long sequences.
    unroll: time steps per iteration of the compiled loop (``lax.scan``'s ``unroll``). More steps
      per iteration cut loop overhead (a device round trip per iteration on some GPU runtimes) at
      the cost of a larger program; the result is identical.
    reverse: run from the last real step to the first; outputs stay in input order.
    param_init: parameter initialisation scheme (models/inits.py): ``flax`` or ``reference``.
  """
  hidden_size: int
  dtype: jnp.dtype = jnp.float32
  unroll: int = 1
  reverse: bool = False
  param_init: str = 'flax'

  @nn.compact
  def __call__(self, x, seq_lengths=None):
    """[B, T, E] -> [B, T, H].

    Args:
      x: inputs.
      seq_lengths: [B] real steps per sequence (default: all T). Outputs at padded steps are not
        meaningful; they never reach the outputs at real steps, in either direction.
    """
    batch, steps, features = x.shape
    if self.reverse:
      lengths = jnp.full((batch,), steps) if seq_lengths is None else seq_lengths
      x = flip_sequences(x, lengths)
    h_size = self.hidden_size
    w_x = self.param('input_kernel', inits.lstm_input_kernel(self.param_init, h_size),
                     (features, 4 * h_size))
    w_h = self.param('recurrent_kernel',
                     inits.lstm_recurrent_kernel(self.param_init, h_size,
                                                 _blockwise_orthogonal),
                     (h_size, 4 * h_size))
    bias = self.param('bias', inits.lstm_bias(self.param_init, h_size), (4 * h_size,))
    # One matmul for every time step's input contribution; time-major for the scan.
    # Products in the compute dtype, then float32 (XLA:CPU has no bf16 x bf16 -> f32 dot).
    projected = jnp.einsum('bte,eg->tbg', x.astype(self.dtype),
                           w_x.astype(self.dtype)).astype(jnp.float32) + bias
    carry = (jnp.zeros((batch, h_size), jnp.float32), jnp.zeros((batch, h_size), jnp.float32))
    step = functools.partial(_lstm_step, w_h=w_h.astype(self.dtype), dtype=self.dtype)
    _, hidden = jax.lax.scan(step, carry, projected, unroll=self.unroll)
    hidden = jnp.swapaxes(hidden, 0, 1).astype(self.dtype)
    return flip_sequences(hidden, lengths) if self.reverse else hidden


def _lstm_step(carry, projected_t, *, w_h, dtype):
  """One time step: gates = x_t W_x + b (precomputed) + h W_h."""
  c, h = carry
  gates = projected_t + jnp.dot(h.astype(dtype), w_h).astype(jnp.float32)
  i, f, g, o = jnp.split(gates, 4, axis=-1)
  c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  h = jax.nn.sigmoid(o) * jnp.tanh(c)
  return (c, h), h
