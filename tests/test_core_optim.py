"""Optimizers and schedules (curvelab/optim.py) against closed forms with PyTorch semantics.

The toy problem is the quadratic ``L(p) = 0.5 * sum(a * p**2)`` whose gradient is ``a * p``; each
expected trajectory is written out by hand below, never computed with optax.
"""

import math

import jax
import ml_collections
import numpy as np
import optax
import pytest

from curvelab import errors
from curvelab import optim
from tests import helpers

A = np.array([1.0, 4.0, 0.25], np.float64)
P0 = np.array([1.0, -2.0, 3.0], np.float64)
LR, WD, MOM = 0.1, 0.05, 0.9
STEPS = 3


def _config(**fields):
  """The optimizer, schedule and loop sections; ``fields`` use ``__`` for dots."""
  c = ml_collections.ConfigDict({
      'optimizer': dict(name='sgd', learning_rate=LR, weight_decay=WD, weight_decay_on='all',
                        momentum=MOM, nesterov=False, grad_clip_norm=0.0),
      'schedule': dict(name='constant', warmup_epochs=0.0, final_lr_ratio=0.0),
      'loop': dict(num_epochs=100)})
  return helpers.set_fields(c, {k.replace('__', '.'): v for k, v in fields.items()})


def _run(config, steps=STEPS):
  """Trajectory of the optimizer on the quadratic (float32), one row per step after p0."""
  tx, _ = optim.make_optimizer(config, steps_per_epoch=1)
  params = {'p': np.asarray(P0, np.float32)}
  state = tx.init(params)
  out = []
  for _ in range(steps):
    grads = {'p': np.asarray(A, np.float32) * params['p']}
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    out.append(np.asarray(params['p']))
  return np.stack(out)


def _adam_reference(*, decoupled_wd: float, steps=STEPS, b1=0.9, b2=0.999, eps=1e-8):
  """torch.optim.Adam / AdamW: p *= 1 - lr*wd; m, v moments; p -= lr * m_hat / (sqrt(v_hat)+eps)."""
  p, m, v, out = P0.copy(), np.zeros(3), np.zeros(3), []
  for t in range(1, steps + 1):
    g = A * p
    p = p * (1 - LR * decoupled_wd)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    p = p - LR * m_hat / (np.sqrt(v_hat) + eps)
    out.append(p)
  return np.stack(out)


def _sgd_reference(*, momentum: float | None, steps=STEPS):
  """torch.optim.SGD(weight_decay=wd, momentum=m): d = g + wd*p; buf = m*buf + d; p -= lr*buf."""
  p, buf, out = P0.copy(), None, []
  for _ in range(steps):
    d = A * p + WD * p
    if momentum is None:
      step = d
    else:
      buf = d if buf is None else momentum * buf + d
      step = buf
    p = p - LR * step
    out.append(p)
  return np.stack(out)


def test_adam_matches_torch_adam_and_ignores_weight_decay():
  """adam = torch.optim.Adam(weight_decay=0): the config's weight_decay has no effect."""
  np.testing.assert_allclose(_run(_config(optimizer__name='adam')),
                             _adam_reference(decoupled_wd=0.0), rtol=1e-5, atol=1e-6)


def test_adamw_matches_torch_adamw():
  """adamw: decoupled decay p -= lr*wd*p before the Adam step."""
  np.testing.assert_allclose(_run(_config(optimizer__name='adamw')),
                             _adam_reference(decoupled_wd=WD), rtol=1e-5, atol=1e-6)
  # And the decay really acts: without it the trajectory differs.
  assert np.abs(_adam_reference(decoupled_wd=WD) - _adam_reference(decoupled_wd=0.0)).max() > 1e-4


def test_sgd_adds_l2_to_gradient():
  """sgd: p -= lr * (g + wd*p)."""
  np.testing.assert_allclose(_run(_config(optimizer__name='sgd')), _sgd_reference(momentum=None),
                             rtol=1e-6, atol=1e-6)


def test_momentum_matches_torch_heavy_ball():
  """momentum: buf = m*buf + (g + wd*p); p -= lr*buf (buf starts at the first d)."""
  np.testing.assert_allclose(_run(_config(optimizer__name='momentum')), _sgd_reference(momentum=MOM),
                             rtol=1e-6, atol=1e-6)


def test_first_steps_by_hand():
  """Spot values worked out by hand for the first step of each optimizer (coordinate 0).

  g = a*p = 1.0. adam: m_hat = g, v_hat = g**2 -> p = 1 - 0.1 * 1/(1+1e-8) ~ 0.9.
  adamw: p = 1*(1 - 0.1*0.05) - 0.1 = 0.895. sgd: p = 1 - 0.1*(1 + 0.05) = 0.895.
  """
  assert _run(_config(optimizer__name='adam'), steps=1)[0, 0] == pytest.approx(0.9, abs=1e-6)
  assert _run(_config(optimizer__name='adamw'), steps=1)[0, 0] == pytest.approx(0.895, abs=1e-6)
  assert _run(_config(optimizer__name='sgd'), steps=1)[0, 0] == pytest.approx(0.895, abs=1e-6)
  # momentum, step 2: d = 1.05 * 0.895 = 0.93975; buf = 0.9 * 1.05 + 0.93975 = 1.88475;
  # p = 0.895 - 0.1 * 1.88475 = 0.706525.
  assert _run(_config(optimizer__name='momentum'), steps=2)[1, 0] == pytest.approx(0.706525, abs=1e-6)


def test_grad_clipping_by_global_norm_before_weight_decay():
  """clip_grad_norm_ runs first: p -= lr * (g * c/||g|| + wd*p); the L2 term is not clipped."""
  clip = 1.0
  got = _run(_config(optimizer__name='sgd', optimizer__grad_clip_norm=clip), steps=2)
  p, expected = P0.copy(), []
  for _ in range(2):
    g = A * p
    g = g * min(1.0, clip / np.linalg.norm(g))
    p = p - LR * (g + WD * p)
    expected.append(p)
  assert np.linalg.norm(A * P0) > clip  # The clip is active.
  np.testing.assert_allclose(got, np.stack(expected), rtol=1e-6, atol=1e-6)


def test_weight_decay_on_matrices_skips_vectors():
  """weight_decay_on=matrices: 1-D parameters get no L2 term, 2-D ones do."""
  config = _config(optimizer__name='sgd', optimizer__weight_decay_on='matrices')
  tx, _ = optim.make_optimizer(config, steps_per_epoch=1)
  params = {'bias': np.ones(2, np.float32), 'kernel': np.ones((2, 2), np.float32)}
  zeros = jax.tree.map(np.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  np.testing.assert_allclose(updates['bias'], 0.0)
  np.testing.assert_allclose(updates['kernel'], -LR * WD, rtol=1e-6)


# ----------------------------------------------------------------------------------- schedules

def _schedule(**fields):
  # 10 epochs of 10 steps = 100 steps.
  return optim.make_schedule(_config(loop__num_epochs=10, optimizer__learning_rate=1.0, **fields),
                             steps_per_epoch=10)


def test_constant_schedule():
  """constant: the peak at every step."""
  sched = _schedule(schedule__name='constant')
  assert [float(sched(s)) for s in (0, 50, 99, 100)] == [1.0, 1.0, 1.0, 1.0]


def test_warmup_then_cosine():
  """1 warmup epoch (10 steps) from peak/10, then cosine from 1.0 to final_lr_ratio=0.1."""
  sched = _schedule(schedule__name='cosine', schedule__warmup_epochs=1.0, schedule__final_lr_ratio=0.1)
  assert float(sched(0)) == pytest.approx(0.1)  # peak / warmup steps: the first step moves.
  assert float(sched(9)) == pytest.approx(1.0)  # Last warmup step reaches the peak.
  assert float(sched(10)) == pytest.approx(1.0)  # Decay starts at the peak.
  warm = [float(sched(s)) for s in range(10)]
  assert all(a < b for a, b in zip(warm, warm[1:]))
  # Halfway through the 90 decay steps: final + (peak - final) * (1 + cos(pi/2)) / 2 = 0.55.
  assert float(sched(55)) == pytest.approx(0.55, abs=1e-6)
  # Step 10 + 30: 0.1 + 0.9 * (1 + cos(pi/3)) / 2 = 0.775.
  assert float(sched(40)) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 3)) / 2, abs=1e-6)
  assert float(sched(100)) == pytest.approx(0.1, abs=1e-6)
  assert float(sched(99)) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi * 89 / 90)) / 2,
                                           abs=1e-6)


def test_linear_decay():
  """linear without warmup: 1.0 at step 0, 0.5*(1+final) halfway, final at the end."""
  sched = _schedule(schedule__name='linear', schedule__final_lr_ratio=0.2)
  assert float(sched(0)) == pytest.approx(1.0)
  assert float(sched(50)) == pytest.approx(0.6)
  assert float(sched(100)) == pytest.approx(0.2)


def test_fractional_warmup_epochs():
  """warmup_epochs=0.5 of 10 steps/epoch = 5 warmup steps: peak/5 at step 0, peak at step 4."""
  sched = _schedule(schedule__name='constant', schedule__warmup_epochs=0.5)
  assert float(sched(0)) == pytest.approx(0.2)
  assert float(sched(4)) == pytest.approx(1.0)
  assert float(sched(2)) == pytest.approx(0.6)


def test_optimizer_uses_the_schedule():
  """sgd with warmup: the first update uses peak/warmup, not the peak."""
  config = _config(optimizer__name='sgd', optimizer__weight_decay=0.0, schedule__warmup_epochs=4.0)
  got = _run(config, steps=1)[0]
  np.testing.assert_allclose(got, P0 - (LR / 4) * A * P0, rtol=1e-6)


@pytest.mark.parametrize('field, value', [('optimizer.name', 'rmsprop'), ('schedule.name', 'step'),
                                          ('optimizer.weight_decay_on', 'biases')])
def test_unknown_choice_is_config_error(field, value):
  """An unknown optimizer/schedule/decay target raises ConfigError naming field and choices."""
  with pytest.raises(errors.ConfigError, match=field) as info:
    optim.make_optimizer(_config(**{field.replace('.', '__'): value}), steps_per_epoch=1)
  assert repr(value) in str(info.value)
  assert 'allowed' in str(info.value)
