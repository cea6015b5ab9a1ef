r"""CTC recogniser with a Transformer encoder (same data and recipe as configs/ctc_bilstm.py).

Run:
  python train.py --config=configs/ctc_transformer.py --workdir=runs/ctc_transformer

The Transformer encoder (pre-norm, sinusoidal positions, key padding masks) replaces the BiLSTM;
as in the reference analyses, the deeper attention model gets a longer warmup than the BiLSTM.

Variant arguments: ``layers`` (encoder layers), ``tiny`` (a seconds-long CPU run, for tests).
"""

import ml_collections

from configs import common
from configs import ctc_bilstm

ARGS = {'layers': 4, 'tiny': False}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = common.parse_args(arg, ARGS)
  c = ctc_bilstm.get_config()
  m = c.model
  m.encoder = 'transformer'  # bilstm | transformer.
  m.num_layers = args['layers']  # Pre-norm encoder layers.
  m.hidden_size = 256  # Transformer width (d_model).
  m.num_heads = 4  # Attention heads (must divide hidden_size).
  m.mlp_dim = 1024  # Feed-forward width of each layer.
  m.dropout = 0.3  # Dropout on the front-end output, attention and feed-forward outputs.
  c.schedule.warmup_epochs = 5.0  # Transformers need a longer warmup than the BiLSTM.
  # Sequences per micro-batch on CPUs: the step measured 15 % faster at 2 than at 8, 5 % at 4
  # (256-frame inputs; docs/benchmarks.md). The BiLSTM keeps 0 (not measured; the LSTM LM's
  # recurrent matmuls slowed with fewer sequences).
  c.speed.cpu_microbatch_size = 2
  if args['tiny']:
    ctc_bilstm.make_tiny(c)
    m.conv_channels, m.hidden_size, m.num_heads, m.mlp_dim, m.num_layers = 32, 32, 2, 64, 2
    m.dropout = 0.0
  return common.finish(c, args)
