"""The CNN baseline of the CPU study: the few-epoch recipe, full CIFAR-10 scale, on two cores.

Run with:  python sweep.py --experiments=experiments/cpu_cnn.py --seeds=0, --root=runs/cpu_cnn

``configs/cnn.py:arch=fast`` (models/cnn_fast.py): 45,000 training images, validation
``train[45000:]``, test ``test``, 10 epochs; the target is >= 90 % test accuracy within 60 minutes
of training on the 2-core CPU (docs/recipes.md has the recipe and the measured result).
"""

from sweeps import Run

EXPERIMENTS = [
    Run("cnn_fast", "configs/cnn.py:arch=fast", {}),
]
