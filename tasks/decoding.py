"""Batched, fixed-shape decoders for CTC and encoder-decoder models (run inside jit).

Every function here keeps its arrays at shapes fixed by the batch (frames, maximum target
length, beam size), so the compiled evaluation step is traced once and reused for every batch.

CTC (``log_probs`` [B, T, V], frame ``mask`` [B, T]):

* :func:`ctc_greedy`: best path, repeats collapsed, blanks removed.
* :func:`ctc_prefix_beam_search`: prefix beam search (Graves 2012; Hannun et al. 2014) summing
  the probability of all alignments of a prefix, with an optional per-token ``length_bonus``
  (the insertion bonus used to counter the shortening effect of the search).

Encoder-decoder (``logits_fn(decoder_inputs [N, L], t) -> logits [N, V]`` for position ``t``):

* :func:`greedy_decode`: argmax token by token until every sequence emitted EOS.
* :func:`beam_search`: beam search keeping separate pools of live and finished hypotheses,
  finished ones ranked by the GNMT length-normalised score
  ``log p / ((5 + length) / 6) ** length_penalty`` (Wu et al. 2016); 0 disables normalisation.

Outputs are token ids padded with 0; encoder-decoder outputs keep their EOS token.
"""

from typing import Callable

import jax
import jax.numpy as jnp

# A finite stand-in for log(0): -inf would turn differences and products into NaN.
NEG = -1e30


def _alive(score):
  return score > NEG / 2


# --------------------------------------------------------------------------------- CTC

def collapse(path: jax.Array, mask: jax.Array, *, blank: int = 0) -> tuple[jax.Array, jax.Array]:
  """CTC collapse of per-frame labels: merge repeats, drop blanks and masked frames.

  Args:
    path: int [B, T] per-frame labels.
    mask: [B, T] 1 for real frames.
    blank: the blank id.

  Returns:
    ``(tokens [B, T] left-aligned, 0-padded; lengths [B])``.
  """
  valid = mask > 0
  prev = jnp.pad(path, ((0, 0), (1, 0)), constant_values=-1)[:, :-1]
  # A masked frame never separates two equal labels: padding only follows the last real frame.
  keep = valid & (path != blank) & (path != prev)
  position = jnp.cumsum(keep, axis=1) - 1
  length = path.shape[1]
  position = jnp.where(keep, position, length)  # Out of range: dropped by the scatter.
  rows = jnp.arange(path.shape[0])[:, None]
  tokens = jnp.zeros_like(path).at[rows, position].set(path, mode='drop')
  return tokens, keep.sum(axis=1).astype(jnp.int32)


def ctc_greedy(log_probs: jax.Array, mask: jax.Array, *, blank: int = 0):
  """Best-path decoding: ``(tokens [B, T], lengths [B])``."""
  return collapse(jnp.argmax(log_probs, axis=-1).astype(jnp.int32), mask, blank=blank)


def _prefix_beam_single(log_probs, num_frames, *, beam_size: int, blank: int,
                        length_bonus: float):
  """Prefix beam search over one example's [T, V] log-probabilities (first ``num_frames``)."""
  frames, vocab = log_probs.shape
  k = beam_size
  positions = jnp.arange(frames)
  state = dict(
      prefix=jnp.zeros((k, frames), jnp.int32),
      length=jnp.zeros((k,), jnp.int32),
      last=jnp.full((k,), blank, jnp.int32),  # blank = "empty prefix": any token extends it.
      p_blank=jnp.full((k,), NEG).at[0].set(0.0),
      p_token=jnp.full((k,), NEG),
  )

  def step(state, inputs):
    lp, t = inputs
    prefix, length, last = state['prefix'], state['length'], state['last']
    p_b, p_t = state['p_blank'], state['p_token']
    total = jnp.logaddexp(p_b, p_t)
    alive = _alive(total)
    # The same prefix: a blank frame, or a repeat of its last token (which CTC merges).
    same_b = total + lp[blank]
    same_t = jnp.where(length > 0, p_t + lp[last], NEG)
    # Extensions by token c; after a repeat of the last token only blank-ending paths extend.
    tokens = jnp.arange(vocab)
    ext = jnp.where(tokens[None, :] == last[:, None], p_b[:, None], total[:, None]) + lp[None, :]
    ext = ext.at[:, blank].set(NEG)
    ext = jnp.where(alive[:, None], ext, NEG)
    # Beam j is the child of beam k (j = k + last[j]) when k's tokens are j's prefix.
    shared = (prefix[:, None, :] == prefix[None, :, :]) | (positions >= length[None, :, None])
    child = (alive[:, None] & (length[:, None] == length[None, :] + 1) & shared.all(-1))
    into_child = jnp.where(child, ext[:, last].T, NEG)  # [j, k]: ext[k, last[j]].
    same_t = jnp.logaddexp(same_t, jax.nn.logsumexp(into_child, axis=1))
    duplicate = jnp.zeros((k, vocab), bool).at[:, last].max(child.T)  # [k, c]
    ext = jnp.where(duplicate, NEG, ext)

    same_total = jnp.logaddexp(same_b, same_t)
    scores = jnp.concatenate([same_total + length_bonus * length,
                              (ext + length_bonus * (length[:, None] + 1)).reshape(-1)])
    _, pick = jax.lax.top_k(scores, k)
    is_same = pick < k
    src = jnp.where(is_same, pick, (pick - k) // vocab)
    token = jnp.where(is_same, last[jnp.minimum(pick, k - 1)], (pick - k) % vocab).astype(jnp.int32)
    new_length = jnp.where(is_same, length[src], length[src] + 1)
    new_prefix = prefix[src]
    write = jnp.where(is_same, frames, length[src])  # Out of range: no write.
    new_prefix = new_prefix.at[jnp.arange(k), write].set(token, mode='drop')
    ext_flat = ext.reshape(-1)
    new = dict(
        prefix=new_prefix, length=new_length,
        last=jnp.where(is_same, last[src], token),
        p_blank=jnp.where(is_same, same_b[src], NEG),
        p_token=jnp.where(is_same, same_t[src], ext_flat[jnp.maximum(pick - k, 0)]),
    )
    # Frames past the example's length leave the beams untouched.
    keep = t < num_frames
    return jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, state), None

  state, _ = jax.lax.scan(step, state, (log_probs, jnp.arange(frames)))
  final = jnp.logaddexp(state['p_blank'], state['p_token']) + length_bonus * state['length']
  best = jnp.argmax(final)
  return state['prefix'][best], state['length'][best], final[best]


def ctc_prefix_beam_search(log_probs: jax.Array, mask: jax.Array, *, beam_size: int,
                           blank: int = 0, length_bonus: float = 0.0):
  """Prefix beam search: ``(tokens [B, T], lengths [B], scores [B])``.

  Args:
    log_probs: [B, T, V] per-frame log-probabilities.
    mask: [B, T] 1 for real frames (a prefix of each row).
    beam_size: prefixes kept per frame.
    blank: the blank id.
    length_bonus: added per emitted token to the log-probability when ranking prefixes.
  """
  num_frames = (mask > 0).sum(axis=1)
  search = jax.vmap(lambda lp, n: _prefix_beam_single(
      lp, n, beam_size=beam_size, blank=blank, length_bonus=length_bonus))
  return search(log_probs.astype(jnp.float32), num_frames)


# --------------------------------------------------------------------------------- seq2seq

LogitsFn = Callable[[jax.Array, jax.Array], jax.Array]


def length_normaliser(length, alpha: float):
  """GNMT length penalty ``((5 + length) / 6) ** alpha``."""
  return ((5.0 + length) / 6.0) ** alpha


def greedy_decode(logits_fn: LogitsFn, *, batch_size: int, max_length: int, bos: int, eos: int):
  """Greedy decoding: ``tokens [B, max_length]`` (EOS kept, then 0).

  Stops as soon as every sequence has emitted EOS.
  """
  buffer = jnp.zeros((batch_size, max_length + 1), jnp.int32).at[:, 0].set(bos)
  done = jnp.zeros((batch_size,), bool)

  def cond(carry):
    t, _, done = carry
    return (t < max_length) & ~done.all()

  def body(carry):
    t, buffer, done = carry
    token = jnp.argmax(logits_fn(buffer[:, :max_length], t), axis=-1).astype(jnp.int32)
    token = jnp.where(done, 0, token)
    buffer = jax.lax.dynamic_update_slice(buffer, token[:, None], (0, t + 1))
    return t + 1, buffer, done | (token == eos)

  _, buffer, _ = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), buffer, done))
  return buffer[:, 1:]


def _gather_beams(x, index):
  """x [B, K, ...], index [B, M] -> [B, M, ...]."""
  return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


def beam_search(logits_fn: LogitsFn, *, batch_size: int, max_length: int, beam_size: int,
                bos: int, eos: int, length_penalty: float = 0.6):
  """Length-normalised beam search: ``(tokens [B, max_length], scores [B])``.

  ``logits_fn`` is called on ``batch_size * beam_size`` rows, beam-major within each example
  (row ``b * beam_size + k``): callers repeat encoder memories with ``jnp.repeat(.., K, 0)``.

  Args:
    logits_fn: ``(decoder_inputs [B*K, L], t) -> logits [B*K, V]`` at position ``t``.
    batch_size: B.
    max_length: L, decoder positions (EOS included).
    beam_size: K.
    bos: decoder start id.
    eos: end id.
    length_penalty: GNMT alpha (0 = rank by total log-probability).

  Returns:
    The best finished hypothesis per example (the best live one when none finished), and its
    normalised score.
  """
  b, k, length = batch_size, beam_size, max_length
  seqs = jnp.zeros((b, k, length + 1), jnp.int32).at[:, :, 0].set(bos)
  alive_scores = jnp.full((b, k), NEG).at[:, 0].set(0.0)
  fin_seqs = jnp.zeros_like(seqs)
  fin_scores = jnp.full((b, k), NEG)
  best_possible = lambda s: s.max(axis=1) / length_normaliser(length, length_penalty)

  def cond(carry):
    t, _, alive_scores, _, fin_scores = carry
    # Log-probabilities only fall, so a live hypothesis can at best keep its score, normalised
    # by the longest length: once the best finished one beats that everywhere, stop.
    settled = fin_scores.max(axis=1) >= best_possible(alive_scores)
    return (t < length) & ~settled.all()

  def body(carry):
    t, seqs, alive_scores, fin_seqs, fin_scores = carry
    logits = logits_fn(seqs.reshape(b * k, length + 1)[:, :length], t).reshape(b, k, -1)
    vocab = logits.shape[-1]
    candidates = alive_scores[:, :, None] + jax.nn.log_softmax(logits.astype(jnp.float32))
    scores, index = jax.lax.top_k(candidates.reshape(b, k * vocab), 2 * k)
    beam, token = index // vocab, (index % vocab).astype(jnp.int32)
    cand_seqs = _gather_beams(seqs, beam)
    cand_seqs = jax.lax.dynamic_update_slice(
        cand_seqs, token[:, :, None], (0, 0, t + 1))
    is_eos = token == eos
    scores = jnp.where(_alive(scores), scores, NEG)
    # Live pool: the best K candidates that did not end.
    live, pick = jax.lax.top_k(jnp.where(is_eos, NEG, scores), k)
    seqs, alive_scores = _gather_beams(cand_seqs, pick), live
    # Finished pool: the best K of the old finished and the new ended candidates.
    ended = jnp.where(is_eos & _alive(scores),
                      scores / length_normaliser(t + 1.0, length_penalty), NEG)
    pool_scores = jnp.concatenate([fin_scores, ended], axis=1)
    pool_seqs = jnp.concatenate([fin_seqs, cand_seqs], axis=1)
    fin_scores, pick = jax.lax.top_k(pool_scores, k)
    fin_seqs = _gather_beams(pool_seqs, pick)
    return t + 1, seqs, alive_scores, fin_seqs, fin_scores

  carry = (jnp.zeros((), jnp.int32), seqs, alive_scores, fin_seqs, fin_scores)
  _, seqs, alive_scores, fin_seqs, fin_scores = jax.lax.while_loop(cond, body, carry)
  has_finished = _alive(fin_scores[:, 0])
  tokens = jnp.where(has_finished[:, None], fin_seqs[:, 0], seqs[:, 0])[:, 1:]
  score = jnp.where(has_finished, fin_scores[:, 0],
                    alive_scores[:, 0] / length_normaliser(length, length_penalty))
  return tokens, score


def strip_after_eos(tokens: jax.Array, *, eos: int) -> jax.Array:
  """Zeroes every position after the first EOS (keeps the EOS)."""
  after = jnp.cumsum(tokens == eos, axis=1) - (tokens == eos)
  return jnp.where(after > 0, 0, tokens)
