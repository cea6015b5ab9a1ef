"""Experiment sets shipped with curvelab; run one with `python sweep.py --experiments=FILE`.

Each experiment-set module here defines `EXPERIMENTS` (a list of sweeps.Run) and optionally
`SEEDS`; see sweeps/experiments.py for the API. Two modules are not sets:
`reference_published.py` holds the reference study's published figures (`report.py
--published=...`), and `gpu_reference.py` runs the study's tables on one GPU within a budget.
"""
