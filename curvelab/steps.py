"""The compiled train and eval steps, generic over models and tasks.

The loop never sees a ViT or an LSTM: it gets a model (Linen module), a task (loss + metrics) and
an optax transformation, and these builders turn them into pure functions of
``(state, batch, metrics)`` that are jit-compiled once with data-parallel shardings.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from curvelab import metrics as metrics_lib
from curvelab.state import TrainState


def layer_names(params) -> tuple[str, ...]:
  """Top-level parameter groups (blocks, embeddings, head) for per-layer gradient norms."""
  return tuple(sorted(params.keys()))


def concatenates_norms(backend: str | None = None) -> bool:
  """Whether :func:`sum_of_squares` reduces a tree in one concatenated pass on ``backend``."""
  return (backend or jax.default_backend()) == 'gpu'


def sum_of_squares(tree, *, concatenate: bool | None = None) -> jax.Array:
  """The sum of squares of every element of ``tree``, in float32.

  The norms the doctor reads (gradient, parameter, update, per layer group) are taken every step,
  and how to reduce a whole tree is a backend question:
    * GPU: one reduction over the concatenated leaves. XLA fuses the concatenation into the
      reduction, one kernel per tree; reducing each leaf on its own (as ``optax.global_norm``)
      launched about 80 small kernels per tree for the 6-layer ViT, 8 % of its H200 step against
      3 % now (docs/benchmarks.md).
    * CPU (and other backends): one reduction per leaf. XLA:CPU writes the concatenation out in
      full first, which cost the 28.6 M-parameter LSTM about 1 s of its 8.3 s step.

  Args:
    tree: a pytree of arrays.
    concatenate: force one form (tests); ``None`` picks by ``jax.default_backend()``.
  """
  leaves = [x.astype(jnp.float32) for x in jax.tree.leaves(tree)]
  if not leaves:
    return jnp.zeros((), jnp.float32)
  if concatenate is None:
    concatenate = concatenates_norms()
  if concatenate:
    return jnp.sum(jnp.square(jnp.concatenate([jnp.ravel(x) for x in leaves])))
  return sum(jnp.sum(jnp.square(x)) for x in leaves)


def _apply(model, params, model_state, inputs: dict, *, train: bool, rng=None):
  """Runs the model; returns ``(outputs, new_model_state)`` (model state unchanged in eval)."""
  variables = {'params': params, **model_state}
  rngs = {'dropout': rng} if rng is not None else None
  if train and model_state:
    outputs, new_state = model.apply(variables, **inputs, train=True, rngs=rngs,
                                     mutable=list(model_state.keys()))
    return outputs, dict(new_state)
  return model.apply(variables, **inputs, train=train, rngs=rngs), model_state


def _microbatches(batch: dict, k: int) -> dict:
  """[B, ...] -> [k, B/k, ...], micro-batch j taking examples j, j+k, j+2k, ...

  Strided rather than contiguous micro-batches keep every device busy in every micro-step: a
  device's contiguous shard of the global batch holds examples of all ``k`` micro-batches.
  """
  return jax.tree.map(lambda x: x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1), batch)


def resolve_concurrent_microbatches(requested: int, *, per_device_batch: int,
                                    grad_accum_steps: int, has_model_state: bool,
                                    platform: str | None = None) -> int:
  """The number of micro-batches a step runs side by side; ``requested`` 0 means automatic.

  Automatic is 2 on a CPU and 1 on GPUs and TPUs. XLA:CPU runs independent operations at the same
  time, one per core, and most of a training step's operations gain little from a second core
  (elementwise work, layer norms, small products; measured in docs/benchmarks.md). Two
  independent half-batch passes keep both cores busy instead. An accelerator runs one operation
  at a time on the whole chip, so there it would only shrink each kernel. Automatic also stays at
  1 where splitting would change the result (models with BatchNorm statistics) or is impossible
  (a per-device batch that does not split evenly into ``2 * grad_accum_steps`` parts).

  Args:
    requested: config.speed.concurrent_microbatches (0 = automatic, else used as given).
    per_device_batch: examples per device in one step.
    grad_accum_steps: config.speed.grad_accum_steps (sequential groups; a CPU may add more, see
      ``resolve_sequential_microbatches``).
    has_model_state: whether the model carries mutable state (BatchNorm statistics).
    platform: the backend ('cpu', 'gpu', 'tpu'); default: JAX's default backend.
  """
  if requested:
    return requested
  platform = platform or jax.default_backend()
  if platform != 'cpu' or has_model_state or per_device_batch % (2 * grad_accum_steps):
    return 1
  return 2


def resolve_sequential_microbatches(cpu_microbatch_size: int, *, per_device_batch: int,
                                    grad_accum_steps: int, concurrent_microbatches: int,
                                    has_model_state: bool, platform: str | None = None) -> int:
  """The number of micro-batch groups a step runs one after another (its accumulation loop).

  It is ``grad_accum_steps``, times a factor ``k`` on a CPU. A whole batch's activations do not
  fit in a CPU's caches, so its elementwise work (layer norms, GELUs, softmaxes) streams them
  from memory. Smaller micro-batches keep them in the cache. ``k`` is the largest divisor of each
  group's examples (``per_device_batch / (grad_accum_steps * concurrent_microbatches)``) that
  leaves at least ``cpu_microbatch_size`` examples per micro-batch. The update is the same to
  float rounding, except that dropout draws its masks per micro-batch: with dropout the masks,
  not their distribution, depend on the split. How small pays depends on the model, so each
  config sets its own size: a ViT's step ran 13-25 % faster at 4 images per micro-batch, while
  an LSTM's was no faster, or slower, below 8 sequences: its recurrent matmuls then have too few
  rows (docs/benchmarks.md).

  Args:
    cpu_microbatch_size: config.speed.cpu_microbatch_size; 0 turns the CPU factor off.
    per_device_batch: examples per device in one step.
    grad_accum_steps: config.speed.grad_accum_steps.
    concurrent_microbatches: micro-batches side by side in each group (already resolved).
    has_model_state: whether the model carries mutable state. BatchNorm statistics over smaller
      micro-batches would change the update, so there the factor is 1.
    platform: the backend ('cpu', 'gpu', 'tpu'); default: JAX's default backend.
  """
  platform = platform or jax.default_backend()
  if not cpu_microbatch_size or platform != 'cpu' or has_model_state:
    return grad_accum_steps
  group = per_device_batch // (grad_accum_steps * concurrent_microbatches)
  factor = max((k for k in range(1, group + 1)
                if group % k == 0 and group // k >= cpu_microbatch_size), default=1)
  return grad_accum_steps * factor


def make_train_step(*, model, task, tx: optax.GradientTransformation,
                    grad_accum_steps: int = 1, concurrent_microbatches: int = 1) -> Callable:
  """Builds ``train_step(state, batch, metrics) -> (state, metrics)``.

  ``metrics`` is the pair ``(task.train_metrics, metrics_lib.Dynamics)`` accumulated over the
  epoch on the device. The loss is the weight-normalised sum over the whole global batch, so the
  gradient is identical with and without accumulation and on any number of devices. One exception:
  with BatchNorm, accumulation normalises each micro-batch with its own statistics (as PyTorch
  does), so the update then differs from one big batch's.

  The batch is split into ``grad_accum_steps * concurrent_microbatches`` micro-batches. The
  ``grad_accum_steps`` groups run one after another (a loop: memory for one group at a time);
  the ``concurrent_microbatches`` within a group are unrolled into independent forward and
  backward passes that the runtime may run at the same time
  (see ``resolve_concurrent_microbatches``).
  """
  num_micro = grad_accum_steps * concurrent_microbatches

  def loss_fn(params, model_state, batch, rng):
    outputs, new_state = _apply(model, params, model_state, task.model_inputs(batch),
                                train=True, rng=rng)
    loss_sum, weight_sum, per_example = task.loss_terms(outputs, batch)
    return loss_sum, (weight_sum, task.metric_inputs(outputs, batch, per_example), new_state)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def accumulate(state: TrainState, batch: dict, rng):
    if num_micro == 1:
      (loss_sum, (weight, minputs, new_state)), grads = grad_fn(
          state.params, state.model_state, batch, rng)
      return loss_sum, weight, minputs, new_state, grads

    def body(carry, xs):
      grads_acc, loss_acc, weight_acc, model_state = carry
      micro, index = xs
      (loss_sum, (weight, minputs, model_state)), grads = grad_fn(
          state.params, model_state, micro, jax.random.fold_in(rng, index))
      grads_acc = jax.tree.map(jnp.add, grads_acc, grads)
      return (grads_acc, loss_acc + loss_sum, weight_acc + weight, model_state), minputs

    zeros = jax.tree.map(jnp.zeros_like, state.params)
    init = (zeros, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), state.model_state)
    (grads, loss_sum, weight, new_state), minputs = jax.lax.scan(
        body, init, (_microbatches(batch, num_micro), jnp.arange(num_micro)),
        unroll=concurrent_microbatches)
    # Stacked per-micro-batch metric inputs [k, B/k, ...] -> [B, ...]; scalars were not stacked
    # per example, so only reshape arrays that have the micro-batch layout.
    minputs = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]) if x.ndim >= 2 else x, minputs)
    return loss_sum, weight, minputs, new_state, grads

  def step(state: TrainState, batch: dict):
    rng = jax.random.fold_in(state.rng, state.step)
    loss_sum, weight, minputs, new_model_state, grads = accumulate(state, batch, rng)
    scale = 1.0 / jnp.maximum(weight, 1e-12)
    grads = jax.tree.map(lambda g: g * scale, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    updates = jax.tree.map(lambda u: u * state.lr_scale.astype(u.dtype), updates)
    params = optax.apply_updates(state.params, updates)
    layer_squares = jnp.stack([sum_of_squares(grads[k]) for k in layer_names(grads)])
    param_norm = jnp.sqrt(sum_of_squares(state.params))
    dynamics = metrics_lib.Dynamics.single_from_model_output(
        grad_norm=jnp.sqrt(jnp.sum(layer_squares)),
        param_norm=param_norm,
        update_ratio=jnp.sqrt(sum_of_squares(updates)) / jnp.maximum(param_norm, 1e-12),
        layer_grad_norms=jnp.sqrt(layer_squares),
        loss_value=loss_sum * scale,
        step_number=state.step + 1,
    )
    task_metrics = task.train_metrics.single_from_model_output(**minputs)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              model_state=new_model_state)
    return new_state, (task_metrics, dynamics)

  def train_step(state: TrainState, batch: dict, metrics: Any):
    new_state, (task_metrics, dynamics) = step(state, batch)
    return new_state, (metrics[0].merge(task_metrics), metrics[1].merge(dynamics))

  train_step.single = step  # For eval_shape of the metric collections.
  return train_step


def make_eval_step(*, model, task) -> Callable:
  """Builds ``eval_step(state, batch, metrics) -> metrics`` (inference mode, padding masked)."""

  def single(state: TrainState, batch: dict):
    outputs, _ = _apply(model, state.params, state.model_state, task.model_inputs(batch),
                        train=False)
    _, _, per_example = task.loss_terms(outputs, batch)
    metrics = task.eval_metrics.single_from_model_output(
        **task.metric_inputs(outputs, batch, per_example))
    if task.decodes:
      # Decoding runs inside the compiled step (fixed shapes, batched); strings are made on host.
      variables = {'params': state.params, **state.model_state}
      return metrics, task.decode(model, variables, outputs, batch)
    return metrics

  def eval_step(state: TrainState, batch: dict, metrics: Any):
    if task.decodes:
      new, decoded = single(state, batch)
      return metrics.merge(new), decoded
    return metrics.merge(single(state, batch))

  eval_step.single = single
  return eval_step


def make_host_chunk_step(train_step: Callable) -> Callable:
  """``(state, batches [k, B, ...], metrics) -> (state, metrics)``: k optimizer steps, one call.

  A ``lax.scan`` over the stacked batches runs exactly the single-step function k times, so the
  result equals k separate calls while the Python dispatch and the host round trip happen once.
  """

  def run(state, batches, metrics):
    def body(carry, batch):
      return train_step(*_swap(carry, batch)), None

    (state, metrics), _ = jax.lax.scan(body, (state, metrics), batches)
    return state, metrics

  return run


def _swap(carry, batch):
  state, metrics = carry
  return state, batch, metrics


def make_device_chunk_step(train_step: Callable, batch_fn: Callable, batch_sharding) -> Callable:
  """``(state, indices [k, B], metrics, data) -> (state, metrics)`` for device-resident data.

  Each scanned step builds its batch on the device (gather, augment, normalise) from the split in
  ``data`` and the step's example indices; the constraint keeps the batch split over the data axis
  so every device works on its own share, as with host batches.
  """

  def run(state, indices, metrics, data):
    def body(carry, idx):
      state, metrics = carry
      batch = batch_fn(data, idx, state.step)
      batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
      return train_step(state, batch, metrics), None

    (state, metrics), _ = jax.lax.scan(body, (state, metrics), indices)
    return state, metrics

  return run
