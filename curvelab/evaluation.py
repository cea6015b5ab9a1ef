"""Evaluation of a split, and the per-epoch rows of training metrics, as history keys."""

import time

import jax
import jax.numpy as jnp
import numpy as np

from curvelab import checkpoint as ckpt_lib
from curvelab import metrics as metrics_lib
from curvelab import sharding
from curvelab import steps as steps_lib
from curvelab.build import Setup
from input_pipeline import pipeline


def prefixed(values: dict, prefix: str, task) -> dict:
  """Task metrics and loss get the split prefix; diagnostic statistics keep their own names."""
  keep = ('loss',) + tuple(task.metric_names)
  return {(f'{prefix}_{k}' if k in keep else k): v for k, v in values.items()}


class DeviceEvaluator:
  """``input_mode=device``: a split kept on the devices, evaluated by one compiled scan.

  The batches are the host path's (same order, the tail padded with weight 0), gathered on the
  device, so the metrics equal the host path's up to float rounding with no per-batch dispatch.
  """

  def __init__(self, setup: Setup, split, state, empty_eval):
    repl = sharding.replicated(setup.mesh)
    stacked = jax.sharding.NamedSharding(setup.mesh,
                                         jax.sharding.PartitionSpec(None, sharding.DATA_AXIS))
    images = setup.data.device_loader(split, train=False, seed=setup.config.seed)
    self.data = images.put(repl)
    n, b = len(split), setup.config.loop.eval_batch_size
    flat = np.arange(pipeline.num_eval_batches(n, b) * b)
    put = lambda x: jax.device_put(x.reshape(-1, b), stacked)
    self.indices = put(np.where(flat < n, flat, 0).astype(np.int32))
    self.weights = put((flat < n).astype(np.float32))
    single = steps_lib.make_eval_step(model=setup.model, task=setup.task).single

    def run(state, data, indices, weights, metrics):
      def body(metrics, xs):
        idx, weight = xs
        batch = dict(images.batch(data, idx, 0), weight=weight)
        batch = jax.lax.with_sharding_constraint(batch, sharding.batch_sharded(setup.mesh))
        return metrics.merge(single(state, batch)), None
      return jax.lax.scan(body, metrics, (indices, weights))[0]

    abstract = lambda tree: jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
    start = time.perf_counter()
    self.compiled = jax.jit(run, out_shardings=repl, donate_argnums=(4,)).lower(
        ckpt_lib.abstract(state), abstract(self.data), abstract(self.indices),
        abstract(self.weights), ckpt_lib.abstract(empty_eval)).compile()
    self.compile_s = time.perf_counter() - start

  def __call__(self, state, metrics):
    return self.compiled(state, self.data, self.indices, self.weights, metrics)


def evaluate(setup: Setup, eval_step, state, split, empty_metrics, *, prefix: str,
             device_eval: DeviceEvaluator | None = None) -> dict:
  """Metrics over every example of ``split`` (padded batches masked) as history keys."""
  metrics = jax.tree.map(jnp.copy, empty_metrics)
  decoded = [] if setup.task.decodes else None
  if device_eval is not None:
    metrics = device_eval(state, metrics)
    split = split.head(0)  # Nothing left for the host loop below.
  for batch in pipeline.eval_batches(split, global_batch=setup.config.loop.eval_batch_size,
                                     preprocess=setup.data.eval_preprocess,
                                     process_index=jax.process_index(),
                                     process_count=jax.process_count()):
    global_batch = sharding.to_global(batch, setup.mesh)
    if decoded is None:
      metrics = eval_step(state, global_batch, metrics)
    else:
      # Decoding tasks (CTC, seq2seq): predictions come back per batch for host-side metrics
      # (WER, BLEU) that have no fixed-shape on-device form.
      metrics, outputs = eval_step(state, global_batch, metrics)
      decoded.append((sharding.to_host_global(outputs), sharding.to_host_global(global_batch)))
  values = metrics_lib.to_host(metrics)
  if decoded is not None:
    values.update(setup.task.decoded_metrics(decoded, split=prefix))
  if prefix != 'val':
    values = {k: v for k, v in values.items() if k == 'loss' or k in setup.task.metric_names}
  return prefixed(values, prefix, setup.task)


def peak_memory() -> int | None:
  stats = jax.local_devices()[0].memory_stats()
  return int(stats['peak_bytes_in_use']) if stats and 'peak_bytes_in_use' in stats else None


def train_row(setup: Setup, metrics, names) -> dict:
  task_values = metrics_lib.to_host(metrics[0])
  dynamics = metrics_lib.to_host(metrics[1])
  row = prefixed(task_values, 'train', setup.task)
  layer = dynamics.pop('layer_grad_norms')
  nonfinite = dynamics.pop('nonfinite')
  row.update(dynamics)
  row['layer_grad_norms'] = dict(zip(names, layer))
  row['nonfinite'] = bool(nonfinite['count'])
  return row, nonfinite
