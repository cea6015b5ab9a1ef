r"""CTC recogniser with a BiLSTM encoder (the sign-language gloss recipe); digit strips by default.

Run:
  python train.py --config=configs/ctc_bilstm.py --workdir=runs/ctc_bilstm
  python train.py --config=configs/ctc_bilstm.py:sanity=5 --workdir=runs/ctc_sanity

Your own data: ``--config.dataset.name=folder`` (or ``npz_shards``) with
``--config.dataset.train_path=... --config.dataset.val_path=... --config.dataset.test_path=...``
and ``--config.dataset.units=word`` (glosses/words) or ``char``; see docs/sequence_models.md.

The recipe: dropout 0.3, AdamW at 3e-4 with warmup and cosine decay, weight decay 1e-4,
gradient accumulation 2, clipping at 1.0, early stopping after 15 epochs without a better
validation WER, SpecAugment-style augmentation, prefix beam-search decoding.

Variant arguments: ``tiny`` (a seconds-long CPU run on a few hundred strips, for tests).
"""

import ml_collections

from configs import common
from input_pipeline import seq_augment

ARGS = {'tiny': False}


def sequence_dataset(*, target: str) -> ml_collections.ConfigDict:
  """Dataset fields of every sequence config (see input_pipeline/sequence_data.py)."""
  d = ml_collections.ConfigDict()
  d.name = 'digit_strips'  # digit_strips (built in) | folder | npz_shards.
  d.train_path = ''  # folder / npz_shards: the training split (folder, .npz file, folder or glob).
  d.val_path = ''  # ... the validation split.
  d.test_path = ''  # ... the test split.
  d.transcript_file = 'transcripts.tsv'  # folder: ID<TAB>TEXT per line; features in ID.npy/.npz.
  d.feature_key = 'features'  # folder: the array to read from .npz files (or their only array).
  d.units = 'word'  # Target tokens: word (words, glosses) | char (characters, spaces included).
  d.min_count = 1  # Keep training tokens seen at least this often (rarer ones need dataset.unk).
  d.unk = False  # Add <unk> for tokens outside the training vocabulary (else they are an error).
  d.vocab_path = ''  # A saved vocab.json to use instead of building one from the training split.
  d.max_frames = 0  # Frames every example is padded to; 0 = longest example, rounded up.
  d.max_target_length = 0  # Target tokens (EOS included) padded to; 0 = longest target.
  d.pad_to_multiple = 16  # Round the automatic max_frames up to a multiple of this.
  d.normalize = True  # Standardise each feature with the training split's mean and std.
  # digit_strips only (input_pipeline/digit_strips.py):
  d.target = target  # digits ("3 1 4", CTC) | words ("three one four", seq2seq).
  d.num_train = 2000  # Strips in each split.
  d.num_val = 200
  d.num_test = 200
  d.min_digits = 3  # Digits per strip, uniform in [min_digits, max_digits].
  d.max_digits = 8
  d.gap_columns = 0  # Blank columns between neighbouring digits.
  d.seed = 0  # Seeds which digits make each strip.
  d.augment = augment_section()
  return d


def augment_section(**overrides) -> ml_collections.ConfigDict:
  """Training-time augmentation fields (input_pipeline/seq_augment.py); all off by default."""
  a = ml_collections.ConfigDict()
  a.speed_min = 1.0  # Speed perturbation factor range (temporal resampling); 1, 1 = off.
  a.speed_max = 1.0
  a.frame_drop = 0.0  # Probability of dropping each frame.
  a.scale_min = 1.0  # Per-example feature scaling range; 1, 1 = off.
  a.scale_max = 1.0
  a.noise_std = 0.0  # Gaussian noise std in normalised feature units.
  a.time_masks = 0  # SpecAugment time masks per example.
  a.time_mask_max = 0  # Longest time mask in frames ...
  a.time_mask_ratio = 0.2  # ... and at most this share of the example's frames.
  a.feature_masks = 0  # SpecAugment feature masks per example.
  a.feature_mask_max = 0  # Widest feature mask in features.
  for key, value in overrides.items():
    if key not in seq_augment.FIELDS:
      raise KeyError(key)
    a[key] = value
  return a


def recipe_augment() -> ml_collections.ConfigDict:
  """The augmentation of the CTC recipe (moderate, as for landmark features)."""
  return augment_section(speed_min=0.9, speed_max=1.1, frame_drop=0.05, scale_min=0.9,
                         scale_max=1.1, noise_std=0.05, time_masks=2, time_mask_max=4,
                         feature_masks=1, feature_mask_max=2)


def ctc_task(decoder: str = 'beam') -> ml_collections.ConfigDict:
  t = ml_collections.ConfigDict()
  t.name = 'ctc'  # CTC recognition (tasks/ctc.py).
  t.decoder = decoder  # greedy | beam (prefix beam search).
  t.beam_size = 8  # Prefixes kept by the beam search.
  t.length_bonus = 0.0  # Log-probability bonus per emitted token when ranking beam prefixes.
  t.num_samples = 3  # Target/prediction pairs written to each validation history row.
  return t


def make_tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Seconds on a CPU: a few hundred short strips, small batches, a few epochs, no doctor."""
  c.dataset.num_train, c.dataset.num_val, c.dataset.num_test = 256, 64, 64
  c.dataset.min_digits, c.dataset.max_digits = 3, 5
  c.loop.batch_size = 32
  c.speed.grad_accum_steps = 1
  c.loop.num_epochs = 3
  c.schedule.warmup_epochs = 0.0
  c.schedule.name = 'constant'
  c.optimizer.learning_rate = 3e-3
  c.stopping.patience = 0
  c.loop.log_every_steps = 0
  c.loop.checkpoint_every_epochs = 1000
  c.doctor.enabled = False
  c.task.decoder = 'greedy'
  c.dataset.augment = augment_section()
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = common.parse_args(arg, ARGS)
  c = common.base_config()
  c.task = ctc_task()
  c.dataset = sequence_dataset(target='digits')
  c.dataset.augment = recipe_augment()
  m = c.model
  m.name = 'ctc'  # Registered model name (models/ctc.py).
  m.encoder = 'bilstm'  # bilstm | transformer.
  m.conv_strides = (2,)  # One temporal conv layer per entry; time subsampling = their product.
  m.conv_channels = 128  # Conv front-end width.
  m.conv_kernel = 5  # Conv kernel size in frames.
  m.num_layers = 2  # Encoder layers (BiLSTM layers).
  m.hidden_size = 192  # LSTM width per direction.
  m.dropout = 0.3  # Dropout after the front-end and between encoder layers.
  c.optimizer.name = 'adamw'
  c.optimizer.learning_rate = 3e-4
  c.optimizer.weight_decay = 1e-4
  c.optimizer.weight_decay_on = 'matrices'  # No decay on biases and LayerNorm scales.
  c.schedule.name = 'cosine'
  c.schedule.warmup_epochs = 2.0
  c.schedule.final_lr_ratio = 0.01
  c.optimizer.grad_clip_norm = 1.0
  c.speed.grad_accum_steps = 2
  c.loop.batch_size = 32
  c.loop.num_epochs = 150
  c.stopping.patience = 15
  c.task.label_smoothing = 0.0  # Unused by CTC.
  c.loop.log_every_steps = 0
  if args['tiny']:
    make_tiny(c)
    m.conv_channels, m.hidden_size, m.num_layers, m.dropout = 32, 64, 1, 0.0
  return common.finish(c, args)
