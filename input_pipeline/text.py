"""Tokenizers and fixed-length language-model sequences.

Tokenizers map text to integer ids with 0 reserved for padding:

* ``byte``: UTF-8 bytes, id = byte + 1 (vocabulary 257; no unknowns possible);
* ``char``: the characters of the training split, plus ``<unk>``;
* ``word``: whitespace-separated words of the training split with at least ``min_count``
  occurrences, plus ``<unk>`` and an end-of-line token ``<eos>``.

Vocabularies are built from the training split only and saved in the workdir (``vocab.json``), so
evaluation, sampling and resumed runs map text exactly as training did.

Sequences: every example is ``length + 1`` tokens cut into ``inputs = s[:-1]`` and
``targets = s[1:]`` with a per-token ``weight`` (0 on padding). Break modes (as in fairseq):

* ``none``: all lines joined into one stream, cut in consecutive chunks (each chunk's last
  token is the next chunk's first input, so every token is predicted exactly once);
* ``lines``: each line its own sequence(s), never crossing a line boundary;
* ``complete``: whole lines packed greedily up to the length; a line longer than one sequence is
  cut like ``lines``.
"""

import collections
import json
from typing import Iterable

import numpy as np

from curvelab import errors

PAD, PAD_ID = '<pad>', 0
UNK, EOS = '<unk>', '<eos>'
TOKENIZERS = ('byte', 'char', 'word')
BREAK_MODES = ('none', 'lines', 'complete')


class Tokenizer:
  """A text <-> ids mapping (see the module docstring for the kinds)."""

  def __init__(self, kind: str, vocab: list[str] | None = None):
    if kind not in TOKENIZERS:
      raise errors.ConfigError(
          f'dataset.tokenizer={kind!r} is unknown; allowed: {", ".join(TOKENIZERS)}.')
    self.kind = kind
    self.vocab = vocab if kind != 'byte' else None
    self._index = {t: i for i, t in enumerate(vocab)} if self.vocab else None

  @classmethod
  def build(cls, kind: str, lines: Iterable[str], *, min_count: int = 1) -> 'Tokenizer':
    """Builds a tokenizer from training lines (ids ordered by frequency, then text)."""
    if kind == 'byte':
      return cls('byte')
    counts = collections.Counter()
    for line in lines:
      counts.update(line.split() if kind == 'word' else line)
    kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    specials = [PAD, UNK, EOS] if kind == 'word' else [PAD, UNK]
    return cls(kind, specials + [t for t in kept if t not in specials])

  @property
  def vocab_size(self) -> int:
    return 257 if self.kind == 'byte' else len(self.vocab)

  def encode_line(self, line: str, *, eos: bool = True) -> list[int]:
    """Ids of one line; word tokenizers end it with ``<eos>``, byte/char with ``\\n``."""
    if self.kind == 'byte':
      return [b + 1 for b in (line + ('\n' if eos else '')).encode('utf-8')]
    unk = self._index[UNK]
    if self.kind == 'word':
      ids = [self._index.get(w, unk) for w in line.split()]
      return ids + ([self._index[EOS]] if eos else [])
    text = line + ('\n' if eos else '')
    return [self._index.get(c, unk) for c in text]

  def decode(self, ids: Iterable[int]) -> str:
    ids = [int(i) for i in ids if int(i) != PAD_ID]
    if self.kind == 'byte':
      return bytes(i - 1 for i in ids).decode('utf-8', errors='replace')
    tokens = [self.vocab[i] for i in ids]
    if self.kind != 'word':
      return ''.join(tokens)
    out = []
    for t in tokens:
      if t == EOS:
        out.append('\n')
      else:
        out.append(t if not out or out[-1] == '\n' else ' ' + t)
    return ''.join(out)

  def to_json(self) -> dict:
    return {'kind': self.kind, 'vocab': self.vocab}

  @classmethod
  def from_json(cls, obj: dict) -> 'Tokenizer':
    return cls(obj['kind'], obj.get('vocab'))

  def save(self, path) -> None:
    with open(path, 'w') as f:
      json.dump(self.to_json(), f)

  def __eq__(self, other) -> bool:
    return isinstance(other, Tokenizer) and self.to_json() == other.to_json()


def _chunks(ids: list[int], length: int) -> list[list[int]]:
  """Cuts ids into windows of length+1 that overlap by one token (every target once)."""
  out = []
  for start in range(0, max(len(ids) - 1, 0), length):
    out.append(ids[start:start + length + 1])
  return out


def _pack_complete(lines: list[list[int]], length: int) -> list[list[int]]:
  """Greedy packing of whole lines into sequences of at most length+1 tokens."""
  out, current = [], []
  for line in lines:
    if len(line) > length + 1:
      if current:
        out.append(current)
        current = []
      out.extend(_chunks(line, length))
      continue
    if len(current) + len(line) > length + 1:
      out.append(current)
      current = []
    current = current + line
  if current:
    out.append(current)
  return out


def make_sequences(lines: list[list[int]], *, length: int, break_mode: str) -> dict:
  """Turns tokenised lines into padded next-token examples.

  Args:
    lines: token ids per line (already including end-of-line tokens).
    length: tokens per input sequence (>= 2).
    break_mode: ``none``, ``lines`` or ``complete``.

  Returns:
    ``{'inputs': int32 [N, length], 'targets': int32 [N, length], 'weight': float32 [N, length]}``.
  """
  if break_mode not in BREAK_MODES:
    raise errors.ConfigError(
        f'dataset.break_mode={break_mode!r} is unknown; allowed: {", ".join(BREAK_MODES)}.')
  if length < 2:
    raise errors.ConfigError(f'dataset.sequence_length must be >= 2, got {length}.')
  if break_mode == 'none':
    stream = [t for line in lines for t in line]
    seqs = _chunks(stream, length)
  elif break_mode == 'lines':
    seqs = [c for line in lines for c in _chunks(line, length)]
  else:
    seqs = _pack_complete(lines, length)
  seqs = [s for s in seqs if len(s) >= 2]
  n = len(seqs)
  inputs = np.zeros((n, length), np.int32)
  targets = np.zeros((n, length), np.int32)
  weight = np.zeros((n, length), np.float32)
  for i, s in enumerate(seqs):
    k = len(s) - 1
    inputs[i, :k] = s[:-1]
    targets[i, :k] = s[1:]
    weight[i, :k] = 1.0
  return {'inputs': inputs, 'targets': targets, 'weight': weight}
