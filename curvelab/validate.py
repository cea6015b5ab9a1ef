"""Config checks that run before any data is decoded or any step is compiled.

Each failure raises :class:`~curvelab.errors.ConfigError` naming the field and what is allowed.
"""

import importlib.util

from curvelab import errors
from curvelab import optim

COMPUTE_DTYPES = ('float32', 'bfloat16')
NAN_POLICIES = ('stop', 'rollback')


def _positive(config, field: str, kind=(int,)) -> None:
  value = config
  for part in field.split('.'):
    value = value[part]
  # `not value > 0` also refuses NaN, which compares false with everything.
  if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
    noun = 'integer' if kind == (int,) else 'number'
    raise errors.ConfigError(f'{field} must be a positive {noun}, got {value!r}.')


def _count(config, field: str, *, zero_means: str) -> None:
  """An optional integer field >= 0 whose 0 has a special meaning (``zero_means``)."""
  value = config.get(field, 0)
  if isinstance(value, bool) or not isinstance(value, int) or value < 0:
    raise errors.ConfigError(f'{field} must be an integer >= 0 (0 = {zero_means}), got {value!r}.')


def _choice(value, field: str, allowed) -> None:
  if value not in allowed:
    raise errors.ConfigError(f'{field}={value!r} is unknown; allowed: {", ".join(allowed)}.')


def check(config) -> None:
  """Checks the fields every run has (the model and data check their own)."""
  _positive(config, 'learning_rate', (int, float))
  _positive(config, 'batch_size')
  _positive(config, 'num_epochs')
  _positive(config, 'grad_accum_steps')
  if 'num_layers' in config.model:
    _positive(config, 'model.num_layers')
  _choice(config.optimizer, 'optimizer', optim.OPTIMIZERS)
  _choice(config.lr_schedule, 'lr_schedule', optim.SCHEDULES)
  _choice(config.weight_decay_on, 'weight_decay_on', optim.WEIGHT_DECAY_ON)
  _choice(config.compute_dtype, 'compute_dtype', COMPUTE_DTYPES)
  for field in ('weight_decay', 'warmup_epochs', 'grad_clip_norm', 'label_smoothing',
                'early_stopping_min_delta', 'final_lr_ratio', 'max_train_seconds',
                'log_every_seconds'):
    if config[field] < 0:
      raise errors.ConfigError(f'{field} must be >= 0, got {config[field]!r}.')
  if config.eval_batch_size < 0:
    raise errors.ConfigError(f'eval_batch_size must be >= 0 (0 = batch_size), got '
                             f'{config.eval_batch_size}.')
  if config.batch_size % config.grad_accum_steps:
    raise errors.ConfigError(
        f'batch_size={config.batch_size} is not divisible by grad_accum_steps='
        f'{config.grad_accum_steps}.')
  _count(config, 'concurrent_microbatches', zero_means='automatic')
  _count(config, 'cpu_microbatch_size', zero_means='off')
  for field in ('early_stopping_patience', 'sanity_examples', 'log_every_steps'):
    if config[field] < 0:
      raise errors.ConfigError(f'{field} must be >= 0, got {config[field]!r}.')
  for field in ('eval_every_epochs', 'checkpoint_every_epochs', 'checkpoint_keep_latest'):
    _positive(config, field)
  _choice(config.get('metric_writer', 'clu'), 'metric_writer', ('clu', 'events'))
  if config.get('metric_writer', 'clu') == 'clu' and importlib.util.find_spec('tensorflow') is None:
    # CLU's TensorBoard writer imports TensorFlow when the first epoch ends: refuse now instead.
    raise errors.ConfigError(
        "metric_writer='clu' needs TensorFlow (pip install tensorflow-cpu), which is not installed; "
        "use metric_writer=events (the same TensorBoard event files, written without TensorFlow).")
  _choice(config.get('nan_policy', 'stop'), 'nan_policy', NAN_POLICIES)
  if not 0.0 < config.get('nan_lr_factor', 0.5) < 1.0:
    raise errors.ConfigError(f'nan_lr_factor must be in (0, 1), got {config.nan_lr_factor}.')
