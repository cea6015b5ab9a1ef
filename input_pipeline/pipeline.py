"""grain pipelines over in-memory splits: seeded per-epoch shuffle, per-process shard, augment.

Training: a grain ``MapDataset`` whose element ``k`` is the ``k``-th global batch of the run
(epoch ``k // steps_per_epoch``). The example order is ``range(N).shuffle(seed).repeat(E)`` —
grain reshuffles every epoch — and process ``p`` reads its contiguous slice of each global batch,
so the global batch is the same whatever the number of processes. Augmentation is a grain
``random_map`` over the whole local batch, seeded by grain from the element index, so a resumed
iterator (``get_state``/``set_state``, saved in every checkpoint) replays exactly.

Evaluation: every example exactly once, in order; the last batch is padded to full size with
``weight`` 0, so one compiled step serves every batch and no example is dropped.
"""

from typing import Callable

import grain
import numpy as np

from input_pipeline.sources import ArraySplit

Preprocess = Callable[..., dict]


def _read_options() -> grain.ReadOptions:
  # Two threads overlap augmentation of the next batches with the device step; a short prefetch
  # buffer keeps memory small and iterator checkpoints cheap.
  return grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)


def train_dataset(split: ArraySplit, *, global_batch: int, num_epochs: int, seed: int,
                  preprocess: Callable[[dict, np.random.Generator], dict],
                  process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
  """The run's training batches as a random-access grain dataset (one element per step).

  Args:
    split: training examples.
    global_batch: examples per optimizer step over all processes.
    num_epochs: epochs in the run.
    seed: shuffle and augmentation seed.
    preprocess: ``(local_batch, rng) -> batch`` (augmentation, normalisation, ``weight``).
    process_index: this process.
    process_count: all processes.

  Returns:
    A ``MapDataset`` of ``num_epochs * (len(split) // global_batch)`` local batches.
  """
  n = len(split)
  steps_per_epoch = n // global_batch
  local = global_batch // process_count
  order = grain.MapDataset.range(n).shuffle(seed=seed).repeat(num_epochs)

  def indices(k: int) -> np.ndarray:
    epoch, i = divmod(k, steps_per_epoch)
    base = epoch * n + i * global_batch + process_index * local
    return np.fromiter((order[base + j] for j in range(local)), np.int64, count=local)

  batches = grain.MapDataset.range(steps_per_epoch * num_epochs).map(indices).map(split.take)
  return batches.random_map(preprocess, seed=seed + 1)


def train_iterator(dataset: grain.MapDataset, state: dict | None = None):
  """A checkpointable iterator over :func:`train_dataset`, restored from ``state`` if given."""
  it = iter(dataset.to_iter_dataset(_read_options()))
  if state is not None:
    it.set_state(state)
  return it


def eval_batches(split: ArraySplit, *, global_batch: int, preprocess: Callable[[dict], dict],
                 process_index: int = 0, process_count: int = 1):
  """Yields local batches covering every example once; padding carries ``weight`` 0."""
  n = len(split)
  local = global_batch // process_count
  num_batches = -(-n // global_batch)

  def batch(i: int) -> dict:
    idx = i * global_batch + process_index * local + np.arange(local)
    real = (idx < n).astype(np.float32)
    out = preprocess(split.take(np.where(idx < n, idx, 0)))
    if 'weight' in out:  # Per-token weights (language models): zero whole padded examples.
      w = out['weight']
      out['weight'] = w * real.reshape((-1,) + (1,) * (w.ndim - 1))
    else:
      out['weight'] = real
    return out

  ds = grain.MapDataset.range(num_batches).map(batch)
  return iter(ds.to_iter_dataset(_read_options()))


def num_eval_batches(n: int, global_batch: int) -> int:
  return -(-n // global_batch)


class ImagePreprocess:
  """uint8 images -> float32 normalised, with the configured train-time augmentation.

  Attributes mirror ``config.dataset``: ``mean``/``std`` per channel in [0, 1] units,
  ``augment.flip``, ``augment.crop`` (random resized crop) with ``crop_scale``/``crop_ratio``.
  """

  def __init__(self, dataset_config, *, train: bool):
    self.mean = np.asarray(dataset_config.mean, np.float32) * 255.0
    self.std = np.asarray(dataset_config.std, np.float32) * 255.0
    aug = dataset_config.augment
    self.flip = train and bool(aug.flip)
    self.crop = train and bool(aug.crop)
    self.crop_scale = tuple(aug.crop_scale)
    self.crop_ratio = tuple(aug.crop_ratio)

  def __call__(self, batch: dict, rng: np.random.Generator | None = None) -> dict:
    from input_pipeline import augment  # pylint: disable=g-import-not-at-top
    images = batch['inputs']
    if self.crop:
      images = augment.random_resized_crop(images, rng, scale=self.crop_scale,
                                           ratio=self.crop_ratio)
    if self.flip:
      images = augment.random_flip(images, rng)
    images = (images.astype(np.float32) - self.mean) / self.std
    out = dict(batch)
    out['inputs'] = images
    out.setdefault('weight', np.ones(len(images), np.float32))
    return out
