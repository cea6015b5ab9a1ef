"""The doctor on real short training runs on scikit-learn digits that induce problems on purpose,
and sanity mode (memorise five examples; fail with a broken model).

Each run is seconds on a CPU; the diagnosis comes from the doctor running inside the training loop
(``WORKDIR/diagnosis.json``), exactly as a user gets it.
"""

import json

import flax.linen as nn
import jax.numpy as jnp
import pytest

from configs import vit_prenorm
import models
from tests import helpers
import train


def _config(**fields):
  c = vit_prenorm.get_config('tiny=True')
  c.dataset.train_split = 'train[:512]'
  c.loop.batch_size = 32
  c.loop.num_epochs = 8
  c.loop.checkpoint_every_epochs = 100  # Only the best and the last: these tests read histories.
  return helpers.set_fields(c, {k.replace('__', '.'): v for k, v in fields.items()})


def _sanity_config(*, epochs: int, learning_rate: float):
  """The tiny ViT's ':sanity=5' variant: memorise five digits within ``epochs``."""
  c = vit_prenorm.get_config('tiny=True,sanity=5')
  c.dataset.train_split = 'train[:512]'
  return helpers.set_fields(c, {'loop.num_epochs': epochs, 'optimizer.learning_rate': learning_rate})


def _findings(workdir) -> dict:
  diagnosis = json.loads((workdir / 'diagnosis.json').read_text())
  return {f['id']: f for f in diagnosis['findings']}


def _problems(found: dict) -> set:
  return {k for k, f in found.items() if f['severity'] in ('warning', 'error')}


def test_learning_rate_times_100_is_too_high(tmp_path):
  train.train_and_evaluate(_config(optimizer__learning_rate=0.1), str(tmp_path))  # 100x the tiny config's.
  found = _findings(tmp_path)
  assert _problems(found) & {'lr_too_high', 'diverged'}, found
  finding = found.get('lr_too_high') or found['diverged']
  assert finding['evidence'] and finding['recommendations']
  assert any('--config.optimizer.learning_rate=' in r for r in finding['recommendations'])


def test_large_model_on_100_examples_overfits(tmp_path):
  train.train_and_evaluate(
      _config(dataset__train_split='train[:100]', loop__batch_size=20, loop__num_epochs=40, optimizer__weight_decay=0.0,
              model__embed_dim=64, model__mlp_dim=256), str(tmp_path))
  found = _findings(tmp_path)
  assert 'overfitting' in _problems(found), found
  evidence = found['overfitting']['evidence']
  assert evidence['best_epoch'] < 40 and evidence['gap_last'] > evidence['gap_at_best']
  assert 'capacity_vs_data' in found


def test_one_epoch_is_not_converged(tmp_path):
  train.train_and_evaluate(_config(dataset__train_split='train[:1200]', loop__num_epochs=1,
                                   optimizer__learning_rate=2e-3), str(tmp_path))
  found = _findings(tmp_path)
  assert 'not_converged' in _problems(found), found
  assert found['not_converged']['recommendations'][0].startswith('--config.loop.num_epochs=')


def test_learning_rate_times_1e_minus_4_does_not_learn(tmp_path):
  train.train_and_evaluate(_config(optimizer__learning_rate=1e-7), str(tmp_path))
  found = _findings(tmp_path)
  assert _problems(found) & {'lr_too_low', 'no_learning'}, found
  assert 'lr_too_high' not in found


def test_doctor_stop_policy_stops_a_run(tmp_path):
  summary = train.train_and_evaluate(
      _config(optimizer__learning_rate=1e-7, loop__num_epochs=12, doctor__stop_on='no_learning',
              doctor__patience=2), str(tmp_path))
  assert summary['status'] == 'stopped_by_doctor'
  assert summary['epochs_run'] < 12


def test_sanity_mode_memorises_five_examples(tmp_path):
  summary = train.train_and_evaluate(
      _sanity_config(epochs=200, learning_rate=3e-3), str(tmp_path))
  assert summary['sanity']['passed'], summary['sanity']
  assert summary['sanity']['epochs'] < 200
  history = helpers.read_history(tmp_path)
  assert history[-1]['train_accuracy'] == 1.0
  assert history[-1]['train_loss'] <= 0.01


class _Detached(nn.Module):
  """A broken classifier: its output does not depend on the input at all."""
  num_classes: int

  @nn.compact
  def __call__(self, inputs, *, train):
    del train
    bias = self.param('bias', nn.initializers.zeros, (self.num_classes,))
    return jnp.broadcast_to(bias, (inputs.shape[0], self.num_classes))


@pytest.fixture
def detached_model():
  models.register('detached_test_model')(
      lambda model_config, *, num_outputs, dtype: _Detached(num_outputs))
  yield 'detached_test_model'
  models.REGISTRY.unregister('detached_test_model')


def test_sanity_mode_fails_with_a_broken_model(tmp_path, detached_model):
  config = _sanity_config(epochs=40, learning_rate=3e-2)
  config.model.name = detached_model
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary['sanity']['passed'] is False
  assert summary['sanity']['epochs'] == 40
  assert summary['sanity']['train_loss'] > 0.5  # Five different labels, one constant output.
