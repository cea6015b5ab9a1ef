"""CTC loss against brute force; CTC and seq2seq decoders on hand-built probability tables."""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tasks import ctc as ctc_task
from tasks import decoding

# One compiled program per function and shape (eager op-by-op dispatch would compile every op).
_ctc_losses = jax.jit(ctc_task.ctc_losses)
_ctc_greedy = jax.jit(decoding.ctc_greedy)
_prefix_search = jax.jit(decoding.ctc_prefix_beam_search, static_argnames=('beam_size',))
FRAMES, LABEL_SLOTS = 5, 4


def collapse(path, blank=0):
  out, prev = [], None
  for p in path:
    if p != prev and p != blank:
      out.append(p)
    prev = p
  return tuple(out)


def brute_force_prefix_probs(probs):
  """{labelling: probability} summed over every alignment of a [T, V] probability table."""
  totals = {}
  for path in itertools.product(range(probs.shape[1]), repeat=probs.shape[0]):
    p = float(np.prod([probs[t, s] for t, s in enumerate(path)]))
    key = collapse(path)
    totals[key] = totals.get(key, 0.0) + p
  return totals


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize('target', [(1,), (1, 2), (2, 2), (1, 2, 1), (1, 1, 2)])
def test_ctc_loss_equals_brute_force_sum_over_alignments(target):
  """-log sum over all paths collapsing to the target, incl. repeats needing a blank."""
  rng = np.random.default_rng(len(target) * 7 + sum(target))
  vocab = 3
  logits = rng.normal(size=(FRAMES, vocab))
  expected = -math.log(brute_force_prefix_probs(_softmax(logits)).get(tuple(target), 0.0))
  # With padding: 3 extra garbage frames and padded label slots must change nothing.
  padded_logits = np.concatenate([logits, 50 * rng.normal(size=(3, vocab))])[None]
  frame_mask = np.concatenate([np.ones(FRAMES), np.zeros(3)])[None]
  labels = np.full((1, LABEL_SLOTS), 2, np.int32)  # Garbage in the padded label slots.
  labels[0, :len(target)] = target
  label_mask = (np.arange(LABEL_SLOTS) < len(target)).astype(np.float32)[None]
  loss = _ctc_losses(jnp.asarray(padded_logits, jnp.float32), jnp.asarray(frame_mask),
                     jnp.asarray(labels), jnp.asarray(label_mask))
  np.testing.assert_allclose(float(loss[0]), expected, rtol=1e-4)


def test_ctc_task_loss_is_per_target_token_and_ignores_padded_examples():
  rng = np.random.default_rng(0)
  task = ctc_task.CTCTask(vocabulary=None)
  logits = jnp.asarray(rng.normal(size=(3, 6, 4)), jnp.float32)
  batch = {'targets': jnp.asarray([[1, 2, 0], [3, 0, 0], [1, 1, 1]], jnp.int32),
           'target_mask': jnp.asarray([[1, 1, 0], [1, 0, 0], [1, 1, 1]], jnp.float32),
           'weight': jnp.asarray([1.0, 1.0, 0.0])}
  outputs = {'logits': logits, 'mask': jnp.ones((3, 6))}
  loss_sum, weight, _ = jax.jit(task.loss_terms)(outputs, batch)
  per_example = _ctc_losses(logits, outputs['mask'], batch['targets'], batch['target_mask'])
  assert float(weight) == 3.0  # Target tokens of the two real examples.
  np.testing.assert_allclose(float(loss_sum), float(per_example[0] + per_example[1]), rtol=1e-6)


# --------------------------------------------------------------------------------- CTC decoding

def _log(table):
  return jnp.log(jnp.asarray(table, jnp.float32))[None]


def test_ctc_greedy_collapses_repeats_and_blanks_and_stops_at_the_mask():
  # Best path: a a _ a b b _ | then padded frames saying "c".
  path = [1, 1, 0, 1, 2, 2, 0, 3, 3]
  table = np.full((len(path), 4), 0.1)
  table[np.arange(len(path)), path] = 0.7
  mask = jnp.asarray([[1] * 7 + [0, 0]], jnp.float32)
  tokens, lengths = _ctc_greedy(_log(table / table.sum(1, keepdims=True)), mask)
  assert int(lengths[0]) == 3
  assert tokens[0].tolist() == [1, 1, 2, 0, 0, 0, 0, 0, 0]


def test_prefix_beam_search_finds_the_most_probable_labelling_that_greedy_misses():
  # Greedy reads blank, blank -> "" (p = 0.25); "a" has 0.2 + 0.2 + 0.16 = 0.56.
  table = [[0.5, 0.4, 0.1], [0.5, 0.4, 0.1]] + [[0.1, 0.1, 0.8]] * 4  # 4 padded frames.
  mask = jnp.asarray([[1, 1, 0, 0, 0, 0]], jnp.float32)
  _, greedy_len = _ctc_greedy(_log(table), mask)
  assert int(greedy_len[0]) == 0
  tokens, length, score = _prefix_search(_log(table), mask, beam_size=32)
  assert int(length[0]) == 1 and int(tokens[0, 0]) == 1
  assert float(score[0]) == pytest.approx(math.log(0.56), rel=1e-5)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_prefix_beam_search_with_a_wide_beam_is_exact(seed):
  """With every prefix kept, the best labelling and its probability equal brute force."""
  rng = np.random.default_rng(seed)
  probs = _softmax(rng.normal(size=(4, 3)) * 2)
  totals = brute_force_prefix_probs(probs)
  best = max(totals, key=totals.get)
  # Pad with 2 frames that would change the answer if they were read.
  padded = np.concatenate([probs, np.tile([[0.0, 1.0, 0.0]], (2, 1)) + 1e-9])
  tokens, length, score = _prefix_search(
      _log(padded), jnp.asarray([[1, 1, 1, 1, 0, 0]], jnp.float32), beam_size=32)
  assert tuple(tokens[0, :int(length[0])].tolist()) == best
  assert float(score[0]) == pytest.approx(math.log(totals[best]), rel=1e-4)


def test_ctc_decoders_are_batched_and_compile_once():
  fn = jax.jit(lambda lp, m: decoding.ctc_prefix_beam_search(lp, m, beam_size=3))
  rng = np.random.default_rng(0)
  for _ in range(2):
    lp = jax.nn.log_softmax(jnp.asarray(rng.normal(size=(4, 7, 5)), jnp.float32))
    mask = jnp.asarray((np.arange(7)[None] < rng.integers(1, 8, (4, 1))).astype(np.float32))
    tokens, lengths, _ = fn(lp, mask)
    assert tokens.shape == (4, 7) and lengths.shape == (4,)
  assert fn._cache_size() == 1  # pylint: disable=protected-access


# --------------------------------------------------------------------------------- seq2seq

PAD, BOS, EOS, X, Y = 0, 1, 2, 3, 4


def _table(rows):
  """Log next-token probabilities [prev, next] of a 'model' that only sees the previous token."""
  table = np.full((5, 5), 1e-9)
  for prev, dist in rows.items():
    for token, p in dist.items():
      table[prev, token] = p
  return jnp.log(jnp.asarray(table, jnp.float32))


def _logits_fn(logtable):
  def logits_fn(tokens, t):
    return logtable[jax.lax.dynamic_index_in_dim(tokens, t, axis=1, keepdims=False)]
  return logits_fn


@functools.partial(jax.jit, static_argnames=('batch_size', 'max_length'))
def _greedy(logtable, *, batch_size, max_length):
  return decoding.greedy_decode(_logits_fn(logtable), batch_size=batch_size,
                                max_length=max_length, bos=BOS, eos=EOS)


@functools.partial(jax.jit, static_argnames=('batch_size', 'max_length', 'beam_size'))
def _beam(logtable, length_penalty, *, batch_size, max_length, beam_size):
  return decoding.beam_search(_logits_fn(logtable), batch_size=batch_size, max_length=max_length,
                              beam_size=beam_size, bos=BOS, eos=EOS, length_penalty=length_penalty)


# Greedy takes x (0.6) then EOS: 0.24; beam search finds y EOS: 0.36.
GARDEN_PATH = {BOS: {X: 0.6, Y: 0.4}, X: {EOS: 0.4, X: 0.3, Y: 0.3},
               Y: {EOS: 0.9, X: 0.05, Y: 0.05}, EOS: {EOS: 1.0}}


def test_greedy_decoding_follows_the_local_best_token():
  tokens = _greedy(_table(GARDEN_PATH), batch_size=2, max_length=4)
  assert tokens.tolist() == [[X, EOS, PAD, PAD]] * 2


def test_beam_search_finds_the_better_sequence():
  tokens, score = _beam(_table(GARDEN_PATH), 0.0, batch_size=2, max_length=4, beam_size=3)
  assert tokens.tolist() == [[Y, EOS, PAD, PAD]] * 2
  np.testing.assert_allclose(score, math.log(0.4 * 0.9), rtol=1e-5)


def test_length_normalisation_favours_the_longer_hypothesis():
  # Raw log-probability prefers "EOS" (0.5) over "x EOS" (0.45); GNMT alpha=1 divides by
  # 1 and 7/6 and prefers the longer one.
  rows = {BOS: {EOS: 0.5, X: 0.5}, X: {EOS: 0.9, X: 0.1}, EOS: {EOS: 1.0}}
  plain, _ = _beam(_table(rows), 0.0, batch_size=1, max_length=3, beam_size=2)
  normalised, score = _beam(_table(rows), 1.0, batch_size=1, max_length=3, beam_size=2)
  assert plain.tolist() == [[EOS, PAD, PAD]]
  assert normalised.tolist() == [[X, EOS, PAD]]
  assert float(score[0]) == pytest.approx(math.log(0.45) / (7 / 6), rel=1e-5)


def test_beam_search_without_eos_returns_the_best_live_hypothesis():
  rows = {BOS: {X: 0.9, Y: 0.1}, X: {X: 0.8, Y: 0.2}, Y: {Y: 1.0}}
  tokens, _ = _beam(_table(rows), 0.6, batch_size=1, max_length=3, beam_size=2)
  assert tokens.tolist() == [[X, X, X]]


def test_strip_after_eos():
  out = decoding.strip_after_eos(jnp.asarray([[3, 2, 4, 2], [3, 4, 4, 4]]), eos=EOS)
  assert out.tolist() == [[3, 2, 0, 0], [3, 4, 4, 4]]
