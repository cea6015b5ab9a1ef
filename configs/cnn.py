r"""CIFAR-10 CNN baselines with BatchNorm, and their recipes (docs/recipes.md).

Run:
  python train.py --config=configs/cnn.py:arch=resnet --workdir=runs/cnn/resnet

Variant arguments (after the colon): ``arch`` (googlenet | resnet | preact_resnet | densenet |
resnet18), ``tiny`` (a seconds-long CPU run on scikit-learn digits, for tests).

The recipe, the same for all five: SGD with momentum 0.9, peak learning rate 0.1 after a one-epoch
warmup, cosine decay to 0, L2 weight decay 5e-4, batch 128, random crop with 4 pixels of zero
padding + horizontal flip. 180 epochs for the four small networks (~0.26 M parameters), 200 for
ResNet-18 (11.2 M). Targets on the CIFAR-10 test split: >= 90 % (small) and >= 94 % (ResNet-18);
see docs/recipes.md for what has and has not been measured.
"""

import ml_collections

from configs import common
from curvelab import errors

ARCHS = ('googlenet', 'resnet', 'preact_resnet', 'densenet', 'resnet18', 'fast')
ARGS = {'arch': 'resnet', 'tiny': False}


# --------------------------------------------------------------------------------- models

def resnet_model(*, preact: bool = False) -> ml_collections.ConfigDict:
  """ResNet-20 (He et al. 2016, CIFAR): 269,722 parameters; pre-activation: also 269,722."""
  m = ml_collections.ConfigDict()
  m.name = 'preact_resnet' if preact else 'resnet'  # Registered model name.
  m.stage_widths = (16, 32, 64)  # Channels of each stage (the stem has the first).
  m.blocks_per_stage = (3, 3, 3)  # Basic blocks per stage; stages after the first halve the image.
  m.shortcut = 'pad'  # pad: parameter-free (subsample + zero channels) | projection: 1x1 conv.
  m.conv_impl = 'auto'  # models/conv.py: auto (by backend) | xla | im2col_grad.
  return m


def resnet18_model() -> ml_collections.ConfigDict:
  """ResNet-18 for CIFAR (3x3 stem, no max-pool): 11,173,962 parameters."""
  m = resnet_model()
  m.stage_widths = (64, 128, 256, 512)
  m.blocks_per_stage = (2, 2, 2, 2)
  m.shortcut = 'projection'  # 1x1 conv + BatchNorm where the shape changes, as in the paper.
  return m


def googlenet_model() -> ml_collections.ConfigDict:
  """A small GoogLeNet (Inception blocks, BatchNorm): 257,530 parameters."""
  m = ml_collections.ConfigDict()
  m.name = 'googlenet'  # Registered model name.
  m.stem_width = 64  # Channels of the 3x3 stem.
  m.stage_widths = (80, 128, 160)  # Output width of every Inception block (multiples of 16).
  m.blocks_per_stage = (2, 4, 2)  # Inception blocks per stage; 3x3/2 max-pool between stages.
  return m


def densenet_model() -> ml_collections.ConfigDict:
  """A DenseNet-BC of depth 52 (growth 12): 264,586 parameters."""
  m = ml_collections.ConfigDict()
  m.name = 'densenet'  # Registered model name.
  m.growth_rate = 12  # Channels each dense layer adds (the stem has twice as many).
  m.layers_per_block = (8, 8, 8)  # Dense layers per block; a transition halves the image between.
  m.bottleneck = 4  # Width of each layer's 1x1 bottleneck, in multiples of growth_rate.
  m.compression = 0.5  # Fraction of channels a transition keeps.
  return m


def fast_model() -> ml_collections.ConfigDict:
  """The few-epoch CNN of the CPU recipe (models/cnn_fast.py): 1,088,888 parameters."""
  m = ml_collections.ConfigDict()
  m.name = 'fast_cnn'  # Registered model name.
  m.widths = (32, 128, 256)  # Channels of the three conv-pool groups (each halves the image).
  m.stem_width = 24  # Channels of the 2x2 stem.
  m.activation = 'gelu'  # gelu | relu.
  m.bn_momentum = 0.6  # BatchNorm running-average decay (fast, for few epochs).
  m.logit_scale = 0.125  # Fixed factor on the logits.
  m.tta_flip = True  # Evaluation averages the logits of each image and its mirror.
  m.conv_impl = 'auto'  # models/conv.py: auto (by backend) | xla | im2col_grad.
  return m


def model_for(arch: str) -> ml_collections.ConfigDict:
  """The model section of ``arch``; ConfigError naming the allowed values otherwise."""
  builders = {'googlenet': googlenet_model, 'resnet': resnet_model,
              'preact_resnet': lambda: resnet_model(preact=True), 'densenet': densenet_model,
              'resnet18': resnet18_model, 'fast': fast_model}
  if arch not in builders:
    raise errors.ConfigError(f'config argument arch={arch!r} is unknown; allowed: '
                             f'{", ".join(ARCHS)}.')
  return builders[arch]()


# --------------------------------------------------------------------------------- augmentation

def add_augment_options(augment: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Adds the optional augmentation fields (input_pipeline/augment.py), all off.

  Configs that set none of these behave exactly as before; listing them makes them overridable
  on the command line (``--config.dataset.augment.mixup_alpha=0.8``).
  """
  augment.pad_crop = 0  # Random crop after zero padding of this many pixels per side (0 = off).
  augment.randaugment_ops = 0  # RandAugment: ops applied to each image (N; 0 = off).
  augment.randaugment_magnitude = 9.0  # RandAugment strength M in [0, 10].
  augment.mixup_alpha = 0.0  # Mixup Beta(alpha, alpha) concentration (0 = off).
  augment.cutmix_alpha = 0.0  # CutMix Beta(alpha, alpha) concentration (0 = off).
  augment.mix_prob = 1.0  # Probability that a training batch is mixed at all.
  augment.mix_switch_prob = 0.5  # With mixup and CutMix both on: probability of CutMix.
  return augment


# --------------------------------------------------------------------------------- recipes

def cnn_recipe(c: ml_collections.ConfigDict, *, arch: str) -> ml_collections.ConfigDict:
  """SGD + momentum, warmup + cosine, weight decay, padded crop + flip (see module docstring)."""
  add_augment_options(c.dataset.augment)
  c.dataset.augment.crop = False  # The resized crop of the ViT recipe is replaced by ...
  c.dataset.augment.pad_crop = 4  # ... the CIFAR standard: shifts of up to 4 pixels.
  c.dataset.augment.flip = True
  c.optimizer.name = 'momentum'  # SGD with heavy-ball momentum (PyTorch semantics).
  c.optimizer.momentum = 0.9
  c.optimizer.learning_rate = 0.1  # Peak, reached after the warmup.
  c.schedule.warmup_epochs = 1.0  # A short ramp keeps the first steps of a fresh BatchNorm net stable.
  c.schedule.name = 'cosine'
  c.schedule.final_lr_ratio = 0.0
  c.optimizer.weight_decay = 5e-4  # L2 added to the gradient, on every parameter (as in the usual recipe).
  c.optimizer.weight_decay_on = 'all'
  c.task.label_smoothing = 0.0
  c.loop.batch_size = 128
  c.loop.num_epochs = 200 if arch == 'resnet18' else 180
  c.loop.log_every_steps = 100
  return c


def fast_recipe(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The CPU recipe: about 90 % CIFAR-10 test accuracy within 60 minutes on two cores.

  Few epochs, so the schedule is a triangle (linear ramp to the peak, linear decay to zero) with
  Nesterov momentum and a large batch, label smoothing 0.2, flips and 2-pixel shifts, and flip
  test-time augmentation in the model: the few-epoch choices of Page's ResNet-9 study and
  Jordan's airbench, tuned to this network's throughput on the CPU (docs/recipes.md).
  """
  add_augment_options(c.dataset.augment)
  c.dataset.augment.crop = False
  c.dataset.augment.pad_crop = 2  # Shifts of up to 2 pixels: 4 is too strong for few epochs.
  c.dataset.augment.flip = True
  # input_mode stays 'host': on the CPU the device path's gather and per-image shifts halved the
  # step rate (81 against 152 examples/s, docs/recipes.md), while grain's worker keeps up.
  c.optimizer.name = 'momentum'
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = True
  c.optimizer.learning_rate = 0.4  # Peak, with the 1/8 logit scale (Page's ResNet-9 pairing).
  c.schedule.name = 'linear'
  c.schedule.warmup_epochs = 2.0  # The triangle's peak at a fifth of the run.
  c.schedule.final_lr_ratio = 0.0
  c.optimizer.weight_decay = 5e-4  # L2 added to the gradient, every parameter.
  c.optimizer.weight_decay_on = 'all'
  c.task.label_smoothing = 0.2
  c.loop.batch_size = 512
  c.loop.num_epochs = 10  # 4-5 minutes each on the 2-core CPU (results/cpu_cnn/).
  c.loop.log_every_steps = 20
  return c


def make_tiny(c: ml_collections.ConfigDict, *, arch: str) -> ml_collections.ConfigDict:
  """Shrinks a CNN config to a seconds-long CPU run on scikit-learn digits (8x8x1)."""
  c.dataset.name = 'digits'
  c.dataset.train_split = 'train[:1200]'
  c.dataset.val_split = 'train[1200:]'
  c.dataset.test_split = 'test'
  c.dataset.mean = (0.3,)
  c.dataset.std = (0.4,)
  c.dataset.augment.flip = False  # Digits are not mirror-symmetric.
  c.dataset.augment.pad_crop = 0  # A shift is an eighth of an 8x8 digit.
  # Few distinct kernel shapes: on CPU, compiling the random initialiser costs seconds per shape.
  if arch == 'googlenet':
    c.model.stem_width, c.model.stage_widths, c.model.blocks_per_stage = 16, (16, 32), (1, 1)
  elif arch == 'densenet':
    c.model.growth_rate, c.model.layers_per_block, c.model.bottleneck = 8, (2, 2), 2
  elif arch == 'fast':
    c.model.widths, c.model.stem_width = (16, 32), 8
    c.speed.input_mode = 'host'
    c.task.label_smoothing = 0.0
  else:
    c.model.stage_widths, c.model.blocks_per_stage = (16, 16), (1, 1)
  # The fast CNN keeps its own peak: its logits are scaled by 1/8, and 0.05 leaves it at 69 %.
  c.optimizer.learning_rate = 0.4 if arch == 'fast' else 0.05
  c.schedule.warmup_epochs = 0.0
  c.loop.batch_size = 64
  c.loop.num_epochs = 8
  c.loop.log_every_steps = 0
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = common.parse_args(arg, ARGS)
  c = common.base_config()
  c.model = model_for(args['arch'])
  if args['arch'] == 'fast':
    fast_recipe(c)
  else:
    cnn_recipe(c, arch=args['arch'])
  if args['tiny']:
    make_tiny(c, arch=args['arch'])
  return common.finish(c, args)
