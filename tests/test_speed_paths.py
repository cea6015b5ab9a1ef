"""The fast paths keep the core's guarantees: device-resident input and scanned multi-step calls
train like the plain host path, resume exactly, and bf16 compute keeps float32 parameters."""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from input_pipeline import augment as host_aug
from input_pipeline import device as device_aug
from input_pipeline import image_ops
from tests import helpers
import train


def _run(tmp_path_factory, name, **fields):
  workdir = tmp_path_factory.mktemp(name)
  fields = {'loop__num_epochs': 2, 'loop__metric_writer': 'events', **fields}
  summary = train.train_and_evaluate(helpers.tiny_config(**fields), str(workdir))
  return helpers.without_timing(helpers.read_history(workdir)), summary, workdir


@pytest.fixture(scope='module')
def host_run(tmp_path_factory):
  return _run(tmp_path_factory, 'host')


def _assert_histories_close(got, want, rel=1e-5):
  assert [r['epoch'] for r in got] == [r['epoch'] for r in want]
  for g, w in zip(got, want):
    for key in ('train_loss', 'train_accuracy', 'val_loss', 'val_accuracy', 'learning_rate',
                'grad_norm'):
      assert g[key] == pytest.approx(w[key], rel=rel, abs=1e-7), key


def test_scanned_steps_equal_step_by_step(tmp_path_factory, host_run):
  """steps_per_call=4 (8 steps/epoch: two scanned calls) trains as 8 single calls do."""
  chunked, _, _ = _run(tmp_path_factory, 'host_k4', speed__steps_per_call=4)
  _assert_histories_close(chunked, host_run[0])


def test_device_path_equals_host_path_without_augmentation(tmp_path_factory, host_run):
  """Same seed, augmentation off: the device-resident path reads the same batches."""
  device, summary, _ = _run(tmp_path_factory, 'device', speed__input_mode='device')
  _assert_histories_close(device, host_run[0])
  assert summary['test_accuracy'] == pytest.approx(host_run[1]['test_accuracy'], abs=1e-6)


def test_device_path_with_chunks_resumes_exactly(tmp_path_factory):
  straight, _, _ = _run(tmp_path_factory, 'dev_straight', speed__input_mode='device', speed__steps_per_call=3)
  workdir = tmp_path_factory.mktemp('dev_resumed')
  config = helpers.tiny_config(loop__num_epochs=1, loop__metric_writer='events', speed__input_mode='device',
                               speed__steps_per_call=3)
  train.train_and_evaluate(config, str(workdir))
  config.loop.num_epochs = 2
  train.train_and_evaluate(config, str(workdir))
  assert helpers.without_timing(helpers.read_history(workdir)) == straight


def test_device_resize_equals_host_resize_for_the_same_boxes():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (6, 12, 10, 3)).astype(np.uint8)
  boxes = host_aug.sample_crop_boxes(rng, 6, 12, 10, scale=(0.3, 1.0), ratio=(0.75, 1.33))
  want = host_aug.resize_crops(images, boxes, (12, 10))
  # As device.augment calls it: float32 images and boxes, compiled.
  got = jax.jit(lambda im, b: image_ops.resize_boxes(im, b, (12, 10), xp=jnp))(
      jnp.asarray(images, jnp.float32), jnp.asarray(boxes, jnp.float32))
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-3)


def _crop_draws(rng, batch, tries):
  """float32 draws for image_ops.crop_boxes: most rows fit at some try, the last two never do.

  Area fractions span [0.05, 1.6): on a 12x10 image a try whose box is larger than the image
  fails, so some rows take a later try than the first; the last two rows get only impossible
  areas (> 1) and must fall back to the whole image.
  """
  area = rng.uniform(0.05, 1.6, (batch, tries))
  area[-2:] = rng.uniform(1.2, 2.0, (2, tries))
  log_aspect = rng.uniform(np.log(0.5), np.log(2.0), (batch, tries))
  u_top, u_left = rng.random((2, batch, tries))
  return [x.astype(np.float32) for x in (area, log_aspect, u_top, u_left)]


def test_shared_crop_boxes_are_identical_under_numpy_and_jax():
  """One definition of the box math: the same draws give the same boxes on host and device."""
  h, w, tries = 12, 10, 10
  draws = _crop_draws(np.random.default_rng(5), 200, tries)
  host = image_ops.crop_boxes(*draws, height=h, width=w, xp=np)
  dev = jax.jit(lambda *d: image_ops.crop_boxes(*d, height=h, width=w, xp=jnp))(*draws)
  np.testing.assert_array_equal(np.asarray(dev), host)
  np.testing.assert_array_equal(host[-2:], [[0, 0, h, w]] * 2)  # The fallback, on both.
  # Some rows find their box after a first try that cannot fit (area > 1.1: over 132 pixels
  # even after rounding, the image has 120).
  later = (draws[0][:-2, 0] > 1.1) & (host[:-2, 2:] != [h, w]).any(1)
  assert later.any()


def test_shared_resize_is_equal_under_numpy_and_jax():
  """One definition of the bilinear resize: down- and up-sampling agree to float32 rounding."""
  rng = np.random.default_rng(6)
  images = rng.integers(0, 256, (40, 12, 10, 3)).astype(np.uint8)
  boxes = image_ops.crop_boxes(*_crop_draws(rng, 40, 10), height=12, width=10, xp=np)
  resize = jax.jit(lambda im, b, out_hw: image_ops.resize_boxes(im, b, out_hw, xp=jnp),
                   static_argnums=2)
  for out_hw in ((12, 10), (5, 4), (20, 17)):
    host = image_ops.resize_boxes(images, boxes, out_hw, xp=np)
    dev = resize(jnp.asarray(images), jnp.asarray(boxes), out_hw)
    assert dev.dtype == jnp.float32 and dev.shape == host.shape
    np.testing.assert_allclose(np.asarray(dev), host, rtol=1e-5, atol=1e-3)


def test_shared_pad_crop_and_flip_are_identical_under_numpy_and_jax():
  rng = np.random.default_rng(7)
  images = rng.integers(0, 256, (30, 9, 7, 2)).astype(np.float32)
  top, left = rng.integers(0, 7, (2, 30))
  u = rng.random(30).astype(np.float32)
  host = image_ops.flip(image_ops.pad_crop(images, top, left, padding=3, xp=np), u, xp=np)
  dev = jax.jit(lambda im, t, l, v: image_ops.flip(
      image_ops.pad_crop(im, t, l, padding=3, xp=jnp), v, xp=jnp))(images, top, left, u)
  np.testing.assert_array_equal(np.asarray(dev), host)


def test_device_and_host_crop_boxes_have_the_same_distribution():
  n, h, w = 20000, 32, 32
  scale, ratio = (0.8, 1.0), (0.9, 1.1)
  host = host_aug.sample_crop_boxes(np.random.default_rng(1), n, h, w, scale=scale, ratio=ratio)
  dev = np.asarray(device_aug._crop_boxes(  # pylint: disable=protected-access
      jax.random.key(1), n, h, w, scale=scale, ratio=ratio))
  for boxes in (host, dev):
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= h).all()
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 1] + boxes[:, 3] <= w).all()
  stats = lambda b: np.array([(b[:, 2] * b[:, 3]).mean() / (h * w), (b[:, 3] / b[:, 2]).mean(),
                              b[:, 0].mean(), b[:, 1].mean(), (b[:, 2] * b[:, 3]).std() / (h * w)])
  np.testing.assert_allclose(stats(dev), stats(host), rtol=0.02, atol=0.02)


def test_device_flip_rate_and_augmentation_keeps_range():
  images = jnp.broadcast_to(jnp.arange(8.0)[None, None, :, None], (4000, 8, 8, 1))
  out = device_aug.augment(images, jax.random.key(0), flip=True, crop=True, scale=(0.8, 1.0),
                           ratio=(0.9, 1.1))
  assert out.shape == images.shape
  assert float(out.min()) >= 0.0 and float(out.max()) <= 7.0
  flipped = np.asarray(out[:, 4, 0, 0] > out[:, 4, -1, 0])
  assert abs(flipped.mean() - 0.5) < 0.03


def test_bf16_compute_trains_and_keeps_float32_parameters(tmp_path_factory, host_run):
  history, _, workdir = _run(tmp_path_factory, 'bf16', speed__compute_dtype='bfloat16', loop__num_epochs=3)
  assert history[-1]['train_loss'] < history[0]['train_loss']
  step = max(helpers.checkpoint_steps(workdir))
  params = helpers.checkpoint_params(workdir, step)
  assert {np.asarray(x).dtype for x in jax.tree.leaves(params)} == {np.dtype('float32')}


def _window_offsets(original, cropped, padding):
  """The (top, left) offset of each cropped image inside its zero-padded original, found by search."""
  b, h, w, _ = original.shape
  padded = np.pad(original, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  offsets = []
  for i in range(b):
    hits = [(t, l) for t in range(2 * padding + 1) for l in range(2 * padding + 1)
            if np.array_equal(padded[i, t:t + h, l:l + w], cropped[i])]
    assert len(hits) == 1, (i, hits)
    offsets.append(hits[0])
  return np.asarray(offsets)


def test_device_pad_crop_is_a_padded_window_with_the_host_distribution():
  rng = np.random.default_rng(7)
  padding, n = 3, 1500
  images = rng.integers(1, 256, (n, 9, 9, 2)).astype(np.float32)  # No zeros: windows are unique.
  dev = np.asarray(device_aug.pad_crop(jnp.asarray(images), jax.random.key(3), padding=padding))
  host = host_aug.pad_crop(images, np.random.default_rng(4), padding=padding)
  assert dev.shape == images.shape and dev.dtype == np.float32
  dev_off = _window_offsets(images, dev, padding)
  host_off = _window_offsets(images, host, padding)
  # Every offset in [0, 2p] is drawn, uniformly and independently per axis, on both paths.
  for offsets in (dev_off, host_off):
    counts = np.bincount(offsets[:, 0] * (2 * padding + 1) + offsets[:, 1],
                         minlength=(2 * padding + 1) ** 2)
    assert counts.min() > 0
    np.testing.assert_allclose(offsets.mean(0), [padding, padding], atol=0.15)
    np.testing.assert_allclose(offsets.std(0), np.sqrt(((2 * padding + 1) ** 2 - 1) / 12), rtol=0.05)


def test_device_augment_applies_pad_crop_only_when_asked():
  images = jnp.asarray(np.random.default_rng(8).integers(1, 256, (64, 8, 8, 1)), jnp.float32)
  same = device_aug.augment(images, jax.random.key(0), flip=False, crop=False, scale=(1, 1),
                            ratio=(1, 1), padding=0)
  np.testing.assert_array_equal(same, images)
  shifted = device_aug.augment(images, jax.random.key(0), flip=False, crop=False, scale=(1, 1),
                               ratio=(1, 1), padding=2)
  assert not np.array_equal(shifted, images)
  assert float((shifted == 0).mean()) > 0.05  # Zero border came in with the shifts.


def test_synthetic_cifar10_has_cifar_shapes_and_is_deterministic():
  import ml_collections  # pylint: disable=g-import-not-at-top
  from input_pipeline import sources  # pylint: disable=g-import-not-at-top
  cfg = ml_collections.ConfigDict({'name': 'synthetic_cifar10', 'data_dir': ''})
  info = sources.info(cfg)
  assert (info.num_classes, info.image_shape) == (10, (32, 32, 3))
  assert info.split_sizes == {'train': 50_000, 'test': 10_000}
  part = sources.load(cfg, 'train[45000:45010]', field='dataset.val_split')
  again = sources.load(cfg, 'train[45000:45010]', field='dataset.val_split')
  whole = sources.load(cfg, 'train', field='dataset.train_split')
  assert part.arrays['inputs'].shape == (10, 32, 32, 3) and part.arrays['inputs'].dtype == np.uint8
  for key in ('inputs', 'label'):
    np.testing.assert_array_equal(part.arrays[key], again.arrays[key])
    np.testing.assert_array_equal(part.arrays[key], whole.arrays[key][45000:45010])
  assert set(np.unique(whole.arrays['label'])) == set(range(10))
  test = sources.load(cfg, 'test[:10]', field='dataset.test_split')
  assert not np.array_equal(test.arrays['inputs'], whole.arrays['inputs'][:10])
