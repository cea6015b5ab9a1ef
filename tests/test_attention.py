"""The attention kernels: the CPU path (custom gradient, chunks of heads) against JAX's own, the
choice of kernel by name and backend, and models taking the kernel as their ``attention_fn``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import captioner as captioner_configs
from configs import cnn as cnn_configs
from configs import ctc_transformer
from configs import seq2seq_transformer
from configs import transformer_lm as transformer_lm_configs
from configs import vit_prenorm
import models
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


def test_non_boolean_mask_is_refused():
  q, k, v, _ = _inputs()
  with pytest.raises(TypeError, match='attention mask must be boolean'):
    attention.chunked_attention(q, k, v, mask=jnp.ones((5, 1, 1, 9)), chunks=2)


@pytest.fixture
def kernel_calls(monkeypatch):
  """Replaces both attention paths with stubs; returns the list of the paths called, in order.

  The stubs return ``q``, which has the output's shape, so models still trace.
  """
  calls = []
  monkeypatch.setattr(jax.nn, 'dot_product_attention',
                      lambda q, *a, implementation, **kw: calls.append(implementation) or q)
  monkeypatch.setattr(attention, 'chunked_attention',
                      lambda q, *a, chunks, **kw: calls.append(('head_major', chunks)) or q)
  return calls


HEAD_MAJOR = ('head_major', attention.CPU_CHUNKS)


def test_auto_picks_the_kernel_by_backend(kernel_calls):
  q, k, v, _ = _inputs()
  for backend in ('gpu', 'tpu', 'cpu'):
    attention.kernel('auto', backend)(q, k, v)
  assert kernel_calls == ['xla', 'xla', HEAD_MAJOR]


def test_a_named_implementation_wins_over_the_backend(kernel_calls):
  q, k, v, _ = _inputs()
  attention.kernel('xla', 'cpu')(q, k, v)
  attention.kernel('cudnn', 'cpu')(q, k, v)
  attention.kernel('head_major', 'gpu')(q, k, v)
  assert kernel_calls == ['xla', 'cudnn', HEAD_MAJOR]
  # The same function for the same choice, so modules built with it compare equal.
  assert attention.kernel('xla', 'cpu') is attention.kernel('auto', 'gpu')


def test_the_default_attention_fn_is_auto_for_the_default_backend(kernel_calls):
  q, k, v, _ = _inputs()
  attention.dot_product_attention(q, k, v)
  expected = HEAD_MAJOR if jax.default_backend() == 'cpu' else 'xla'
  assert kernel_calls == [expected]


def test_an_unknown_implementation_is_refused_naming_the_allowed_ones():
  allowed = "attention implementation 'flash': choose from auto, xla, cudnn, head_major"
  with pytest.raises(ValueError, match=allowed):
    attention.kernel('flash')
  with pytest.raises(ValueError, match=allowed):
    models.build(_tiny_vit_config(), num_outputs=3, attention='flash')
  with pytest.raises(ValueError, match=allowed):  # Even a model without attention refuses it.
    models.build(cnn_configs.get_config('arch=fast').model, num_outputs=3, attention='flash')


def _tiny_vit_config():
  cfg = vit_prenorm.vit_model(layers=2, block='prenorm')
  cfg.patch_size, cfg.embed_dim, cfg.mlp_dim, cfg.num_heads = 2, 16, 32, 4
  return cfg


def _sequences(batch=2, frames=12, features=80, length=5, seed=0):
  """Features with a shorter second example (key masks), and decoder inputs."""
  rng = np.random.default_rng(seed)
  mask = (np.arange(frames)[None] < np.array([frames, frames - 5])[:, None]).astype(np.float32)
  x = rng.normal(size=(batch, frames, features)).astype(np.float32) * mask[..., None]
  tokens = rng.integers(1, 9, (batch, length)).astype(np.int32)
  return jnp.asarray(x), jnp.asarray(mask), jnp.asarray(tokens)


def _model_case(name):
  """``(model config, number of outputs, example inputs)`` of a small model with attention."""
  if name == 'vit':
    return _tiny_vit_config(), 7, (jnp.asarray(
        np.random.default_rng(0).normal(size=(2, 8, 8, 3)), jnp.float32),)
  x, mask, tokens = _sequences()
  if name == 'transformer_lm':
    return transformer_lm_configs.get_config('tiny=True').model, 9, (tokens,)
  if name == 'ctc_transformer':
    return ctc_transformer.get_config('tiny=True').model, 9, (x, mask)
  if name == 'seq2seq_transformer':
    return seq2seq_transformer.get_config('tiny=True').model, 9, (x, mask, tokens)
  return captioner_configs.get_config('arch=transformer,tiny=True').model, 9, (x, mask, tokens)


MODELS_WITH_ATTENTION = ('vit', 'transformer_lm', 'ctc_transformer', 'seq2seq_transformer',
                         'captioner_transformer')


@pytest.mark.parametrize('name', MODELS_WITH_ATTENTION)
@pytest.mark.parametrize('implementation', ['xla', 'head_major'])
def test_the_builder_hands_the_kernel_to_every_attention_layer(kernel_calls, name,
                                                                implementation):
  """Every attention call of the model runs the kernel the build was given, whatever the backend.

  On a CPU the default would be head_major, so 'xla' shows every layer got the build's kernel
  (on a GPU, 'head_major' does).
  """
  config, outputs, inputs = _model_case(name)
  model = models.build(config, num_outputs=outputs, attention=implementation)
  assert model.attention_fn is attention.kernel(implementation)
  jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs, train=False))
  expected = 'xla' if implementation == 'xla' else HEAD_MAJOR
  assert kernel_calls and set(kernel_calls) == {expected}, kernel_calls


@pytest.mark.parametrize('name', ['vit', 'seq2seq_transformer'])
def test_a_model_gives_the_same_outputs_with_either_kernel(name):
  """XLA's attention and the head-major CPU kernel inside a whole model: key masks, causal
  self-attention and cross-attention (seq2seq), the ViT's unmasked self-attention."""
  config, outputs, inputs = _model_case(name)
  xla = models.build(config, num_outputs=outputs, attention='xla')
  head_major = models.build(config, num_outputs=outputs, attention='head_major')
  variables = jax.jit(lambda k: xla.init(k, *inputs, train=False))(jax.random.key(0))
  apply = lambda m: jax.jit(lambda v, *a: m.apply(v, *a, train=False))(variables, *inputs)
  np.testing.assert_allclose(apply(head_major), apply(xla), atol=1e-5, rtol=1e-5)
