"""Batched host-side image augmentation in numpy (deterministic given a numpy Generator).

``random_resized_crop`` follows torchvision's ``RandomResizedCrop`` (area scale and log-uniform
aspect ratio, up to 10 tries then the whole image, bilinear resize with half-pixel centres), so
runs compare with the reference's PyTorch recipe.
"""

import math

import numpy as np


def random_flip(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Flips each image left-right with probability 1/2. images: [B, H, W, C]."""
  flip = rng.random(len(images)) < 0.5
  out = images.copy()
  out[flip] = out[flip, :, ::-1]
  return out


def sample_crop_boxes(rng: np.random.Generator, batch: int, height: int, width: int, *,
                      scale: tuple[float, float], ratio: tuple[float, float],
                      tries: int = 10) -> np.ndarray:
  """Samples crop boxes (top, left, h, w) as floats, one per image, torchvision-style."""
  area = height * width
  boxes = np.zeros((batch, 4), np.float64)
  done = np.zeros(batch, bool)
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(tries):
    target = area * rng.uniform(scale[0], scale[1], batch)
    aspect = np.exp(rng.uniform(log_ratio[0], log_ratio[1], batch))
    w = np.round(np.sqrt(target * aspect))
    h = np.round(np.sqrt(target / aspect))
    ok = (~done) & (w > 0) & (h > 0) & (w <= width) & (h <= height)
    top = np.floor(rng.random(batch) * (height - h + 1))
    left = np.floor(rng.random(batch) * (width - w + 1))
    boxes[ok] = np.stack([top, left, h, w], 1)[ok]
    done |= ok
  boxes[~done] = (0, 0, height, width)  # torchvision falls back to a central crop; ours is whole.
  return boxes


def resize_crops(images: np.ndarray, boxes: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
  """Bilinear resize of each box to ``out_hw`` (half-pixel centres, edge clamping).

  Args:
    images: [B, H, W, C] any numeric dtype.
    boxes: [B, 4] (top, left, h, w).
    out_hw: output (height, width).

  Returns:
    float32 [B, out_h, out_w, C] in the input's value range.
  """
  b, h_in, w_in, _ = images.shape
  oh, ow = out_hw
  top, left, bh, bw = (boxes[:, i:i + 1] for i in range(4))
  ys = top + (np.arange(oh)[None] + 0.5) * bh / oh - 0.5  # [B, oh]
  xs = left + (np.arange(ow)[None] + 0.5) * bw / ow - 0.5  # [B, ow]
  ys = np.clip(ys, 0, h_in - 1)
  xs = np.clip(xs, 0, w_in - 1)
  y0 = np.floor(ys).astype(np.int64)
  x0 = np.floor(xs).astype(np.int64)
  y1 = np.minimum(y0 + 1, h_in - 1)
  x1 = np.minimum(x0 + 1, w_in - 1)
  wy = (ys - y0)[:, :, None, None].astype(np.float32)
  wx = (xs - x0)[:, None, :, None].astype(np.float32)
  bidx = np.arange(b)[:, None, None]
  img = images.astype(np.float32)

  def gather(yi, xi):
    return img[bidx, yi[:, :, None], xi[:, None, :]]

  top_row = gather(y0, x0) * (1 - wx) + gather(y0, x1) * wx
  bottom_row = gather(y1, x0) * (1 - wx) + gather(y1, x1) * wx
  return top_row * (1 - wy) + bottom_row * wy


def random_resized_crop(images: np.ndarray, rng: np.random.Generator, *,
                        scale: tuple[float, float], ratio: tuple[float, float]) -> np.ndarray:
  """Crops a random box of each image and resizes it back to the image size (float32)."""
  _, h, w, _ = images.shape
  boxes = sample_crop_boxes(rng, len(images), h, w, scale=scale, ratio=ratio)
  return resize_crops(images, boxes, (h, w))
