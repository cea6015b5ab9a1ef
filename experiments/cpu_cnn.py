"""The CNN baseline of the CPU study: the few-epoch recipe, full CIFAR-10 scale, on two cores.

Run with:  python sweep.py --experiments=experiments/cpu_cnn.py --seeds=0, --root=runs/cpu_cnn
           (``--only=cnn_fast_e24`` for the hour-long run alone)

``configs/cnn.py:arch=fast`` (models/cnn_fast.py): 45,000 training images, validation
``train[45000:]``, test ``test``; the target is >= 90 % test accuracy within 60 minutes of
training on the 2-core CPU (docs/recipes.md has the recipe and the measured results).

* ``cnn_fast``: the recipe as configured, 10 epochs (sized for the AMD EPYC machine, 4-5 minutes
  an epoch).
* ``cnn_fast_e24``: the same recipe stretched to fill the hour on a machine whose train step runs
  ~390 examples/s (``python benchmarks/conv_step.py --config=configs/cnn.py:arch=fast --steps=2
  --repeats=3`` on the 2-core Intel Xeon, 2026-12-07: 1.31 s per step of 512, about 2 minutes an
  epoch with evaluation): 24 epochs, the triangle's peak still at a fifth of the run. The time
  budget stops it at the end of the epoch that passes 60 minutes, should the machine be slower.
"""

from sweeps import Run

EXPERIMENTS = [
    Run("cnn_fast", "configs/cnn.py:arch=fast", {}),
    Run("cnn_fast_e24", "configs/cnn.py:arch=fast",
        {"loop.num_epochs": 24, "schedule.warmup_epochs": 4.8,
         "stopping.max_train_seconds": 3600.0}),
]
