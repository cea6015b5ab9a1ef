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
  ``augment.flip``, ``augment.crop`` (random resized crop) with ``crop_scale``/``crop_ratio``,
  and the optional fields of :data:`input_pipeline.augment.OPTION_DEFAULTS` (off when absent).
  Training batches go through: resized crop, padded crop, flip, RandAugment (all on [0, 255]
  pixels), normalisation, then mixup/CutMix. Mixing adds ``label_probs`` [B, classes] (the soft
  targets; rows sum to one) and keeps ``label``, the original image's class, for accuracy.
  """

  def __init__(self, dataset_config, *, train: bool, num_classes: int | None = None):
    self.mean = np.asarray(dataset_config.mean, np.float32) * 255.0
    self.std = np.asarray(dataset_config.std, np.float32) * 255.0
    aug = dataset_config.augment
    self.flip = train and bool(aug.flip)
    self.crop = train and bool(aug.crop)
    self.crop_scale = tuple(aug.crop_scale)
    self.crop_ratio = tuple(aug.crop_ratio)
    from input_pipeline import augment  # pylint: disable=g-import-not-at-top
    opts = augment.options(aug)
    self.pad_crop = opts['pad_crop'] if train else 0
    self.randaugment_ops = opts['randaugment_ops'] if train else 0
    self.randaugment_magnitude = float(opts['randaugment_magnitude'])
    self.mixup_alpha = float(opts['mixup_alpha']) if train else 0.0
    self.cutmix_alpha = float(opts['cutmix_alpha']) if train else 0.0
    self.mix_prob = float(opts['mix_prob'])
    self.mix_switch_prob = float(opts['mix_switch_prob'])
    self.num_classes = num_classes
    if self.mixes and num_classes is None:
      # Soft targets need the class count; the dataset's metadata has it (no data is decoded).
      from input_pipeline import sources  # pylint: disable=g-import-not-at-top
      self.num_classes = sources.info(dataset_config).num_classes

  @property
  def mixes(self) -> bool:
    """Whether training batches get mixup/CutMix soft targets (``label_probs``)."""
    return self.mixup_alpha > 0 or self.cutmix_alpha > 0

  def __call__(self, batch: dict, rng: np.random.Generator | None = None) -> dict:
    from input_pipeline import augment  # pylint: disable=g-import-not-at-top
    images = batch['inputs']
    if self.crop:
      images = augment.random_resized_crop(images, rng, scale=self.crop_scale,
                                           ratio=self.crop_ratio)
    if self.pad_crop:
      images = augment.pad_crop(images, rng, padding=self.pad_crop)
    if self.flip:
      images = augment.random_flip(images, rng)
    if self.randaugment_ops:
      images = augment.rand_augment(images, rng, num_ops=self.randaugment_ops,
                                    magnitude=self.randaugment_magnitude)
    images = (images.astype(np.float32) - self.mean) / self.std
    out = dict(batch)
    if self.mixes:
      # After normalisation: mixing is linear, so this equals mixing raw pixels.
      images, out['label_probs'] = augment.mix_batch(
          images, batch['label'], rng, num_classes=self.num_classes,
          mixup_alpha=self.mixup_alpha, cutmix_alpha=self.cutmix_alpha, prob=self.mix_prob,
          switch_prob=self.mix_switch_prob)
    out['inputs'] = images
    out.setdefault('weight', np.ones(len(images), np.float32))
    return out
