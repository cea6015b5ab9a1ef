"""Experiment sets shipped with curvelab; run one with `python sweep.py --experiments=FILE`.

Each module here defines `EXPERIMENTS` (a list of sweeps.Run) and optionally `SEEDS`;
see sweeps/experiments.py for the API.
"""
