"""What moves the reference study's experiment 1 at full scale: initialisation, measured.

Run with:  python sweep.py --experiments=experiments/reference_ablations.py --seeds=0, \
               --root=runs/reference_ablations

Experiment 1 of the study (2-layer pre-norm ViT, Adam, lr 3e-4, batch 128, 10 epochs, 45,000
images, validation ``train[45000:]``, test ``test``) with one change from
``experiments/reference_vit.py``'s ``exp1_l2_adam``:

* ``exp1_l2_adam_flax_init``: ``model.init='flax'`` (Xavier-uniform kernels, zero biases, a zero
  CLS token, N(0, 0.02) positions) instead of the study's PyTorch defaults.

The validation-split question (the study's validation examples overlap its training examples) is
measured on the finished runs' checkpoints with ``eval.py --split='train[:5000]'``: accuracy on
5,000 training examples the model was fitted on, against ``train[45000:]``, which it never saw.
Run to the end on the 2-core CPU and published in results/cpu_reference_ablations/, with those
evaluations in its evals.jsonl; results/README.md says what they measure.
"""

from sweeps import Run

EXPERIMENTS = [
    Run("exp1_l2_adam_flax_init", "configs/vit_prenorm.py:layers=2,optimizer=adam",
        {"model.init": "flax"}),
]
