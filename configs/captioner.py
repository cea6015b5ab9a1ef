r"""The captioner comparison: four encoder-decoders on one feature-sequence-to-text task.

Run (one per architecture):
  python train.py --config=configs/captioner.py:arch=baseline --workdir=runs/cap_baseline
  python train.py --config=configs/captioner.py:arch=improved --workdir=runs/cap_improved
  python train.py --config=configs/captioner.py:arch=attention --workdir=runs/cap_attention
  python train.py --config=configs/captioner.py:arch=transformer --workdir=runs/cap_transformer

``arch`` (models/captioner.py): ``baseline`` (conv + LSTM encoder, LSTM decoder with a mean
context), ``improved`` (bidirectional 2-layer encoder, initialised decoder, dropout), ``attention``
(LSTM decoder with additive attention), ``transformer`` (configs/seq2seq_transformer.py's model).
As in the reference comparison the deeper models get warmup, lower learning rates and more
epochs; compare them at equal wall-clock time with ``stopping.max_train_seconds`` or with the
doctor.

The default data are digit strips captioned in words (a stand-in for audio features + captions);
point ``dataset.name=folder|npz_shards`` at log-mel features and caption transcripts for audio.

Variant arguments: ``arch``, ``tiny`` (a seconds-long CPU run, for tests).
"""

import ml_collections

from configs import common
from configs import ctc_bilstm
from configs import seq2seq_transformer
from curvelab import errors

ARGS = {'arch': 'baseline', 'tiny': False}

# Per architecture: (learning rate, warmup epochs, epochs).
RECIPES = {
    'baseline': (1e-3, 0.0, 40),
    'improved': (5e-4, 1.0, 60),
    'attention': (3e-4, 2.0, 80),
    'transformer': (1e-4, 5.0, 120),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = common.parse_args(arg, ARGS)
  arch = args['arch']
  if arch not in RECIPES:
    raise errors.ConfigError(f'config argument arch={arch!r} is unknown; allowed: '
                             f'{", ".join(RECIPES)}.')
  c = seq2seq_transformer.get_config()
  c.dataset.augment = ctc_bilstm.recipe_augment()
  m = c.model
  m.name = 'captioner'  # Registered model name (models/captioner.py).
  m.arch = arch  # baseline | improved | attention | transformer.
  # LSTM architectures (baseline, improved, attention):
  m.conv_channels = 128  # Conv front-end width.
  m.encoder_layers = 1 if arch == 'baseline' else 2  # Encoder LSTM layers (also Transformer).
  m.hidden_size = 256  # LSTM width (per direction in the encoder).
  m.embed_size = 128  # Token embedding width.
  m.attention_size = 128  # Additive attention width (attention only).
  m.dropout = 0.0 if arch == 'baseline' else 0.3  # Dropout (also the Transformer's).
  c.task.label_smoothing = 0.0 if arch == 'baseline' else 0.1
  c.optimizer.learning_rate, c.schedule.warmup_epochs, c.loop.num_epochs = RECIPES[arch]
  c.schedule.name = 'constant' if arch == 'baseline' else 'cosine'
  c.loop.batch_size = 32
  # CPU micro-batches: the Transformer keeps seq2seq_transformer's 4 (1.22x here); the LSTM
  # architectures none, as recurrent matmuls slow with fewer sequences (docs/benchmarks.md).
  c.speed.cpu_microbatch_size = c.speed.cpu_microbatch_size if arch == 'transformer' else 0
  if arch == 'transformer':
    m.dropout = 0.3
  if args['tiny']:
    seq2seq_transformer.make_tiny(c)
    m.conv_channels, m.hidden_size, m.embed_size, m.attention_size = 32, 32, 16, 16
    m.d_model, m.num_heads, m.mlp_dim, m.encoder_layers, m.decoder_layers = 32, 2, 64, 1, 1
    m.dropout = 0.0
  return common.finish(c, args)
