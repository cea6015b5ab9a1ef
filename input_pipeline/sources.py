"""Data sources, decoded once into memory as dicts of numpy arrays.

Every source yields an :class:`ArraySplit` (``inputs`` uint8 images [N, H, W, C], ``label``
int32 [N]) and :class:`DatasetInfo`. Small datasets (CIFAR-10 is 150 MB as uint8) are decoded once
and kept in memory: reading PNGs every epoch would cost more than the training step.
"""

import dataclasses
import os
import pathlib

import numpy as np

from curvelab import errors
from input_pipeline import splits

_REPO = pathlib.Path(__file__).resolve().parents[1]
_SHARED_TFDS = _REPO.parent / 'shared' / 'tensorflow_datasets'

# Datasets built into curvelab (no TFDS needed) and the TFDS image datasets known to work.
BUILTIN = ('digits', 'synthetic_cifar10')
TFDS_IMAGE = ('cifar10', 'cifar100', 'mnist', 'fashion_mnist')


@dataclasses.dataclass
class ArraySplit:
  """One split in memory: equal-length arrays keyed by feature name."""
  arrays: dict[str, np.ndarray]

  def __len__(self) -> int:
    return len(next(iter(self.arrays.values())))

  def take(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[indices] for k, v in self.arrays.items()}

  def head(self, n: int) -> 'ArraySplit':
    return ArraySplit({k: v[:n] for k, v in self.arrays.items()})


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the model and task need to know about a dataset."""
  name: str
  num_classes: int
  image_shape: tuple[int, int, int]
  split_sizes: dict


def resolve_data_dir(data_dir: str) -> str:
  """The TFDS data dir: the config field, else ``$TFDS_DATA_DIR``, else the shared offline copy."""
  if data_dir:
    return os.path.expanduser(data_dir)
  if os.environ.get('TFDS_DATA_DIR'):
    return os.environ['TFDS_DATA_DIR']
  if _SHARED_TFDS.is_dir():
    return str(_SHARED_TFDS)
  return os.path.expanduser('~/tensorflow_datasets')


# ----------------------------------------------------------------------------- digits

def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's 1,797 8x8 digits as uint8 [N, 8, 8, 1] in a fixed shuffled order."""
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top
  digits = sk_datasets.load_digits()
  # Pixel values are 0..16; scale to 0..255 so every image source shares one uint8 path.
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int32)
  # The file is ordered by writer; a fixed permutation makes every split class-balanced.
  order = np.random.default_rng(0).permutation(len(labels))
  return images[order], labels[order]


_DIGITS_SPLITS = {'train': (0, 1437), 'test': (1437, 1797)}


def _digits_split(spec: str, field: str) -> ArraySplit:
  images, labels = _digits_arrays()
  sizes = {k: b - a for k, (a, b) in _DIGITS_SPLITS.items()}
  name, start, stop = splits.resolve(spec, sizes, field=field)
  offset = _DIGITS_SPLITS[name][0]
  sl = slice(offset + start, offset + stop)
  return ArraySplit({'inputs': images[sl], 'label': labels[sl]})


# ----------------------------------------------------------------------------- TFDS

def _tfds_builder(name: str, data_dir: str):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # TFDS raises several types for unknown names.
    raise errors.DataError(f'dataset.name={name!r} is not a TFDS dataset ({e}).') from e
  if not builder.info.splits or not _has_array_records(builder):
    raise errors.DataError(
        f'dataset {name!r} is not prepared offline under {data_dir}; set dataset.data_dir (or '
        f'TFDS_DATA_DIR) to a folder holding it in array_record format (e.g. ../shared/'
        f'tensorflow_datasets), or prepare it where the internet is reachable with '
        f'`tfds build {name} --file_format=array_record --data_dir=DIR`.')
  return builder


def _has_array_records(builder) -> bool:
  data_path = pathlib.Path(str(builder.data_path))
  return data_path.is_dir() and any('array_record' in p.name for p in data_path.iterdir())


def _tfds_split(name: str, spec: str, data_dir: str, field: str) -> ArraySplit:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = _tfds_builder(name, data_dir)
  sizes = {k: v.num_examples for k, v in builder.info.splits.items()}
  splits.resolve(spec, sizes, field=field)  # Clear error for a split that does not exist.
  source = tfds.data_source(name, split=spec, data_dir=data_dir)
  n = len(source)
  images, labels = [], []
  chunk = 2048
  for start in range(0, n, chunk):
    records = source.__getitems__(list(range(start, min(n, start + chunk))))
    images.extend(r['image'] for r in records)
    labels.extend(r['label'] for r in records)
  return ArraySplit({'inputs': np.stack(images).astype(np.uint8),
                     'label': np.asarray(labels, np.int32)})


# ----------------------------------------------------------------------------- synthetic

# CIFAR-10's shapes and split sizes filled with seeded uniform noise: the whole training loop (input
# path, augmentation, steps, evaluation) can be timed where the real files are absent, e.g. on a
# machine that cannot fetch them. Labels are noise too, so accuracy on it means nothing.
_SYNTHETIC_SPLITS = {'train': 50_000, 'test': 10_000}


def _synthetic_split(spec: str, field: str) -> ArraySplit:
  name, start, stop = splits.resolve(spec, _SYNTHETIC_SPLITS, field=field)
  rng = np.random.default_rng(sorted(_SYNTHETIC_SPLITS).index(name))
  size = _SYNTHETIC_SPLITS[name]
  images = rng.integers(0, 256, (size, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, size, dtype=np.int32)
  return ArraySplit({'inputs': images[start:stop], 'label': labels[start:stop]})


# ----------------------------------------------------------------------------- public API

def check_name(name: str) -> None:
  if name not in BUILTIN + TFDS_IMAGE:
    raise errors.ConfigError(
        f'dataset.name={name!r} is unknown for image classification; allowed: '
        f'{", ".join(BUILTIN + TFDS_IMAGE)}.')


def info(dataset_config) -> DatasetInfo:
  """Dataset metadata without decoding the data (checks that the dataset is available)."""
  name = dataset_config.name
  check_name(name)
  if name == 'digits':
    sizes = {k: b - a for k, (a, b) in _DIGITS_SPLITS.items()}
    return DatasetInfo(name, 10, (8, 8, 1), sizes)
  if name == 'synthetic_cifar10':
    return DatasetInfo(name, 10, (32, 32, 3), dict(_SYNTHETIC_SPLITS))
  builder = _tfds_builder(name, resolve_data_dir(dataset_config.data_dir))
  sizes = {k: v.num_examples for k, v in builder.info.splits.items()}
  return DatasetInfo(name, builder.info.features['label'].num_classes,
                     tuple(builder.info.features['image'].shape), sizes)


def check_split(dataset_config, spec: str, *, field: str) -> int:
  """Validates a split string and returns its number of examples."""
  ds_info = info(dataset_config)
  _, start, stop = splits.resolve(spec, ds_info.split_sizes, field=field)
  return stop - start


def load(dataset_config, spec: str, *, field: str) -> ArraySplit:
  """Loads one split into memory."""
  name = dataset_config.name
  check_name(name)
  if name == 'digits':
    return _digits_split(spec, field)
  if name == 'synthetic_cifar10':
    return _synthetic_split(spec, field)
  return _tfds_split(name, spec, resolve_data_dir(dataset_config.data_dir), field)
