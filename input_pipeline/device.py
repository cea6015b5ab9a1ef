"""A device-resident input path for datasets that fit in device memory.

The decoded training split (uint8, e.g. CIFAR-10's 150 MB) is put on the devices once. Each epoch
only its order travels: the same grain permutation the host path uses, as one int32 array of
``steps x batch`` indices (180 KB for CIFAR-10). Gathering, the reference augmentations (random
resized crop, horizontal flip, and the CIFAR padded crop) and normalisation then run inside the
compiled step, batched, so a step needs no host work at all.

Randomness is ``fold_in(key(seed), step)`` per step, split once per op, each op drawing one row
per example of the batch, so it is independent of how steps are grouped into compiled calls and of
resumption. Only the drawing is this module's: the transforms are :mod:`input_pipeline.image_ops`,
the same code the host path runs in numpy. The draws are not the numpy stream of the host path:
with augmentation on, the two paths apply the same transforms to draws from the same distributions
(tests compare their statistics); with augmentation off they produce identical batches.
"""

import math

import grain
import jax
import jax.numpy as jnp
import numpy as np

from input_pipeline import image_ops
from input_pipeline.sources import ArraySplit


class EpochOrder:
  """The training order of the host path (grain's per-epoch shuffle) as index arrays."""

  def __init__(self, n: int, *, global_batch: int, num_epochs: int, seed: int):
    self.n, self.global_batch = n, global_batch
    self.steps_per_epoch = n // global_batch
    self._order = grain.MapDataset.range(n).shuffle(seed=seed).repeat(num_epochs)

  def indices(self, start_step: int, count: int) -> np.ndarray:
    """Global example indices of steps ``[start_step, start_step + count)``: int32 [count, B]."""
    out = np.empty((count, self.global_batch), np.int32)
    for row, step in enumerate(range(start_step, start_step + count)):
      epoch, i = divmod(step, self.steps_per_epoch)
      base = epoch * self.n + i * self.global_batch
      out[row] = [self._order[base + j] for j in range(self.global_batch)]
    return out


def _crop_boxes(key, batch: int, height: int, width: int, *, scale, ratio, tries: int = 10):
  """torchvision-style RandomResizedCrop boxes (top, left, h, w) as float32 [B, 4]."""
  k_area, k_ratio, k_top, k_left = jax.random.split(key, 4)
  area_frac = jax.random.uniform(k_area, (batch, tries), minval=scale[0], maxval=scale[1])
  log_aspect = jax.random.uniform(k_ratio, (batch, tries), minval=math.log(ratio[0]),
                                  maxval=math.log(ratio[1]))
  # One position per example serves every try: only the chosen try's is used, so this draws from
  # the host's distribution with fewer random numbers.
  per_try = lambda u: jnp.broadcast_to(u[:, None], (batch, tries))
  u_top = per_try(jax.random.uniform(k_top, (batch,)))
  u_left = per_try(jax.random.uniform(k_left, (batch,)))
  return image_ops.crop_boxes(area_frac, log_aspect, u_top, u_left, height=height, width=width,
                              xp=jnp)


# The optional ``dataset.augment`` ops (``augment.active_options``) this path runs on the device;
# the others (RandAugment, mixup, CutMix) are host-only.
DEVICE_OPTIONS = ('pad_crop',)


def pad_crop(images, key, *, padding: int):
  """The CIFAR crop (zero padding, random window of the image size) of a batch, on the device.

  Same distribution as the host's ``augment.pad_crop``: offsets uniform in [0, 2 * padding].
  """
  offsets = jax.random.randint(key, (images.shape[0], 2), 0, 2 * padding + 1)
  return image_ops.pad_crop(images, offsets[:, 0], offsets[:, 1], padding=padding, xp=jnp)


def augment(images, key, *, flip: bool, crop: bool, scale, ratio, padding: int = 0):
  """Augmentation of a float batch [B, H, W, C] on the device, in the host path's order."""
  b, h, w, _ = images.shape
  k_crop, k_flip, k_pad = jax.random.split(key, 3)
  if crop:
    boxes = _crop_boxes(k_crop, b, h, w, scale=scale, ratio=ratio)
    images = image_ops.resize_boxes(images, boxes, (h, w), xp=jnp)
  if padding:
    images = pad_crop(images, k_pad, padding=padding)
  if flip:
    images = image_ops.flip(images, jax.random.uniform(k_flip, (b,)), xp=jnp)
  return images


class DeviceImages:
  """An image split on the devices plus the batch function the compiled step calls.

  Args:
    split: the decoded split (``inputs`` uint8 [N, H, W, C], ``label`` int32 [N]).
    dataset_config: ``config.dataset`` (mean, std, augment).
    train: whether to augment.
    seed: the run's seed.
  """

  def __init__(self, split: ArraySplit, dataset_config, *, train: bool, seed: int):
    self.arrays = {'inputs': split.arrays['inputs'], 'label': split.arrays['label']}
    self.mean = tuple(float(m) * 255.0 for m in dataset_config.mean)
    self.std = tuple(float(s) * 255.0 for s in dataset_config.std)
    aug = dataset_config.augment
    self.flip = train and bool(aug.flip)
    self.crop = train and bool(aug.crop)
    self.scale, self.ratio = tuple(aug.crop_scale), tuple(aug.crop_ratio)
    self.padding = int(aug.get('pad_crop', 0)) if train else 0
    self.seed = seed

  def put(self, replicated_sharding) -> dict:
    """The split on every device (replicated: any device may need any example)."""
    return {k: jax.device_put(v, replicated_sharding) for k, v in self.arrays.items()}

  def batch(self, data: dict, indices, step):
    """Gathers, augments and normalises the examples ``indices`` for optimizer step ``step``."""
    images = jnp.take(data['inputs'], indices, axis=0).astype(jnp.float32)
    if self.flip or self.crop or self.padding:
      key = jax.random.fold_in(jax.random.key(self.seed), step)
      images = augment(images, key, flip=self.flip, crop=self.crop, scale=self.scale,
                       ratio=self.ratio, padding=self.padding)
    images = (images - jnp.asarray(self.mean)) / jnp.asarray(self.std)
    return {'inputs': images, 'label': jnp.take(data['label'], indices, axis=0),
            'weight': jnp.ones(indices.shape, jnp.float32)}
