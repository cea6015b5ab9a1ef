"""Everything a run builds from its config before training: data, task, model, mesh, state.

``build`` validates the config against the data and the devices before anything is decoded or
compiled, so bad input ends a run in seconds with one line.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from curvelab import errors
from curvelab import plan as plan_lib
from curvelab import sharding
from curvelab import state as state_lib
from curvelab import validate
import input_pipeline
import models
import tasks


def prepare_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A private, resolved copy of the config: ``loop.eval_batch_size`` 0 becomes the batch size."""
  config = ml_collections.ConfigDict(config.to_dict())
  if config.loop.eval_batch_size == 0:
    config.loop.eval_batch_size = config.loop.batch_size
  return config


@dataclasses.dataclass
class Setup:
  """Everything built from the config before training starts."""
  config: ml_collections.ConfigDict
  task: Any
  data: input_pipeline.Data
  model: Any
  mesh: Any
  best_metric: str
  best_mode: str
  # The attention kernel the model was built with (curvelab/plan.py: resolve_attention); the
  # plan reports it.
  attention: str = 'auto'
  plan: Any = None  # curvelab/plan.py's Plan, set once the model's state is known.


def build(config: ml_collections.ConfigDict) -> Setup:
  """Validates the config against data and devices and builds task, data and model.

  Every check here runs before any data is decoded or any step is compiled, so bad input ends the
  run in seconds with one line.
  """
  config = prepare_config(config)  # Idempotent: resolved configs pass through unchanged.
  validate.check(config)
  data = input_pipeline.build(config)  # First: the task and the model take what it found.
  task = tasks.build(config, vocabulary=data.extra.get('vocabulary'))
  models.validate(config.model, example_shape=data.example_shape)
  attention = plan_lib.resolve_attention()
  model = models.build(config.model, num_outputs=data.num_outputs, dtype=config.speed.compute_dtype,
                       attention=attention)
  _check_train_batch(config)
  sharding.check_batch_size(config.loop.eval_batch_size, field='loop.eval_batch_size')
  _check_input_mode(config, data)
  if config.sanity.examples > 0:
    sharding.check_batch_size(config.loop.batch_size, field='sanity.examples (batch)')
  best_metric = config.stopping.best_metric or task.best_metric
  best_mode = task.best_mode if best_metric == task.best_metric else (
      'max' if best_metric.endswith(HIGHER_IS_BETTER) else 'min')
  if not best_metric.startswith('val_'):
    raise errors.ConfigError(f'stopping.best_metric={best_metric!r} must be a '
                             'validation key (val_...).')
  return Setup(config=config, task=task, data=data, model=model, mesh=sharding.make_mesh(),
               best_metric=best_metric, best_mode=best_mode, attention=attention)


# Validation metrics where higher is better (the rest, losses, perplexity, WER, CER, are minimised).
HIGHER_IS_BETTER = ('accuracy', 'bleu', 'exact_match')


def _check_input_mode(config, data) -> None:
  """``speed.input_mode=device`` against the data (validate.check_speed checks the choice)."""
  if config.speed.input_mode == 'device':
    if data.device_loader is None:
      raise errors.ConfigError(
          f'speed.input_mode=device supports in-memory image datasets; dataset.name='
          f'{config.dataset.name!r} with task {config.task.name!r} allows: host.')
    # pylint: disable=g-import-not-at-top
    from input_pipeline import augment as augment_lib
    from input_pipeline import device as device_lib
    extra = [o for o in augment_lib.active_options(config.dataset.augment)
             if o not in device_lib.DEVICE_OPTIONS]
    if extra:
      raise errors.ConfigError(
          f'speed.input_mode=device runs flip, random resized crop and pad_crop on the device; '
          f'dataset.augment.{extra[0]} is host-only: use speed.input_mode=host or turn it off.')


def _check_train_batch(config: ml_collections.ConfigDict) -> None:
  """The global batch must split over devices, then into every micro-batch asked for."""
  fields = {'speed.grad_accum_steps': config.speed.grad_accum_steps,
            'speed.concurrent_microbatches': config.speed.concurrent_microbatches}
  sharding.check_batch_size(config.loop.batch_size,
                            multiples={k: v for k, v in fields.items() if v > 1})


def build_without_data(config: ml_collections.ConfigDict, *, num_outputs: int,
                       attention: str = 'auto') -> Setup:
  """A Setup for synthetic batches (benchmarks): the same model, task, optimizer and mesh.

  ``attention`` forces an attention implementation (models/attention.py's ``IMPLEMENTATIONS``)
  for A/B timings; ``'auto'`` chooses by backend, as a run does.
  """
  validate.check(config)
  task = tasks.build(config)
  attention = plan_lib.resolve_attention(attention)
  model = models.build(config.model, num_outputs=num_outputs, dtype=config.speed.compute_dtype,
                       attention=attention)
  _check_train_batch(config)
  return Setup(config=config, task=task, data=None, model=model, mesh=sharding.make_mesh(),
               best_metric=task.best_metric, best_mode=task.best_mode, attention=attention)


def _example_inputs(setup: Setup, batch: dict) -> dict:
  return setup.task.model_inputs(jax.tree.map(lambda x: jnp.asarray(x[:1]), batch))


def param_shapes(setup: Setup, example_batch: dict):
  """``config -> parameter shapes`` for the resume check."""
  inputs = _example_inputs(setup, example_batch)

  def shapes(config):
    model = models.build(config.model, num_outputs=setup.data.num_outputs,
                         dtype=config.speed.compute_dtype, attention=setup.attention)
    tree = jax.eval_shape(lambda: state_lib.init_variables(model, inputs, jax.random.key(0)))
    return jax.tree.map(lambda s: s.shape, tree['params'])

  return shapes


def init_state(setup: Setup, tx, example_batch: dict):
  """Creates the train state directly with replicated shardings (no host copy)."""
  inputs = _example_inputs(setup, example_batch)
  rng = jax.random.key_data(jax.random.key(setup.config.seed))
  create = jax.jit(lambda r: state_lib.create(setup.model, tx, inputs, jax.random.wrap_key_data(r)),
                   out_shardings=sharding.replicated(setup.mesh))
  state = create(rng)
  return state.replace(rng=jax.random.key_data(state.rng) if jnp.issubdtype(
      state.rng.dtype, jax.dtypes.prng_key) else state.rng)
