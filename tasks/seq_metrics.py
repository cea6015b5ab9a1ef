"""Corpus-level sequence metrics on the host: WER, CER, BLEU-4, and decoding statistics.

* WER / CER: word / character Levenshtein distance summed over the corpus and divided by the
  total reference length (not a mean of per-sentence rates), as fractions (0.12 = 12%).
  Characters include the spaces between words, as in the usual CER definition.
* BLEU-4: sacrebleu's ``corpus_bleu`` (13a tokenisation, exponential smoothing off), on its
  0-100 scale.
* Decoding statistics the training doctor reads (docs/doctor.md, ``degenerate_predictions``):
  ``empty_share`` (outputs with no token), ``length_ratio`` (total output tokens / total
  reference tokens), ``repetition_rate`` (share of output token bigrams that already occurred
  earlier in the same output). ``blank_share`` (CTC) comes from the device-side decode.
"""

from typing import Sequence

import numpy as np


def edit_distance(reference: Sequence, hypothesis: Sequence) -> int:
  """Levenshtein distance (substitutions, insertions, deletions all cost 1).

  One row of the dynamic programme at a time, vectorised over the hypothesis except for the
  insertion chain, which is a running minimum.
  """
  ref, hyp = list(reference), list(hypothesis)
  if not ref:
    return len(hyp)
  if not hyp:
    return len(ref)
  prev = np.arange(len(hyp) + 1)
  for i, token in enumerate(ref, start=1):
    cost = np.fromiter((token != h for h in hyp), dtype=np.int64, count=len(hyp))
    # Deletion (from above) and substitution (diagonal), then insertions along the row.
    row = np.empty_like(prev)
    row[0] = i
    row[1:] = np.minimum(prev[1:] + 1, prev[:-1] + cost)
    # d[i][j] = min(row[j], d[i][j-1] + 1) == min over k<=j of row[k] + (j - k).
    idx = np.arange(len(row))
    row = np.minimum.accumulate(row - idx) + idx
    prev = row
  return int(prev[-1])


def words(text: str) -> list[str]:
  return text.split()


def characters(text: str) -> list[str]:
  """Characters with runs of whitespace collapsed to one space (spaces count as characters)."""
  return list(' '.join(text.split()))


def error_rate(references: Sequence[str], hypotheses: Sequence[str], *, unit: str) -> float:
  """Corpus WER (``unit='word'``) or CER (``unit='char'``) as a fraction.

  Args:
    references: reference texts.
    hypotheses: predicted texts, aligned with ``references``.
    unit: ``word`` or ``char``.

  Returns:
    Total edit distance / total reference length (0.0 for an empty corpus; inf when every
    reference is empty but some hypothesis is not).
  """
  if unit not in ('word', 'char'):
    raise ValueError(f'unit={unit!r} is unknown; allowed: word, char.')
  if len(references) != len(hypotheses):
    raise ValueError(f'{len(references)} references but {len(hypotheses)} hypotheses.')
  split = words if unit == 'word' else characters
  errors = total = 0
  for ref, hyp in zip(references, hypotheses):
    r = split(ref)
    errors += edit_distance(r, split(hyp))
    total += len(r)
  if total == 0:
    return 0.0 if errors == 0 else float('inf')
  return errors / total


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
  return error_rate(references, hypotheses, unit='word')


def cer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
  return error_rate(references, hypotheses, unit='char')


def bleu(references: Sequence[str], hypotheses: Sequence[str]) -> float:
  """Corpus BLEU-4 (sacrebleu, one reference per hypothesis), 0-100."""
  import sacrebleu  # pylint: disable=g-import-not-at-top
  if not references:
    return 0.0
  return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def exact_match(references: Sequence[str], hypotheses: Sequence[str]) -> float:
  """Share of hypotheses equal to their reference (whitespace-normalised)."""
  if not references:
    return 0.0
  same = sum(' '.join(r.split()) == ' '.join(h.split()) for r, h in zip(references, hypotheses))
  return same / len(references)


def decoding_stats(token_references: Sequence[Sequence], token_hypotheses: Sequence[Sequence]
                   ) -> dict[str, float]:
  """Empty share, length ratio and repetition rate of tokenised outputs.

  Args:
    token_references: reference token sequences.
    token_hypotheses: output token sequences (ids or strings), aligned with the references.

  Returns:
    ``{'empty_share', 'length_ratio', 'repetition_rate'}``.
  """
  n = max(len(token_hypotheses), 1)
  empty = sum(1 for h in token_hypotheses if len(h) == 0)
  out_len = sum(len(h) for h in token_hypotheses)
  ref_len = sum(len(r) for r in token_references)
  bigrams = repeats = 0
  for hyp in token_hypotheses:
    seen = set()
    for pair in zip(list(hyp), list(hyp)[1:]):
      bigrams += 1
      repeats += pair in seen
      seen.add(pair)
  return {'empty_share': empty / n,
          'length_ratio': out_len / ref_len if ref_len else 0.0,
          'repetition_rate': repeats / bigrams if bigrams else 0.0}


def samples(references: Sequence[str], hypotheses: Sequence[str], *, count: int) -> list[dict]:
  """The first ``count`` target/prediction pairs (a fixed set, so epochs can be compared)."""
  return [{'target': r, 'prediction': h} for r, h in list(zip(references, hypotheses))[:count]]


def real_examples(decoded: Sequence[tuple[dict, dict]]):
  """Yields ``(decode output row, batch row)`` of every real (weight > 0) example, in order."""
  for outputs, batch in decoded:
    weight = np.asarray(batch['weight'])
    for i in np.flatnonzero(weight > 0):
      yield ({k: np.asarray(v)[i] for k, v in outputs.items()},
             {k: np.asarray(v)[i] for k, v in batch.items()})


def with_prefix(values: dict, prefix: str) -> dict:
  return {f'{prefix}_{k}': v for k, v in values.items()}
