"""The compiled train and eval steps of a run, and the calls that advance it by chunks of steps."""

import time

import jax
import jax.numpy as jnp

from curvelab import checkpoint as ckpt_lib
from curvelab import metrics as metrics_lib
from curvelab import plan as plan_lib
from curvelab import sharding
from curvelab import steps as steps_lib
from curvelab.build import Setup


def _global_abstract(batch: dict, mesh) -> dict:
  shard = sharding.batch_sharded(mesh)
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct((x.shape[0] * jax.process_count(),) + x.shape[1:],
                                     x.dtype, sharding=shard), batch)


def microbatching(setup: Setup, state) -> tuple[int, int]:
  """(sequential, concurrent) micro-batches of each train step, as the run's plan resolves them.

  ``grad_accum_steps`` and ``concurrent_microbatches`` keep their meaning everywhere; on a CPU the
  step may also split further, into cache-sized sequential micro-batches (same update).
  """
  plan = setup.plan or plan_lib.resolve(setup.config, has_model_state=bool(state.model_state),
                                        attention=setup.attention)
  return plan.microbatches


def make_train_step(setup: Setup, tx, state):
  """train.py's train step for this setup, micro-batched as :func:`microbatching` says."""
  sequential, concurrent = microbatching(setup, state)
  return steps_lib.make_train_step(model=setup.model, task=setup.task, tx=tx,
                                   grad_accum_steps=sequential,
                                   concurrent_microbatches=concurrent)


def compile_steps(setup: Setup, tx, state, train_batch: dict, eval_batch: dict):
  """AOT-compiles the train and eval steps; returns them, empty metrics and the seconds spent."""
  repl = sharding.replicated(setup.mesh)
  train_step = make_train_step(setup, tx, state)
  eval_step = steps_lib.make_eval_step(model=setup.model, task=setup.task)
  abstract_state = ckpt_lib.abstract(state)
  train_abs = _global_abstract(train_batch, setup.mesh)
  eval_abs = _global_abstract(eval_batch, setup.mesh)
  train_metrics_shape = jax.eval_shape(train_step.single, abstract_state, train_abs)[1]
  eval_metrics_shape = jax.eval_shape(eval_step.single, abstract_state, eval_abs)
  if setup.task.decodes:
    eval_metrics_shape = eval_metrics_shape[0]
  empty_train = jax.device_put(metrics_lib.zeros_like(train_metrics_shape), repl)
  empty_eval = jax.device_put(metrics_lib.zeros_like(eval_metrics_shape), repl)
  start = time.perf_counter()
  train_c = jax.jit(train_step, out_shardings=(repl, repl), donate_argnums=(0, 2)).lower(
      abstract_state, train_abs, ckpt_lib.abstract(empty_train)).compile()
  eval_out = (repl, sharding.batch_sharded(setup.mesh)) if setup.task.decodes else repl
  eval_c = jax.jit(eval_step, out_shardings=eval_out, donate_argnums=(2,)).lower(
      abstract_state, eval_abs, ckpt_lib.abstract(empty_eval)).compile()
  seconds = time.perf_counter() - start
  return train_c, eval_c, empty_train, empty_eval, seconds


class Advancer:
  """Compiled calls that advance training by ``k`` optimizer steps (one compile per ``k``).

  ``input_mode=host`` with ``steps_per_call=1`` is the plain per-step call. ``steps_per_call=k``
  scans ``k`` steps inside one call (host batches stacked, or device-resident data gathered and
  augmented inside the step), so Python dispatch and host round trips happen once per ``k`` steps.
  The scanned function is the same single step, so the results are those of ``k`` separate calls.
  """

  def __init__(self, setup: Setup, tx, state, empty_train, single_step, *, example_batch: dict,
               device_images=None):
    self.setup = setup
    self.single_step = single_step
    self.raw_step = make_train_step(setup, tx, state)
    self.abstract_state = ckpt_lib.abstract(state)
    self.abstract_metrics = ckpt_lib.abstract(empty_train)
    self.example_batch = example_batch
    self.device_images = device_images
    self.data = None
    if device_images is not None:
      self.data = device_images.put(sharding.replicated(setup.mesh))
    self._compiled = {}
    self.compile_s = 0.0

  def _compile(self, k: int):
    repl = sharding.replicated(self.setup.mesh)
    stacked = jax.sharding.NamedSharding(self.setup.mesh,
                                         jax.sharding.PartitionSpec(None, sharding.DATA_AXIS))
    start = time.perf_counter()
    if self.device_images is not None:
      fn = steps_lib.make_device_chunk_step(self.raw_step, self.device_images.batch,
                                            sharding.batch_sharded(self.setup.mesh))
      indices = jax.ShapeDtypeStruct((k, self.setup.config.loop.batch_size), jnp.int32,
                                     sharding=stacked)
      data = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl),
                          self.data)
      compiled = jax.jit(fn, out_shardings=(repl, repl), donate_argnums=(0, 2)).lower(
          self.abstract_state, indices, self.abstract_metrics, data).compile()
    else:
      fn = steps_lib.make_host_chunk_step(self.raw_step)
      batches = jax.tree.map(
          lambda x: jax.ShapeDtypeStruct((k, x.shape[0] * jax.process_count()) + x.shape[1:],
                                         x.dtype, sharding=stacked), self.example_batch)
      compiled = jax.jit(fn, out_shardings=(repl, repl), donate_argnums=(0, 2)).lower(
          self.abstract_state, batches, self.abstract_metrics).compile()
    self.compile_s += time.perf_counter() - start
    return compiled

  def prepare(self, lengths) -> None:
    """Compiles the chunk lengths the run will use, before any timing starts."""
    for k in sorted(set(lengths)):
      self._get(k)

  def _get(self, k: int):
    if k not in self._compiled:
      if k == 1 and self.device_images is None:
        self._compiled[k] = self.single_step
      else:
        self._compiled[k] = self._compile(k)
    return self._compiled[k]

  def __call__(self, state, chunk, metrics, k: int):
    fn = self._get(k)
    if self.device_images is not None:
      return fn(state, chunk, metrics, self.data)
    return fn(state, chunk, metrics)
