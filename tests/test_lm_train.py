"""Language-model task, models and training runs (tiny, CPU)."""

import json
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from curvelab import errors
from curvelab import metrics as metrics_lib
from models import lstm_lm as lstm_module
import sample
from tasks import language_modeling
from tests import lm_helpers
import train


def _eval_metrics(logits, targets, weight):
  task = language_modeling.LanguageModelingTask()
  batch = {'targets': jnp.asarray(targets), 'weight': jnp.asarray(weight, jnp.float32)}
  _, _, per = task.loss_terms(jnp.asarray(logits, jnp.float32), batch)
  coll = task.eval_metrics.single_from_model_output(**task.metric_inputs(logits, batch, per))
  return metrics_lib.to_host(coll)


def test_uniform_model_perplexity_equals_vocabulary_size():
  vocab = 37
  logits = np.zeros((3, 5, vocab))
  targets = np.random.default_rng(0).integers(0, vocab, (3, 5))
  out = _eval_metrics(logits, targets, np.ones((3, 5)))
  assert out['perplexity'] == pytest.approx(vocab, rel=1e-5)
  assert out['loss'] == pytest.approx(math.log(vocab), rel=1e-6)


def test_hand_computed_perplexity_and_exact_token_weighting():
  """Two batches with different token counts: perplexity is exp(total NLL / total tokens)."""
  p = np.array([0.5, 0.25, 0.25])
  logits = np.log(p)[None, None, :].repeat(2, 1)  # [1, 2, 3]
  # Batch A: targets 0,1 (both real); batch B: target 2 real, second token padding.
  a = _eval_metrics(logits, [[0, 1]], [[1, 1]])
  task = language_modeling.LanguageModelingTask()
  def coll(targets, weight):
    batch = {'targets': jnp.asarray(targets), 'weight': jnp.asarray(weight, jnp.float32)}
    _, _, per = task.loss_terms(jnp.asarray(logits, jnp.float32), batch)
    return task.eval_metrics.single_from_model_output(**task.metric_inputs(logits, batch, per))
  merged = metrics_lib.to_host(coll([[0, 1]], [[1, 1]]).merge(coll([[2, 0]], [[1, 0]])))
  nll = -(math.log(0.5) + math.log(0.25) + math.log(0.25)) / 3
  assert merged['loss'] == pytest.approx(nll, rel=1e-6)
  assert merged['perplexity'] == pytest.approx(math.exp(nll), rel=1e-6)
  assert a['loss'] == pytest.approx(-(math.log(0.5) + math.log(0.25)) / 2, rel=1e-6)


def test_padding_is_excluded_exactly():
  """Changing logits or targets at weight-0 positions changes nothing."""
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(2, 4, 11))
  targets = rng.integers(0, 11, (2, 4))
  weight = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])
  base = _eval_metrics(logits, targets, weight)
  logits2, targets2 = logits.copy(), targets.copy()
  logits2[weight == 0] = 1e3 * rng.normal(size=logits2[weight == 0].shape)
  targets2[weight == 0] = 3
  changed = _eval_metrics(logits2, targets2, weight)
  assert changed['loss'] == pytest.approx(base['loss'], rel=1e-6)
  assert changed['accuracy'] == pytest.approx(base['accuracy'])


def test_lstm_is_causal_and_padding_does_not_change_real_positions():
  model = lstm_module.LSTMLanguageModel(vocab_size=13, hidden_size=16, embed_size=8)
  ids = jnp.asarray(np.random.default_rng(2).integers(1, 13, (1, 10)))
  variables = model.init(jax.random.key(0), ids, train=False)
  full = model.apply(variables, ids, train=False)
  padded = model.apply(variables, ids.at[:, 6:].set(0), train=False)
  np.testing.assert_allclose(full[:, :6], padded[:, :6], rtol=1e-6, atol=1e-6)


@pytest.fixture(scope='module')
def periodic(tmp_path_factory):
  return lm_helpers.periodic_corpus(tmp_path_factory.mktemp('periodic'))


@pytest.mark.parametrize('model', ['lstm', 'transformer'])
def test_tiny_model_learns_periodic_text(tmp_path, periodic, model):
  """A periodic text is perfectly predictable: validation loss must get close to zero."""
  config = lm_helpers.tiny_config(periodic, model=model, loop__num_epochs=12, optimizer__learning_rate=1e-2,
                                  optimizer__weight_decay=0.0, schedule__name='constant', schedule__warmup_epochs=0.0)
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary['best_val_loss'] < 0.25, summary
  assert summary['test_perplexity'] < 1.3
  history = [json.loads(l) for l in (tmp_path / 'history.jsonl').read_text().splitlines()]
  assert {'train_loss', 'train_perplexity', 'val_loss', 'val_perplexity', 'tokens_per_s'} <= set(
      history[0])
  assert history[-1]['val_perplexity'] == pytest.approx(math.exp(history[-1]['val_loss']), rel=1e-5)


_TIMING = {'epoch_time_s', 'eval_time_s', 'elapsed_s', 'examples_per_s', 'tokens_per_s',
           'peak_memory_bytes'}


def _history(workdir):
  rows = [json.loads(l) for l in (workdir / 'history.jsonl').read_text().splitlines()]
  return [{k: v for k, v in r.items() if k not in _TIMING} for r in rows]


def test_lm_resume_equals_uninterrupted_and_vocabulary_is_checked(tmp_path, periodic):
  straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
  train.train_and_evaluate(lm_helpers.tiny_config(periodic, loop__num_epochs=3), str(straight))
  train.train_and_evaluate(lm_helpers.tiny_config(periodic, loop__num_epochs=1), str(resumed))
  train.train_and_evaluate(lm_helpers.tiny_config(periodic, loop__num_epochs=3), str(resumed))
  assert _history(straight) == _history(resumed)
  assert (resumed / 'vocab.json').exists()
  # Same workdir, another corpus (other characters): the saved vocabulary no longer matches.
  other = lm_helpers.write_corpus(tmp_path / 'other', {r: ['xyz uvw ' * 6] * 20
                                                       for r in ('train', 'val', 'test')})
  with pytest.raises(errors.ResumeError, match='vocabulary'):
    train.train_and_evaluate(lm_helpers.tiny_config(other, loop__num_epochs=4), str(resumed))

  # sample.py: greedy decoding continues the learned text; one compile for two prompts.
  result = sample.generate(str(straight), prompt='abcd', length=6, temperature=0.0)
  assert len(result['tokens']) == 6
  assert isinstance(result['continuation'], str)
  first = sample.make_sampler
  traced = []

  def counting(model):
    fn = first(model)
    traced.append(fn)
    return fn

  sample.make_sampler = counting
  try:
    sample.generate(str(straight), prompt='ab', length=4, temperature=0.7, seed=1)
  finally:
    sample.make_sampler = first
  assert traced and traced[0]._cache_size() == 1  # pylint: disable=protected-access


def test_frozen_embedding_from_file_stays_fixed(tmp_path, periodic):
  from input_pipeline import text_data  # pylint: disable=g-import-not-at-top
  config = lm_helpers.tiny_config(periodic, loop__num_epochs=1)
  vocab = text_data.build(config).num_outputs
  table = np.random.default_rng(0).normal(size=(vocab, config.model.embed_size)).astype(np.float32)
  path = tmp_path / 'emb.npz'
  np.savez(path, tokens=table)
  config.model.embedding_path = str(path)
  config.model.freeze_embeddings = True
  train.train_and_evaluate(config, str(tmp_path / 'run'))
  from curvelab import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  ckpt = ckpt_lib.Checkpointer(tmp_path / 'run' / 'checkpoints', best_metric='val_perplexity',
                               best_mode='min')
  step = ckpt.resolve('latest')
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  restored = ckpt.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  saved = restored['state']['model_state']['frozen']['embed']['embedding']
  np.testing.assert_array_equal(np.asarray(saved), table)
  assert 'embedding' not in restored['state']['params'].get('embed', {})
  bad = tmp_path / 'bad.npy'
  np.save(bad, table[:, :3])
  config.model.embedding_path = str(bad)
  with pytest.raises(errors.CurvelabError, match='embed'):
    train.train_and_evaluate(config, str(tmp_path / 'run2'))
