"""Sequence data for CTC and encoder-decoder tasks: float features [time, features] + a text.

Sources (``dataset.name``):

* ``digit_strips``: the built-in task of input_pipeline/digit_strips.py.
* ``folder``: one folder per split (``dataset.train_path`` ...) holding one ``.npy`` or ``.npz``
  file per example (a 2-D [time, features] array; in an ``.npz`` the array ``dataset.feature_key``
  or its only array) and a transcript file ``dataset.transcript_file`` with one line per example,
  ``ID<TAB>TEXT``, where ``ID.npy`` / ``ID.npz`` is the example's file. Files are read in
  parallel through a grain dataset.
* ``npz_shards``: ``dataset.<role>_path`` is an ``.npz`` file, a folder of them or a glob; each
  shard holds ``features`` [sum of lengths, F], ``lengths`` [N], ``texts`` [N] (strings) and
  optionally ``ids`` [N].

Vocabulary (built from the training split only and saved with the run as ``vocab.json``):
``dataset.units`` = ``char`` (characters, spaces included) or ``word`` (whitespace-separated
words or glosses), tokens seen at least ``dataset.min_count`` times, ordered by frequency. Ids
of the special tokens are fixed:

* CTC: 0 = ``<blank>`` (also the padding of ``targets``, always masked by ``target_mask``);
* seq2seq: 0 = ``<pad>``, 1 = ``<bos>`` (decoder start), 2 = ``<eos>`` (ends every target);

then ``<unk>`` when ``dataset.unk`` is True. Without ``<unk>`` a validation or test token missing
from the training vocabulary is an error, reported before training.

Fixed shapes (one compiled train step and one eval step for the whole run): every example is
padded to ``max_frames`` (``dataset.max_frames``, or the longest example of all splits rounded up
to ``dataset.pad_to_multiple``) and targets to ``max_target_length`` (likewise; EOS included
for seq2seq). Batches:

=================  ================  =============================================================
``inputs``         float32 [B, T, F]  normalised features (training mean/std), 0 on padding
``input_mask``     float32 [B, T]     1 on real frames
``targets``        int32 [B, L]       token ids, 0-padded (seq2seq: ending in EOS)
``target_mask``    float32 [B, L]     1 on real target tokens
``weight``         float32 [B]        1 per real example, 0 for eval padding (set by the loop)
=================  ================  =============================================================

Checks before training (one line each, naming the split field and the example): feature files of
the wrong rank or with a feature size other than the training split's, empty transcripts,
unknown tokens with no ``<unk>``, examples longer than ``max_frames`` or targets longer than
``max_target_length``, and CTC targets that need more output frames than the example has after
subsampling (``model.conv_strides``).
"""

import collections
import dataclasses
import glob
import json
import math
import os
import pathlib

import numpy as np

from curvelab import errors
import input_pipeline
from input_pipeline import Data
from input_pipeline import digit_strips
from input_pipeline import seq_augment
from input_pipeline import text
from input_pipeline.sources import ArraySplit

SOURCES = ('digit_strips', 'folder', 'npz_shards')
UNITS = ('char', 'word')
TASKS = ('ctc', 'seq2seq')
ROLES = ('train', 'val', 'test')
PATH_FIELDS = {'train': 'dataset.train_path', 'val': 'dataset.val_path',
               'test': 'dataset.test_path'}

BLANK_ID = 0
PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK = '<unk>'
SPECIALS = {'ctc': ('<blank>',), 'seq2seq': ('<pad>', '<bos>', '<eos>')}



# --------------------------------------------------------------------------------- vocabulary

class UnknownTokenError(KeyError):
  """A token outside a vocabulary without ``<unk>``."""


class Vocabulary(text.Tokenizer):
  """Tokens <-> ids for sequence targets (special ids: see the module docstring).

  A :class:`input_pipeline.text.Tokenizer` (kind ``char`` or ``word``) so that the loop saves it
  as ``vocab.json`` and refuses to resume a run with a different one.
  """

  @classmethod
  def build_from_texts(cls, kind: str, texts, *, task: str, min_count: int = 1,
                       unk: bool = False) -> 'Vocabulary':
    """Builds a vocabulary from training texts (ids by frequency, then token)."""
    counts = collections.Counter()
    for line in texts:
      counts.update(split_units(line, kind))
    specials = list(SPECIALS[task]) + ([UNK] if unk else [])
    kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    return cls(kind, specials + [t for t in kept if t not in specials])

  @property
  def has_unk(self) -> bool:
    return UNK in self._index

  def split(self, line: str) -> list[str]:
    return split_units(line, self.kind)

  def encode(self, line: str) -> list[int]:
    """Ids of a text; unknown tokens map to ``<unk>`` or raise :class:`UnknownTokenError`."""
    ids = []
    for token in self.split(line):
      if token in self._index:
        ids.append(self._index[token])
      elif self.has_unk:
        ids.append(self._index[UNK])
      else:
        raise UnknownTokenError(token)
    return ids

  def content_ids(self, ids) -> list[int]:
    """The ids of real tokens: up to the first ``<eos>``, without padding/blank/``<bos>``."""
    specials = {self._index[s] for s in ('<blank>', '<pad>', '<bos>') if s in self._index}
    eos = self._index.get('<eos>')
    out = []
    for i in ids:
      i = int(i)
      if eos is not None and i == eos:
        break
      if i not in specials:
        out.append(i)
    return out

  def decode(self, ids) -> str:
    tokens = [self.vocab[i] for i in self.content_ids(ids) if 0 <= i < len(self.vocab)]
    return ('' if self.kind == 'char' else ' ').join(tokens)


def split_units(line: str, kind: str) -> list[str]:
  """Words, or characters with whitespace runs collapsed to one space."""
  words = line.split()
  return words if kind == 'word' else list(' '.join(words))


# --------------------------------------------------------------------------------- sources

@dataclasses.dataclass
class Examples:
  """One split as read: ids, features [T, F] float32 and texts, aligned."""
  ids: list[str]
  features: list[np.ndarray]
  texts: list[str]
  field: str  # The config field the split came from, for error messages.

  def __len__(self) -> int:
    return len(self.ids)


def _read_feature_file(path: str, feature_key: str, field: str) -> np.ndarray:
  """One example's features; unreadable files are a DataError naming the file."""
  try:
    return _load_array(path, feature_key)
  except (OSError, ValueError, EOFError) as e:
    raise errors.DataError(f'{field}: cannot read {path} as a numpy array ({e}).') from None


def _load_array(path: str, feature_key: str) -> np.ndarray:
  if path.endswith('.npz'):
    with np.load(path, allow_pickle=False) as archive:
      names = list(archive.keys())
      if feature_key in names:
        return np.asarray(archive[feature_key])
      if len(names) == 1:
        return np.asarray(archive[names[0]])
      raise errors.DataError(f'{path}: has arrays {names} but no {feature_key!r} '
                             '(dataset.feature_key).')
  return np.load(path, allow_pickle=False)


def _parse_transcript(path: pathlib.Path, field: str) -> list[tuple[str, str]]:
  entries = []
  for number, line in enumerate(path.read_text(encoding='utf-8').splitlines(), start=1):
    if not line.strip():
      continue
    name, sep, content = line.partition('\t') if '\t' in line else line.strip().partition(' ')
    name = name.strip()
    if not sep or not content.strip():
      raise errors.DataError(f'{field}: {path.name} line {number}: example {name!r} has an '
                             'empty transcript.')
    entries.append((name, content.strip()))
  seen = collections.Counter(name for name, _ in entries)
  repeated = [n for n, c in seen.items() if c > 1]
  if repeated:
    raise errors.DataError(f'{field}: {path.name} lists example {repeated[0]!r} more than once.')
  return entries


def _feature_path(folder: pathlib.Path, name: str, field: str) -> str:
  for candidate in (folder / name, folder / f'{name}.npy', folder / f'{name}.npz'):
    if candidate.suffix in ('.npy', '.npz') and candidate.is_file():
      return str(candidate)
  raise errors.DataError(f'{field}: example {name!r} has a transcript but no feature file '
                         f'{name}.npy or {name}.npz in {folder}.')


def read_folder(dataset_config, role: str) -> Examples:
  """A ``folder`` split: feature files + transcript, read in parallel through grain."""
  import grain  # pylint: disable=g-import-not-at-top
  field = PATH_FIELDS[role]
  folder = pathlib.Path(os.path.expanduser(dataset_config[field.split('.')[1]]))
  if not folder.is_dir():
    raise errors.DataError(f'{field}={str(folder)!r} is not a folder.')
  transcript = folder / dataset_config.transcript_file
  if not transcript.is_file():
    raise errors.DataError(f'{field}: {folder} has no transcript file '
                           f'{dataset_config.transcript_file!r} (dataset.transcript_file).')
  entries = _parse_transcript(transcript, field)
  if not entries:
    raise errors.DataError(f'{field}: {transcript} lists no examples.')
  paths = [_feature_path(folder, name, field) for name, _ in entries]
  key = dataset_config.feature_key
  reader = grain.MapDataset.source(paths).map(lambda p: _read_feature_file(p, key, field))
  features = list(reader.to_iter_dataset(grain.ReadOptions(num_threads=8,
                                                           prefetch_buffer_size=32)))
  return Examples([n for n, _ in entries], features, [t for _, t in entries], field)


def _shard_paths(pattern: str, field: str) -> list[str]:
  path = pathlib.Path(os.path.expanduser(pattern))
  if path.is_dir():
    found = sorted(str(p) for p in path.glob('*.npz'))
  elif path.is_file():
    found = [str(path)]
  else:
    found = sorted(glob.glob(os.path.expanduser(pattern)))
  if not found:
    raise errors.DataError(f'{field}={pattern!r} matches no .npz shard.')
  return found


def _read_shard(path: str, field: str):
  """``(features, lengths, texts, ids)`` of one shard."""
  try:
    with np.load(path, allow_pickle=False) as shard:
      missing = [k for k in ('features', 'lengths', 'texts') if k not in shard]
      if missing:
        raise errors.DataError(f'{field}: shard {path} lacks {", ".join(missing)} (a shard holds '
                               'features [sum of lengths, F], lengths [N], texts [N]).')
      lens = shard['lengths']
      names = shard['ids'] if 'ids' in shard else [f'{os.path.basename(path)}:{i}'
                                                  for i in range(len(lens))]
      return shard['features'], lens, shard['texts'], names
  except (OSError, ValueError, EOFError) as e:
    raise errors.DataError(f'{field}: cannot read shard {path} ({e}).') from None


def read_shards(dataset_config, role: str) -> Examples:
  """An ``npz_shards`` split."""
  field = PATH_FIELDS[role]
  ids, features, texts = [], [], []
  for path in _shard_paths(dataset_config[field.split('.')[1]], field):
    feats, lens, lines, names = _read_shard(path, field)
    if feats.ndim != 2:
      raise errors.DataError(f'{field}: shard {path} has features of shape {feats.shape}; '
                             'expected 2-D [sum of lengths, features].')
    if int(np.sum(lens)) != len(feats) or len(lines) != len(lens):
      raise errors.DataError(f'{field}: shard {path} has {len(feats)} feature rows, lengths '
                             f'summing to {int(np.sum(lens))} and {len(lines)} texts for '
                             f'{len(lens)} examples; they must agree.')
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    for name, start, n, line in zip(names, starts, lens, lines):
      ids.append(str(name))
      features.append(feats[start:start + int(n)])
      texts.append(str(line))
  return Examples(ids, features, texts, field)


def read_split(config, role: str) -> Examples:
  """Reads one split of ``config.dataset`` (no checks beyond the source's own)."""
  ds = config.dataset
  if ds.name == 'digit_strips':
    ids, features, texts = digit_strips.examples(ds, role)
    return Examples(ids, features, texts, f'dataset ({role} strips)')
  if ds.name == 'folder':
    return read_folder(ds, role)
  return read_shards(ds, role)


# --------------------------------------------------------------------------------- checks

def check_config(config) -> None:
  """Field checks that need no data."""
  ds = config.dataset
  if config.task.name not in TASKS:
    raise errors.ConfigError(
        f'task.name={config.task.name!r} has no sequence data; allowed: {", ".join(TASKS)}.')
  if ds.name not in SOURCES:
    raise errors.ConfigError(
        f'dataset.name={ds.name!r} is unknown for sequence tasks; allowed: {", ".join(SOURCES)}.')
  if ds.units not in UNITS:
    raise errors.ConfigError(f'dataset.units={ds.units!r} is unknown; allowed: {", ".join(UNITS)}.')
  for field in ('pad_to_multiple', 'min_count'):
    if isinstance(ds[field], bool) or not isinstance(ds[field], int) or ds[field] < 1:
      raise errors.ConfigError(f'dataset.{field} must be a positive integer, got {ds[field]!r}.')
  for field in ('max_frames', 'max_target_length'):
    if ds[field] < 0:
      raise errors.ConfigError(f'dataset.{field} must be >= 0 (0 = longest example), got '
                               f'{ds[field]}.')
  if ds.name in ('folder', 'npz_shards'):
    for role, field in PATH_FIELDS.items():
      if not ds[field.split('.')[1]]:
        raise errors.ConfigError(f'{field} is empty; dataset.name={ds.name!r} needs one path per '
                                 'split (train, val, test).')
  if ds.name == 'digit_strips':
    digit_strips.check_config(ds)


def check_features(examples: Examples, *, num_features: int | None) -> int:
  """Rank, feature size, emptiness and finiteness of every example; returns the feature size."""
  for name, feats, line in zip(examples.ids, examples.features, examples.texts):
    if feats.ndim != 2:
      raise errors.DataError(f'{examples.field}: example {name!r} has features of shape '
                             f'{feats.shape}; expected 2-D [time, features].')
    if num_features is None:
      num_features = feats.shape[1]
    if feats.shape[1] != num_features:
      raise errors.DataError(f'{examples.field}: example {name!r} has {feats.shape[1]} features '
                             f'per frame; the training split has {num_features}.')
    if len(feats) == 0:
      raise errors.DataError(f'{examples.field}: example {name!r} has no frames.')
    if not np.issubdtype(feats.dtype, np.number) or not np.isfinite(feats).all():
      raise errors.DataError(f'{examples.field}: example {name!r} has non-finite or non-numeric '
                             'features.')
    if not line.strip():
      raise errors.DataError(f'{examples.field}: example {name!r} has an empty transcript.')
  if not examples.ids:
    raise errors.DataError(f'{examples.field}: the split has no examples.')
  return num_features


def ctc_frames_needed(ids) -> int:
  """Output frames a CTC alignment of ``ids`` needs: one per token plus a blank between repeats."""
  ids = list(ids)
  return len(ids) + sum(1 for a, b in zip(ids, ids[1:]) if a == b)


def encode_split(examples: Examples, vocab: Vocabulary, *, min_count: int = 1) -> list[list[int]]:
  """Token ids of every text; a token outside a vocabulary without ``<unk>`` is a DataError."""
  rare = f' (tokens seen fewer than dataset.min_count={min_count} times are left out)' if (
      min_count > 1) else ''
  encoded = []
  for name, line in zip(examples.ids, examples.texts):
    try:
      encoded.append(vocab.encode(line))
    except UnknownTokenError as e:
      raise errors.DataError(
          f'{examples.field}: example {name!r} has token {e.args[0]!r}, which is not in the '
          f'training vocabulary{rare}, and the vocabulary has no <unk>; set dataset.unk=True '
          'or remove the example.') from None
  return encoded


def check_ctc_lengths(examples: Examples, encoded, *, subsampling: int, strides) -> None:
  """Every CTC target must fit the output frames left after subsampling."""
  for name, feats, ids in zip(examples.ids, examples.features, encoded):
    needed = ctc_frames_needed(ids)
    available = -(-len(feats) // subsampling)
    if needed > available:
      raise errors.DataError(
          f'{examples.field}: example {name!r} has a target of {len(ids)} tokens needing '
          f'{needed} CTC output frames, but its {len(feats)} frames give {available} after '
          f'subsampling by {subsampling} (model.conv_strides={tuple(strides)}); lower the '
          'subsampling or drop the example.')


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def _fixed_length(field: str, configured: int, longest: int, multiple: int,
                  what: str, splits: dict) -> int:
  """The configured length (checked against every example) or the longest rounded up."""
  if configured == 0:
    return _round_up(longest, multiple)
  for examples, lengths in splits.values():
    too_long = [i for i, n in enumerate(lengths) if n > configured]
    if too_long:
      i = too_long[0]
      raise errors.DataError(
          f'{examples.field}: example {examples.ids[i]!r} has {lengths[i]} {what}, more than '
          f'{field}={configured}; raise it or set 0 (= longest example).')
  return configured


# --------------------------------------------------------------------------------- batches

class SequencePreprocess:
  """Split rows (ragged features) -> fixed-shape batches; augmentation on the training side."""

  def __init__(self, *, max_frames: int, mean: np.ndarray, std: np.ndarray,
               augmenter: seq_augment.Augmenter | None):
    self.max_frames = max_frames
    self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)
    self.augmenter = augmenter if augmenter is not None and augmenter.active else None

  def __call__(self, batch: dict, rng: np.random.Generator | None = None) -> dict:
    feats = [(np.asarray(f, np.float32) - self.mean) / self.std for f in batch['features']]
    if self.augmenter is not None and rng is not None:
      feats = [self.augmenter.example(f, rng, min_frames=int(m), max_frames=self.max_frames)
               for f, m in zip(feats, batch['min_frames'])]
    inputs, mask = pad_frames(feats, self.max_frames)
    if self.augmenter is not None and rng is not None:
      inputs = self.augmenter.batch(inputs, mask, rng)
    return {'inputs': inputs, 'input_mask': mask,
            'targets': np.asarray(batch['targets'], np.int32),
            'target_mask': np.asarray(batch['target_mask'], np.float32),
            'weight': np.ones(len(feats), np.float32)}


def pad_frames(features: list, max_frames: int) -> tuple[np.ndarray, np.ndarray]:
  """Ragged [T_i, F] -> ([B, max_frames, F] zero-padded, mask [B, max_frames])."""
  num_features = features[0].shape[1]
  inputs = np.zeros((len(features), max_frames, num_features), np.float32)
  mask = np.zeros((len(features), max_frames), np.float32)
  for i, f in enumerate(features):
    inputs[i, :len(f)] = f
    mask[i, :len(f)] = 1.0
  return inputs, mask


def _object_array(items: list) -> np.ndarray:
  # Element-wise assignment: np.array(list_of_equal_shape_arrays, object) would stack them.
  out = np.empty(len(items), object)
  for i, item in enumerate(items):
    out[i] = item
  return out


def make_split(examples: Examples, encoded, *, max_target_length: int, task: str,
               subsampling: int) -> ArraySplit:
  """An in-memory split: ragged features (object array) and fixed-length targets."""
  n = len(examples)
  targets = np.zeros((n, max_target_length), np.int32)
  target_mask = np.zeros((n, max_target_length), np.float32)
  min_frames = np.ones(n, np.int32)
  for i, ids in enumerate(encoded):
    ids = list(ids) + ([EOS_ID] if task == 'seq2seq' else [])
    targets[i, :len(ids)] = ids
    target_mask[i, :len(ids)] = 1.0
    if task == 'ctc':
      # The shortest input whose ceil(T / s) output frames still hold the alignment.
      min_frames[i] = (ctc_frames_needed(ids) - 1) * subsampling + 1
  features = [np.asarray(f, np.float32) for f in examples.features]
  return ArraySplit({'features': _object_array(features), 'targets': targets,
                     'target_mask': target_mask, 'min_frames': min_frames})


def _load_vocabulary(path: str, *, task: str) -> Vocabulary:
  try:
    obj = json.loads(pathlib.Path(os.path.expanduser(path)).read_text())
    vocab = Vocabulary(obj['kind'], obj['vocab'])
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise errors.DataError(
        f'dataset.vocab_path={path!r} is not a readable vocab.json ({e}).') from e
  expected = list(SPECIALS[task])
  if vocab.vocab[:len(expected)] != expected:
    raise errors.DataError(f'dataset.vocab_path={path!r} starts with {vocab.vocab[:len(expected)]}'
                           f'; a {task} vocabulary starts with {expected}.')
  return vocab


def _normaliser(train: Examples, enabled: bool) -> tuple[np.ndarray, np.ndarray]:
  """Per-feature mean and std over every training frame (running sums: no concatenated copy)."""
  num_features = train.features[0].shape[1]
  if not enabled:
    return np.zeros(num_features, np.float32), np.ones(num_features, np.float32)
  total = np.zeros(num_features)
  squares = np.zeros(num_features)
  count = 0
  for f in train.features:
    f = np.asarray(f, np.float64)
    total += f.sum(axis=0)
    squares += np.square(f).sum(axis=0)
    count += len(f)
  mean = total / count
  std = np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))
  # Constant features (e.g. always-blank pixel rows) keep their scale instead of exploding.
  return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


@input_pipeline.register('ctc')
@input_pipeline.register('seq2seq')
def build(config) -> Data:
  """Reads and checks every split, builds the vocabulary and returns the run's :class:`Data`."""
  check_config(config)
  ds, task = config.dataset, config.task.name
  augmenter = seq_augment.Augmenter.from_config(ds.augment)
  examples = {role: read_split(config, role) for role in ROLES}
  num_features = check_features(examples['train'], num_features=None)
  for role in ('val', 'test'):
    check_features(examples[role], num_features=num_features)
  if ds.vocab_path:
    vocab = _load_vocabulary(ds.vocab_path, task=task)
  else:
    vocab = Vocabulary.build_from_texts(ds.units, examples['train'].texts, task=task,
                                        min_count=int(ds.min_count), unk=bool(ds.unk))
  encoded = {role: encode_split(examples[role], vocab, min_count=int(ds.min_count))
             for role in ROLES}
  strides = tuple(config.model.get('conv_strides', ()) or ())
  subsampling = int(math.prod(strides)) if task == 'ctc' and strides else 1
  if task == 'ctc':
    for role in ROLES:
      check_ctc_lengths(examples[role], encoded[role], subsampling=subsampling, strides=strides)
  eos = 1 if task == 'seq2seq' else 0
  frame_lengths = {r: (examples[r], [len(f) for f in examples[r].features]) for r in ROLES}
  token_lengths = {r: (examples[r], [len(t) + eos for t in encoded[r]]) for r in ROLES}
  max_frames = _fixed_length('dataset.max_frames', int(ds.max_frames),
                             max(max(l) for _, l in frame_lengths.values()),
                             int(ds.pad_to_multiple), 'frames', frame_lengths)
  max_target = _fixed_length('dataset.max_target_length', int(ds.max_target_length),
                             max(max(l) for _, l in token_lengths.values()), 1, 'target tokens',
                             token_lengths)
  splits = {r: make_split(examples[r], encoded[r], max_target_length=max_target, task=task,
                          subsampling=subsampling) for r in ROLES}
  mean, std = _normaliser(examples['train'], bool(ds.normalize))
  # Sanity mode memorises a few examples: nothing may change them between epochs.
  train_aug = None if config.sanity.examples > 0 else augmenter
  return Data(
      num_outputs=vocab.vocab_size, example_shape=(max_frames, num_features),
      split_specs={r: ds[PATH_FIELDS[r].split('.')[1]] or f'{ds.name}:{r}' for r in ROLES},
      split_sizes={r: len(splits[r]) for r in ROLES}, loader=splits.__getitem__,
      train_preprocess=SequencePreprocess(max_frames=max_frames, mean=mean, std=std,
                                          augmenter=train_aug),
      eval_preprocess=SequencePreprocess(max_frames=max_frames, mean=mean, std=std,
                                         augmenter=None),
      extra={'tokenizer': vocab, 'vocabulary': vocab, 'max_frames': max_frames,
             'max_target_length': max_target, 'num_features': num_features,
             'subsampling': subsampling})
