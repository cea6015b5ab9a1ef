"""Sequence models: output shapes, subsampled masks, and padding never changing real positions."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from curvelab import errors
import models
from models import captioner
from models import ctc
from models import seq2seq
from models import seq_layers

B, T, F, L, V = 2, 24, 5, 6, 9
LENGTHS = (24, 13)


def _inputs(seed=0, garbage=0.0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(B, T, F)).astype(np.float32)
  mask = (np.arange(T)[None] < np.array(LENGTHS)[:, None]).astype(np.float32)
  # Padded frames hold garbage: the models must ignore them.
  x = np.where(mask[..., None] > 0, x, garbage)
  return jnp.asarray(x), jnp.asarray(mask)


def _init(module, *args):
  """Random variables of the module's shapes without compiling its initialisers.

  ``jax.eval_shape`` only traces; compiling ``init`` would cost as much as the forward pass.
  """
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, train=False))
  rng = np.random.default_rng(0)
  return jax.tree.map(lambda s: jnp.asarray(0.3 * rng.standard_normal(s.shape), s.dtype), shapes)


CTC_MODELS = {
    'bilstm': ctc.CTCModel(vocab_size=V, encoder='bilstm', conv_strides=(2,), conv_channels=8,
                           num_layers=2, hidden_size=8),
    'transformer': ctc.CTCModel(vocab_size=V, encoder='transformer', conv_strides=(2, 2),
                                conv_channels=8, num_layers=1, hidden_size=8, num_heads=2,
                                mlp_dim=16),
}


@pytest.mark.parametrize('name', sorted(CTC_MODELS))
def test_ctc_model_shapes_and_padding_invariance(name):
  model = CTC_MODELS[name]
  x, mask = _inputs()
  variables = _init(model, x, mask)
  apply = jax.jit(lambda v, *a: model.apply(v, *a, train=False))
  out = apply(variables, x, mask)
  frames = seq_layers.output_frames(T, model.conv_strides)
  assert out['logits'].shape == (B, frames, V) and out['mask'].shape == (B, frames)
  expected = [seq_layers.output_frames(n, model.conv_strides) for n in LENGTHS]
  assert out['mask'].sum(1).tolist() == expected
  # Garbage in the padding changes nothing at real output frames ...
  noisy = apply(variables, _inputs(garbage=1e3)[0], mask)
  real = out['mask'] > 0
  np.testing.assert_allclose(noisy['logits'][real], out['logits'][real], atol=1e-5)
  # ... nor does cutting the padding off (fixed conv padding: the alignment never shifts).
  sub = int(np.prod(model.conv_strides))
  cut = -(-LENGTHS[1] // sub) * sub
  alone = apply(variables, x[1:, :cut], mask[1:, :cut])
  n = expected[1]
  np.testing.assert_allclose(alone['logits'][0, :n], out['logits'][1, :n], atol=1e-5)


ENCODER_DECODERS = {
    'seq2seq': seq2seq.Seq2SeqTransformer(vocab_size=V, d_model=8, num_heads=2, encoder_layers=1,
                                          decoder_layers=2, mlp_dim=16, conv_strides=(2,)),
    'baseline': captioner.LSTMCaptioner(vocab_size=V, arch='baseline', conv_channels=8,
                                        hidden_size=8, embed_size=4),
    'improved': captioner.LSTMCaptioner(vocab_size=V, arch='improved', conv_channels=8,
                                        encoder_layers=2, hidden_size=8, embed_size=4),
    'attention': captioner.LSTMCaptioner(vocab_size=V, arch='attention', conv_channels=8,
                                         hidden_size=8, embed_size=4, attention_size=4),
}


@pytest.mark.parametrize('name', sorted(ENCODER_DECODERS))
def test_encoder_decoder_shapes_causality_and_padding_invariance(name):
  model = ENCODER_DECODERS[name]
  x, mask = _inputs()
  tokens = jnp.asarray(np.random.default_rng(1).integers(3, V, (B, L)), jnp.int32)
  variables = _init(model, x, mask, tokens)
  apply = jax.jit(lambda v, *a: model.apply(v, *a, train=False))
  logits = apply(variables, x, mask, tokens)
  assert logits.shape == (B, L, V) and logits.dtype == jnp.float32
  # Padding frames (garbage) never reach the outputs.
  np.testing.assert_allclose(apply(variables, _inputs(garbage=1e3)[0], mask, tokens), logits,
                             atol=1e-5)
  # Causal decoder: changing tokens from position 3 on leaves positions 0..2 unchanged, and
  # (teacher forcing) changes later ones.
  changed = apply(variables, x, mask, tokens.at[:, 3:].set(2))
  np.testing.assert_allclose(changed[:, :3], logits[:, :3], atol=1e-5)
  assert not np.allclose(changed[:, 3:], logits[:, 3:])


def test_registry_builds_every_sequence_model_and_validates_fields():
  base = ml_collections.ConfigDict({
      'name': 'ctc', 'encoder': 'bilstm', 'conv_strides': (2,), 'conv_channels': 8,
      'conv_kernel': 3, 'num_layers': 1, 'hidden_size': 8, 'num_heads': 2, 'mlp_dim': 16,
      'dropout': 0.0})
  assert isinstance(models.build(base, num_outputs=V), ctc.CTCModel)
  bad = ml_collections.ConfigDict(base.to_dict())
  bad.encoder = 'gru'
  with pytest.raises(errors.ConfigError, match=r"model.encoder='gru' is unknown; allowed: bilstm, "
                                               r"transformer"):
    models.validate(bad, example_shape=(T, F))
  bad = ml_collections.ConfigDict(base.to_dict())
  bad.conv_strides = (2, 0)
  with pytest.raises(errors.ConfigError, match='model.conv_strides'):
    models.validate(bad, example_shape=(T, F))
  from configs import captioner as captioner_config  # pylint: disable=g-import-not-at-top
  for arch in captioner.ARCHS:
    c = captioner_config.get_config(f'arch={arch},tiny=True')
    models.validate(c.model, example_shape=(T, F))
    assert hasattr(models.build(c.model, num_outputs=V), 'encode')
  c.model.arch = 'gru'
  with pytest.raises(errors.ConfigError, match=r"model.arch='gru' is unknown"):
    models.validate(c.model, example_shape=(T, F))


def test_seq2seq_task_beam_search_decodes_any_encoder_decoder_without_recompiling():
  """The attention captioner (LSTM decoder, pytree memory) through the task's beam search."""
  from tasks import seq2seq as seq2seq_task  # pylint: disable=g-import-not-at-top
  model = ENCODER_DECODERS['attention']
  task = seq2seq_task.Seq2SeqTask(vocabulary=None, decoder='beam', beam_size=3)
  x, mask = _inputs()
  batch = {'inputs': x, 'input_mask': mask, 'targets': jnp.zeros((B, L), jnp.int32),
           'target_mask': jnp.ones((B, L)), 'weight': jnp.ones(B)}
  variables = _init(model, x, mask, batch['targets'])
  decode = jax.jit(lambda v, b: task.decode(model, v, None, b))
  for seed in (0, 1):
    x, _ = _inputs(seed)
    tokens = np.asarray(decode(variables, dict(batch, inputs=x))['tokens'])
    assert tokens.shape == (B, L) and ((tokens >= 0) & (tokens < V)).all()
    for row in tokens:  # Nothing after the first EOS.
      eos = np.flatnonzero(row == seq2seq_task.EOS_ID)
      if len(eos):
        assert (row[eos[0] + 1:] == 0).all()
  assert decode._cache_size() == 1  # pylint: disable=protected-access


@pytest.mark.parametrize('kernel,stride,frames', [(5, 2, 64), (5, 2, 63), (3, 1, 7), (5, 3, 11),
                                                  (4, 2, 9), (1, 1, 5)])
def test_time_conv_is_nn_conv(kernel, stride, frames):
  """TimeConv (windows x matmul) has nn.Conv's parameters, initialisation, outputs and gradients."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  pad = ((kernel - 1) // 2, kernel // 2)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, frames, 4)).astype(np.float32))
  ref = nn.Conv(6, (kernel,), strides=(stride,), padding=(pad,))
  ours = seq_layers.TimeConv(6, kernel, stride, pad)
  params = ref.init(jax.random.PRNGKey(1), x)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ours.init(jax.random.PRNGKey(1), x))):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(ours.apply(params, x), ref.apply(params, x), rtol=1e-5, atol=1e-5)
  loss = lambda module: lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)))
  want = jax.grad(loss(ref), argnums=(0, 1))(params, x)
  got = jax.grad(loss(ours), argnums=(0, 1))(params, x)
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
