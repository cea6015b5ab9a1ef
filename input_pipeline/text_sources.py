"""Text sources for language models: WikiText-2, TFDS tiny_shakespeare, text files, token .npz.

Each source returns the lines of one split role (``train``, ``val``, ``test``), as strings or,
for pre-tokenised corpora, as integer arrays.
"""

import os
import pathlib

import numpy as np

from curvelab import errors
from input_pipeline import sources

TEXT_DATASETS = ('wikitext2', 'tiny_shakespeare', 'text_files', 'tokens_npz')
_ROLE_FIELDS = {'train': 'train_split', 'val': 'val_split', 'test': 'test_split'}
_PATH_FIELDS = {'train': 'train_path', 'val': 'val_path', 'test': 'test_path'}


def check_name(name: str) -> None:
  if name not in TEXT_DATASETS:
    raise errors.ConfigError(
        f'dataset.name={name!r} is unknown for language modelling; allowed: '
        f'{", ".join(TEXT_DATASETS)}.')


def _read_file(path: str, field: str) -> list[str]:
  if not path:
    raise errors.ConfigError(f'{field} is empty: give the path of the text file.')
  p = pathlib.Path(os.path.expanduser(path))
  if not p.is_file():
    raise errors.DataError(f'{field}={path!r}: file not found.')
  text = p.read_text(encoding='utf-8', errors='replace')
  if not text.strip():
    raise errors.DataError(f'{field}={path!r}: the file is empty.')
  return text.splitlines()


def _tfds_lines(name: str, dataset_config, role: str) -> list[str]:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from input_pipeline import splits  # pylint: disable=g-import-not-at-top
  data_dir = sources.resolve_data_dir(dataset_config.data_dir)
  builder = _prepared_builder(name, dataset_config, data_dir)
  spec = dataset_config[_ROLE_FIELDS[role]]
  sizes = {k: v.num_examples for k, v in builder.info.splits.items()}
  splits.resolve(spec, sizes, field=f'dataset.{_ROLE_FIELDS[role]}')
  source = tfds.data_source(_tfds_name(name, dataset_config), split=spec, data_dir=data_dir)
  texts = [r['text'] for r in source.__getitems__(list(range(len(source))))]
  texts = [t.decode('utf-8') if isinstance(t, bytes) else str(t) for t in texts]
  # tiny_shakespeare stores a whole split as one text; WikiText one line per example.
  return [line for t in texts for line in t.split('\n')]


def _tfds_name(name: str, dataset_config) -> str:
  if name == 'wikitext2':
    return f'wikitext2/{dataset_config.get("variant", "word")}'
  return name


def _prepared_builder(name: str, dataset_config, data_dir: str):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if name == 'wikitext2':
    from input_pipeline import wikitext2  # pylint: disable=g-import-not-at-top,unused-import
  builder = tfds.builder(_tfds_name(name, dataset_config), data_dir=data_dir)
  if sources._has_array_records(builder):  # pylint: disable=protected-access
    return builder
  if name != 'wikitext2':
    raise errors.DataError(
        f'dataset {name!r} is not prepared offline under {data_dir}; set dataset.data_dir (or '
        f'TFDS_DATA_DIR) to a folder holding it in array_record format (e.g. ../shared/'
        f'tensorflow_datasets).')
  manual = dataset_config.get('manual_dir', '') or os.path.join(data_dir, 'downloads', 'manual')
  try:
    builder.download_and_prepare(
        file_format='array_record',
        download_config=tfds.download.DownloadConfig(manual_dir=manual))
  except Exception as e:  # Offline with no manual copy: many exception types from the downloader.
    raise errors.DataError(
        f'wikitext2 is not prepared under {data_dir} and could not be downloaded ({type(e).__name__}); '
        f'place wikitext-2-v1.zip (word) or wikitext-2-raw-v1.zip (raw) in {manual} '
        '(dataset.manual_dir) and run again.') from e
  return builder


def text_lines(dataset_config, role: str) -> list[str]:
  """Lines of text of a split role for the text datasets."""
  name = dataset_config.name
  check_name(name)
  if name == 'text_files':
    field = _PATH_FIELDS[role]
    return _read_file(dataset_config[field], f'dataset.{field}')
  return _tfds_lines(name, dataset_config, role)


def token_lines(dataset_config, role: str) -> list[np.ndarray]:
  """Pre-tokenised lines from ``tokens_npz`` (``tokens`` 1-D ints, optional ``sizes``)."""
  field = _PATH_FIELDS[role]
  path = dataset_config[field]
  if not path or not os.path.isfile(os.path.expanduser(path)):
    raise errors.DataError(f'dataset.{field}={path!r}: file not found.')
  with np.load(os.path.expanduser(path)) as z:
    if 'tokens' not in z:
      raise errors.DataError(f'dataset.{field}={path!r} has no array named "tokens" '
                             f'(found: {", ".join(z.files)}).')
    tokens = np.asarray(z['tokens'])
    sizes = np.asarray(z['sizes']) if 'sizes' in z else None
  if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer) or tokens.size == 0:
    raise errors.DataError(f'dataset.{field}={path!r}: "tokens" must be a non-empty 1-D integer '
                           f'array, got shape {tokens.shape} dtype {tokens.dtype}.')
  vocab = int(dataset_config.vocab_size)
  bad = (tokens < 0) | (tokens >= vocab)
  if bad.any():
    raise errors.DataError(
        f'dataset.{field}={path!r}: token id {int(tokens[bad][0])} at position '
        f'{int(np.argmax(bad))} is outside [0, dataset.vocab_size={vocab}).')
  if sizes is None:
    return [tokens]
  if sizes.sum() != tokens.size:
    raise errors.DataError(f'dataset.{field}={path!r}: "sizes" sums to {int(sizes.sum())} but '
                           f'there are {tokens.size} tokens.')
  return np.split(tokens, np.cumsum(sizes)[:-1])
