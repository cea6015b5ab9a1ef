"""The reference image augmentations' deterministic math, written once for numpy and jax.numpy.

Each op takes its random numbers already drawn and an array namespace ``xp`` (``numpy`` or
``jax.numpy``). Drawing stays with the caller: the host path (``input_pipeline/augment.py``) draws
from the batch's ``np.random.Generator``, the device path (``input_pipeline/device.py``) from
``jax.random`` inside the compiled step. So both paths apply the same transform to the same draws,
and only the streams differ. Everything here is jittable (static shapes, no data-dependent control
flow) and keeps the dtype of its draws, so the host computes in float64 as it always has.
"""


def crop_boxes(area_frac, log_aspect, u_top, u_left, *, height: int, width: int, xp):
  """torchvision ``RandomResizedCrop`` boxes from per-try draws: the first try that fits wins.

  Args:
    area_frac: [B, tries] box area as a fraction of the image (drawn from ``scale``).
    log_aspect: [B, tries] log of the width / height ratio (drawn from ``log(ratio)``).
    u_top: [B, tries] uniform in [0, 1): the box's vertical position within the room left.
    u_left: [B, tries] uniform in [0, 1): the same horizontally.
    height: image height.
    width: image width.
    xp: ``numpy`` or ``jax.numpy``.

  Returns:
    [B, 4] (top, left, h, w) of whole pixels, in the draws' dtype. An image none of whose tries fits
    gets the whole image (torchvision falls back to a central crop).
  """
  target = (height * width) * area_frac
  aspect = xp.exp(log_aspect)
  w = xp.round(xp.sqrt(target * aspect))
  h = xp.round(xp.sqrt(target / aspect))
  fits = (w > 0) & (h > 0) & (w <= width) & (h <= height)
  top = xp.floor(u_top * (height - h + 1))
  left = xp.floor(u_left * (width - w + 1))
  first = xp.argmax(fits, axis=1)[:, None]  # argmax finds the first True.
  pick = lambda x: xp.take_along_axis(x, first, axis=1)[:, 0]
  boxes = xp.stack([pick(top), pick(left), pick(h), pick(w)], axis=1)
  whole = xp.asarray([0, 0, height, width], dtype=boxes.dtype)
  return xp.where(fits.any(axis=1)[:, None], boxes, whole)


def resize_boxes(images, boxes, out_hw: tuple[int, int], *, xp):
  """Bilinear resize of each image's box to ``out_hw`` (half-pixel centres, edge clamping).

  Args:
    images: [B, H, W, C] any numeric dtype.
    boxes: [B, 4] (top, left, h, w); their dtype sets the precision of the sample coordinates.
    out_hw: output (height, width).
    xp: ``numpy`` or ``jax.numpy``.

  Returns:
    float32 [B, out_h, out_w, C] in the input's value range.
  """
  _, h_in, w_in, _ = images.shape
  top, left, bh, bw = (boxes[:, i:i + 1] for i in range(4))
  # Clamp to the box, not the image: torchvision crops first and then resizes, so pixels outside
  # the crop never bleed into its edges.
  y0, y1, wy = _taps(top, bh, out_hw[0], h_in, xp=xp)  # [B, out_h]
  x0, x1, wx = _taps(left, bw, out_hw[1], w_in, xp=xp)  # [B, out_w]
  wy, wx = wy[:, :, None, None], wx[:, None, :, None]
  img = images.astype(xp.float32)
  b = xp.arange(images.shape[0])[:, None, None]
  gather = lambda yi, xi: img[b, yi[:, :, None], xi[:, None, :]]
  top_row = gather(y0, x0) * (1 - wx) + gather(y0, x1) * wx
  bottom_row = gather(y1, x0) * (1 - wx) + gather(y1, x1) * wx
  return top_row * (1 - wy) + bottom_row * wy


def _taps(start, size, out: int, limit: int, *, xp):
  """One axis of the bilinear resize: the two source indices and the far one's float32 weight.

  Args:
    start: [B, 1] the box's first pixel on this axis.
    size: [B, 1] the box's length on this axis.
    out: output length.
    limit: the image's length on this axis.
    xp: ``numpy`` or ``jax.numpy``.

  Returns:
    ``(lo, hi, weight)``, each [B, out]: int32 indices and the weight of ``hi``.
  """
  hi = xp.minimum(start + size - 1, limit - 1)
  coords = xp.clip(start + (xp.arange(out)[None] + 0.5) * size / out - 0.5, start, hi)
  lo = xp.floor(coords).astype(xp.int32)
  return lo, xp.minimum(lo + 1, hi.astype(xp.int32)), (coords - lo).astype(xp.float32)


def pad_crop(images, top, left, *, padding: int, xp):
  """Windows of each image's size at offsets (top, left) of the image zero-padded on every side.

  Args:
    images: [B, H, W, C]; the dtype is kept.
    top: int [B] in [0, 2 * padding].
    left: int [B] in [0, 2 * padding].
    padding: zero pixels added per side.
    xp: ``numpy`` or ``jax.numpy``.

  Returns:
    [B, H, W, C]: image shifted by (padding - top, padding - left), the uncovered border zero.
  """
  b, h, w, _ = images.shape
  padded = xp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  rows = top[:, None] + xp.arange(h)[None]  # [B, H]
  cols = left[:, None] + xp.arange(w)[None]  # [B, W]
  return padded[xp.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def flip(images, u, *, xp):
  """Mirrors left-right each image whose uniform draw ``u`` [B] is below 1/2; a new array."""
  return xp.where((u < 0.5)[:, None, None, None], images[:, :, ::-1], images)
