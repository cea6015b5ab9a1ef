r"""The reference ViT on CIFAR-10, pre-norm blocks (reference experiments 1-6).

Run:
  python train.py --config=configs/vit_prenorm.py:layers=2,optimizer=adam --workdir=runs/exp1

Variant arguments (after the colon): ``layers`` (2, 4, 6 in the study), ``optimizer``
(adam | adamw | sgd | momentum), ``block`` (prenorm | postnorm), ``tiny`` (a seconds-long CPU run on
scikit-learn digits, for tests).
"""

import ml_collections

from configs import common

ARGS = {'layers': 2, 'optimizer': 'adam', 'block': 'prenorm', 'tiny': False}

# Images per micro-batch on CPUs: the reference ViT's train step measured fastest at 4 (13-25 %
# faster than whole halves of the batch on the 2-core development machine, docs/benchmarks.md).
CPU_MICROBATCH_SIZE = 4


def vit_model(*, layers: int, block: str) -> ml_collections.ConfigDict:
  """The reference ViT: patch 4 on 32x32, width 256, MLP 512 (GELU), 8 heads, no dropout."""
  m = ml_collections.ConfigDict()
  m.name = 'vit'  # Registered model name.
  m.num_layers = layers  # Transformer blocks.
  m.block = block  # prenorm: x + f(LN(x)); postnorm: LN(x + f(x)).
  m.patch_size = 4  # Square patch side in pixels (image sides must divide by it).
  m.embed_dim = 256  # Token width.
  m.mlp_dim = 512  # Hidden width of each block's MLP.
  m.num_heads = 8  # Attention heads (must divide embed_dim).
  m.dropout = 0.0  # Dropout after embeddings, attention and MLP layers.
  m.layer_norm_eps = 1e-5  # LayerNorm epsilon (PyTorch's default).
  # Parameter initialisation (models/inits.py): 'reference' draws as the study's PyTorch model
  # (U(+-1/sqrt(fan_in)) Linear weights and biases, N(0, 1) CLS token and positions); 'flax' is
  # Xavier kernels, zero biases and CLS, N(0, 0.02) positions.
  m.init = 'reference'
  return m


def make_tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a ViT config to a seconds-long CPU run on scikit-learn digits."""
  c.dataset.name = 'digits'
  c.dataset.train_split = 'train[:1200]'
  c.dataset.val_split = 'train[1200:]'
  c.dataset.test_split = 'test'
  c.dataset.mean = (0.3,)
  c.dataset.std = (0.4,)
  c.dataset.augment.flip = False  # Digits are not mirror-symmetric.
  c.dataset.augment.crop = False
  c.model.patch_size = 2
  c.model.embed_dim = 32
  c.model.mlp_dim = 64
  c.model.num_heads = 4
  # A 32-wide model on 8x8 digits learns in seconds with the Flax initialisation; the reference
  # one's N(0, 1) positions outweigh its inputs at that width (tests pin these runs' behaviour).
  c.model.init = 'flax'
  c.loop.batch_size = 64
  c.loop.num_epochs = 2
  c.optimizer.learning_rate = 1e-3
  c.loop.log_every_steps = 0
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = common.parse_args(arg, ARGS)
  c = common.base_config()
  c.model = vit_model(layers=args['layers'], block=args['block'])
  c.optimizer.name = args['optimizer']
  c.speed.cpu_microbatch_size = CPU_MICROBATCH_SIZE  # Cache-sized micro-batches on CPUs (same update).
  if args['tiny']:
    make_tiny(c)
  return common.finish(c, args)
