"""The modern-recipe augmentations (input_pipeline/augment.py) and their place in ImagePreprocess.

Padded crops, each RandAugment op, mixup and CutMix: shapes, value ranges, determinism under a
seed, and soft targets that sum to one and match what was mixed into the images.
"""

import ml_collections
import numpy as np
import pytest

from curvelab import errors
from input_pipeline import augment
from input_pipeline import pipeline


@pytest.fixture(scope='module')
def images():
  """32 random uint8 RGB images, 12x10 (not square, so height/width mix-ups show)."""
  return np.random.default_rng(0).integers(0, 256, (32, 12, 10, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------------- padded crop

def test_pad_crop_keeps_shape_dtype_and_is_deterministic(images):
  out = augment.pad_crop(images, np.random.default_rng(1), padding=3)
  assert out.shape == images.shape and out.dtype == images.dtype
  np.testing.assert_array_equal(out, augment.pad_crop(images, np.random.default_rng(1), padding=3))
  assert not np.array_equal(out, augment.pad_crop(images, np.random.default_rng(2), padding=3))


def test_pad_crop_is_a_window_of_the_zero_padded_image(images):
  """Each output is the padded image's window at some offset in [0, 2p] x [0, 2p]."""
  p = 2
  out = augment.pad_crop(images, np.random.default_rng(3), padding=p)
  padded = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))
  h, w = images.shape[1:3]
  offsets = set()
  for i, image in enumerate(out):
    hits = [(t, l) for t in range(2 * p + 1) for l in range(2 * p + 1)
            if np.array_equal(image, padded[i, t:t + h, l:l + w])]
    assert hits, f'image {i} is not a window of its padded image'
    offsets.add(hits[0])
  assert len(offsets) > 5  # The offsets vary between images.


def test_pad_crop_without_padding_is_identity(images):
  np.testing.assert_array_equal(augment.pad_crop(images, np.random.default_rng(0), padding=0),
                                images)


# ----------------------------------------------------------------------------------- RandAugment

OPS = tuple(augment.RANDAUGMENT_OPS)
# Ops whose result does not depend on the level (they have no strength to set).
LEVEL_FREE = ('auto_contrast', 'equalize')


@pytest.mark.parametrize('name', OPS)
def test_op_shape_range_and_determinism(images, name):
  """Every op: same shape, float32, values in [0, 255], the same output for the same seed."""
  op = augment.RANDAUGMENT_OPS[name]
  x = images.astype(np.float32)
  out = op(x, 0.7, np.random.default_rng(5))
  assert out.shape == x.shape and out.dtype == np.float32
  assert out.min() >= 0.0 and out.max() <= 255.0
  np.testing.assert_array_equal(out, op(x, 0.7, np.random.default_rng(5)))
  np.testing.assert_array_equal(x, images)  # The input is not modified in place.


@pytest.mark.parametrize('name', [n for n in OPS if n not in LEVEL_FREE])
def test_op_at_level_zero_is_identity(images, name):
  x = images.astype(np.float32)
  np.testing.assert_allclose(augment.RANDAUGMENT_OPS[name](x, 0.0, np.random.default_rng(0)), x,
                             atol=1e-3)


@pytest.mark.parametrize('name', [n for n in OPS if n != 'identity'])
def test_op_changes_images(name):
  # Low contrast, so that auto_contrast has something to do, and 32x32: PIL's equalize (and
  # ours) leaves images of fewer than 256 pixels per channel as they are.
  x = np.random.default_rng(0).integers(40, 168, (8, 32, 32, 3)).astype(np.float32)
  out = augment.RANDAUGMENT_OPS[name](x, 1.0, np.random.default_rng(0))
  assert np.abs(out - x).mean() > 1.0


def test_geometric_ops_move_pixels_and_fill_uncovered_area():
  """A full-strength translation of a flat image uncovers a mid-grey band."""
  flat = np.full((4, 10, 10, 1), 10.0, np.float32)
  out = augment.translate_x(flat, 1.0, np.random.default_rng(0))
  assert (out == augment.FILL).any() and (out == 10.0).any()


def test_translate_shifts_by_whole_pixels():
  """3 pixels on a 10-wide image (level 1 = 30 %): an exact shift, the rest filled."""
  x = np.random.default_rng(0).uniform(0, 255, (6, 4, 10, 1)).astype(np.float32)
  out = augment.translate_x(x, 1.0, np.random.default_rng(1))
  for a, b in zip(x, out):
    left = np.array_equal(b[:, :7], a[:, 3:]) and (b[:, 7:] == augment.FILL).all()
    right = np.array_equal(b[:, 3:], a[:, :7]) and (b[:, :3] == augment.FILL).all()
    assert left or right


def test_rotation_turns_about_the_centre():
  """The centre pixel of an odd-sized image stays; a full-strength turn moves its neighbours."""
  x = np.random.default_rng(0).uniform(0, 255, (4, 9, 9, 1)).astype(np.float32)
  out = augment.rotate(x, 1.0, np.random.default_rng(0))
  np.testing.assert_allclose(out[:, 4, 4], x[:, 4, 4], atol=1e-3)
  assert np.abs(out[:, 1:-1, 1:-1] - x[:, 1:-1, 1:-1]).mean() > 10


def test_solarize_full_strength_inverts_everything(images):
  x = images.astype(np.float32)
  np.testing.assert_array_equal(augment.solarize(x, 1.0, None), 255.0 - x)


def test_auto_contrast_stretches_every_channel_to_full_range():
  x = np.random.default_rng(0).uniform(60, 120, (5, 6, 6, 3)).astype(np.float32)
  out = augment.auto_contrast(x, 0.0, None)
  np.testing.assert_allclose(out.min(axis=(1, 2)), 0.0, atol=1e-3)
  np.testing.assert_allclose(out.max(axis=(1, 2)), 255.0, atol=1e-3)


def test_equalize_flattens_the_histogram():
  """A low-contrast image's equalised values spread over the range, keeping their order."""
  x = np.random.default_rng(0).integers(100, 140, (2, 32, 32, 1)).astype(np.float32)
  out = augment.equalize(x, 0.0, None)
  assert out.min() < 20 and out.max() > 235
  order = np.argsort(x[0].ravel(), kind='stable')
  assert (np.diff(out[0].ravel()[order]) >= 0).all()  # Monotone mapping.


def test_posterize_keeps_four_bits_at_full_strength(images):
  out = augment.posterize(images.astype(np.float32), 1.0, None)
  assert set(np.unique(out.astype(np.uint8) & 0x0F)) == {0}


def test_rand_augment_shape_range_determinism(images):
  out = augment.rand_augment(images, np.random.default_rng(0), num_ops=2, magnitude=9)
  assert out.shape == images.shape and out.dtype == np.float32
  assert out.min() >= 0 and out.max() <= 255
  np.testing.assert_array_equal(
      out, augment.rand_augment(images, np.random.default_rng(0), num_ops=2, magnitude=9))
  assert not np.array_equal(
      out, augment.rand_augment(images, np.random.default_rng(1), num_ops=2, magnitude=9))


def test_rand_augment_with_no_ops_or_identity_only_changes_nothing(images):
  x = images.astype(np.float32)
  np.testing.assert_array_equal(
      augment.rand_augment(images, np.random.default_rng(0), num_ops=0, magnitude=9), x)
  np.testing.assert_array_equal(augment.rand_augment(
      images, np.random.default_rng(0), num_ops=3, magnitude=9, ops=('identity',)), x)


# ----------------------------------------------------------------------------------- mixing

CLASSES = 5


def _class_images(labels, hw=(8, 6)):
  """Images whose channels are their one-hot class: mixing them mixes exactly the targets."""
  onehot = np.eye(CLASSES, dtype=np.float32)[labels]
  return np.broadcast_to(onehot[:, None, None, :], (len(labels),) + hw + (CLASSES,)).copy()


@pytest.fixture(scope='module')
def labels():
  return np.random.default_rng(0).integers(0, CLASSES, 64)


@pytest.mark.parametrize('kind', ['mixup', 'cutmix'])
@pytest.mark.parametrize('seed', range(5))
def test_mixed_targets_sum_to_one_and_match_the_images(labels, kind, seed):
  """Mixup: each pixel holds the target mix. CutMix: the image's mean does (area-weighted)."""
  alphas = {'mixup_alpha': 0.8} if kind == 'mixup' else {'cutmix_alpha': 1.0}
  images, probs = augment.mix_batch(_class_images(labels), labels, np.random.default_rng(seed),
                                    num_classes=CLASSES, **alphas)
  assert probs.shape == (len(labels), CLASSES) and probs.dtype == np.float32
  np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
  assert probs.min() >= 0.0
  content = images[:, 0, 0] if kind == 'mixup' else images.mean(axis=(1, 2))
  np.testing.assert_allclose(content, probs, atol=1e-5)
  assert (probs.max(1) < 1.0).any()  # Something was mixed.


def test_mix_batch_is_deterministic_and_off_by_default(labels):
  x = _class_images(labels)
  a = augment.mix_batch(x, labels, np.random.default_rng(3), num_classes=CLASSES,
                        mixup_alpha=0.8, cutmix_alpha=1.0)
  b = augment.mix_batch(x, labels, np.random.default_rng(3), num_classes=CLASSES,
                        mixup_alpha=0.8, cutmix_alpha=1.0)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  images, probs = augment.mix_batch(x, labels, np.random.default_rng(3), num_classes=CLASSES)
  np.testing.assert_array_equal(images, x)
  np.testing.assert_array_equal(probs, np.eye(CLASSES)[labels])


def test_mix_prob_zero_never_mixes(labels):
  x = _class_images(labels)
  _, probs = augment.mix_batch(x, labels, np.random.default_rng(0), num_classes=CLASSES,
                               mixup_alpha=0.8, prob=0.0)
  np.testing.assert_array_equal(probs, np.eye(CLASSES)[labels])


# ----------------------------------------------------------------------------------- preprocess

def _dataset_config(**augment_fields):
  aug = dict(flip=False, crop=False, crop_scale=(0.8, 1.0), crop_ratio=(0.9, 1.1))
  aug.update(augment_fields)
  return ml_collections.ConfigDict(dict(name='digits', mean=(0.5,), std=(0.25,), augment=aug))


@pytest.fixture(scope='module')
def batch():
  rng = np.random.default_rng(0)
  return {'inputs': rng.integers(0, 256, (16, 8, 8, 1), dtype=np.uint8),
          'label': rng.integers(0, 10, 16).astype(np.int32)}


def test_preprocess_without_new_fields_is_unchanged(batch):
  """Configs without the new fields (or with them off) normalise only: no label_probs."""
  expected = (batch['inputs'].astype(np.float32) - 127.5) / 63.75
  for cfg in (_dataset_config(), _dataset_config(**augment.OPTION_DEFAULTS)):
    out = pipeline.ImagePreprocess(cfg, train=True)(batch, np.random.default_rng(0))
    np.testing.assert_allclose(out['inputs'], expected, rtol=1e-6)
    assert set(out) == {'inputs', 'label', 'weight'}


def test_preprocess_mixes_in_training_only(batch):
  cfg = _dataset_config(pad_crop=1, randaugment_ops=2, mixup_alpha=0.8, cutmix_alpha=1.0)
  train = pipeline.ImagePreprocess(cfg, train=True)  # digits: 10 classes from the metadata.
  out = train(batch, np.random.default_rng(0))
  assert out['inputs'].shape == (16, 8, 8, 1) and out['inputs'].dtype == np.float32
  assert out['label_probs'].shape == (16, 10)
  np.testing.assert_allclose(out['label_probs'].sum(1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(out['label'], batch['label'])  # Accuracy's labels are kept.
  out2 = train(batch, np.random.default_rng(0))
  np.testing.assert_array_equal(out['inputs'], out2['inputs'])
  evaluation = pipeline.ImagePreprocess(cfg, train=False)(batch)
  assert 'label_probs' not in evaluation
  np.testing.assert_allclose(evaluation['inputs'],
                             (batch['inputs'].astype(np.float32) - 127.5) / 63.75, rtol=1e-6)


@pytest.mark.parametrize('field, value', [
    ('pad_crop', -1), ('pad_crop', 1.5), ('randaugment_ops', True),
    ('randaugment_magnitude', 11.0), ('mixup_alpha', -0.1), ('cutmix_alpha', -1.0),
    ('mix_prob', 1.5), ('mix_switch_prob', -0.5)])
def test_bad_augment_fields_are_config_errors_naming_the_field(field, value):
  with pytest.raises(errors.ConfigError, match=f'dataset.augment.{field}'):
    pipeline.ImagePreprocess(_dataset_config(**{field: value}), train=True)


def test_active_options_lists_only_switched_on_ops():
  assert augment.active_options(_dataset_config(**augment.OPTION_DEFAULTS).augment) == []
  assert augment.active_options(_dataset_config().augment) == []
  on = _dataset_config(pad_crop=4, mixup_alpha=0.8, randaugment_magnitude=5.0).augment
  assert augment.active_options(on) == ['pad_crop', 'mixup_alpha']
