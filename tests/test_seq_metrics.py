"""Sequence metrics on known pairs: edit distance, WER, CER, BLEU-4, decoding statistics."""

import pytest

from tasks import seq_metrics


@pytest.mark.parametrize('ref, hyp, distance', [
    ('', '', 0), ('abc', '', 3), ('', 'ab', 2), ('kitten', 'sitting', 3),
    ('flaw', 'lawn', 2), ('abc', 'abc', 0), ('abcdef', 'azced', 3),
])
def test_edit_distance_known_values(ref, hyp, distance):
  assert seq_metrics.edit_distance(ref, hyp) == distance
  assert seq_metrics.edit_distance(hyp, ref) == distance


def test_wer_is_corpus_level_not_a_mean_of_sentence_rates():
  refs = ['the cat sat on the mat', 'hello world']
  hyps = ['the cat sat on mat', 'hello there world']
  # One deletion (6 words) + one insertion (2 words) = 2 errors over 8 reference words.
  assert seq_metrics.wer(refs, hyps) == pytest.approx(2 / 8)
  assert seq_metrics.wer(['a b c'], ['x y z w']) == pytest.approx(4 / 3)  # Above 1 is allowed.
  assert seq_metrics.wer(['a'], ['a']) == 0.0


def test_cer_counts_characters_including_spaces():
  assert seq_metrics.cer(['ab cd'], ['ab cd']) == 0.0
  assert seq_metrics.cer(['ab cd'], ['abcd']) == pytest.approx(1 / 5)  # The space was deleted.
  assert seq_metrics.cer(['kitten'], ['sitting']) == pytest.approx(3 / 6)
  # Whitespace runs count as one space.
  assert seq_metrics.cer(['a  b'], ['a b']) == 0.0


def test_bleu_matches_sacrebleu_and_known_values():
  import sacrebleu  # pylint: disable=g-import-not-at-top
  refs = ['the cat is on the mat today', 'there is a cat on the mat']
  assert seq_metrics.bleu(refs, refs) == pytest.approx(100.0)
  assert seq_metrics.bleu(['a b c d e'], ['v w x y z']) == pytest.approx(0.0)
  hyps = ['the cat is on the mat', 'a cat is on the mat']
  expected = sacrebleu.corpus_bleu(hyps, [refs]).score
  assert seq_metrics.bleu(refs, hyps) == pytest.approx(expected)
  assert 0.0 < seq_metrics.bleu(refs, hyps) < 100.0


def test_exact_match_and_decoding_statistics():
  assert seq_metrics.exact_match(['a b', 'c'], ['a  b', 'd']) == 0.5
  stats = seq_metrics.decoding_stats([[1, 2], [3, 4, 5], [6]], [[1, 2], [], [7, 7, 7, 7]])
  assert stats['empty_share'] == pytest.approx(1 / 3)
  assert stats['length_ratio'] == pytest.approx(6 / 6)
  # Bigrams of [7, 7, 7, 7]: (7,7) x3, the last two repeat the first; [1, 2] has one bigram.
  assert stats['repetition_rate'] == pytest.approx(2 / 4)


def test_samples_are_target_prediction_pairs():
  out = seq_metrics.samples(['a', 'b', 'c', 'd'], ['x', 'b', 'c', 'd'], count=3)
  assert out == [{'target': 'a', 'prediction': 'x'}, {'target': 'b', 'prediction': 'b'},
                 {'target': 'c', 'prediction': 'c'}]
