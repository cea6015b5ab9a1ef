"""Sequence models trained by the real loop (train.py) on digit strips, on the CPU.

One short learning run (module-scoped, shared by the assertions about it) and the two sanity runs
the configs promise: 5 examples memorised to 0% WER (CTC) and exact match (seq2seq).
"""

import json

import pytest

from configs import ctc_bilstm
from configs import seq2seq_transformer
import train

DOCTOR_KEYS = ('val_blank_share', 'val_empty_share', 'val_length_ratio', 'val_repetition_rate',
               'val_samples')


def _history(workdir):
  return [json.loads(l) for l in (workdir / 'history.jsonl').read_text().splitlines() if l.strip()]


def _ctc_config():
  """The tiny CTC BiLSTM, shaped so that its sanity run reuses the learning run's compiled steps.

  Sanity mode trains with batch 5, no weight decay and a constant learning rate; the learning run
  uses the same, so both runs compile the same train and eval steps (and the persistent
  compilation cache of tests/conftest.py serves the second one).
  """
  c = ctc_bilstm.get_config('tiny=True')
  c.loop.batch_size = 5
  c.optimizer.weight_decay = 0.0
  return c


@pytest.fixture(scope='module')
def ctc_run(tmp_path_factory):
  """The CTC BiLSTM on 1,024 strips of 3-5 digits for 2 epochs: ``(workdir, summary, history)``."""
  c = _ctc_config()
  c.dataset.num_train, c.dataset.num_val, c.dataset.num_test = 1024, 128, 128
  c.loop.num_epochs = 2
  workdir = tmp_path_factory.mktemp('ctc_bilstm')
  summary = train.train_and_evaluate(c, str(workdir))
  return workdir, summary, _history(workdir)


def test_ctc_bilstm_learns_digit_strips(ctc_run):
  _, summary, history = ctc_run
  assert summary['best_metric'] == 'val_wer' and summary['best_mode'] == 'min'
  assert summary['best_val_wer'] < 0.10, [r['val_wer'] for r in history]
  assert summary['test_wer'] < 0.15 and summary['test_cer'] < 0.15
  assert history[-1]['train_loss'] < history[0]['train_loss'] / 5


def test_ctc_history_has_the_keys_the_doctor_reads(ctc_run):
  workdir, summary, history = ctc_run
  last = history[-1]
  for key in ('train_loss', 'val_loss', 'val_wer', 'val_cer', 'pred_entropy', 'tokens_per_s')\
      + DOCTOR_KEYS:
    assert key in last, key
  # A trained CTC model emits labels on some frames and blanks on the rest.
  assert 0.3 < last['val_blank_share'] < 0.98
  assert last['val_empty_share'] == 0.0
  assert 0.8 < last['val_length_ratio'] < 1.2
  assert len(last['val_samples']) == 3
  assert set(last['val_samples'][0]) == {'target', 'prediction'}
  assert all(s['target'] == s['target'].strip() for s in last['val_samples'])
  # Only loss and task metrics on the test split; the vocabulary is saved with the run.
  assert 'test_blank_share' not in summary and 'test_samples' not in summary
  vocab = json.loads((workdir / 'vocab.json').read_text())
  assert vocab['vocab'][0] == '<blank>' and len(vocab['vocab']) == 11


def test_ctc_sanity_run_reaches_zero_wer(tmp_path, ctc_run):
  del ctc_run  # Runs after the learning run, whose compiled steps it reuses.
  c = ctc_bilstm.get_config('tiny=True,sanity=5')  # Batch 5, no weight decay, as _ctc_config.
  c.loop.num_epochs = 300
  summary = train.train_and_evaluate(c, str(tmp_path))
  history = _history(tmp_path)
  assert summary['sanity']['passed'], history[-1]
  assert history[-1]['val_wer'] == 0.0
  assert summary['epochs_run'] < 300


def test_seq2seq_sanity_run_reaches_exact_match(tmp_path):
  c = seq2seq_transformer.get_config('tiny=True,sanity=5')
  c.task.decoder = 'greedy'
  c.loop.num_epochs = 300
  summary = train.train_and_evaluate(c, str(tmp_path))
  history = _history(tmp_path)
  assert summary['sanity']['passed'], history[-1]
  last = history[-1]
  assert last['val_exact_match'] == 1.0 and last['val_wer'] == 0.0
  assert last['val_bleu'] == pytest.approx(100.0)
  assert {'val_empty_share', 'val_length_ratio', 'val_repetition_rate', 'val_samples',
          'train_token_accuracy'} <= set(last)
