"""Language-model data: lines -> tokenizer (from the training split) -> fixed-length sequences."""

import numpy as np

from curvelab import errors
import input_pipeline
from input_pipeline import Data
from input_pipeline import text
from input_pipeline import text_sources
from input_pipeline.sources import ArraySplit

_ROLES = ('train', 'val', 'test')


def _identity(batch, rng=None):
  del rng
  return dict(batch)


def _tokenised_lines(config, role: str, tokenizer) -> list:
  if config.dataset.name == 'tokens_npz':
    return [list(map(int, line)) for line in text_sources.token_lines(config.dataset, role)]
  return [tokenizer.encode_line(line) for line in text_sources.text_lines(config.dataset, role)
          if line.strip() or config.dataset.tokenizer != 'word']


def build_tokenizer(config) -> text.Tokenizer | None:
  """The tokenizer built from the training split (None for pre-tokenised corpora)."""
  ds = config.dataset
  if ds.name == 'tokens_npz':
    return None
  lines = text_sources.text_lines(ds, 'train')
  return text.Tokenizer.build(ds.tokenizer, lines, min_count=int(ds.min_count))


@input_pipeline.register('language_modeling')
def build(config) -> Data:
  """Validates the corpus and returns its :class:`Data` (sequences are built on load)."""
  ds = config.dataset
  text_sources.check_name(ds.name)
  if ds.sequence_length < 2:
    raise errors.ConfigError(f'dataset.sequence_length must be >= 2, got {ds.sequence_length}.')
  if ds.break_mode not in text.BREAK_MODES:
    raise errors.ConfigError(
        f'dataset.break_mode={ds.break_mode!r} is unknown; allowed: {", ".join(text.BREAK_MODES)}.')
  tokenizer = build_tokenizer(config)
  if tokenizer is None:
    if int(ds.vocab_size) <= 0:
      raise errors.ConfigError('dataset.vocab_size must be a positive integer for tokens_npz.')
    vocab_size = int(ds.vocab_size)
  else:
    vocab_size = tokenizer.vocab_size
  cache: dict[str, ArraySplit] = {}

  def loader(role: str) -> ArraySplit:
    if role not in cache:
      lines = _tokenised_lines(config, role, tokenizer)
      total = sum(len(l) for l in lines)
      if total < ds.sequence_length + 1:
        field = f'dataset.{role}_path' if ds.name in ('text_files', 'tokens_npz') else (
            f'dataset.{role}_split')
        raise errors.DataError(
            f'{field}: the {role} split has {total} tokens, fewer than one sequence '
            f'(dataset.sequence_length + 1 = {ds.sequence_length + 1}).')
      cache[role] = ArraySplit(text.make_sequences(lines, length=int(ds.sequence_length),
                                                   break_mode=ds.break_mode))
    return cache[role]

  # Load every split now: corpus problems (a split shorter than one sequence) must surface before
  # compilation, and sizes are needed for the duration arithmetic.
  sizes = {role: len(loader(role)) for role in _ROLES}
  return Data(num_outputs=vocab_size, example_shape=(int(ds.sequence_length),),
              split_specs={r: r for r in _ROLES}, split_sizes=sizes, loader=loader,
              train_preprocess=_identity, eval_preprocess=_identity,
              extra={'tokenizer': tokenizer,
                     'tokens': {r: int(loader(r).arrays['weight'].sum()) for r in _ROLES}})
