"""Batched host-side image augmentation in numpy (deterministic given a numpy Generator).

``random_resized_crop`` follows torchvision's ``RandomResizedCrop`` (area scale and log-uniform
aspect ratio, up to 10 tries then the whole image, bilinear resize with half-pixel centres), so
runs compare with the reference's PyTorch recipe. The modern-recipe ops (all off unless a config
asks, see :data:`OPTION_DEFAULTS`): ``pad_crop`` (the CIFAR random crop with zero padding),
``rand_augment`` (RandAugment over 14 batched ops) and ``mix_batch`` (mixup / CutMix with soft
targets).

The flip, the resized crop and the padded crop only draw their random numbers here; the transforms
are :mod:`input_pipeline.image_ops`, which the device path (``input_pipeline/device.py``) runs too.
RandAugment and mixup/CutMix are host-only.
"""

import math

import numpy as np

from curvelab import errors
from input_pipeline import image_ops


def random_flip(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Flips each image left-right with probability 1/2. images: [B, H, W, C]."""
  return image_ops.flip(images, rng.random(len(images)), xp=np)


def sample_crop_boxes(rng: np.random.Generator, batch: int, height: int, width: int, *,
                      scale: tuple[float, float], ratio: tuple[float, float],
                      tries: int = 10) -> np.ndarray:
  """Samples crop boxes (top, left, h, w) as floats, one per image, torchvision-style."""
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  # Per try: area, aspect, top, left for the whole batch, in this order, as the stream has always
  # been drawn (so seeded runs keep their boxes).
  draws = [(rng.uniform(scale[0], scale[1], batch), rng.uniform(log_ratio[0], log_ratio[1], batch),
            rng.random(batch), rng.random(batch)) for _ in range(tries)]
  area_frac, log_aspect, u_top, u_left = (np.stack(d, axis=1) for d in zip(*draws))
  return image_ops.crop_boxes(area_frac, log_aspect, u_top, u_left, height=height, width=width,
                              xp=np)


def resize_crops(images: np.ndarray, boxes: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
  """Bilinear resize of each box to ``out_hw`` (half-pixel centres, edge clamping).

  Args:
    images: [B, H, W, C] any numeric dtype.
    boxes: [B, 4] (top, left, h, w).
    out_hw: output (height, width).

  Returns:
    float32 [B, out_h, out_w, C] in the input's value range.
  """
  return image_ops.resize_boxes(images, boxes, out_hw, xp=np)


def random_resized_crop(images: np.ndarray, rng: np.random.Generator, *,
                        scale: tuple[float, float], ratio: tuple[float, float]) -> np.ndarray:
  """Crops a random box of each image and resizes it back to the image size (float32)."""
  _, h, w, _ = images.shape
  boxes = sample_crop_boxes(rng, len(images), h, w, scale=scale, ratio=ratio)
  return resize_crops(images, boxes, (h, w))


# ----------------------------------------------------------------------------- crop with padding

def pad_crop(images: np.ndarray, rng: np.random.Generator, *, padding: int) -> np.ndarray:
  """Pads each image by ``padding`` zero pixels per side and crops a random window of its size.

  The CIFAR standard (pad 4, crop 32): shifts of up to ``padding`` pixels in each direction,
  the uncovered border black. Keeps the dtype. images: [B, H, W, C].
  """
  top = rng.integers(0, 2 * padding + 1, len(images))
  left = rng.integers(0, 2 * padding + 1, len(images))
  return image_ops.pad_crop(images, top, left, padding=padding, xp=np)


# --------------------------------------------------------------------------------- RandAugment
#
# Every op maps float32 images [n, H, W, C] with values in [0, 255] and a strength ``level`` in
# [0, 1] (RandAugment's magnitude / 10) to images of the same shape and range. Ops with a natural
# direction (geometry, enhancement factors) pick a random sign per image, so a magnitude is a
# distance from the identity, not a bias. Each op is batched over the images it is applied to.

MAX_MAGNITUDE = 10.0  # RandAugment's magnitude scale: 0 (identity) .. 10 (strongest).
FILL = 128.0  # Pixels that geometric ops uncover are mid-grey.
_MAX_ROTATE_DEG = 30.0
_MAX_SHEAR = 0.3
_MAX_TRANSLATE = 0.3  # Fraction of the image side (10 pixels on CIFAR, AutoAugment's range).
_MAX_ENHANCE = 0.9  # Enhancement factors 1 +- 0.9 * level.


def _signs(rng: np.random.Generator, n: int) -> np.ndarray:
  return np.where(rng.random(n) < 0.5, -1.0, 1.0)


def _grey(images: np.ndarray) -> np.ndarray:
  """Luma [n, H, W, 1] (ITU-R 601, as PIL's 'L' mode); single-channel images are their own."""
  if images.shape[-1] != 3:
    return images.mean(-1, keepdims=True)
  return images @ np.array([0.299, 0.587, 0.114], np.float32)[:, None]


def _blend(degenerate: np.ndarray, images: np.ndarray, factor: np.ndarray) -> np.ndarray:
  """PIL ImageEnhance: ``degenerate + factor * (image - degenerate)``, clipped to [0, 255]."""
  f = factor.reshape(-1, 1, 1, 1).astype(np.float32)
  return np.clip(degenerate + f * (images - degenerate), 0.0, 255.0)


def _enhance_factors(level: float, rng: np.random.Generator, n: int) -> np.ndarray:
  return 1.0 + _signs(rng, n) * _MAX_ENHANCE * level


def affine(images: np.ndarray, inverse: np.ndarray, *, fill: float = FILL) -> np.ndarray:
  """Warps each image by an affine map about its centre, bilinearly, uncovered pixels ``fill``.

  Args:
    images: float32 [n, H, W, C].
    inverse: [n, 2, 3] maps from output pixel (x, y, 1), centred, to input (x, y), centred.
    fill: value of input pixels outside the image.

  Returns:
    float32 [n, H, W, C].
  """
  n, h, w, c = images.shape
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  ys, xs = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing='ij')
  grid = np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)]).astype(np.float32)  # [3, HW]
  src = inverse.astype(np.float32) @ grid  # [n, 2, HW]
  sx, sy = src[:, 0] + np.float32(cx), src[:, 1] + np.float32(cy)
  x0, y0 = np.floor(sx), np.floor(sy)
  fx, fy = sx - x0, sy - y0
  # The four bilinear taps at once: [n, HW, 4] positions and weights.
  tx = np.stack([x0, x0 + 1, x0, x0 + 1], -1).astype(np.int64)
  ty = np.stack([y0, y0, y0 + 1, y0 + 1], -1).astype(np.int64)
  weights = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], -1)
  inside = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
  weights = np.where(inside, weights, np.float32(0))
  idx = (np.arange(n) * h * w)[:, None, None] + np.clip(ty, 0, h - 1) * w + np.clip(tx, 0, w - 1)
  taps = images.reshape(n * h * w, c)[idx]  # [n, HW, 4, C]
  out = np.einsum('npk,npkc->npc', weights, taps)
  out += (1 - weights.sum(-1, keepdims=True)) * np.float32(fill)  # Taps outside the image.
  return out.astype(np.float32).reshape(n, h, w, c)


def _linear_maps(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray,
                 tx: np.ndarray | float = 0.0, ty: np.ndarray | float = 0.0) -> np.ndarray:
  """[n, 2, 3] maps (x, y) -> (a x + b y + tx, c x + d y + ty) from per-image arrays."""
  n = len(a)
  row = lambda *v: np.stack([np.broadcast_to(np.asarray(x, np.float64), (n,)) for x in v], 1)
  return np.stack([row(a, b, tx), row(c, d, ty)], 1)


def identity(images, level, rng):
  del level, rng
  return images


def rotate(images, level, rng):
  theta = np.deg2rad(_MAX_ROTATE_DEG * level) * _signs(rng, len(images))
  cos, sin = np.cos(theta), np.sin(theta)
  return affine(images, _linear_maps(cos, sin, -sin, cos))


def shear_x(images, level, rng):
  s = _MAX_SHEAR * level * _signs(rng, len(images))
  one, zero = np.ones(len(images)), np.zeros(len(images))
  return affine(images, _linear_maps(one, s, zero, one))


def shear_y(images, level, rng):
  s = _MAX_SHEAR * level * _signs(rng, len(images))
  one, zero = np.ones(len(images)), np.zeros(len(images))
  return affine(images, _linear_maps(one, zero, s, one))


def translate_x(images, level, rng):
  t = _MAX_TRANSLATE * images.shape[2] * level * _signs(rng, len(images))
  one, zero = np.ones(len(images)), np.zeros(len(images))
  return affine(images, _linear_maps(one, zero, zero, one, tx=t))


def translate_y(images, level, rng):
  t = _MAX_TRANSLATE * images.shape[1] * level * _signs(rng, len(images))
  one, zero = np.ones(len(images)), np.zeros(len(images))
  return affine(images, _linear_maps(one, zero, zero, one, ty=t))


def brightness(images, level, rng):
  return _blend(np.zeros_like(images), images, _enhance_factors(level, rng, len(images)))


def color(images, level, rng):
  """Saturation: blends with the grey image (the identity on single-channel images)."""
  return _blend(_grey(images), images, _enhance_factors(level, rng, len(images)))


def contrast(images, level, rng):
  mean = _grey(images).mean(axis=(1, 2, 3), keepdims=True)
  return _blend(mean, images, _enhance_factors(level, rng, len(images)))


def sharpness(images, level, rng):
  """Blends with PIL's SMOOTH-filtered image (3x3, centre 5, others 1); borders stay as they are."""
  smooth = images.copy()
  acc = sum(images[:, 1 + dy:images.shape[1] - 1 + dy, 1 + dx:images.shape[2] - 1 + dx]
            for dy in (-1, 0, 1) for dx in (-1, 0, 1))
  smooth[:, 1:-1, 1:-1] = (acc + 4.0 * images[:, 1:-1, 1:-1]) / 13.0
  return _blend(smooth, images, _enhance_factors(level, rng, len(images)))


def _as_uint8(images: np.ndarray) -> np.ndarray:
  return np.clip(np.round(images), 0, 255).astype(np.uint8)


def posterize(images, level, rng):
  """Keeps the top ``8 - round(4 * level)`` bits of every value (8 = identity, 4 = strongest)."""
  del rng
  drop = int(round(4 * level))
  mask = np.uint8((0xFF << drop) & 0xFF)
  return (_as_uint8(images) & mask).astype(np.float32)


def solarize(images, level, rng):
  """Inverts values at or above ``256 - 256 * level`` (level 0: none inverted)."""
  del rng
  threshold = 256.0 - 256.0 * level
  return np.where(images >= threshold, 255.0 - images, images).astype(np.float32)


def auto_contrast(images, level, rng):
  """Stretches each image's channels to the full [0, 255] range (flat channels unchanged)."""
  del level, rng
  lo = images.min(axis=(1, 2), keepdims=True)
  hi = images.max(axis=(1, 2), keepdims=True)
  span = np.where(hi > lo, hi - lo, 1.0)
  return np.where(hi > lo, (images - lo) * (255.0 / span), images).astype(np.float32)


def equalize(images, level, rng):
  """PIL's histogram equalisation per image and channel, batched through one ``bincount``."""
  del level, rng
  n, h, w, c = images.shape
  values = _as_uint8(images).transpose(0, 3, 1, 2).reshape(n * c, h * w).astype(np.int64)
  rows = np.arange(n * c)[:, None]
  hist = np.bincount((rows * 256 + values).ravel(), minlength=n * c * 256).reshape(n * c, 256)
  # PIL: step = (pixels - count of the last non-empty bin) // 255; lut = (cumsum + step//2)//step.
  last = 255 - np.argmax(hist[:, ::-1] > 0, axis=1)
  step = (h * w - hist[rows[:, 0], last]) // 255
  before = np.cumsum(hist, axis=1) - hist
  safe = np.maximum(step, 1)[:, None]
  lut = np.minimum((before + safe // 2) // safe, 255)
  lut = np.where(step[:, None] > 0, lut, np.arange(256)[None])  # Too few levels: unchanged.
  out = np.take_along_axis(lut, values, axis=1)
  return out.reshape(n, c, h, w).transpose(0, 2, 3, 1).astype(np.float32)


RANDAUGMENT_OPS = {
    'identity': identity, 'auto_contrast': auto_contrast, 'equalize': equalize,
    'rotate': rotate, 'solarize': solarize, 'color': color, 'posterize': posterize,
    'contrast': contrast, 'brightness': brightness, 'sharpness': sharpness,
    'shear_x': shear_x, 'shear_y': shear_y, 'translate_x': translate_x,
    'translate_y': translate_y,
}


def rand_augment(images: np.ndarray, rng: np.random.Generator, *, num_ops: int,
                 magnitude: float, ops: tuple[str, ...] = tuple(RANDAUGMENT_OPS)) -> np.ndarray:
  """RandAugment (Cubuk et al. 2020): ``num_ops`` ops drawn uniformly per image at one magnitude.

  Batched: for each of the ``num_ops`` rounds, every op runs once on the images that drew it.

  Args:
    images: [B, H, W, C] with values in [0, 255] (uint8 or float).
    rng: the batch's generator.
    num_ops: ops applied to each image, one after the other (RandAugment's N).
    magnitude: strength in [0, 10] shared by all ops (RandAugment's M).
    ops: names from :data:`RANDAUGMENT_OPS` to draw from.

  Returns:
    float32 [B, H, W, C] in [0, 255].
  """
  out = images.astype(np.float32)
  level = float(magnitude) / MAX_MAGNITUDE
  fns = [RANDAUGMENT_OPS[name] for name in ops]
  for _ in range(num_ops):
    choice = rng.integers(0, len(fns), len(out))
    for k, fn in enumerate(fns):
      chosen = np.flatnonzero(choice == k)
      if len(chosen):
        out[chosen] = fn(out[chosen], level, rng)
  return out


# --------------------------------------------------------------------------------- mixup / cutmix

def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
  return np.eye(num_classes, dtype=np.float32)[labels]


def mixup(images: np.ndarray, probs: np.ndarray, rng: np.random.Generator, *,
          alpha: float) -> tuple[np.ndarray, np.ndarray]:
  """Mixup (Zhang et al. 2018): ``lam * x + (1 - lam) * x[perm]``, and the same for the targets.

  One ``lam ~ Beta(alpha, alpha)`` per batch and a random partner per image.

  Args:
    images: float [B, H, W, C].
    probs: float32 [B, classes] target distributions (rows sum to one).
    rng: the batch's generator.
    alpha: Beta concentration (> 0).

  Returns:
    ``(images, probs)``, float32, rows of ``probs`` still summing to one.
  """
  lam = np.float32(rng.beta(alpha, alpha))
  perm = rng.permutation(len(images))
  mixed = lam * images.astype(np.float32) + (1 - lam) * images[perm].astype(np.float32)
  return mixed, lam * probs + (1 - lam) * probs[perm]


def cutmix(images: np.ndarray, probs: np.ndarray, rng: np.random.Generator, *,
           alpha: float) -> tuple[np.ndarray, np.ndarray]:
  """CutMix (Yun et al. 2019): pastes a box of a random partner; targets mix by pasted area.

  One box per batch, of area fraction ``1 - lam`` with ``lam ~ Beta(alpha, alpha)``, centred at
  a uniform point and clipped to the image; the targets use the area actually pasted.

  Args and returns as :func:`mixup`.
  """
  _, h, w, _ = images.shape
  lam = rng.beta(alpha, alpha)
  cut = np.sqrt(1.0 - lam)
  ch, cw = int(round(h * cut)), int(round(w * cut))
  cy, cx = rng.integers(0, h), rng.integers(0, w)
  top, bottom = np.clip([cy - ch // 2, cy + ch - ch // 2], 0, h)
  left, right = np.clip([cx - cw // 2, cx + cw - cw // 2], 0, w)
  perm = rng.permutation(len(images))
  out = images.astype(np.float32)  # A copy: the caller's batch is not modified.
  out[:, top:bottom, left:right] = images[perm, top:bottom, left:right]
  kept = np.float32(1.0 - (bottom - top) * (right - left) / (h * w))
  return out, kept * probs + (1 - kept) * probs[perm]


def mix_batch(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, *,
              num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
              prob: float = 1.0, switch_prob: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
  """Mixup and/or CutMix on a batch, returning the images and soft targets ``[B, classes]``.

  Args:
    images: [B, H, W, C].
    labels: int [B].
    rng: the batch's generator.
    num_classes: width of the targets.
    mixup_alpha: mixup's Beta concentration (0 = off).
    cutmix_alpha: CutMix's Beta concentration (0 = off).
    prob: probability that a batch is mixed at all (otherwise one-hot targets).
    switch_prob: with both on, probability of CutMix rather than mixup for a batch.

  Returns:
    ``(images float32, probs float32 [B, num_classes])``; every row of ``probs`` sums to one.
  """
  probs = one_hot(labels, num_classes)
  images = images.astype(np.float32)
  if not (mixup_alpha > 0 or cutmix_alpha > 0) or rng.random() >= prob:
    return images, probs
  use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or rng.random() < switch_prob)
  if use_cutmix:
    return cutmix(images, probs, rng, alpha=cutmix_alpha)
  return mixup(images, probs, rng, alpha=mixup_alpha)


# --------------------------------------------------------------------------------- config

# Train-time augmentation fields beyond flip/crop, with the values that switch them off. Configs
# that predate them (or leave them out) get exactly the old preprocessing.
OPTION_DEFAULTS = {
    'pad_crop': 0,  # Zero padding (pixels per side) of the random crop; 0 = off.
    'randaugment_ops': 0,  # RandAugment ops per image (N); 0 = off.
    'randaugment_magnitude': 9.0,  # RandAugment strength (M) in [0, 10].
    'mixup_alpha': 0.0,  # Mixup Beta concentration; 0 = off.
    'cutmix_alpha': 0.0,  # CutMix Beta concentration; 0 = off.
    'mix_prob': 1.0,  # Probability that a batch is mixed (when mixup or cutmix is on).
    'mix_switch_prob': 0.5,  # With both on: probability of CutMix rather than mixup per batch.
}


def options(aug) -> dict:
  """``dataset.augment``'s extra fields with defaults filled in, validated.

  Raises:
    ConfigError: naming the field and its allowed values.
  """
  opts = {k: aug.get(k, v) for k, v in OPTION_DEFAULTS.items()}
  for field in ('pad_crop', 'randaugment_ops'):
    value = opts[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
      raise errors.ConfigError(f'dataset.augment.{field} must be an integer >= 0, got {value!r}.')
  if not 0.0 <= opts['randaugment_magnitude'] <= MAX_MAGNITUDE:
    raise errors.ConfigError(f'dataset.augment.randaugment_magnitude must be in '
                             f'[0, {MAX_MAGNITUDE:g}], got {opts["randaugment_magnitude"]!r}.')
  for field in ('mixup_alpha', 'cutmix_alpha'):
    if opts[field] < 0:
      raise errors.ConfigError(f'dataset.augment.{field} must be >= 0 (0 = off), got '
                               f'{opts[field]!r}.')
  for field in ('mix_prob', 'mix_switch_prob'):
    if not 0.0 <= opts[field] <= 1.0:
      raise errors.ConfigError(f'dataset.augment.{field} must be in [0, 1], got {opts[field]!r}.')
  return opts


# The fields that switch an op on; the others only tune an op that is on.
_SWITCHES = ('pad_crop', 'randaugment_ops', 'mixup_alpha', 'cutmix_alpha')


def active_options(aug) -> list[str]:
  """Names of the optional host-side ops that ``dataset.augment`` turns on (e.g. ``['pad_crop']``).

  For checks such as "this input path cannot run them": tuning fields with non-zero defaults
  (``randaugment_magnitude``, ``mix_prob``, ``mix_switch_prob``) do not count.
  """
  return [field for field in _SWITCHES if aug.get(field, OPTION_DEFAULTS[field])]
