"""Reference ViTs against the small CNNs, for equal epochs and for an equal wall-clock budget.

Run with:  python sweep.py --experiments=experiments/reference_vs_cnn.py --root=runs/vit_vs_cnn
Report:    python report.py runs/vit_vs_cnn --out=runs/vit_vs_cnn/report

Names read as <view>_<run>: the seven reference ViTs (exp1..exp7 of experiments/reference_vit.py)
and the four ~0.26 M-parameter CNNs of configs/cnn.py, each in two views:

* ``epochs10_*``: the reference's own protocol length, 10 epochs for every run. The ViTs keep
  the reference recipe; the CNNs keep theirs (configs/cnn.py) with the cosine decay compressed
  into the 10 epochs.
* ``budget<S>s_*``: every run gets the same train+eval time, ``BUDGET_S`` seconds
  (``stopping.max_train_seconds``; the loop stops after the epoch that reaches it), with at most
  ``EPOCH_CAP`` epochs. Every run uses a constant learning rate after its warmup here (the
  reference ViTs already do), so stopping at the budget never cuts a decay short; the best
  validation checkpoint is the one tested. Compare these rows only between runs on the same
  device kind (summary.json records it).
"""

from sweeps import Run

# Three seeds so that the report can test whether neighbouring rows really differ.
SEEDS = (0, 1, 2)

EPOCHS = 10  # The reference study's training length.
BUDGET_S = 600.0  # Train+eval seconds per run in the equal-budget view.
EPOCH_CAP = 200  # Epoch limit of the equal-budget runs (the budget should stop them first).

REFERENCE_VITS = (
    ("exp1_l2_adam", "configs/vit_prenorm.py:layers=2,optimizer=adam"),
    ("exp2_l2_adamw", "configs/vit_prenorm.py:layers=2,optimizer=adamw"),
    ("exp3_l2_sgd", "configs/vit_prenorm.py:layers=2,optimizer=sgd"),
    ("exp4_l2_momentum", "configs/vit_prenorm.py:layers=2,optimizer=momentum"),
    ("exp5_l4_adamw", "configs/vit_prenorm.py:layers=4,optimizer=adamw"),
    ("exp6_l6_adamw", "configs/vit_prenorm.py:layers=6,optimizer=adamw"),
    ("exp7_l6_adamw_postnorm", "configs/vit_postnorm.py:layers=6,optimizer=adamw"),
)

SMALL_CNNS = tuple((arch, f"configs/cnn.py:arch={arch}")
                   for arch in ("googlenet", "resnet", "preact_resnet", "densenet"))


def _equal_epochs() -> list[Run]:
  return [Run(f"epochs{EPOCHS}_{name}", config, overrides={"loop.num_epochs": EPOCHS})
          for name, config in REFERENCE_VITS + SMALL_CNNS]


def _equal_budget() -> list[Run]:
  budget = {"loop.num_epochs": EPOCH_CAP, "stopping.max_train_seconds": BUDGET_S,
            "schedule.name": "constant"}
  return [Run(f"budget{int(BUDGET_S)}s_{name}", config, overrides=budget)
          for name, config in REFERENCE_VITS + SMALL_CNNS]


def get_experiments() -> list[Run]:
  """Both views: 11 runs for equal epochs, then the same 11 for the equal budget."""
  return _equal_epochs() + _equal_budget()
