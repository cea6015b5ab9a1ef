"""Reference ViT study: optimizers, depth and norm placement on the ViT configs.

Run with:  python sweep.py --experiments=experiments/reference_vit.py --root=runs/reference_vit
Names read as exp<N>_l<layers>_<optimizer>[_postnorm].
"""

from sweeps import Run

# Three seeds so that the report can test whether neighbouring rows really differ.
SEEDS = (0, 1, 2)

EXPERIMENTS = [
    # Optimizer comparison at two layers.
    Run("exp1_l2_adam", "configs/vit_prenorm.py:layers=2,optimizer=adam"),
    Run("exp2_l2_adamw", "configs/vit_prenorm.py:layers=2,optimizer=adamw"),
    Run("exp3_l2_sgd", "configs/vit_prenorm.py:layers=2,optimizer=sgd"),
    Run("exp4_l2_momentum", "configs/vit_prenorm.py:layers=2,optimizer=momentum"),
    # Depth with AdamW.
    Run("exp5_l4_adamw", "configs/vit_prenorm.py:layers=4,optimizer=adamw"),
    Run("exp6_l6_adamw", "configs/vit_prenorm.py:layers=6,optimizer=adamw"),
    # Norm placement at six layers (compare with exp6).
    Run("exp7_l6_adamw_postnorm", "configs/vit_postnorm.py:layers=6,optimizer=adamw"),
]
