"""Fabricated histories with known problems, for tests, demos and tuning the thresholds.

Each function returns canonical rows (docs/run_files.md) shaped like a real classifier trained on a
small data set: losses start near ln(10) and decay roughly exponentially, with multiplicative noise
on the validation curve (evaluation on a few hundred examples) and little on the epoch-mean training
loss.
"""

from __future__ import annotations

import math

import numpy as np

CHANCE10 = math.log(10)


def _rows(train, val, lr=None, val_acc=None, train_acc=None, epoch_time=2.0, **extra) -> list:
  rows = []
  elapsed = 0.0
  for i in range(len(train)):
    elapsed += epoch_time
    row = {"epoch": i + 1, "step": (i + 1) * 50, "train_loss": float(train[i]),
           "val_loss": float(val[i]), "learning_rate": float(lr[i]) if lr is not None else 1e-3,
           "epoch_time_s": epoch_time, "eval_time_s": 0.0, "elapsed_s": elapsed}
    if val_acc is not None:
      row["val_accuracy"] = float(val_acc[i])
    if train_acc is not None:
      row["train_accuracy"] = float(train_acc[i])
    for key, values in extra.items():
      row[key] = values[i]
    rows.append(row)
  return rows


def _noise(rng, n, scale):
  return 1.0 + scale * rng.standard_normal(n)


def cosine_lr(n: int, peak: float = 1e-3) -> np.ndarray:
  """A cosine schedule evaluated at the end of each epoch (reaches ~0 at the last epoch)."""
  e = np.arange(1, n + 1)
  return peak * 0.5 * (1 + np.cos(np.pi * e / n))


def healthy(n: int = 40, seed: int = 0, tau: float = 4.0, noise: float = 0.02,
            schedule: str = "constant") -> list:
  """Decays and levels off; validation noisy around its plateau."""
  rng = np.random.default_rng(seed)
  e = np.arange(1, n + 1)
  train = (0.08 + 2.0 * np.exp(-e / tau)) * _noise(rng, n, noise / 4)
  val = (0.25 + 1.9 * np.exp(-e / tau)) * _noise(rng, n, noise)
  acc = np.clip(0.95 - 0.8 * np.exp(-e / tau) + 0.005 * rng.standard_normal(n), 0, 1)
  lr = cosine_lr(n) if schedule == "cosine" else np.full(n, 1e-3)
  return _rows(train, val, lr=lr, val_acc=acc)


def healthy_lm(n: int = 30, seed: int = 0) -> list:
  """Language model: loss from ~7 nats levelling off near 3.3, with perplexity."""
  rng = np.random.default_rng(seed)
  e = np.arange(1, n + 1)
  train = (3.1 + 3.5 * np.exp(-e / 3.0)) * _noise(rng, n, 0.002)
  val = (3.3 + 3.3 * np.exp(-e / 3.0)) * _noise(rng, n, 0.004)
  rows = _rows(train, val, lr=cosine_lr(n, 3e-4))
  for row in rows:
    row["train_perplexity"] = math.exp(row["train_loss"])
    row["val_perplexity"] = math.exp(row["val_loss"])
  return rows


def overfitting(n: int = 40, seed: int = 0, turn: int = 12, rate: float = 0.03) -> list:
  """Validation loss bottoms out at `turn` and climbs `rate` per epoch; training keeps falling."""
  rng = np.random.default_rng(seed)
  e = np.arange(1, n + 1)
  train = (0.01 + 2.1 * np.exp(-e / 4.0)) * _noise(rng, n, 0.005)
  val = (0.3 + 1.9 * np.exp(-e / 4.0) + rate * np.clip(e - turn, 0, None)) * _noise(rng, n, 0.01)
  return _rows(train, val)


def not_converged(n: int = 15, seed: int = 0, tau: float = 12.0) -> list:
  """Stopped while both curves still fall steeply."""
  rng = np.random.default_rng(seed)
  e = np.arange(1, n + 1)
  train = (0.1 + 2.1 * np.exp(-e / tau)) * _noise(rng, n, 0.003)
  val = (0.3 + 2.0 * np.exp(-e / tau)) * _noise(rng, n, 0.01)
  return _rows(train, val)


def underfitting(n: int = 25, seed: int = 0) -> list:
  """A too-small model: both losses stop near 1.6 (chance is 2.3) and stay there."""
  rng = np.random.default_rng(seed)
  e = np.arange(1, n + 1)
  train = (1.6 + 0.6 * np.exp(-e / 1.5)) * _noise(rng, n, 0.002)
  val = (1.62 + 0.6 * np.exp(-e / 1.5)) * _noise(rng, n, 0.005)
  return _rows(train, val)


def no_learning(n: int = 12, seed: int = 0) -> list:
  """Loss stuck at ln(10), accuracy at 10%."""
  rng = np.random.default_rng(seed)
  train = CHANCE10 * _noise(rng, n, 0.002)
  val = CHANCE10 * _noise(rng, n, 0.002)
  acc = 0.1 + 0.01 * rng.standard_normal(n)
  return _rows(train, val, val_acc=acc)


def lr_too_high(n: int = 20, seed: int = 0) -> list:
  """Falls at first, then the training loss jumps around as much as it fell."""
  rng = np.random.default_rng(seed)
  e = np.arange(1, n + 1)
  base = 0.8 + 1.4 * np.exp(-e / 2.0)
  train = base + 0.35 * np.abs(rng.standard_normal(n)) * (e > 3)
  val = train + 0.1 + 0.3 * np.abs(rng.standard_normal(n))
  return _rows(train, val)


def lr_too_low(n: int = 20, seed: int = 0) -> list:
  """Falls in a straight line, slowly."""
  rng = np.random.default_rng(seed)
  e = np.arange(1, n + 1)
  train = (2.30 - 0.02 * e) * _noise(rng, n, 0.0005)
  val = (2.31 - 0.019 * e) * _noise(rng, n, 0.001)
  return _rows(train, val, lr=np.full(n, 1e-5))


def lr_collapsed(n: int = 30, seed: int = 0, at: int = 6) -> list:
  """A plateau scheduler cut the rate by 10x every epoch from `at` on, while validation improved."""
  rng = np.random.default_rng(seed)
  e = np.arange(1, n + 1)
  progress = np.minimum(e, at)  # learning stops when the rate collapses
  train = (0.1 + 2.1 * np.exp(-progress / 5.0)) * _noise(rng, n, 0.002)
  val = (0.3 + 2.0 * np.exp(-progress / 5.0)) * _noise(rng, n, 0.003)
  lr = 1e-3 * 0.1 ** np.clip(e - at + 1, 0, 5)
  return _rows(train, val, lr=lr)


def diverged(n: int = 10, at: int = 6) -> list:
  """Normal until epoch `at`, NaN from then on."""
  e = np.arange(1, n + 1)
  train = 0.1 + 2.1 * np.exp(-e / 3.0)
  val = 0.3 + 2.0 * np.exp(-e / 3.0)
  train[at - 1:] = np.nan
  val[at - 1:] = np.nan
  return _rows(train, val)
