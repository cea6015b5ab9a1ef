"""Optimizers and learning-rate schedules, with the reference study's PyTorch semantics.

``adam``      Adam, no weight decay (``torch.optim.Adam(weight_decay=0)``).
``adamw``     Adam with decoupled weight decay ``p -= lr * wd * p`` (``torch.optim.AdamW``).
``sgd``       SGD with L2 weight decay added to the gradient (``torch.optim.SGD(weight_decay=wd)``).
``momentum``  the same with heavy-ball momentum (``torch.optim.SGD(momentum=m)``: buf = m*buf + g),
              or Nesterov's (``nesterov=True``: the step is g + m*buf).

Gradient clipping by global norm comes first in the chain, as ``clip_grad_norm_`` runs before
``optimizer.step()`` in PyTorch, so the L2 term of ``sgd``/``momentum`` is never clipped.
"""

from typing import Callable

import jax
import optax

from curvelab import durations
from curvelab import errors

OPTIMIZERS = ('adam', 'adamw', 'sgd', 'momentum')
SCHEDULES = ('constant', 'cosine', 'linear')
WEIGHT_DECAY_ON = ('all', 'matrices')


def make_schedule(config, *, steps_per_epoch: int) -> optax.Schedule:
  """Learning rate as a function of the optimizer step: linear warmup, then the decay.

  Args:
    config: run config with ``learning_rate``, ``lr_schedule`` (constant|cosine|linear),
      ``warmup_epochs``, ``final_lr_ratio`` (the decayed value as a fraction of the peak) and
      ``num_epochs``.
    steps_per_epoch: optimizer steps per epoch.

  Returns:
    An optax schedule.
  """
  name = config.schedule.name
  if name not in SCHEDULES:
    raise errors.ConfigError(f'schedule.name={name!r} is unknown; allowed: {", ".join(SCHEDULES)}.')
  peak = float(config.optimizer.learning_rate)
  total = durations.to_steps(steps_per_epoch=steps_per_epoch, epochs=config.loop.num_epochs)
  warmup = durations.to_steps(steps_per_epoch=steps_per_epoch,
                              epochs=config.schedule.warmup_epochs)
  warmup = min(warmup, total)
  final = peak * float(config.schedule.final_lr_ratio)
  if name == 'constant':
    main = optax.constant_schedule(peak)
  elif name == 'cosine':
    main = optax.cosine_decay_schedule(peak, max(total - warmup, 1), alpha=final / peak)
  else:
    main = optax.linear_schedule(peak, final, max(total - warmup, 1))
  if warmup == 0:
    return main
  # Warmup starts from peak/warmup rather than 0 so that the first step already moves.
  ramp = optax.linear_schedule(peak / warmup, peak, warmup - 1) if warmup > 1 else (
      optax.constant_schedule(peak))
  return optax.join_schedules([ramp, main], [warmup])


def _decay_mask(which: str) -> Callable | None:
  """Which parameters weight decay touches: all (the reference) or matrices only (ndim >= 2)."""
  if which == 'all':
    return None
  return lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(config, *, steps_per_epoch: int) -> tuple[optax.GradientTransformation,
                                                               optax.Schedule]:
  """Builds the optimizer named by ``config.optimizer.name`` and its schedule.

  Args:
    config: run config (``optimizer``, ``learning_rate``, ``weight_decay``, ``momentum``,
      ``grad_clip_norm``, ``weight_decay_on`` and the schedule fields).
    steps_per_epoch: optimizer steps per epoch.

  Returns:
    ``(transformation, schedule)``.
  """
  name = config.optimizer.name
  if name not in OPTIMIZERS:
    raise errors.ConfigError(f'optimizer.name={name!r} is unknown; allowed: {", ".join(OPTIMIZERS)}.')
  which = config.optimizer.weight_decay_on
  if which not in WEIGHT_DECAY_ON:
    raise errors.ConfigError(
        f'optimizer.weight_decay_on={which!r} is unknown; allowed: {", ".join(WEIGHT_DECAY_ON)}.')
  schedule = make_schedule(config, steps_per_epoch=steps_per_epoch)
  wd = float(config.optimizer.weight_decay)
  mask = _decay_mask(which)
  chain = []
  clip = float(config.optimizer.grad_clip_norm)
  if clip > 0:
    chain.append(optax.clip_by_global_norm(clip))
  if name == 'adam':
    chain.append(optax.adam(schedule))
  elif name == 'adamw':
    chain.append(optax.adamw(schedule, weight_decay=wd, mask=mask))
  else:
    if wd > 0:
      chain.append(optax.add_decayed_weights(wd, mask=mask))
    momentum = float(config.optimizer.momentum) if name == 'momentum' else None
    nesterov = bool(config.optimizer.nesterov) and momentum is not None
    chain.append(optax.sgd(schedule, momentum=momentum, nesterov=nesterov))
  return optax.chain(*chain), schedule
