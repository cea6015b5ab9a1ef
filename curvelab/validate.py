"""Config checks that run before any data is decoded or any step is compiled.

One function per config section (configs/common.py), each the one place its fields are checked;
:func:`check` runs them all. Checks that need the data or the devices (the input mode against the
dataset, batches against the device count) are in ``curvelab/build.py``. Each failure raises
:class:`~curvelab.errors.ConfigError` naming the field (``section.field``) and what is allowed.
"""

import importlib.util

from configs import common
from curvelab import errors
from curvelab import optim

COMPUTE_DTYPES = ('float32', 'bfloat16')
INPUT_MODES = ('host', 'device')
METRIC_WRITERS = ('clu', 'events')
NAN_POLICIES = ('stop', 'rollback')


def _value(config, field: str, default=KeyError):
  """The value of a dotted ``field``; ``default`` where it is missing (else KeyError)."""
  value = config
  for part in field.split('.'):
    if part not in value:
      if default is KeyError:
        raise errors.ConfigError(f'config field {field} is missing.')
      return default
    value = value[part]
  return value


def _positive(config, field: str, kind=(int,)) -> None:
  value = _value(config, field)
  # `not value > 0` also refuses NaN, which compares false with everything.
  if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
    noun = 'integer' if kind == (int,) else 'number'
    raise errors.ConfigError(f'{field} must be a positive {noun}, got {value!r}.')


def _at_least_zero(config, field: str, *, zero_means: str = '', kind=(int, float)) -> None:
  """A field >= 0 (of ``kind``); ``zero_means`` says what its 0 stands for, if anything."""
  value = _value(config, field)
  if isinstance(value, bool) or not isinstance(value, kind) or not value >= 0:
    meaning = f' (0 = {zero_means})' if zero_means else ''
    noun = 'an integer' if kind == (int,) else 'a number'
    raise errors.ConfigError(f'{field} must be {noun} >= 0{meaning}, got {value!r}.')


def _choice(config, field: str, allowed) -> None:
  value = _value(config, field)
  if value not in allowed:
    raise errors.ConfigError(f'{field}={value!r} is unknown; allowed: {", ".join(allowed)}.')


def check(config) -> None:
  """Checks the sections every run has (the model and the data check their own fields)."""
  if 'num_layers' in config.model:
    _positive(config, 'model.num_layers')
  check_task(config)
  check_optimizer(config)
  check_schedule(config)
  check_loop(config)
  check_speed(config)
  check_stopping(config)
  check_doctor(config)
  check_sanity(config)


def check_task(config) -> None:
  """The task's own fields; the decoding tasks' decoder settings where the task has them."""
  from tasks import base  # pylint: disable=g-import-not-at-top
  _at_least_zero(config, 'task.label_smoothing')
  if 'decoder' in config.task:
    _choice(config, 'task.decoder', base.DECODERS)
  if 'beam_size' in config.task:
    _positive(config, 'task.beam_size')


def check_doctor(config) -> None:
  """``doctor.stop_on`` names findings the doctor has; ``doctor.patience`` >= 1."""
  from diagnostics import FINDING_IDS  # pylint: disable=g-import-not-at-top
  for finding_id in stop_on_ids(config):
    if finding_id not in FINDING_IDS:
      raise errors.ConfigError(f'doctor.stop_on: {finding_id!r} is not a finding id; allowed: '
                               f'{", ".join(sorted(FINDING_IDS))}.')
  _positive(config, 'doctor.patience')


def stop_on_ids(config) -> tuple[str, ...]:
  """The finding ids of ``doctor.stop_on`` (comma-separated)."""
  return tuple(s.strip() for s in config.doctor.stop_on.split(',') if s.strip())


def check_optimizer(config) -> None:
  _choice(config, 'optimizer.name', optim.OPTIMIZERS)
  _positive(config, 'optimizer.learning_rate', (int, float))
  _at_least_zero(config, 'optimizer.weight_decay')
  _choice(config, 'optimizer.weight_decay_on', optim.WEIGHT_DECAY_ON)
  _at_least_zero(config, 'optimizer.momentum')
  _at_least_zero(config, 'optimizer.grad_clip_norm', zero_means='off')


def check_schedule(config) -> None:
  _choice(config, 'schedule.name', optim.SCHEDULES)
  _at_least_zero(config, 'schedule.warmup_epochs')
  _at_least_zero(config, 'schedule.final_lr_ratio')


def check_loop(config) -> None:
  for field in ('batch_size', 'num_epochs', 'eval_every_epochs', 'checkpoint_every_epochs',
                'checkpoint_keep_latest'):
    _positive(config, f'loop.{field}')
  _at_least_zero(config, 'loop.eval_batch_size', zero_means='batch_size', kind=(int,))
  _at_least_zero(config, 'loop.log_every_steps', zero_means='off', kind=(int,))
  _at_least_zero(config, 'loop.log_every_seconds', zero_means='off')
  _choice(config, 'loop.metric_writer', METRIC_WRITERS)
  if config.loop.metric_writer == 'clu' and importlib.util.find_spec('tensorflow') is None:
    # CLU's TensorBoard writer imports TensorFlow when the first epoch ends: refuse now instead.
    raise errors.ConfigError(
        "loop.metric_writer='clu' needs TensorFlow (pip install tensorflow-cpu), which is not "
        "installed; use loop.metric_writer=events (the same TensorBoard event files, written "
        "without TensorFlow).")


def check_speed(config) -> None:
  _choice(config, 'speed.compute_dtype', COMPUTE_DTYPES)
  _choice(config, 'speed.input_mode', INPUT_MODES)
  _positive(config, 'speed.steps_per_call')
  _positive(config, 'speed.grad_accum_steps')
  _at_least_zero(config, 'speed.concurrent_microbatches', zero_means='automatic', kind=(int,))
  _at_least_zero(config, 'speed.cpu_microbatch_size', zero_means='off', kind=(int,))
  if config.loop.batch_size % config.speed.grad_accum_steps:
    raise errors.ConfigError(
        f'loop.batch_size={config.loop.batch_size} is not divisible by speed.grad_accum_steps='
        f'{config.speed.grad_accum_steps}.')


def check_stopping(config) -> None:
  _at_least_zero(config, 'stopping.patience', zero_means='off', kind=(int,))
  _at_least_zero(config, 'stopping.min_delta')
  _at_least_zero(config, 'stopping.max_train_seconds', zero_means='off')
  _choice(config, 'stopping.nan_policy', NAN_POLICIES)
  if not 0.0 < config.stopping.nan_lr_factor < 1.0:
    raise errors.ConfigError(
        f'stopping.nan_lr_factor must be in (0, 1), got {config.stopping.nan_lr_factor}.')
  _at_least_zero(config, 'stopping.nan_max_rollbacks', kind=(int,))


def check_sanity(config) -> None:
  """A sanity run is made by the ':sanity=N' variant; its fields may not be undone afterwards."""
  _at_least_zero(config, 'sanity.examples', zero_means='off', kind=(int,))
  _positive(config, 'sanity.loss_threshold', (int, float))
  n = config.sanity.examples
  if not n:
    return
  for field, value in common.SANITY_FIELDS.items():
    got = _value(config, field, default=value)  # Fields this model or dataset lacks pass.
    if got != value:
      raise errors.ConfigError(
          f'sanity.examples={n} needs {field}={value!r} (got {got!r}): start a '
          f"sanity run with the config's ':sanity={n}' variant, e.g. "
          f'--config=configs/vit_prenorm.py:sanity={n}, and leave what it sets.')
  if config.loop.batch_size > n:
    raise errors.ConfigError(
        f'sanity.examples={n} needs loop.batch_size <= {n} (got {config.loop.batch_size}): one '
        'batch holds the examples.')
