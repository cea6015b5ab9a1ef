r"""The reference ViT on CIFAR-10 with post-norm blocks (reference experiment 7).

Run:
  python train.py --config=configs/vit_postnorm.py:layers=6,optimizer=adamw --workdir=runs/exp7

Variant arguments: ``layers``, ``optimizer``, ``tiny`` as in ``configs/vit_prenorm.py``.
"""

from configs import vit_prenorm


def get_config(arg: str | None = None):
  c = vit_prenorm.get_config(arg)
  c.model.block = 'postnorm'  # LN(x + f(x)), the original Transformer's placement.
  return c
