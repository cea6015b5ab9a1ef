"""The training-dynamics norms the doctor reads, against values computed independently."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from curvelab import state as state_lib
from curvelab import steps
from tasks import classification


class _TwoLayer(nn.Module):
  """Two named parameter groups of different shapes, one with a bias and one without."""

  @nn.compact
  def __call__(self, inputs, *, train: bool):
    del train
    x = jnp.tanh(nn.Dense(5, name='hidden')(inputs))
    return nn.Dense(3, use_bias=False, name='head')(x)


def _batch():
  rng = np.random.default_rng(0)
  return {'inputs': rng.normal(size=(8, 4)).astype(np.float32),
          'label': rng.integers(0, 3, 8).astype(np.int32),
          'weight': np.ones(8, np.float32)}


@pytest.mark.parametrize('leaves', [
    [np.arange(6.0).reshape(2, 3)],
    [np.ones((3,)), np.full((2, 2), -2.0), np.array(0.5)],
])
@pytest.mark.parametrize('concatenate', [None, True, False])
def test_sum_of_squares_matches_the_elementwise_definition(leaves, concatenate):
  tree = {f'p{i}': jnp.asarray(x, jnp.float32) for i, x in enumerate(leaves)}
  expected = sum(float(np.sum(np.square(x))) for x in leaves)
  got = jax.jit(lambda t: steps.sum_of_squares(t, concatenate=concatenate))(tree)
  assert float(got) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize('concatenate', [True, False])
def test_sum_of_squares_of_bfloat16_leaves_is_float32_and_of_nothing_zero(concatenate):
  tree = {'a': jnp.ones((257,), jnp.bfloat16), 'b': jnp.full((2, 2), 3.0, jnp.bfloat16)}
  total = steps.sum_of_squares(tree, concatenate=concatenate)
  # 257 + 36 = 293 in float32; summed in bfloat16, 257 ones already round to 256.
  assert total.dtype == jnp.float32 and float(total) == 293.0
  assert float(steps.sum_of_squares({}, concatenate=concatenate)) == 0.0


@pytest.mark.parametrize('backend', ['cpu', 'gpu'])
def test_step_reports_the_norms_of_its_gradient_parameters_and_update(backend, monkeypatch):
  # 'gpu' traces the concatenated form of sum_of_squares (the backend is only asked at trace
  # time, so the program still runs on the CPU).
  monkeypatch.setattr(jax, 'default_backend', lambda: backend)
  model, task = _TwoLayer(), classification.ClassificationTask()
  lr = 0.1
  tx = optax.sgd(lr)  # Plain SGD: the update is -lr * g, so update_ratio = lr * |g| / |p|.
  batch = _batch()
  state = state_lib.create(model, tx, {'inputs': batch['inputs']}, jax.random.key(0))
  step = steps.make_train_step(model=model, task=task, tx=tx)
  new_state, (_, dynamics) = jax.jit(step.single)(state, batch)
  values = dynamics.compute()

  def loss(params):
    logits = model.apply({'params': params}, batch['inputs'], train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()

  grads = jax.grad(loss)(state.params)
  norm = lambda tree: np.sqrt(sum(np.sum(np.square(np.asarray(x)))
                                  for x in jax.tree.leaves(tree)))
  assert float(values['grad_norm']) == pytest.approx(norm(grads), rel=1e-5)
  assert float(values['grad_norm_max']) == pytest.approx(norm(grads), rel=1e-5)
  assert float(values['param_norm']) == pytest.approx(norm(state.params), rel=1e-6)
  assert float(values['update_ratio']) == pytest.approx(
      lr * norm(grads) / norm(state.params), rel=1e-5)
  # Groups in sorted order of the top-level parameter names: head, hidden.
  assert steps.layer_names(state.params) == ('head', 'hidden')
  np.testing.assert_allclose(np.asarray(values['layer_grad_norms']),
                             [norm(grads['head']), norm(grads['hidden'])], rtol=1e-5)
  # And the update that was applied is the one whose norm was reported.
  applied = jax.tree.map(lambda a, b: a - b, new_state.params, state.params)
  assert norm(applied) == pytest.approx(lr * norm(grads), rel=1e-4)
