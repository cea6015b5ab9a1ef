"""The attention core: the CPU path (custom gradient, chunks of heads) against JAX's own."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import attention


def _inputs(batch=5, t=7, s=9, heads=3, dim=4, dtype=jnp.float32, seed=0):
  rng = np.random.default_rng(seed)
  q = jnp.asarray(rng.standard_normal((batch, t, heads, dim)), dtype)
  k = jnp.asarray(rng.standard_normal((batch, s, heads, dim)), dtype)
  v = jnp.asarray(rng.standard_normal((batch, s, heads, dim)), dtype)
  d_out = jnp.asarray(rng.standard_normal((batch, t, heads, dim)), dtype)
  return q, k, v, d_out


def _key_mask(batch, s, seed=1):
  keep = np.random.default_rng(seed).random((batch, s)) > 0.3
  keep[1] = False  # One example with every key masked.
  return jnp.asarray(keep)[:, None, None, :]


def _value_and_grads(fn, q, k, v, d_out):
  out, vjp = jax.vjp(fn, q, k, v)
  return (out,) + vjp(d_out)


CASES = {
    'plain': dict(t=7, s=9, mask=False, causal=False),
    'key mask with a fully masked row': dict(t=7, s=9, mask=True, causal=False),
    'causal': dict(t=8, s=8, mask=False, causal=True),
    'causal and key mask': dict(t=8, s=8, mask=True, causal=True),
    'a mask per head and query': dict(t=7, s=9, mask='full', causal=False),
}


@pytest.mark.parametrize('chunks', [1, 2, 3, 16])  # 3 heads: one per chunk; 16: capped.
@pytest.mark.parametrize('case', list(CASES))
def test_matches_jax_attention_values_and_gradients(case, chunks):
  spec = CASES[case]
  q, k, v, d_out = _inputs(t=spec['t'], s=spec['s'])
  mask = _key_mask(q.shape[0], spec['s']) if spec['mask'] else None
  if spec['mask'] == 'full':  # [B, H, T, S]: each chunk of heads takes its own slice.
    mask = jnp.asarray(np.random.default_rng(2).random(q.shape[:1] + (3, 7, 9)) > 0.4)
  ref = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=spec['causal'])
  new = lambda q, k, v: attention.chunked_attention(q, k, v, mask=mask, is_causal=spec['causal'],
                                                     chunks=chunks)
  expected = _value_and_grads(ref, q, k, v, d_out)
  got = jax.jit(lambda *a: _value_and_grads(new, *a))(q, k, v, d_out)
  for name, e, g in zip(['out', 'dq', 'dk', 'dv'], expected, got):
    np.testing.assert_allclose(g, e, atol=2e-6, rtol=2e-6, err_msg=name)


def test_fully_masked_row_gets_uniform_weights_and_no_gradient():
  q, k, v, d_out = _inputs()
  mask = _key_mask(q.shape[0], k.shape[1])
  fn = lambda q, k, v: attention.chunked_attention(q, k, v, mask=mask, chunks=2)
  out, dq, dk, _ = _value_and_grads(fn, q, k, v, d_out)
  np.testing.assert_allclose(out[1], jnp.broadcast_to(v[1].mean(0), out[1].shape), atol=1e-6)
  assert not np.any(dq[1]) and not np.any(dk[1])  # Queries and keys of example 1 had no effect.
  assert np.any(dq[0])


def test_bfloat16_keeps_dtype_and_agrees_with_float32():
  q, k, v, d_out = _inputs(dtype=jnp.bfloat16)
  fn = lambda q, k, v: attention.chunked_attention(q, k, v, is_causal=False, chunks=2)
  got = _value_and_grads(fn, q, k, v, d_out)
  f32 = [x.astype(jnp.float32) for x in (q, k, v, d_out)]
  ref = _value_and_grads(jax.nn.dot_product_attention, *f32)
  for name, g, e in zip(['out', 'dq', 'dk', 'dv'], got, ref):
    assert g.dtype == jnp.bfloat16, name
    np.testing.assert_allclose(g.astype(jnp.float32), e, atol=0.06, rtol=0.06, err_msg=name)


@pytest.fixture
def implementation_calls(monkeypatch):
  """Replaces both attention paths with stubs; returns the list of the paths called, in order."""
  calls = []
  monkeypatch.setattr(jax.nn, 'dot_product_attention',
                      lambda q, *a, implementation, **kw: calls.append(implementation) or q)
  monkeypatch.setattr(attention, 'chunked_attention',
                      lambda q, *a, chunks, **kw: calls.append(('head_major', chunks)) or q)
  return calls


def test_backend_picks_the_implementation(implementation_calls):
  q, k, v, _ = _inputs()
  for backend in ('gpu', 'tpu', 'cpu'):
    attention.dot_product_attention(q, k, v, backend=backend)
  assert implementation_calls == ['xla', 'xla', ('head_major', attention.CPU_CHUNKS)]


def test_non_boolean_mask_is_refused():
  q, k, v, _ = _inputs()
  with pytest.raises(TypeError, match='attention mask must be boolean'):
    attention.chunked_attention(q, k, v, mask=jnp.ones((5, 1, 1, 9)), chunks=2)


def test_implementation_forces_a_choice_and_restores_it(implementation_calls):
  q, k, v, _ = _inputs()
  with attention.implementation('xla'):
    attention.dot_product_attention(q, k, v, backend='cpu')
  with attention.implementation('cudnn'):
    attention.dot_product_attention(q, k, v, backend='cpu')
  with attention.implementation('head_major'):
    attention.dot_product_attention(q, k, v, backend='gpu')
  with pytest.raises(RuntimeError), attention.implementation('xla'):
    raise RuntimeError('the block fails')
  attention.dot_product_attention(q, k, v, backend='cpu')  # 'auto' again.
  head_major = ('head_major', attention.CPU_CHUNKS)
  assert implementation_calls == ['xla', 'cudnn', head_major, head_major]
  with pytest.raises(ValueError, match="attention implementation 'flash': choose from auto, xla"):
    with attention.implementation('flash'):
      pass
