"""Digit strips: a small real sequence task built from scikit-learn's 8x8 handwritten digits.

A strip is 3-8 digit images (``dataset.min_digits``..``max_digits``) placed side by side, with
``dataset.gap_columns`` blank columns between them, read column by column: each of the strip's
columns is one time step of 8 features (the column's pixels, 0..1). Targets:

* ``dataset.target='digits'`` (CTC): the digit string, one word per digit (``"3 1 4"``), so WER
  is the digit error rate, as gloss error rate is for sign-language glosses;
* ``dataset.target='words'`` (seq2seq, captioner): the digits spelled out (``"three one four"``).

The 1,797 digits are split by image so that validation and test strips are made of images the
training strips never show: train strips use images 0-1199, val 1200-1436, test 1437-1796 of a
fixed shuffled order (the last range is the image task's ``test`` split).
"""

import functools

import numpy as np

from curvelab import errors

TARGETS = ('digits', 'words')
NAMES = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine')
IMAGE_RANGES = {'train': (0, 1200), 'val': (1200, 1437), 'test': (1437, 1797)}
COUNT_FIELDS = {'train': 'num_train', 'val': 'num_val', 'test': 'num_test'}
NUM_FEATURES = 8


@functools.lru_cache(maxsize=1)
def _digit_images() -> tuple[np.ndarray, np.ndarray]:
  """The digits as float32 [N, 8, 8] in [0, 1] and their labels, in a fixed shuffled order."""
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top
  digits = sk_datasets.load_digits()
  # Cached (read-only): every split and every run in a process reads the same 1,797 images.
  order = np.random.default_rng(0).permutation(len(digits.target))
  images = (digits.images[order] / 16.0).astype(np.float32)
  labels = digits.target[order].astype(np.int64)
  images.flags.writeable = labels.flags.writeable = False
  return images, labels


def check_config(dataset_config) -> None:
  """Raises ConfigError for digit-strip fields that cannot work."""
  ds = dataset_config
  if ds.target not in TARGETS:
    raise errors.ConfigError(
        f'dataset.target={ds.target!r} is unknown; allowed: {", ".join(TARGETS)}.')
  if not 1 <= ds.min_digits <= ds.max_digits:
    raise errors.ConfigError(
        f'dataset.min_digits={ds.min_digits} and dataset.max_digits={ds.max_digits} must '
        'satisfy 1 <= min_digits <= max_digits.')
  if ds.gap_columns < 0:
    raise errors.ConfigError(f'dataset.gap_columns must be >= 0, got {ds.gap_columns}.')
  for field in COUNT_FIELDS.values():
    if ds[field] <= 0:
      raise errors.ConfigError(f'dataset.{field} must be a positive integer, got {ds[field]}.')


def make_strip(images: np.ndarray, *, gap_columns: int) -> np.ndarray:
  """Digit images [n, 8, 8] -> features [time, 8]: columns left to right, gaps between digits."""
  gap = np.zeros((8, gap_columns), np.float32)
  parts = []
  for i, image in enumerate(images):
    if i and gap_columns:
      parts.append(gap)
    parts.append(image)
  return np.concatenate(parts, axis=1).T.copy()


def target_text(labels, *, target: str) -> str:
  return ' '.join(str(d) if target == 'digits' else NAMES[d] for d in labels)


def examples(dataset_config, role: str) -> tuple[list[str], list[np.ndarray], list[str]]:
  """``(ids, features, texts)`` of one split's strips (deterministic in ``dataset.seed``)."""
  check_config(dataset_config)
  ds = dataset_config
  images, labels = _digit_images()
  start, stop = IMAGE_RANGES[role]
  rng = np.random.default_rng([int(ds.seed), ('train', 'val', 'test').index(role)])
  ids, features, texts = [], [], []
  for i in range(int(ds[COUNT_FIELDS[role]])):
    n = int(rng.integers(ds.min_digits, ds.max_digits + 1))
    picks = rng.integers(start, stop, n)
    ids.append(f'{role}-{i:05d}')
    features.append(make_strip(images[picks], gap_columns=int(ds.gap_columns)))
    texts.append(target_text(labels[picks], target=ds.target))
  return ids, features, texts
