"""The grain pipeline (input_pipeline/pipeline.py) and split strings (input_pipeline/splits.py).

The fake split stores each example's index as its label, so batches can be traced back to the
examples they hold.
"""

import ml_collections
import numpy as np
import pytest

from curvelab import errors
from input_pipeline import pipeline
from input_pipeline import sources
from input_pipeline import splits

N, BATCH, EPOCHS = 70, 8, 3  # 8 steps per epoch, 6 examples dropped per epoch.
STEPS = N // BATCH


def _split(n=N):
  ids = np.arange(n)
  return sources.ArraySplit({'inputs': np.broadcast_to(ids[:, None, None, None] % 256,
                                                       (n, 2, 2, 1)).astype(np.uint8),
                             'label': ids.astype(np.int32)})


def _identity(batch, rng=None):
  del rng
  out = dict(batch)
  out.setdefault('weight', np.ones(len(batch['label']), np.float32))
  return out


def _train_ids(process_index=0, process_count=1, seed=0, epochs=EPOCHS):
  ds = pipeline.train_dataset(_split(), global_batch=BATCH, num_epochs=epochs, seed=seed,
                              preprocess=_identity, process_index=process_index,
                              process_count=process_count)
  return np.stack([ds[k]['label'] for k in range(len(ds))])  # [steps, local batch]


def test_train_dataset_length_and_batch_shape():
  ds = pipeline.train_dataset(_split(), global_batch=BATCH, num_epochs=EPOCHS, seed=0,
                              preprocess=_identity)
  assert len(ds) == STEPS * EPOCHS
  batch = ds[0]
  assert batch['inputs'].shape == (BATCH, 2, 2, 1) and batch['label'].shape == (BATCH,)


def test_every_epoch_is_a_permutation_without_duplicates():
  """An epoch's batches hold distinct examples; N % BATCH are dropped; epochs differ."""
  ids = _train_ids().reshape(EPOCHS, STEPS * BATCH)
  for epoch in ids:
    assert len(set(epoch.tolist())) == STEPS * BATCH
    assert set(epoch.tolist()) <= set(range(N))
  assert not np.array_equal(ids[0], ids[1]) and not np.array_equal(ids[1], ids[2])
  # Not just a rotation of the same order: the dropped examples differ too.
  dropped = [set(range(N)) - set(e.tolist()) for e in ids]
  assert dropped[0] != dropped[1] or dropped[1] != dropped[2]


def test_shuffle_depends_on_seed_and_is_reproducible():
  np.testing.assert_array_equal(_train_ids(seed=3), _train_ids(seed=3))
  assert not np.array_equal(_train_ids(seed=3), _train_ids(seed=4))


def test_epoch_order_does_not_depend_on_num_epochs():
  """Epoch k reads the same batches whether the run has 2 or 3 epochs (resume with more)."""
  np.testing.assert_array_equal(_train_ids(epochs=2), _train_ids(epochs=3)[:2 * STEPS])


def test_two_processes_read_disjoint_halves_of_the_global_batch():
  """Process 0 reads the first half of each global batch, process 1 the second half."""
  whole = _train_ids()
  p0 = _train_ids(process_index=0, process_count=2)
  p1 = _train_ids(process_index=1, process_count=2)
  assert p0.shape == p1.shape == (STEPS * EPOCHS, BATCH // 2)
  for a, b in zip(p0, p1):
    assert not set(a.tolist()) & set(b.tolist())
  np.testing.assert_array_equal(np.concatenate([p0, p1], axis=1), whole)


def test_augmentation_rng_is_per_element_and_reproducible():
  """The preprocess rng is seeded per batch: same batch -> same draws, other batch -> others."""
  def draw(batch, rng):
    out = _identity(batch)
    out['noise'] = rng.random(3)
    return out

  ds = pipeline.train_dataset(_split(), global_batch=BATCH, num_epochs=1, seed=0, preprocess=draw)
  np.testing.assert_array_equal(ds[2]['noise'], ds[2]['noise'])
  assert not np.array_equal(ds[2]['noise'], ds[3]['noise'])


def test_iterator_state_resumes_at_the_identical_next_batch():
  """get_state after k batches + set_state on a fresh iterator -> the same next batches."""
  def draw(batch, rng):
    out = _identity(batch)
    out['noise'] = rng.random(2)
    return out

  ds = pipeline.train_dataset(_split(), global_batch=BATCH, num_epochs=2, seed=5, preprocess=draw)
  it = pipeline.train_iterator(ds)
  for _ in range(STEPS + 3):  # Into the second epoch.
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  resumed = pipeline.train_iterator(ds, state)
  for want in expected:
    got = next(resumed)
    np.testing.assert_array_equal(got['label'], want['label'])
    np.testing.assert_array_equal(got['noise'], want['noise'])
  # A fresh iterator without state starts at the beginning instead.
  np.testing.assert_array_equal(next(pipeline.train_iterator(ds))['label'], ds[0]['label'])


def _eval(n, global_batch, process_index=0, process_count=1):
  return list(pipeline.eval_batches(_split(n), global_batch=global_batch, preprocess=_identity,
                                    process_index=process_index, process_count=process_count))


@pytest.mark.parametrize('n', [64, 70, 3])
def test_eval_batches_cover_every_example_once(n):
  """All batches have the full size; weighted examples are exactly 0..n-1; padding weighs 0."""
  batches = _eval(n, BATCH)
  assert len(batches) == -(-n // BATCH) == pipeline.num_eval_batches(n, BATCH)
  assert all(b['label'].shape == (BATCH,) for b in batches)
  labels = np.concatenate([b['label'] for b in batches])
  weights = np.concatenate([b['weight'] for b in batches])
  assert set(np.unique(weights).tolist()) <= {0.0, 1.0}
  np.testing.assert_array_equal(np.sort(labels[weights == 1]), np.arange(n))
  assert weights.sum() == n
  assert (weights[n:] == 0).all()


def test_eval_batches_split_across_two_processes():
  """Two processes' weighted examples are disjoint and together cover every example once."""
  n = 70
  seen = []
  for p in range(2):
    for b in _eval(n, BATCH, process_index=p, process_count=2):
      assert b['label'].shape == (BATCH // 2,)
      seen.extend(b['label'][b['weight'] == 1].tolist())
  assert sorted(seen) == list(range(n))


def test_image_preprocess_normalises_and_augments_only_in_training():
  """uint8 -> (x - 255*mean) / (255*std); eval never augments; train flips when asked."""
  cfg = ml_collections.ConfigDict(dict(mean=(0.5,), std=(0.25,), augment=dict(
      flip=True, crop=False, crop_scale=(0.8, 1.0), crop_ratio=(0.9, 1.1))))
  images = np.random.default_rng(0).integers(0, 256, (200, 4, 4, 1), dtype=np.uint8)
  batch = {'inputs': images, 'label': np.zeros(200, np.int32)}
  expected = (images.astype(np.float32) - 127.5) / 63.75
  out = pipeline.ImagePreprocess(cfg, train=False)(batch)
  np.testing.assert_allclose(out['inputs'], expected, rtol=1e-6)
  np.testing.assert_array_equal(out['weight'], np.ones(200))
  flipped = pipeline.ImagePreprocess(cfg, train=True)(batch, np.random.default_rng(0))['inputs']
  mirrored = (flipped == expected[:, :, ::-1]).all(axis=(1, 2, 3))
  assert 0.3 < mirrored.mean() < 0.7


# ----------------------------------------------------------------------------------- split strings

SIZES = {'train': 1437, 'test': 360}


@pytest.mark.parametrize('spec, expected', [
    ('train', ('train', 0, 1437)),
    ('test', ('test', 0, 360)),
    ('train[:1200]', ('train', 0, 1200)),
    ('train[1200:]', ('train', 1200, 1437)),
    ('train[100:200]', ('train', 100, 200)),
    ('train[10%:]', ('train', 144, 1437)),   # round(0.1 * 1437) = 144.
    ('train[:50%]', ('train', 0, 718)),      # round(718.5) = 718 (banker's rounding).
    ('test[-60:]', ('test', 300, 360)),
    ('train[:5000]', ('train', 0, 1437)),    # Clamped to the split.
    (' train [ :10 ] ', ('train', 0, 10)),
])
def test_resolve_split_strings(spec, expected):
  assert splits.resolve(spec, SIZES) == expected


@pytest.mark.parametrize('spec, text', [
    ('validation', "split 'validation' does not exist; available: test, train"),
    ('train[10:5]', 'selects no examples'),
])
def test_missing_or_empty_split_is_data_error_naming_the_field(spec, text):
  with pytest.raises(errors.DataError, match='dataset.val_split') as info:
    splits.resolve(spec, SIZES, field='dataset.val_split')
  assert text in str(info.value)


@pytest.mark.parametrize('spec, text', [
    ('train[a:]', "bad bound 'a'"),
    ('train[:10', 'not a valid split string'),
    ('', 'not a valid split string'),
])
def test_malformed_split_is_config_error(spec, text):
  with pytest.raises(errors.ConfigError) as info:
    splits.resolve(spec, SIZES, field='dataset.val_split')
  assert text in str(info.value)


@pytest.mark.parametrize('spec', ['train[a:]', 'train[:10'])
def test_malformed_split_error_names_the_field(spec):
  with pytest.raises(errors.ConfigError, match='dataset.val_split'):
    splits.resolve(spec, SIZES, field='dataset.val_split')


def test_digits_splits_are_disjoint_and_sized():
  """digits: 1437 train / 360 test; train[:1200] and train[1200:] partition train."""
  cfg = ml_collections.ConfigDict({'name': 'digits', 'data_dir': ''})
  a = sources.load(cfg, 'train[:1200]', field='f')
  b = sources.load(cfg, 'train[1200:]', field='f')
  test = sources.load(cfg, 'test', field='f')
  assert (len(a), len(b), len(test)) == (1200, 237, 360)
  assert a.arrays['inputs'].shape[1:] == (8, 8, 1) and a.arrays['inputs'].dtype == np.uint8
  rows = lambda s: {x.tobytes() for x in s.arrays['inputs']}
  assert not rows(a) & rows(b)
  # Class-balanced enough that every split has every class.
  assert all(len(np.unique(s.arrays['label'])) == 10 for s in (a, b, test))


def test_steps_do_not_repeat_across_epochs_boundary():
  """The global batch k and k+STEPS (same position, next epoch) come from different orders."""
  ids = _train_ids()
  assert not any(np.array_equal(ids[k], ids[k + STEPS]) for k in range(STEPS))
