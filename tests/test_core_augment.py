"""Host-side augmentation (input_pipeline/augment.py): crops, resizes and flips in numpy."""

import hashlib

import numpy as np
import pytest

from input_pipeline import augment


@pytest.fixture(scope='module')
def images():
  """64 random uint8 RGB images, 16x12 (not square, so height/width mix-ups show)."""
  return np.random.default_rng(0).integers(0, 256, (64, 16, 12, 3), dtype=np.uint8)


def _crop(images, seed, scale=(0.5, 1.0), ratio=(0.75, 1.333)):
  return augment.random_resized_crop(images, np.random.default_rng(seed), scale=scale, ratio=ratio)


def test_crop_keeps_shape_and_returns_float32(images):
  out = _crop(images, 0)
  assert out.shape == images.shape
  assert out.dtype == np.float32


def test_crop_stays_within_each_images_value_range(images):
  """Bilinear interpolation mixes pixels of the same image only: no new extremes."""
  out = _crop(images, 1)
  lo = images.reshape(len(images), -1).min(1)
  hi = images.reshape(len(images), -1).max(1)
  flat = out.reshape(len(out), -1)
  assert (flat.min(1) >= lo - 1e-4).all() and (flat.max(1) <= hi + 1e-4).all()


def test_crop_is_deterministic_per_seed(images):
  np.testing.assert_array_equal(_crop(images, 3), _crop(images, 3))
  assert not np.array_equal(_crop(images, 3), _crop(images, 4))


def test_full_scale_square_ratio_crop_is_identity(images):
  """scale=(1,1), ratio=(1,1) on a square image: the box is the image, the resize exact."""
  square = images[:, :12]
  out = _crop(square, 0, scale=(1.0, 1.0), ratio=(1.0, 1.0))
  np.testing.assert_allclose(out, square.astype(np.float32), atol=1e-4)


def test_crop_boxes_inside_image_and_in_configured_ranges():
  """Boxes lie inside the image; their area fraction and aspect ratio respect scale/ratio.

  Sides are rounded to whole pixels, so on a 100x100 image (sides >= 70 for scale >= 0.5) the
  area fraction may be off by ~1.5% and the aspect ratio by ~1.5%.
  """
  h = w = 100
  scale, ratio = (0.5, 0.9), (0.75, 4 / 3)
  boxes = augment.sample_crop_boxes(np.random.default_rng(0), 2000, h, w, scale=scale,
                                    ratio=ratio)
  top, left, bh, bw = boxes.T
  assert (top >= 0).all() and (left >= 0).all()
  assert (top + bh <= h).all() and (left + bw <= w).all()
  assert (bh >= 1).all() and (bw >= 1).all()
  area = bh * bw / (h * w)
  assert area.min() >= scale[0] * 0.985 and area.max() <= scale[1] * 1.015
  aspect = bw / bh
  assert aspect.min() >= ratio[0] * 0.985 and aspect.max() <= ratio[1] * 1.015
  # The ranges are used, not just respected.
  assert area.min() < 0.55 and area.max() > 0.85
  assert aspect.min() < 0.8 and aspect.max() > 1.25
  # Boxes are whole pixels at whole offsets.
  np.testing.assert_array_equal(boxes, np.round(boxes))


def test_impossible_box_falls_back_to_whole_image():
  """A scale whose boxes never fit (area > image) gives the whole image after the tries."""
  boxes = augment.sample_crop_boxes(np.random.default_rng(0), 5, 10, 10, scale=(2.0, 3.0),
                                    ratio=(1.0, 1.0))
  np.testing.assert_array_equal(boxes, np.tile([0, 0, 10, 10], (5, 1)))


def test_resize_of_a_box_samples_that_box():
  """Resizing the 2x2 box at (1, 1) of a ramp image to 2x2 returns exactly those pixels."""
  image = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
  out = augment.resize_crops(image, np.array([[1.0, 1.0, 2.0, 2.0]]), (2, 2))
  np.testing.assert_allclose(out[0, :, :, 0], [[5, 6], [9, 10]])


def test_flip_flips_about_half_left_right():
  """Each image is either unchanged or mirrored left-right; about half are mirrored."""
  many = np.random.default_rng(1).integers(0, 256, (2000, 4, 5, 1), dtype=np.uint8)
  out = augment.random_flip(many, np.random.default_rng(0))
  assert out.dtype == many.dtype and out.shape == many.shape
  same = (out == many).all(axis=(1, 2, 3))
  mirrored = (out == many[:, :, ::-1]).all(axis=(1, 2, 3))
  assert (same | mirrored).all()
  assert 0.45 < mirrored.mean() < 0.55
  # The input is not modified in place.
  assert not np.shares_memory(out, many)


def test_flip_is_deterministic_per_seed(images):
  a = augment.random_flip(images, np.random.default_rng(7))
  np.testing.assert_array_equal(a, augment.random_flip(images, np.random.default_rng(7)))
  assert not np.array_equal(a, augment.random_flip(images, np.random.default_rng(8)))


def test_upscaled_crop_samples_only_inside_its_box():
  """torchvision resized_crop: crop the box, then bilinear-resize it (half-pixel centres).

  Box rows/cols 1..2 of a 4x4 image (values 10*index) resized to 4x4: source coordinates inside
  the crop are (i + 0.5) * 2/4 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped to the crop: 0, 0.25, 0.75,
  1. Pixel (r, c) of the crop is 50 + 40 r + 10 c.
  """
  image = (np.arange(16).reshape(1, 4, 4, 1) * 10).astype(np.uint8)
  out = augment.resize_crops(image, np.array([[1.0, 1.0, 2.0, 2.0]]), (4, 4))[0, :, :, 0]
  coords = np.array([0.0, 0.25, 0.75, 1.0])
  expected = 50 + 40 * coords[:, None] + 10 * coords[None, :]
  np.testing.assert_allclose(out, expected, atol=1e-4)


def _digest(array: np.ndarray) -> str:
  """A short fingerprint of an array's exact bytes, dtype and shape."""
  array = np.ascontiguousarray(array)
  data = array.tobytes() + str(array.dtype).encode() + str(array.shape).encode()
  return hashlib.sha256(data).hexdigest()[:16]


def test_host_stream_is_unchanged():
  """Seeded host augmentation reproduces the outputs recorded before the ops moved to image_ops.

  Resumed and repeated runs replay their batches only if a Generator seed keeps giving the same
  pixels and consumes the same random numbers; the last draw checks the latter.
  """
  images = np.random.default_rng(0).integers(0, 256, (8, 10, 7, 3), dtype=np.uint8)
  assert _digest(augment.random_flip(images, np.random.default_rng(11))) == '6d27335b458b1610'
  boxes = augment.sample_crop_boxes(np.random.default_rng(12), 8, 10, 7, scale=(0.08, 1.0),
                                    ratio=(0.75, 4 / 3))
  np.testing.assert_array_equal(boxes, [[3, 0, 4, 5], [3, 2, 5, 4], [1, 2, 5, 4], [1, 3, 4, 4],
                                        [3, 1, 6, 5], [5, 0, 5, 4], [3, 0, 7, 7], [6, 2, 4, 4]])
  assert boxes.dtype == np.float64
  never_fits = augment.sample_crop_boxes(np.random.default_rng(13), 6, 10, 7, scale=(0.9, 1.0),
                                         ratio=(3.0, 4.0))
  np.testing.assert_array_equal(never_fits, np.tile([0, 0, 10, 7], (6, 1)))
  crops = augment.random_resized_crop(images, np.random.default_rng(14), scale=(0.08, 1.0),
                                      ratio=(0.75, 4 / 3))
  assert _digest(crops) == '736a420ac02a6b7a'
  padded = augment.pad_crop(images, np.random.default_rng(15), padding=2)
  assert _digest(padded) == '141ce6e11bca48a3'
  resized = augment.resize_crops(images, np.array([[1.0, 2.0, 5.0, 4.0]] * 8), (9, 6))
  assert _digest(resized) == 'c7b9864534b1a316'
  # The training order (ImagePreprocess): resized crop, padded crop, flip from one generator.
  rng = np.random.default_rng(16)
  chain = augment.random_resized_crop(images, rng, scale=(0.5, 1.0), ratio=(0.8, 1.25))
  chain = augment.random_flip(augment.pad_crop(chain, rng, padding=1), rng)
  assert _digest(chain) == '7230f2071a351671'
  assert rng.random() == 0.2849663171771354
