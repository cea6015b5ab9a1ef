r"""The reference-sized ViT trained from scratch on CIFAR-10 with a modern recipe.

Run:
  python train.py --config=configs/vit_recipe.py:layers=6 --workdir=runs/vit_recipe/l6

Variant arguments (after the colon): ``layers`` (2, 4, 6: the reference sizes, 1,086,730 /
2,140,938 / 3,195,146 parameters), ``block`` (prenorm | postnorm), ``tiny`` (a seconds-long CPU
run on scikit-learn digits, for tests).

The model is the reference ViT unchanged (patch 4, width 256, MLP 512, 8 heads) plus stochastic
depth; everything else is the recipe: AdamW with linear warmup and cosine decay, label smoothing,
gradient clipping, random crop with padding + flip, RandAugment, and mixup/CutMix, for 300
epochs. Aim: >= 90 % CIFAR-10 test accuracy from scratch with 6 layers. Not measured in this
repository yet; see docs/recipes.md for the expected figures and what they rest on.
"""

import ml_collections

from configs import cnn
from configs import common
from configs import vit_prenorm

ARGS = {'layers': 6, 'block': 'prenorm', 'tiny': False}


def recipe(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Sets the modern recipe's fields on a ViT config (model, data and optimisation)."""
  c.model.drop_path = 0.1  # Stochastic depth of the last block (linearly less in earlier ones).
  c.model.dropout = 0.0  # Stochastic depth and the augmentations regularise instead.

  aug = cnn.add_augment_options(c.dataset.augment)
  aug.crop = False  # Random crop with padding rather than the resized crop ...
  aug.pad_crop = 4  # ... of up to 4 pixels, the CIFAR standard.
  aug.flip = True
  aug.randaugment_ops = 2  # RandAugment N=2 ...
  aug.randaugment_magnitude = 9.0  # ... at M=9 of 10.
  aug.mixup_alpha = 0.8  # Mixup Beta(0.8, 0.8) ...
  aug.cutmix_alpha = 1.0  # ... or CutMix Beta(1, 1), one of the two per batch ...
  aug.mix_switch_prob = 0.5  # ... chosen with equal odds.
  aug.mix_prob = 1.0

  c.optimizer.name = 'adamw'  # Adam with decoupled weight decay.
  c.optimizer.learning_rate = 5e-4  # Peak, for batch 128.
  c.optimizer.weight_decay = 0.05
  c.optimizer.weight_decay_on = 'matrices'  # Biases and LayerNorm gains are not decayed.
  c.schedule.name = 'cosine'
  c.schedule.warmup_epochs = 10.0  # Transformers need a gentle start without BatchNorm to steady them.
  c.schedule.final_lr_ratio = 0.01
  c.optimizer.grad_clip_norm = 1.0
  c.task.label_smoothing = 0.1  # Applied on top of the mixed targets.
  c.loop.batch_size = 128
  c.loop.num_epochs = 300
  c.loop.log_every_steps = 100
  c.loop.checkpoint_every_epochs = 10  # Plus every new best, which the loop always saves.
  return c


def make_tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks the recipe to a seconds-long CPU run on scikit-learn digits (augmentations kept)."""
  vit_prenorm.make_tiny(c)
  c.dataset.augment.pad_crop = 1  # One pixel of an 8x8 digit; flips stay off for digits.
  c.schedule.warmup_epochs = 0.5
  c.optimizer.learning_rate = 1e-3
  c.loop.checkpoint_every_epochs = 1
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = common.parse_args(arg, ARGS)
  c = common.base_config()
  c.model = vit_prenorm.vit_model(layers=args['layers'], block=args['block'])
  c.model.drop_path = 0.0  # Stochastic-depth rate of the last block (set by the recipe).
  # The recipe's own initialisation: Xavier kernels, zero biases, N(0, 0.02) positions.
  c.model.init = 'flax'
  c.speed.cpu_microbatch_size = vit_prenorm.CPU_MICROBATCH_SIZE  # Cache-sized micro-batches on CPUs.
  recipe(c)
  if args['tiny']:
    make_tiny(c)
  return common.finish(c, args)
