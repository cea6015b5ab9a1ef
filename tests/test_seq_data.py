"""Sequence data: digit strips, file sources, vocabularies, batches, bad input, augmentation."""

import json
import pathlib

import numpy as np
import pytest

from configs import ctc_bilstm
from configs import seq2seq_transformer
from curvelab import errors
from input_pipeline import digit_strips
from input_pipeline import pipeline
from input_pipeline import seq_augment
from input_pipeline import sequence_data
from input_pipeline import text


def _ctc_config(**fields):
  c = ctc_bilstm.get_config('tiny=True')
  for key, value in fields.items():
    node = c
    *parents, leaf = key.split('__')
    for part in parents:
      node = node[part]
    node[leaf] = value
  return c


# --------------------------------------------------------------------------------- digit strips

def test_digit_strips_read_columns_as_time_steps():
  images, labels = digit_strips._digit_images()  # pylint: disable=protected-access
  strip = digit_strips.make_strip(images[:3], gap_columns=2)
  assert strip.shape == (3 * 8 + 2 * 2, 8)
  np.testing.assert_array_equal(strip[:8], images[0].T)  # Column c of digit 0 = time step c.
  np.testing.assert_array_equal(strip[8:10], 0)  # The gap.
  np.testing.assert_array_equal(strip[10:18], images[1].T)
  assert digit_strips.target_text(labels[:3], target='digits') == ' '.join(map(str, labels[:3]))
  assert digit_strips.target_text([3, 1, 4], target='words') == 'three one four'


def test_digit_strip_splits_are_deterministic_and_sized():
  ds = _ctc_config().dataset
  ids, feats, texts = digit_strips.examples(ds, 'val')
  ids2, feats2, texts2 = digit_strips.examples(ds, 'val')
  assert ids == ids2 and texts == texts2
  assert all(np.array_equal(a, b) for a, b in zip(feats, feats2))
  assert len(ids) == ds.num_val
  for f, t in zip(feats, texts):
    n = len(t.split())
    assert ds.min_digits <= n <= ds.max_digits and f.shape == (8 * n, 8)


def test_ctc_data_batches_are_fixed_shape_and_masked():
  config = _ctc_config()
  data = sequence_data.build(config)
  assert data.num_outputs == 11  # Blank + ten digits.
  max_frames, num_features = data.example_shape
  assert num_features == 8 and max_frames % config.dataset.pad_to_multiple == 0
  vocab = data.extra['vocabulary']
  assert vocab.vocab[0] == '<blank>' and not vocab.has_unk
  split = data.load('val')
  batch = next(pipeline.eval_batches(split, global_batch=48, preprocess=data.eval_preprocess))
  assert batch['inputs'].shape == (48, max_frames, 8)
  assert batch['targets'].dtype == np.int32 and batch['targets'].shape[0] == 48
  lengths = batch['input_mask'].sum(1)
  np.testing.assert_array_equal(batch['inputs'][batch['input_mask'] == 0], 0.0)
  # Targets decode back to the strip's text; padding ids are 0 and masked.
  _, _, texts = digit_strips.examples(config.dataset, 'val')
  for i in range(3):
    assert vocab.decode(batch['targets'][i]) == texts[i]
    assert lengths[i] == 8 * len(texts[i].split())
  assert (batch['targets'][batch['target_mask'] == 0] == 0).all()
  # The last eval batch is padded with weight 0.
  last = list(pipeline.eval_batches(split, global_batch=48, preprocess=data.eval_preprocess))[-1]
  assert last['weight'].sum() == len(split) % 48


def test_seq2seq_targets_end_with_eos_and_vocabulary_round_trips():
  c = seq2seq_transformer.get_config('tiny=True')
  data = sequence_data.build(c)
  vocab = data.extra['vocabulary']
  assert vocab.vocab[:3] == ['<pad>', '<bos>', '<eos>']
  batch = data.eval_preprocess(data.load('train').take(np.arange(4)))
  for row, mask in zip(batch['targets'], batch['target_mask']):
    n = int(mask.sum())
    assert row[n - 1] == sequence_data.EOS_ID and (row[n:] == 0).all()
    assert all(vocab.vocab[i] in digit_strips.NAMES for i in row[:n - 1])
  # The loop saves the vocabulary as a Tokenizer and compares it on resume.
  saved = text.Tokenizer.from_json(json.loads(json.dumps(vocab.to_json())))
  assert not saved != vocab  # pylint: disable=unneeded-not


# --------------------------------------------------------------------------------- files

def _write_folder(root: pathlib.Path, examples: dict, *, transcript='transcripts.tsv'):
  root.mkdir(parents=True, exist_ok=True)
  lines = []
  for name, (features, line) in examples.items():
    if name.endswith('_z'):
      np.savez(root / f'{name}.npz', features=features)
    else:
      np.save(root / f'{name}.npy', features)
    lines.append(f'{name}\t{line}')
  (root / transcript).write_text('\n'.join(lines) + '\n')
  return str(root)


def _folder_config(tmp_path, splits: dict, *, task='ctc', **fields):
  paths = {role: _write_folder(tmp_path / role, ex) for role, ex in splits.items()}
  c = _ctc_config() if task == 'ctc' else seq2seq_transformer.get_config('tiny=True')
  c.dataset.name = 'folder'
  c.dataset.train_path, c.dataset.val_path, c.dataset.test_path = (
      paths['train'], paths['val'], paths['test'])
  for key, value in fields.items():
    c.dataset[key] = value
  return c


def _ok(frames=12, features=3, line='a b c'):
  return (np.random.default_rng(frames).normal(size=(frames, features)).astype(np.float32), line)


def test_folder_source_reads_npy_and_npz_with_a_word_vocabulary(tmp_path):
  splits = {'train': {'u1': _ok(line='hello world'), 'u2_z': _ok(9, line='hello there')},
            'val': {'v1': _ok(line='hello world')}, 'test': {'t1': _ok(20, line='there')}}
  data = sequence_data.build(_folder_config(tmp_path, splits))
  assert data.split_sizes == {'train': 2, 'val': 1, 'test': 1}
  assert data.example_shape == (32, 3)  # Longest (20) rounded up to pad_to_multiple=16.
  vocab = data.extra['vocabulary']
  assert vocab.vocab == ['<blank>', 'hello', 'there', 'world']
  batch = data.eval_preprocess(data.load('train').take(np.arange(2)))
  assert vocab.decode(batch['targets'][1]) == 'hello there'
  # Features are standardised with the training statistics.
  real = batch['inputs'][batch['input_mask'] > 0]
  np.testing.assert_allclose(real.mean(0), 0.0, atol=1e-5)


def test_npz_shards_source(tmp_path):
  rng = np.random.default_rng(0)
  for role in ('train', 'val', 'test'):
    lengths = np.array([5, 7, 6])
    np.savez(tmp_path / f'{role}.npz', features=rng.normal(size=(18, 4)).astype(np.float32),
             lengths=lengths, texts=np.array(['ab', 'ba', 'abba']))
  c = _ctc_config()
  c.dataset.name, c.dataset.units = 'npz_shards', 'char'
  c.dataset.train_path, c.dataset.val_path, c.dataset.test_path = (
      str(tmp_path / 'train.npz'), str(tmp_path / 'val.npz'), str(tmp_path / 'test.npz'))
  c.model.conv_strides = ()
  data = sequence_data.build(c)
  assert data.example_shape == (16, 4)
  vocab = data.extra['vocabulary']
  batch = data.eval_preprocess(data.load('val').take(np.arange(3)))
  assert [vocab.decode(t) for t in batch['targets']] == ['ab', 'ba', 'abba']
  assert batch['input_mask'].sum(1).tolist() == [5, 7, 6]


@pytest.mark.parametrize('case, match', [
    ('rank', r"dataset.val_path: example 'v1' has features of shape \(12, 3, 1\); expected 2-D"),
    ('features', r"dataset.test_path: example 't1' has 5 features per frame; the training split "
                 r"has 3"),
    ('empty', r"dataset.train_path: transcripts.tsv line 2: example 'u2' has an empty transcript"),
    ('unknown', r"dataset.val_path: example 'v1' has token 'zebra', which is not in the training "
                r"vocabulary, and the vocabulary has no <unk>"),
    ('ctc_length', r"dataset.train_path: example 'u2' has a target of 4 tokens needing 5 CTC "
                   r"output frames, but its 8 frames give 4 after subsampling by 2"),
])
def test_bad_input_is_one_clear_line_before_training(tmp_path, case, match):
  splits = {'train': {'u1': _ok(), 'u2': _ok()}, 'val': {'v1': _ok()}, 'test': {'t1': _ok()}}
  if case == 'rank':
    splits['val']['v1'] = (np.zeros((12, 3, 1), np.float32), 'a b')
  elif case == 'features':
    splits['test']['t1'] = _ok(features=5)
  elif case == 'unknown':
    splits['val']['v1'] = _ok(line='a zebra')
  elif case == 'ctc_length':
    splits['train']['u2'] = _ok(frames=8, line='a b b c')  # 4 tokens + 1 blank between b b.
  config = _folder_config(tmp_path, splits)
  if case == 'empty':
    transcript = tmp_path / 'train' / 'transcripts.tsv'
    transcript.write_text('u1\ta b c\nu2\t \n')
  with pytest.raises(errors.DataError, match=match) as info:
    sequence_data.build(config)
  assert '\n' not in str(info.value)
  if case == 'unknown':  # With <unk> the same data is fine.
    config.dataset.unk = True
    assert sequence_data.build(config).extra['vocabulary'].has_unk


def test_config_errors_name_the_field():
  with pytest.raises(errors.ConfigError, match=r"dataset.units='bytes' is unknown; allowed: char, "
                                               r"word"):
    sequence_data.build(_ctc_config(dataset__units='bytes'))
  with pytest.raises(errors.ConfigError, match=r"dataset.train_path is empty"):
    sequence_data.build(_ctc_config(dataset__name='folder'))
  with pytest.raises(errors.ConfigError, match=r"dataset.augment.speed_min"):
    sequence_data.build(_ctc_config(dataset__augment__speed_min=1.2))


# --------------------------------------------------------------------------------- augmentation

def test_speed_perturbation_and_frame_drop_respect_the_ctc_minimum():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(40, 3)).astype(np.float32)
  assert seq_augment.speed_perturb(x, 0.8).shape == (50, 3)
  assert seq_augment.speed_perturb(x, 1.25).shape == (32, 3)
  assert seq_augment.speed_perturb(x, 1.25, min_frames=36).shape == (36, 3)
  assert seq_augment.speed_perturb(x, 0.5, max_frames=48).shape == (48, 3)
  np.testing.assert_allclose(seq_augment.speed_perturb(x, 1.0), x)
  assert len(seq_augment.drop_frames(x, rng, 0.5, min_frames=39)) == 40  # Would go too short.
  assert 10 < len(seq_augment.drop_frames(x, rng, 0.5)) < 35


def test_batch_augmentation_changes_only_real_frames():
  aug = seq_augment.Augmenter(noise_std=0.5, scale_min=0.5, scale_max=1.5, time_masks=2,
                              time_mask_max=5, feature_masks=1, feature_mask_max=2)
  inputs, mask = sequence_data.pad_frames([np.ones((20, 6), np.float32),
                                           np.ones((8, 6), np.float32)], 24)
  out = aug.batch(inputs, mask, np.random.default_rng(0))
  assert out.shape == inputs.shape and out.dtype == np.float32
  np.testing.assert_array_equal(out[mask == 0], 0.0)
  assert not np.allclose(out[mask > 0], 1.0)
  # Time masks zero whole frames, never more than the ratio allows.
  assert (np.abs(out[0, :20]).sum(-1) == 0).sum() <= 2 * int(0.2 * 20)


def test_training_preprocess_augments_and_sanity_mode_does_not():
  c = _ctc_config()
  c.dataset.augment = ctc_bilstm.recipe_augment()
  data = sequence_data.build(c)
  rows = data.load('train').take(np.arange(8))
  plain = data.eval_preprocess(rows)
  first = data.train_preprocess(rows, np.random.default_rng(1))
  again = data.train_preprocess(rows, np.random.default_rng(1))
  np.testing.assert_array_equal(first['inputs'], again['inputs'])  # Seeded by grain: replayable.
  assert first['inputs'].shape == plain['inputs'].shape
  assert not np.array_equal(first['inputs'], plain['inputs'])
  c.sanity.examples = 5
  sanity = sequence_data.build(c)
  np.testing.assert_array_equal(sanity.train_preprocess(rows, np.random.default_rng(1))['inputs'],
                                plain['inputs'])
