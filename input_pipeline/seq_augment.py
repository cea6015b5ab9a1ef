"""Training-time augmentation of feature sequences, on the host, per batch (numpy).

Each transformation is one field of ``config.dataset.augment`` and is off at its neutral value:

========================  =======================================================================
``speed_min/speed_max``   speed perturbation: resample an example to ``T / speed`` frames by
                          linear interpolation, speed ~ U[min, max] (1, 1 = off).
``frame_drop``            drop each frame with this probability (0 = off).
``scale_min/scale_max``   multiply an example by a factor ~ U[min, max] (1, 1 = off).
``noise_std``             add Gaussian noise of this std (in normalised feature units; 0 = off).
``time_masks``            SpecAugment time masks per example, each ``U[0, time_mask_max]`` frames,
``time_mask_max``         at most ``time_mask_ratio`` of the example's frames (0 masks = off).
``time_mask_ratio``
``feature_masks``         SpecAugment feature masks, each ``U[0, feature_mask_max]`` features
``feature_mask_max``      (0 masks = off).
========================  =======================================================================

Frames are changed only within each example's real length, so padding stays zero. Transformations
that shorten an example (speed-up, frame dropping) never take it below ``min_frames`` — the
frames a CTC target needs after subsampling — and nothing grows beyond the padded length.
Masked values are set to 0, the training mean after normalisation.
"""

import dataclasses

import numpy as np

from curvelab import errors

# Fields with their neutral (off) values.
FIELDS = {
    'speed_min': 1.0, 'speed_max': 1.0, 'frame_drop': 0.0, 'scale_min': 1.0, 'scale_max': 1.0,
    'noise_std': 0.0, 'time_masks': 0, 'time_mask_max': 0, 'time_mask_ratio': 0.2,
    'feature_masks': 0, 'feature_mask_max': 0,
}


@dataclasses.dataclass(frozen=True)
class Augmenter:
  """The configured augmentation (see the module docstring for the fields)."""
  speed_min: float = 1.0
  speed_max: float = 1.0
  frame_drop: float = 0.0
  scale_min: float = 1.0
  scale_max: float = 1.0
  noise_std: float = 0.0
  time_masks: int = 0
  time_mask_max: int = 0
  time_mask_ratio: float = 0.2
  feature_masks: int = 0
  feature_mask_max: int = 0

  @classmethod
  def from_config(cls, augment_config) -> 'Augmenter':
    """Reads ``config.dataset.augment`` (missing fields are off) and validates it."""
    values = {k: augment_config.get(k, v) for k, v in FIELDS.items()}
    aug = cls(**values)
    aug.validate()
    return aug

  def validate(self) -> None:
    pairs = (('speed_min', 'speed_max'), ('scale_min', 'scale_max'))
    for low, high in pairs:
      if not 0 < getattr(self, low) <= getattr(self, high):
        raise errors.ConfigError(
            f'dataset.augment.{low}={getattr(self, low)} and {high}={getattr(self, high)} must '
            f'satisfy 0 < {low} <= {high}.')
    for field in ('frame_drop', 'time_mask_ratio'):
      if not 0.0 <= getattr(self, field) < 1.0:
        raise errors.ConfigError(f'dataset.augment.{field} must be in [0, 1), got '
                                 f'{getattr(self, field)}.')
    for field in ('noise_std', 'time_masks', 'time_mask_max', 'feature_masks', 'feature_mask_max'):
      if getattr(self, field) < 0:
        raise errors.ConfigError(f'dataset.augment.{field} must be >= 0, got '
                                 f'{getattr(self, field)}.')

  @property
  def active(self) -> bool:
    return any(getattr(self, k) != FIELDS[k] for k in FIELDS if k != 'time_mask_ratio')

  # ------------------------------------------------------------------ per example (ragged)

  def example(self, features: np.ndarray, rng: np.random.Generator, *, min_frames: int,
              max_frames: int) -> np.ndarray:
    """Speed perturbation and frame dropping of one example [T, F]."""
    if self.speed_max != 1.0 or self.speed_min != 1.0:
      features = speed_perturb(features, rng.uniform(self.speed_min, self.speed_max),
                               min_frames=min_frames, max_frames=max_frames)
    if self.frame_drop > 0:
      features = drop_frames(features, rng, self.frame_drop, min_frames=min_frames)
    return features

  # ------------------------------------------------------------------ per batch (padded)

  def batch(self, inputs: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scaling, noise and masking of a padded batch [B, T, F] (padding left at zero)."""
    b, t, f = inputs.shape
    valid = mask[..., None]
    if self.scale_min != 1.0 or self.scale_max != 1.0:
      inputs = inputs * rng.uniform(self.scale_min, self.scale_max, (b, 1, 1)).astype(np.float32)
    if self.noise_std > 0:
      inputs = inputs + (self.noise_std * rng.standard_normal((b, t, f))).astype(np.float32) * valid
    keep = np.ones((b, t, f), np.float32)
    lengths = mask.sum(axis=1).astype(np.int64)
    for i in range(b):
      for _ in range(self.time_masks):
        width_cap = min(self.time_mask_max, int(self.time_mask_ratio * lengths[i]))
        width = int(rng.integers(0, width_cap + 1)) if width_cap > 0 else 0
        if width:
          start = int(rng.integers(0, lengths[i] - width + 1))
          keep[i, start:start + width, :] = 0
      for _ in range(self.feature_masks):
        width = int(rng.integers(0, min(self.feature_mask_max, f) + 1))
        if width:
          start = int(rng.integers(0, f - width + 1))
          keep[i, :, start:start + width] = 0
    return (inputs * keep).astype(np.float32)


def speed_perturb(features: np.ndarray, speed: float, *, min_frames: int = 1,
                  max_frames: int | None = None) -> np.ndarray:
  """Resamples [T, F] to ``round(T / speed)`` frames (clipped to [min_frames, max_frames])."""
  frames = len(features)
  target = int(round(frames / speed))
  target = max(target, min_frames, 1)
  if max_frames is not None:
    target = min(target, max_frames)
  if target == frames or frames < 2:
    return features
  position = np.linspace(0.0, frames - 1, target)
  low = np.floor(position).astype(np.int64)
  high = np.minimum(low + 1, frames - 1)
  frac = (position - low)[:, None].astype(np.float32)
  return ((1 - frac) * features[low] + frac * features[high]).astype(np.float32)


def drop_frames(features: np.ndarray, rng: np.random.Generator, rate: float, *,
                min_frames: int = 1) -> np.ndarray:
  """Drops each frame with probability ``rate``; unchanged if fewer than ``min_frames`` stay."""
  keep = rng.random(len(features)) >= rate
  if keep.sum() < max(min_frames, 1):
    return features
  return features[keep]
