"""Nested config dicts: the one ``flatten`` (dotted keys) for resume checks, reports and the doctor,
and ``upgrade``, which reads the field names of earlier versions (``ALIASES``).

JAX-free (no imports beyond the standard library), so the report and the doctor use it too.
"""

import copy
from typing import Any, Mapping

# Top-level fields of earlier versions -> their place in today's sections (configs/common.py).
# None: the field is gone and its value lives elsewhere already (the sanity run's epoch limit was
# written into num_epochs, which config.json holds).
ALIASES = {
    'optimizer': 'optimizer.name',
    'learning_rate': 'optimizer.learning_rate',
    'weight_decay': 'optimizer.weight_decay',
    'weight_decay_on': 'optimizer.weight_decay_on',
    'momentum': 'optimizer.momentum',
    'nesterov': 'optimizer.nesterov',
    'grad_clip_norm': 'optimizer.grad_clip_norm',
    'lr_schedule': 'schedule.name',
    'warmup_epochs': 'schedule.warmup_epochs',
    'final_lr_ratio': 'schedule.final_lr_ratio',
    'batch_size': 'loop.batch_size',
    'eval_batch_size': 'loop.eval_batch_size',
    'num_epochs': 'loop.num_epochs',
    'log_every_steps': 'loop.log_every_steps',
    'log_every_seconds': 'loop.log_every_seconds',
    'eval_every_epochs': 'loop.eval_every_epochs',
    'checkpoint_every_epochs': 'loop.checkpoint_every_epochs',
    'checkpoint_keep_latest': 'loop.checkpoint_keep_latest',
    'metric_writer': 'loop.metric_writer',
    'compute_dtype': 'speed.compute_dtype',
    'input_mode': 'speed.input_mode',
    'steps_per_call': 'speed.steps_per_call',
    'grad_accum_steps': 'speed.grad_accum_steps',
    'concurrent_microbatches': 'speed.concurrent_microbatches',
    'cpu_microbatch_size': 'speed.cpu_microbatch_size',
    'best_metric': 'stopping.best_metric',
    'early_stopping_patience': 'stopping.patience',
    'early_stopping_min_delta': 'stopping.min_delta',
    'max_train_seconds': 'stopping.max_train_seconds',
    'nan_policy': 'stopping.nan_policy',
    'nan_lr_factor': 'stopping.nan_lr_factor',
    'nan_max_rollbacks': 'stopping.nan_max_rollbacks',
    'sanity_examples': 'sanity.examples',
    'sanity_loss_threshold': 'sanity.loss_threshold',
    'sanity_max_epochs': None,
    'label_smoothing': 'task.label_smoothing',
}


# What a config.json of an earlier version means by lacking a field added since: the behaviour it
# ran with (no time-based progress lines, no Nesterov momentum).
IMPLIED = {
    'loop.log_every_seconds': 0.0,
    'optimizer.nesterov': False,
}

# Why a field that ALIASES maps to None is gone.
GONE = {
    'sanity_max_epochs': "the ':sanity=N' variant sets loop.num_epochs, which may be overridden",
}


def alias_message(field: str) -> str | None:
  """One line saying where an earlier version's top-level ``field`` went; None if it is not one."""
  if field not in ALIASES:
    return None
  if ALIASES[field] is None:
    return f'config field {field!r} is gone: {GONE[field]}.'
  if field == 'sanity_examples':  # Set by a variant, which also turns off what stands in the way.
    return (f"config field {field!r} is now 'sanity.examples', set by the config's ':sanity=N' "
            "variant (e.g. --config=configs/vit_prenorm.py:sanity=5).")
  return f'config field {field!r} is now {ALIASES[field]!r} (config sections, configs/common.py).'


def _old_fields(config: Mapping) -> list[str]:
  """The top-level fields of ``config`` that are earlier versions' names (``ALIASES``).

  ``optimizer`` is both an old field (the optimizer's name) and today's section: only a value
  that is not a mapping is the old field.
  """
  return [k for k, v in config.items()
          if k in ALIASES and not (k == 'optimizer' and isinstance(v, Mapping))]


def upgrade(config: Any) -> Any:
  """A copy of ``config`` (a config.json dict) with every field of ``ALIASES`` in its section.

  A config already in sections comes back equal, as does anything not a mapping; a field whose
  alias is None is dropped (``GONE`` says why), and the fields of ``IMPLIED`` that an old config
  lacks get the value it ran with.
  """
  if not isinstance(config, Mapping):
    return copy.deepcopy(config)
  old = _old_fields(config)
  if not old:
    return copy.deepcopy(config)
  new = {k: copy.deepcopy(v) for k, v in config.items() if k not in old}
  for name in old:
    dotted = ALIASES[name]
    if dotted is None:
      continue
    *parents, leaf = dotted.split('.')
    node = new
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = copy.deepcopy(config[name])
  for dotted, value in IMPLIED.items():
    section, leaf = dotted.split('.')
    new.setdefault(section, {}).setdefault(leaf, value)
  return new


def _plain(value: Any) -> Any:
  # ConfigDict.to_dict() keeps tuples where config.json (JSON) has lists, nested ones included;
  # lists throughout make a live config compare equal to the same config read back from disk.
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


def flatten(config: Any, prefix: str = '') -> dict[str, Any]:
  """Flattens nested mappings into dotted keys: {'model': {'name': 'vit'}} -> {'model.name': 'vit'}.

  Keys are joined with '.' as they are (``f'{prefix}{key}'``). Lists and tuples stay whole leaf
  values, since a list-valued field is one factor, and tuples become lists (see ``_plain``). An
  empty mapping is a leaf value ({}), so a field set to {} still shows in a comparison.

  Args:
    config: a nested dict (or any Mapping), e.g. config.json or ``ConfigDict.to_dict()``.
    prefix: prepended to every key (used by the recursion).

  Returns:
    {dotted key: leaf value}; {} when ``config`` is not a mapping (a missing or malformed config).
  """
  if not isinstance(config, Mapping):
    return {}
  flat: dict[str, Any] = {}
  for key, value in config.items():
    dotted = f'{prefix}{key}'
    if isinstance(value, Mapping) and value:
      flat.update(flatten(value, dotted + '.'))
    else:
      flat[dotted] = _plain(value)
  return flat
