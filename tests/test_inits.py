"""Parameter initialisation: the reference scheme draws as PyTorch's defaults, layer by layer.

The bounds are PyTorch's own formulas (torch.nn 2.x), written out here so that no PyTorch is
needed: ``nn.Linear``/``nn.Conv2d`` weights ``kaiming_uniform_(a=sqrt(5))`` = U(+-1/sqrt(fan_in))
and biases U(+-1/sqrt(fan_in)); ``nn.LSTM`` every weight and bias U(+-1/sqrt(hidden)) (two biases
per gate, summed here); ``nn.Embedding`` and ``torch.randn`` parameters N(0, 1); LayerNorm ones
and zeros. Each tensor is checked for its bound and its variance (within five standard errors of
the sample variance).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from curvelab import errors
import models
from configs import lstm_lm
from configs import vit_postnorm
from configs import vit_prenorm
from configs import vit_recipe


def _params(model_config, num_outputs, example):
  model = models.build(model_config, num_outputs=num_outputs)
  variables = jax.jit(lambda k: model.init(k, example, train=False))(jax.random.key(0))
  return {'/'.join(str(getattr(k, 'key', k)) for k in path): np.asarray(v)
          for path, v in jax.tree_util.tree_leaves_with_path(variables['params'])}


def _assert_uniform(x, bound, name, *, summed=1):
  """x ~ sum of `summed` independent U(-bound, bound): within the bound, the right variance."""
  x = x.ravel().astype(np.float64)
  assert np.abs(x).max() <= summed * bound * (1 + 1e-6), name
  variance = summed * bound ** 2 / 3
  # Relative s.e. of a sample variance: sqrt((kurtosis - 1) / n); kurtosis 9/5 for one uniform.
  kurtosis = 9 / 5 if summed == 1 else 12 / 5
  assert abs(x.var() / variance - 1) < 5 * math.sqrt((kurtosis - 1) / x.size), name
  if summed == 1 and x.size >= 256:
    assert np.abs(x).max() > 0.95 * bound, name  # Fills its range (not a narrower law).


def _assert_standard_normal(x, name):
  x = x.ravel().astype(np.float64)
  assert abs(x.mean()) < 5 / math.sqrt(x.size), name
  assert abs(x.var() - 1) < 5 * math.sqrt(2 / x.size), name


@pytest.fixture(scope='module', params=['prenorm', 'postnorm'])
def reference_vit(request):
  module = vit_prenorm if request.param == 'prenorm' else vit_postnorm
  config = module.get_config('layers=2')
  assert config.model.init == 'reference'  # The reference configs' default.
  return _params(config.model, 10, jnp.zeros((1, 32, 32, 3)))


def test_reference_vit_draws_as_the_studys_pytorch_layers(reference_vit):
  p = reference_vit
  width, mlp = 256, 512
  bounds = {'patch_embed': 1 / math.sqrt(4 * 4 * 3), 'head': 1 / math.sqrt(width)}
  for i in range(2):
    b = f'block_{i}'
    bounds.update({f'{b}/attn/qkv': 1 / math.sqrt(width), f'{b}/attn/out': 1 / math.sqrt(width),
                   f'{b}/mlp/Dense_0': 1 / math.sqrt(width),
                   f'{b}/mlp/Dense_1': 1 / math.sqrt(mlp)})
  for layer, bound in bounds.items():
    _assert_uniform(p[f'{layer}/kernel'], bound, f'{layer}/kernel')
    _assert_uniform(p[f'{layer}/bias'], bound, f'{layer}/bias')
  _assert_standard_normal(p['cls_token'], 'cls_token')
  _assert_standard_normal(p['pos_embed'], 'pos_embed')
  norms = [k for k in p if k.endswith(('/scale', '/bias')) and 'norm' in k]
  assert len(norms) == 2 * 5  # norm1, norm2 of two blocks and the head's.
  for key in norms:
    np.testing.assert_array_equal(p[key], 1.0 if key.endswith('scale') else 0.0)
  assert sum(v.size for v in p.values()) == 1_086_730  # The study's parameter count.


def test_reference_lstm_lm_draws_as_pytorch_embedding_lstm_and_linear():
  config = lstm_lm.get_config('layers=2').model
  assert config.init == 'reference'
  config.hidden_size, config.embed_size = 128, 64
  h, e, vocab = 128, 64, 2000
  p = _params(config, vocab, jnp.zeros((1, 8), jnp.int32))
  _assert_standard_normal(p['embed/embedding'], 'embed/embedding')
  for i in range(2):
    for kernel in ('input_kernel', 'recurrent_kernel'):
      _assert_uniform(p[f'lstm_{i}/{kernel}'], 1 / math.sqrt(h), f'lstm_{i}/{kernel}')
    _assert_uniform(p[f'lstm_{i}/bias'], 1 / math.sqrt(h), f'lstm_{i}/bias', summed=2)
  _assert_uniform(p['head_proj/kernel'], 1 / math.sqrt(h), 'head_proj/kernel')
  _assert_uniform(p['head_proj/bias'], 1 / math.sqrt(h), 'head_proj/bias')
  _assert_uniform(p['head_bias'], 1 / math.sqrt(e), 'head_bias')


def test_flax_scheme_is_the_previous_initialisation():
  """The recipes' scheme: Xavier kernels, zero biases and CLS token, N(0, 0.02) positions."""
  config = vit_recipe.get_config()
  assert config.model.init == 'flax'
  p = _params(config.model, 10, jnp.zeros((1, 32, 32, 3)))
  np.testing.assert_array_equal(p['cls_token'], 0.0)
  assert abs(p['pos_embed'].std() - 0.02) < 0.001
  for key, value in p.items():
    if key.endswith('/bias'):
      np.testing.assert_array_equal(value, 0.0, err_msg=key)
  # Bit for bit what curvelab drew before the scheme had a name: the sum of |parameters| of the
  # 2-layer reference-sized ViT at seed 0, measured at commit 7f19515.
  config = vit_prenorm.get_config('layers=2')
  config.model.init = 'flax'
  p = _params(config.model, 10, jnp.zeros((1, 32, 32, 3)))
  assert sum(np.abs(v).astype(np.float64).sum() for v in p.values()) == pytest.approx(
      48434.09, rel=1e-5)


def test_unknown_init_is_refused_with_the_allowed_values():
  config = vit_prenorm.get_config('layers=2')
  config.model.init = 'kaiming'
  with pytest.raises(errors.ConfigError, match=r"model.init='kaiming' is unknown; allowed: "
                                               r"reference, flax"):
    models.validate(config.model, example_shape=(32, 32, 3))
