"""curvelab core: the pieces of the one training path every run takes.

The training loop itself lives in ``train.py``; this package holds what it is built from
(durations and cadence, optimizers, sharding, the train state, checkpoints, run files, validation).
"""
