r"""Encoder-decoder Transformer from feature sequences to text (the sign-to-text translator recipe).

Run:
  python train.py --config=configs/seq2seq_transformer.py --workdir=runs/s2s
  python train.py --config=configs/seq2seq_transformer.py:sanity=5 --workdir=runs/s2s_sanity

Defaults: digit strips with spelled-out targets ("three one four"); d_model 256, 2 encoder +
2 decoder pre-norm layers, 4 heads, feed-forward 1024, dropout 0.3, label smoothing 0.1, AdamW
with cosine decay from 1e-4 to 1e-6 after a short warmup, batch 64; beam search (4 beams, GNMT
length normalisation 0.6); the best checkpoint by validation BLEU-4.

Variant arguments: ``tiny`` (a seconds-long CPU run, for tests).
"""

import ml_collections

from configs import common
from configs import ctc_bilstm

ARGS = {'tiny': False}


def seq2seq_task(decoder: str = 'beam') -> ml_collections.ConfigDict:
  t = ml_collections.ConfigDict()
  t.name = 'seq2seq'  # Encoder-decoder training and decoding (tasks/seq2seq.py).
  t.decoder = decoder  # greedy | beam.
  t.beam_size = 4  # Hypotheses kept by the beam search.
  t.length_penalty = 0.6  # GNMT length-normalisation alpha ((5 + len) / 6) ** alpha; 0 = off.
  t.num_samples = 3  # Target/prediction pairs written to each validation history row.
  return t


def transformer_model(m: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The encoder-decoder Transformer fields (models/seq2seq.py)."""
  m.d_model = 256  # Model width.
  m.num_heads = 4  # Attention heads (must divide d_model).
  m.encoder_layers = 2  # Pre-norm encoder layers.
  m.decoder_layers = 2  # Pre-norm decoder layers (causal self-attention + cross-attention).
  m.mlp_dim = 1024  # Feed-forward width.
  m.dropout = 0.3  # Dropout on embeddings, attention and feed-forward outputs.
  m.conv_strides = (2,)  # Temporal conv front-end strides (() = none); subsampling = product.
  m.conv_kernel = 5  # Conv kernel size in frames.
  return m


def make_tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """configs/ctc_bilstm.py's tiny run, without label smoothing and with greedy decoding."""
  ctc_bilstm.make_tiny(c)
  c.task.label_smoothing = 0.0
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = common.parse_args(arg, ARGS)
  c = common.base_config()
  c.task = seq2seq_task()
  c.dataset = ctc_bilstm.sequence_dataset(target='words')
  c.dataset.augment = ctc_bilstm.recipe_augment()
  m = c.model
  m.name = 'seq2seq_transformer'  # Registered model name (models/seq2seq.py).
  transformer_model(m)
  c.task.label_smoothing = 0.1  # Smoothing of the training targets (the reported loss is the NLL).
  c.optimizer.name = 'adamw'
  c.optimizer.learning_rate = 1e-4
  c.schedule.final_lr_ratio = 0.01  # Cosine decay 1e-4 -> 1e-6.
  c.schedule.name = 'cosine'
  c.schedule.warmup_epochs = 2.0
  c.optimizer.weight_decay = 1e-4
  c.optimizer.weight_decay_on = 'matrices'  # No decay on biases and LayerNorm scales.
  c.optimizer.grad_clip_norm = 1.0
  c.loop.batch_size = 64
  # Sequences per micro-batch on CPUs: the step measured 29 % faster at 4 than at 32, 22-23 % at
  # 8 or 2 (docs/benchmarks.md).
  c.speed.cpu_microbatch_size = 4
  c.loop.num_epochs = 100
  c.stopping.patience = 15
  c.loop.log_every_steps = 0
  if args['tiny']:
    make_tiny(c)
    m.d_model, m.num_heads, m.mlp_dim, m.dropout = 32, 2, 64, 0.0
    m.encoder_layers, m.decoder_layers = 1, 1
  return common.finish(c, args)
