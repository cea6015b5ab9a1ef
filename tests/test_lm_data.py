"""Language-model data: tokenizers, break modes, text sources and their bad input."""

import zipfile

import numpy as np
import pytest

from curvelab import errors
from input_pipeline import text
from input_pipeline import text_data
from tests import lm_helpers


@pytest.mark.parametrize('kind', ['byte', 'char', 'word'])
def test_tokenizer_round_trip(kind):
  """Encoding then decoding known text gives it back (byte even for unseen characters)."""
  lines = ['the cat sat', 'on the mat']
  tok = text.Tokenizer.build(kind, lines)
  for line in lines:
    assert text.PAD_ID not in tok.encode_line(line)
    assert tok.decode(tok.encode_line(line, eos=False)) == line
  if kind == 'byte':
    assert tok.decode(tok.encode_line('héllo ☃', eos=False)) == 'héllo ☃'
    assert tok.vocab_size == 257


def test_tokenizer_vocabulary_from_training_only_with_unk_and_min_count():
  """Rare words become <unk>; the vocabulary is ordered by frequency; JSON round trip is equal."""
  tok = text.Tokenizer.build('word', ['a a a b b c'], min_count=2)
  assert tok.vocab[:3] == [text.PAD, text.UNK, text.EOS]
  assert tok.vocab[3:] == ['a', 'b']
  unk = tok.vocab.index(text.UNK)
  assert tok.encode_line('c z', eos=False) == [unk, unk]
  assert text.Tokenizer.from_json(tok.to_json()) == tok
  assert tok.decode(tok.encode_line('a b') + tok.encode_line('b a')) == 'a b\nb a\n'


def _lines():
  # Three lines of 4, 3 and 2 tokens (end-of-line included), ids chosen by hand.
  return [[5, 3, 4, 2], [3, 4, 2], [5, 2]]


def test_break_mode_none_cuts_one_stream_predicting_every_token_once():
  seq = text.make_sequences(_lines(), length=3, break_mode='none')
  np.testing.assert_array_equal(seq['inputs'], [[5, 3, 4], [2, 3, 4], [2, 5, 0]])
  np.testing.assert_array_equal(seq['targets'], [[3, 4, 2], [3, 4, 2], [5, 2, 0]])
  np.testing.assert_array_equal(seq['weight'], [[1, 1, 1], [1, 1, 1], [1, 1, 0]])
  # Every token after the first is a target exactly once.
  assert seq['weight'].sum() == sum(len(l) for l in _lines()) - 1


def test_break_mode_lines_never_crosses_a_line():
  seq = text.make_sequences(_lines(), length=3, break_mode='lines')
  np.testing.assert_array_equal(seq['inputs'], [[5, 3, 4], [3, 4, 0], [5, 0, 0]])
  np.testing.assert_array_equal(seq['targets'], [[3, 4, 2], [4, 2, 0], [2, 0, 0]])
  np.testing.assert_array_equal(seq['weight'], [[1, 1, 1], [1, 1, 0], [1, 0, 0]])


def test_break_mode_complete_packs_whole_lines():
  seq = text.make_sequences(_lines(), length=5, break_mode='complete')
  # Line 1 (4 tokens) alone: adding line 2 would exceed 6; lines 2+3 (5 tokens) fit together.
  np.testing.assert_array_equal(seq['inputs'], [[5, 3, 4, 0, 0], [3, 4, 2, 5, 0]])
  np.testing.assert_array_equal(seq['targets'], [[3, 4, 2, 0, 0], [4, 2, 5, 2, 0]])
  np.testing.assert_array_equal(seq['weight'], [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])


def test_break_mode_and_length_errors():
  with pytest.raises(errors.ConfigError, match='break_mode'):
    text.make_sequences(_lines(), length=3, break_mode='paragraphs')
  with pytest.raises(errors.ConfigError, match='sequence_length'):
    text.make_sequences(_lines(), length=1, break_mode='none')


def test_text_files_data_and_sizes(tmp_path):
  paths = lm_helpers.periodic_corpus(tmp_path)
  data = text_data.build(lm_helpers.tiny_config(paths))
  train = data.load('train')
  assert train.arrays['inputs'].shape[1] == 16
  assert data.num_outputs == data.extra['tokenizer'].vocab_size
  # 24 lines of 49 characters (48 + newline) -> 1176 tokens, 1175 targets.
  assert data.extra['tokens']['train'] == 24 * 49 - 1


@pytest.mark.parametrize('field,value,message', [
    ('dataset.train_path', '/nonexistent/train.txt', 'file not found'),
    ('dataset.sequence_length', 1, 'sequence_length'),
    ('dataset.tokenizer', 'bpe', 'tokenizer'),
    ('dataset.name', 'ptb', 'dataset.name'),
])
def test_bad_text_input(tmp_path, field, value, message):
  paths = lm_helpers.periodic_corpus(tmp_path)
  with pytest.raises(errors.CurvelabError, match=message):
    text_data.build(lm_helpers.tiny_config(paths, **{field: value}))


def test_empty_file_and_too_short_split(tmp_path):
  paths = lm_helpers.periodic_corpus(tmp_path)
  empty = tmp_path / 'empty.txt'
  empty.write_text('\n\n')
  with pytest.raises(errors.DataError, match='empty'):
    text_data.build(lm_helpers.tiny_config(paths, **{'dataset.val_path': str(empty)}))
  short = tmp_path / 'short.txt'
  short.write_text('ab\n')
  with pytest.raises(errors.DataError, match='fewer than one sequence'):
    text_data.build(lm_helpers.tiny_config(paths, **{'dataset.test_path': str(short)}))


def test_tokens_npz_source_and_out_of_range_ids(tmp_path):
  rng = np.random.default_rng(0)
  paths = {}
  for role in ('train', 'val', 'test'):
    tokens = rng.integers(0, 50, size=400)
    paths[role] = str(tmp_path / f'{role}.npz')
    np.savez(paths[role], tokens=tokens, sizes=np.full(20, 20))
  config = lm_helpers.tiny_config(paths, **{'dataset.name': 'tokens_npz', 'dataset.vocab_size': 50,
                                            'dataset.break_mode': 'lines'})
  data = text_data.build(config)
  assert data.num_outputs == 50
  # 20 lines of 20 tokens, length 16: each line gives two sequences (16 and 3 targets).
  assert len(data.load('train')) == 40
  bad = str(tmp_path / 'bad.npz')
  np.savez(bad, tokens=np.array([1, 2, 50, 3] * 20))
  config.dataset.val_path = bad
  with pytest.raises(errors.DataError, match='token id 50 at position 2'):
    text_data.build(config)


def test_wikitext2_builder_prepares_from_a_manual_archive(tmp_path):
  """The project's TFDS builder reads the official archive layout from TFDS's manual dir."""
  manual = tmp_path / 'manual'
  manual.mkdir()
  content = {'train': [' = Title = ', ' the cat sat on the mat . ', ' the <unk> ran . '] * 30,
             'valid': [' the cat ran . '] * 10, 'test': [' a mat sat . '] * 10}
  with zipfile.ZipFile(manual / 'wikitext-2-v1.zip', 'w') as z:
    for name, lines in content.items():
      z.writestr(f'wikitext-2/wiki.{name}.tokens', '\n'.join(lines) + '\n')
  paths = {'train': '', 'val': '', 'test': ''}
  config = lm_helpers.tiny_config(paths, **{'dataset.name': 'wikitext2', 'dataset.tokenizer': 'word',
                                            'dataset.data_dir': str(tmp_path / 'tfds'),
                                            'dataset.manual_dir': str(manual),
                                            'dataset.sequence_length': 8})
  data = text_data.build(config)
  tok = data.extra['tokenizer']
  assert {'the', 'cat', '<unk>', '='} <= set(tok.vocab)
  # Word-level: 91 non-empty training lines' words plus one <eos> each.
  expected = sum(len(l.split()) + 1 for l in content['train'])
  assert data.extra['tokens']['train'] == expected - 1
  assert (tmp_path / 'tfds' / 'wikitext2').is_dir()


def test_wikitext2_offline_without_archive_says_where_to_put_it(tmp_path):
  config = lm_helpers.tiny_config({'train': '', 'val': '', 'test': ''},
                                  **{'dataset.name': 'wikitext2', 'dataset.tokenizer': 'word',
                                     'dataset.data_dir': str(tmp_path / 'tfds'),
                                     'dataset.manual_dir': str(tmp_path / 'nothing')})
  with pytest.raises(errors.DataError, match='wikitext-2-v1.zip'):
    text_data.build(config)
