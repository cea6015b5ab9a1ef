"""The LM building blocks that were rewritten for speed compute the same function as the plain form."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import embeddings
from models import recurrent


def _flax_lstm_params_as_ours(cell_params):
  """Maps ``OptimizedLSTMCell`` parameters (per-gate i, f, g, o) onto ``recurrent.LSTM``'s."""
  gates = ('i', 'f', 'g', 'o')
  return {
      'input_kernel': jnp.concatenate([cell_params[f'i{g}']['kernel'] for g in gates], axis=1),
      'recurrent_kernel': jnp.concatenate([cell_params[f'h{g}']['kernel'] for g in gates], axis=1),
      'bias': jnp.concatenate([cell_params[f'h{g}']['bias'] for g in gates]),
  }


@pytest.mark.parametrize('unroll', [1, 4])
def test_lstm_matches_flax_optimized_cell(unroll):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, 10, 6)), jnp.float32)
  reference = nn.RNN(nn.OptimizedLSTMCell(5))
  ref_params = reference.init(jax.random.key(1), x)['params']
  # Non-zero biases so that the bias placement is checked too.
  ref_params = jax.tree.map(lambda p: p + 0.1 * jnp.arange(p.size).reshape(p.shape) / p.size,
                            ref_params)
  ours = recurrent.LSTM(5, unroll=unroll)
  params = _flax_lstm_params_as_ours(ref_params['cell'])
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(0), x)['params']) == jax.tree.map(
      jnp.shape, params)
  expected = reference.apply({'params': ref_params}, x)
  got = ours.apply({'params': params}, x)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_lstm_gradients_match_flax_cell():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(2, 7, 4)), jnp.float32)
  reference = nn.RNN(nn.OptimizedLSTMCell(3))
  ref_params = reference.init(jax.random.key(3), x)['params']
  ours = recurrent.LSTM(3, unroll=2)

  def ref_loss(p):
    return jnp.sum(jnp.sin(reference.apply({'params': p}, x)))

  def our_loss(p):
    return jnp.sum(jnp.sin(ours.apply({'params': p}, x)))

  expected = _flax_lstm_params_as_ours(jax.grad(ref_loss)(ref_params)['cell'])
  got = jax.grad(our_loss)(_flax_lstm_params_as_ours(ref_params['cell']))
  for name in expected:
    np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_lstm_parameter_count_equals_flax_cell():
  x = jnp.zeros((1, 2, 768))
  ours = recurrent.LSTM(512).init(jax.random.key(0), x)['params']
  theirs = nn.RNN(nn.OptimizedLSTMCell(512)).init(jax.random.key(0), x)['params']
  count = lambda t: sum(p.size for p in jax.tree.leaves(t))
  assert count(ours) == count(theirs) == 768 * 2048 + 512 * 2048 + 2048


def test_lstm_bfloat16_keeps_float32_params_and_close_outputs():
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(size=(2, 12, 8)), jnp.float32)
  params = recurrent.LSTM(6).init(jax.random.key(0), x)['params']
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  full = recurrent.LSTM(6).apply({'params': params}, x)
  half = recurrent.LSTM(6, dtype=jnp.bfloat16).apply({'params': params}, x)
  assert half.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(half, np.float32), full, atol=3e-2)


def test_lstm_recurrent_kernel_blocks_are_orthogonal():
  kernel = recurrent.LSTM(8).init(jax.random.key(0), jnp.zeros((1, 1, 3)))['params'][
      'recurrent_kernel']
  for block in jnp.split(kernel, 4, axis=1):
    np.testing.assert_allclose(block.T @ block, np.eye(8), atol=1e-5)


def test_add_bias_value_and_gradients_equal_plain_addition():
  rng = np.random.default_rng(5)
  logits = jnp.asarray(rng.normal(size=(3, 4, 11)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=(11,)), jnp.float32)
  weights = jnp.asarray(rng.normal(size=(3, 4, 11)), jnp.float32)

  def loss(fn):
    return lambda l, b: jnp.sum(weights * jnp.tanh(fn(l, b)))

  np.testing.assert_allclose(embeddings.add_bias(logits, bias), logits + bias)
  got = jax.grad(loss(embeddings.add_bias), argnums=(0, 1))(logits, bias)
  expected = jax.grad(loss(jnp.add), argnums=(0, 1))(logits, bias)
  for g, e in zip(got, expected):
    np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def test_attend_is_tied_projection_with_float32_logits():
  module = embeddings.Embedding(13, 4)
  x = jnp.asarray(np.random.default_rng(6).normal(size=(2, 4)), jnp.bfloat16)
  bias = jnp.arange(13, dtype=jnp.float32)
  variables = module.init(jax.random.key(0), jnp.zeros((1,), jnp.int32))
  table = variables['params']['embedding']
  out = module.apply(variables, x, bias, method=module.attend)
  assert out.dtype == jnp.float32
  expected = np.asarray(x, np.float32) @ np.asarray(table.astype(jnp.bfloat16), np.float32).T + bias
  np.testing.assert_allclose(out, expected, rtol=1e-2, atol=1e-2)


def test_scan_unroll_zero_picks_the_backend_default_and_positive_values_are_kept():
  assert recurrent.resolve_unroll(0, 'cpu') == 1
  assert recurrent.resolve_unroll(0, 'gpu') == recurrent.resolve_unroll(0, 'tpu') == 16
  assert recurrent.resolve_unroll(8, 'cpu') == recurrent.resolve_unroll(8, 'gpu') == 8
  assert recurrent.resolve_unroll(0) == (1 if jax.default_backend() == 'cpu' else 16)


@pytest.mark.parametrize('value', [-1, True, 2.0, '4'])
def test_scan_unroll_must_be_zero_or_a_positive_integer(value):
  from configs import lstm_lm as lstm_config  # pylint: disable=g-import-not-at-top
  from curvelab import errors  # pylint: disable=g-import-not-at-top
  from models import lstm_lm  # pylint: disable=g-import-not-at-top
  config = lstm_config.get_config('layers=1').model
  lstm_lm.validate(config)  # The default (0, automatic) is valid.
  with config.ignore_type():
    config.scan_unroll = value
  with pytest.raises(errors.ConfigError, match='model.scan_unroll must be 0 .automatic. or a positive'):
    lstm_lm.validate(config)


def test_flip_sequences_reverses_real_steps_only_and_is_its_own_inverse():
  x = jnp.arange(2 * 5, dtype=jnp.float32).reshape(2, 5)[..., None]
  flipped = recurrent.flip_sequences(x, jnp.array([3, 5]))
  np.testing.assert_array_equal(flipped[..., 0], [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]])
  np.testing.assert_array_equal(recurrent.flip_sequences(flipped, jnp.array([3, 5])), x)
  # Lengths are clipped to the sequence; a plain list works; zero length leaves all in place.
  np.testing.assert_array_equal(recurrent.flip_sequences(x, [9, 0])[..., 0],
                                [[4, 3, 2, 1, 0], [5, 6, 7, 8, 9]])


def test_reverse_lstm_with_lengths_matches_flax_reverse_rnn_at_real_steps():
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(3, 7, 4)), jnp.float32)
  lengths = jnp.array([7, 4, 1])
  reference = nn.RNN(nn.OptimizedLSTMCell(5), reverse=True, keep_order=True)
  ref_params = reference.init(jax.random.key(1), x, seq_lengths=lengths)['params']
  ref_params = jax.tree.map(lambda p: p + 0.1 * jnp.arange(p.size).reshape(p.shape) / p.size,
                            ref_params)
  expected = reference.apply({'params': ref_params}, x, seq_lengths=lengths)
  params = _flax_lstm_params_as_ours(ref_params['cell'])
  for unroll in (1, 3):
    got = recurrent.LSTM(5, reverse=True, unroll=unroll).apply({'params': params}, x, lengths)
    real = (jnp.arange(7)[None, :] < lengths[:, None])[..., None]
    np.testing.assert_allclose(jnp.where(real, got, 0), jnp.where(real, expected, 0),
                               rtol=1e-5, atol=1e-6)
  # Padding content never reaches a real step's output.
  noisy = jnp.where(jnp.arange(7)[None, :, None] < lengths[:, None, None], x, 1e3)
  got_noisy = recurrent.LSTM(5, reverse=True).apply({'params': params}, noisy, lengths)
  np.testing.assert_allclose(jnp.where(real, got_noisy, 0), jnp.where(real, expected, 0),
                             rtol=1e-5, atol=1e-6)
