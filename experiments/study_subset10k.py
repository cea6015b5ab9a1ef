"""The side-by-side check against the reference study's own code on a CIFAR-10 subset.

Run with:  python sweep.py --experiments=experiments/study_subset10k.py --root=runs/subset10k

Experiment 2 of the study (2-layer pre-norm ViT, AdamW, lr 3e-4, batch 128) on the first 10,000
training images for 2 epochs, validated on train[45000:47000] and tested on test[:2000]: the
protocol under which the study's PyTorch code gave validation accuracy 0.402 and 0.381 and test
accuracy 0.421 and 0.392 for two seeds (issue 19's table). The reference configs' default
initialisation (`model.init='reference'`, PyTorch's) is the point of the comparison.
"""

from sweeps import Run

SEEDS = (0, 1, 2)

SUBSET = {
    "dataset.train_split": "train[:10000]",
    "dataset.val_split": "train[45000:47000]",
    "dataset.test_split": "test[:2000]",
    "loop.num_epochs": 2,
}

EXPERIMENTS = [
    Run("exp2_subset10k_reference_init", "configs/vit_prenorm.py:layers=2,optimizer=adamw",
        SUBSET),
]
