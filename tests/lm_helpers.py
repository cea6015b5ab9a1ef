"""Shared helpers for the language-model tests: tiny corpora and configs."""

import pathlib

from configs import lstm_lm
from configs import transformer_lm


def write_corpus(folder: pathlib.Path, lines: dict[str, list[str]]) -> dict[str, str]:
  """Writes one text file per split role and returns their paths."""
  folder.mkdir(parents=True, exist_ok=True)
  paths = {}
  for role, content in lines.items():
    path = folder / f'{role}.txt'
    path.write_text('\n'.join(content) + '\n')
    paths[role] = str(path)
  return paths


def periodic_corpus(folder: pathlib.Path) -> dict[str, str]:
  """A deterministic periodic character text: perfectly predictable after one period."""
  line = 'abcdefgh' * 6
  return write_corpus(folder, {'train': [line] * 24, 'val': [line] * 4, 'test': [line] * 4})


def tiny_config(paths: dict[str, str], *, model: str = 'lstm', **overrides):
  module = lstm_lm if model == 'lstm' else transformer_lm
  c = module.get_config('tiny=True,optimizer=adam')
  c.dataset.train_path = paths['train']
  c.dataset.val_path = paths['val']
  c.dataset.test_path = paths['test']
  c.dataset.sequence_length = 16
  c.doctor.enabled = False
  for key, value in overrides.items():
    node = c
    parts = key.replace('__', '.').split('.')
    for part in parts[:-1]:
      node = node[part]
    node[parts[-1]] = value
  return c
