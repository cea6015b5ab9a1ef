r"""Trains and evaluates one run: ``train_and_evaluate(config, workdir)``.

Usage:
  python train.py --config=configs/vit_prenorm.py:layers=6,optimizer=adamw --workdir=runs/exp6 \
      [--config.num_epochs=20 --config.learning_rate=1e-3 ...]

Running the same command again in the same workdir resumes from the latest checkpoint and
reproduces the history of an uninterrupted run. See README.md for the files a run writes.
"""

import contextlib
import dataclasses
import pathlib
import sys
import time
from typing import Any

if __name__ == '__main__':
  # Stop signals are recorded from here on, through the imports below, start-up and compilation,
  # to the last line (curvelab/preemption.py says where the run stops for each phase).
  from curvelab import preemption as _early_preemption  # pylint: disable=g-import-not-at-top
  _early_preemption.install()

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp
import ml_collections
import numpy as np

from curvelab import checkpoint as ckpt_lib
from curvelab import durations
from curvelab import console
from curvelab import errors
from curvelab import feeders
from curvelab import metrics as metrics_lib
from curvelab import optim
from curvelab import preemption
from curvelab import runfiles
from curvelab import sharding
from curvelab import state as state_lib
from curvelab import steps as steps_lib
from curvelab import validate
from curvelab import workdir as workdir_lib
from curvelab import writers
import input_pipeline
from input_pipeline import pipeline
import models
import tasks


log = console.logger()


# --------------------------------------------------------------------------------- set-up

def prepare_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A private, resolved copy of the config (sanity mode applied, defaults filled)."""
  config = ml_collections.ConfigDict(config.to_dict())
  if config.eval_batch_size == 0:
    config.eval_batch_size = config.batch_size
  if config.sanity_examples > 0:
    # Memorisation test: nothing may stand between the model and its five examples.
    n = int(config.sanity_examples)
    config.dataset.augment.flip = False
    config.dataset.augment.crop = False
    for field in ('pad_crop', 'randaugment_ops', 'mixup_alpha', 'cutmix_alpha'):
      if field in config.dataset.augment:
        config.dataset.augment[field] = type(config.dataset.augment[field])(0)
    for field in ('dropout', 'drop_path'):
      if field in config.model:
        config.model[field] = 0.0
    config.weight_decay = 0.0
    config.label_smoothing = 0.0
    config.batch_size = min(config.batch_size, n)
    config.eval_batch_size = config.batch_size
    config.grad_accum_steps = 1
    config.num_epochs = int(config.sanity_max_epochs)
    config.checkpoint_every_epochs = config.num_epochs
    config.early_stopping_patience = 0
    config.lr_schedule = 'constant'
    config.warmup_epochs = 0.0
    config.log_every_steps = 0
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


def build(config: ml_collections.ConfigDict) -> Setup:
  """Validates the config against data and devices and builds task, data and model.

  Every check here runs before any data is decoded or any step is compiled, so bad input ends the
  run in seconds with one line.
  """
  config = prepare_config(config)  # Idempotent: resolved configs pass through unchanged.
  validate.check(config)
  task = tasks.build(config)
  data = input_pipeline.build(config)
  models.validate(config.model, example_shape=data.example_shape)
  model = models.build(config.model, num_outputs=data.num_outputs, dtype=config.compute_dtype)
  _check_train_batch(config)
  sharding.check_batch_size(config.eval_batch_size, field='eval_batch_size')
  _check_input_mode(config, data)
  if config.sanity_examples > 0:
    sharding.check_batch_size(config.batch_size, field='sanity_examples (batch)')
  best_metric = config.best_metric or task.best_metric
  best_mode = task.best_mode if best_metric == task.best_metric else (
      'max' if best_metric.endswith(HIGHER_IS_BETTER) else 'min')
  if not best_metric.startswith('val_'):
    raise errors.ConfigError(f'best_metric={best_metric!r} must be a validation key (val_...).')
  return Setup(config=config, task=task, data=data, model=model, mesh=sharding.make_mesh(),
               best_metric=best_metric, best_mode=best_mode)


INPUT_MODES = ('host', 'device')
# Validation metrics where higher is better (the rest, losses, perplexity, WER, CER, are minimised).
HIGHER_IS_BETTER = ('accuracy', 'bleu', 'exact_match')


def _check_input_mode(config, data) -> None:
  if config.input_mode not in INPUT_MODES:
    raise errors.ConfigError(f'input_mode={config.input_mode!r} is unknown; allowed: '
                             f'{", ".join(INPUT_MODES)}.')
  if config.steps_per_call < 1:
    raise errors.ConfigError(f'steps_per_call must be a positive integer, got '
                             f'{config.steps_per_call}.')
  if config.input_mode == 'device':
    if data.device_loader is None:
      raise errors.ConfigError(
          f'input_mode=device supports in-memory image datasets; dataset.name='
          f'{config.dataset.name!r} with task {config.task.name!r} allows: host.')
    # pylint: disable=g-import-not-at-top
    from input_pipeline import augment as augment_lib
    from input_pipeline import device as device_lib
    extra = [o for o in augment_lib.active_options(config.dataset.augment)
             if o not in device_lib.DEVICE_OPTIONS]
    if extra:
      raise errors.ConfigError(
          f'input_mode=device runs flip, random resized crop and pad_crop on the device; dataset.'
          f'augment.{extra[0]} is host-only: use input_mode=host or turn it off.')


def _check_train_batch(config: ml_collections.ConfigDict) -> None:
  """The global batch must split over devices, then into every micro-batch asked for."""
  fields = {'grad_accum_steps': config.grad_accum_steps,
            'concurrent_microbatches': config.get('concurrent_microbatches', 0)}
  sharding.check_batch_size(config.batch_size,
                            multiples={k: v for k, v in fields.items() if v > 1})


def build_without_data(config: ml_collections.ConfigDict, *, num_outputs: int) -> Setup:
  """A Setup for synthetic batches (benchmarks): the same model, task, optimizer and mesh."""
  validate.check(config)
  task = tasks.build(config)
  model = models.build(config.model, num_outputs=num_outputs, dtype=config.compute_dtype)
  _check_train_batch(config)
  return Setup(config=config, task=task, data=None, model=model, mesh=sharding.make_mesh(),
               best_metric=task.best_metric, best_mode=task.best_mode)


def _example_inputs(setup: Setup, batch: dict) -> dict:
  return setup.task.model_inputs(jax.tree.map(lambda x: jnp.asarray(x[:1]), batch))


def param_shapes(setup: Setup, example_batch: dict):
  """``config -> parameter shapes`` for the resume check."""
  inputs = _example_inputs(setup, example_batch)

  def shapes(config):
    model = models.build(config.model, num_outputs=setup.data.num_outputs,
                         dtype=config.compute_dtype)
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


# --------------------------------------------------------------------------------- compilation

def _global_abstract(batch: dict, mesh) -> dict:
  shard = sharding.batch_sharded(mesh)
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct((x.shape[0] * jax.process_count(),) + x.shape[1:],
                                     x.dtype, sharding=shard), batch)


def microbatching(setup: Setup, state) -> tuple[int, int]:
  """(sequential, concurrent) micro-batches of each train step, resolved for the backend and model.

  ``grad_accum_steps`` and ``concurrent_microbatches`` keep their meaning everywhere; on a CPU the
  step may also split further, into cache-sized sequential micro-batches (same update).
  """
  config = setup.config
  per_device_batch = config.batch_size // jax.device_count()
  has_model_state = bool(state.model_state)
  concurrent = steps_lib.resolve_concurrent_microbatches(
      config.get('concurrent_microbatches', 0), per_device_batch=per_device_batch,
      grad_accum_steps=config.grad_accum_steps, has_model_state=has_model_state)
  sequential = steps_lib.resolve_sequential_microbatches(
      config.get('cpu_microbatch_size', 0), per_device_batch=per_device_batch,
      grad_accum_steps=config.grad_accum_steps, concurrent_microbatches=concurrent,
      has_model_state=has_model_state)
  return sequential, concurrent


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
      indices = jax.ShapeDtypeStruct((k, self.setup.config.batch_size), jnp.int32,
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


# --------------------------------------------------------------------------------- epochs

def _prefixed(values: dict, prefix: str, task) -> dict:
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
    n, b = len(split), setup.config.eval_batch_size
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
  for batch in pipeline.eval_batches(split, global_batch=setup.config.eval_batch_size,
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
  return _prefixed(values, prefix, setup.task)


def _peak_memory() -> int | None:
  stats = jax.local_devices()[0].memory_stats()
  return int(stats['peak_bytes_in_use']) if stats and 'peak_bytes_in_use' in stats else None


def _train_row(setup: Setup, metrics, names) -> dict:
  task_values = metrics_lib.to_host(metrics[0])
  dynamics = metrics_lib.to_host(metrics[1])
  row = _prefixed(task_values, 'train', setup.task)
  layer = dynamics.pop('layer_grad_norms')
  nonfinite = dynamics.pop('nonfinite')
  row.update(dynamics)
  row['layer_grad_norms'] = dict(zip(names, layer))
  row['nonfinite'] = bool(nonfinite['count'])
  return row, nonfinite


class Progress:
  """Console progress inside an epoch: steps/s and ETA, at the config's cadence."""

  def __init__(self, cadence: durations.Cadence):
    self.cadence = cadence
    self.start = self.last_line = time.perf_counter()
    self.start_step = 0

  def reset(self, step: int) -> None:
    self.start, self.start_step = time.perf_counter(), step
    self.last_line = self.start

  def due(self, step: int, k: int) -> bool:
    """Whether the chunk of ``k`` steps ending at ``step`` ends with a line (cadence.py decides)."""
    return self.cadence.progress_due(step - k + 1, step, time.perf_counter() - self.last_line)

  def report(self, step: int, loss: float) -> None:
    self.last_line = time.perf_counter()
    rate = (step - self.start_step) / max(time.perf_counter() - self.start, 1e-9)
    left = (self.cadence.total_steps - step) / max(rate, 1e-9)
    log.info('epoch %d step %d/%d  loss %.4f  %.1f steps/s  ETA %.0fs',
                 self.cadence.epoch_of(step), step, self.cadence.total_steps, loss, rate, left)


def _check_finite(nonfinite: dict, *, epoch: int, last_saved: int | None) -> None:
  if nonfinite['count']:
    kept = (f'the last good checkpoint (step {last_saved}) is intact'
            if last_saved is not None else 'no checkpoint was saved')
    raise errors.TrainingError(
        f'non-finite loss at epoch {epoch}, step {nonfinite["first_step"]}: training stopped; '
        f'{kept}. Lower learning_rate, add grad_clip_norm or warmup_epochs.')


# --------------------------------------------------------------------------------- main entry

def _write_scalars(writer, epoch: int, row: dict) -> None:
  scalars = {k: v for k, v in row.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None}
  for name, value in row.get('layer_grad_norms', {}).items():
    scalars[f'grad_norm/{name}'] = value
  writer.write_scalars(epoch, scalars)
  writer.flush()


def _make_doctor(setup: Setup, num_params: int, num_train: int, workdir: pathlib.Path):
  """The online doctor for this run, or None when disabled."""
  if not setup.config.doctor.enabled:
    return None
  from diagnostics import FINDING_IDS, OnlineDoctor  # pylint: disable=g-import-not-at-top
  stop_on = tuple(s.strip() for s in setup.config.doctor.stop_on.split(',') if s.strip())
  for finding_id in stop_on:
    if finding_id not in FINDING_IDS:
      raise errors.ConfigError(f'doctor.stop_on: {finding_id!r} is not a finding id; allowed: '
                               f'{", ".join(sorted(FINDING_IDS))}.')
  if setup.config.doctor.patience < 1:
    raise errors.ConfigError(f'doctor.patience must be >= 1, got {setup.config.doctor.patience}.')
  num_classes = setup.data.num_outputs if setup.task.best_metric == 'val_accuracy' else None
  return OnlineDoctor(stop_on=stop_on, patience=setup.config.doctor.patience,
                      num_params=num_params, num_train_examples=num_train,
                      num_classes=num_classes, config=setup.config.to_dict(), path=str(workdir),
                      early_stopping_patience=setup.config.early_stopping_patience or None)


def _improved(value, best, *, mode: str, min_delta: float) -> bool:
  if value is None:
    return False
  if best is None:
    return True
  return value > best + min_delta if mode == 'max' else value < best - min_delta


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains a run, keeps its best checkpoint, evaluates it on the test split.

  Args:
    config: the run's config (see configs/).
    workdir: where ``config.json``, ``history.jsonl``, ``summary.json``, ``checkpoints/`` and
      TensorBoard events go. An existing run there is resumed.

  Returns:
    The summary (also written to ``WORKDIR/summary.json``).
  """
  config = prepare_config(config)
  setup = build(config)
  workdir = pathlib.Path(workdir)
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    lock = workdir_lib.WorkdirLock(workdir)
    lock.acquire()
  except OSError as e:
    raise errors.ConfigError(f'workdir {workdir} is not writable ({e.strerror or e}).') from e
  try:
    return _run(setup, workdir)
  finally:
    lock.release()


def _check_resume(setup: Setup, workdir: pathlib.Path, checkpointer, example_batch: dict) -> None:
  """Refuses a workdir whose checkpoint has other parameter shapes, naming the config fields.

  The saved shapes come from the checkpoint's own metadata, so any cause (a model field, another
  dataset with other classes or image sizes) is caught before anything is restored or set aside.
  """
  step = checkpointer.latest_step()
  if step is None:
    return
  saved = checkpointer.saved_param_shapes(step)
  current_fn = param_shapes(setup, example_batch)
  if saved is None or saved == current_fn(setup.config):
    return
  fields = []
  saved_path = workdir / runfiles.CONFIG
  if saved_path.exists():
    import json  # pylint: disable=g-import-not-at-top
    saved_config = json.loads(saved_path.read_text())
    fields = workdir_lib.shape_changing_fields(saved_config, setup.config, current_fn)
    if fields in ([], ['model']):  # Not a model field: the data (classes, input shape) changed.
      flat_saved = workdir_lib.flatten(saved_config)
      flat_now = workdir_lib.flatten(setup.config.to_dict())
      fields = [k for k in sorted(flat_now) if k.startswith('dataset.')
                and flat_saved.get(k) != flat_now[k]] or fields
  where = ', '.join(fields) if fields else 'the model or data'
  raise errors.ResumeError(
      f'workdir {workdir} holds a run whose config differs in {where}, which changes parameter '
      'shapes; use a new --workdir or restore the saved value.')


def _check_epochs_left(checkpointer, cadence: durations.Cadence, workdir: pathlib.Path) -> None:
  """Refuses to resume a checkpoint that is past the end of the configured run.

  Its data-loader position lies beyond the shorter run's epochs, so resuming cannot continue it;
  the check runs before compilation, and the workdir's files are left as they are.
  """
  step = checkpointer.latest_step()
  if step is not None and step > cadence.total_steps:
    raise errors.ResumeError(
        f'workdir {workdir} holds a checkpoint at step {step} (epoch '
        f'{cadence.epoch_of(step)}), past the end of this config\'s run '
        f'(num_epochs={cadence.num_epochs}: {cadence.total_steps} steps); raise num_epochs to '
        f'at least {cadence.epoch_of(step)} or use a new --workdir.')


def _check_vocabulary(setup: Setup, workdir: pathlib.Path) -> None:
  """Saves the tokenizer with the run, or refuses to resume with a different one."""
  tokenizer = setup.data.extra.get('tokenizer')
  if tokenizer is None:
    return
  from input_pipeline import text  # pylint: disable=g-import-not-at-top
  path = workdir / 'vocab.json'
  if path.exists():
    import json  # pylint: disable=g-import-not-at-top
    saved = text.Tokenizer.from_json(json.loads(path.read_text()))
    if saved != tokenizer and (workdir / 'checkpoints').exists():
      raise errors.ResumeError(
          f'the vocabulary saved in {path} ({saved.kind}, {saved.vocab_size} tokens) differs from '
          f'the one built from the current training data ({tokenizer.kind}, '
          f'{tokenizer.vocab_size} tokens); use a new --workdir or the original corpus.')
  if runfiles.is_writer():
    tokenizer.save(path)


def _load_splits(setup: Setup) -> dict:
  splits = {role: setup.data.load(role) for role in ('train', 'val', 'test')}
  if setup.config.sanity_examples > 0:
    n = int(setup.config.sanity_examples)
    if len(splits['train']) < n:
      raise errors.ConfigError(f'sanity_examples={n} exceeds the training split '
                               f'({len(splits["train"])} examples).')
    splits['train'] = splits['train'].head(n)
    splits['val'] = splits['train']  # Memorisation is judged on the examples themselves.
  return splits


@dataclasses.dataclass
class _Loop:
  """Mutable loop position, restored together from a checkpoint."""
  state: Any
  metrics: Any
  data_state: dict | None
  meta: dict
  saved_step: int | None


def _fresh_meta() -> dict:
  return {'epoch': 0, 'best_value': None, 'best_epoch': None, 'best_step': None, 'bad_epochs': 0,
          'elapsed_s': 0.0, 'partial_epoch_s': 0.0, 'rollbacks': 0}


def _restore(checkpointer, state, empty_train) -> _Loop:
  """The newest readable checkpoint, or the initial position."""
  found = checkpointer.restore_latest_good(ckpt_lib.abstract(state), ckpt_lib.abstract(empty_train))
  if found is None:
    return _Loop(state, jax.tree.map(jnp.copy, empty_train), None, _fresh_meta(), None)
  step, state, metrics, data_state, meta = found
  ckpt_lib.log_restored(step, meta)
  return _Loop(state, metrics, data_state, {**_fresh_meta(), **meta}, step)


def _save(checkpointer, loop: _Loop, feeder, *, step: int, is_best: bool, value) -> None:
  checkpointer.save(step, state=loop.state, metrics=loop.metrics, data_state=feeder.state(),
                    meta=dict(loop.meta), is_best=is_best, value=value)
  loop.saved_step = step


def _make_feeder(setup: Setup, train_ds, data_state, *, steps_per_epoch: int, num_epochs: int,
                 num_train: int):
  """The training input for the config's ``input_mode``, positioned at ``data_state``."""
  if setup.config.input_mode == 'device':
    from input_pipeline import device as device_lib  # pylint: disable=g-import-not-at-top
    order = device_lib.EpochOrder(num_train, global_batch=setup.config.batch_size,
                                  num_epochs=num_epochs, seed=setup.config.seed)
    return feeders.DeviceFeeder(order, data_state, setup.mesh)
  return feeders.HostFeeder(train_ds, data_state, setup.mesh)


def _run(setup: Setup, workdir: pathlib.Path) -> dict:
  """Runs the loop; the writer and the checkpointer are closed however it ends."""
  with contextlib.ExitStack() as cleanup:
    return _run_body(setup, workdir, cleanup)


def _run_body(setup: Setup, workdir: pathlib.Path, cleanup: contextlib.ExitStack) -> dict:
  config = setup.config
  t_start = time.perf_counter()
  splits = _load_splits(setup)
  num_train = len(splits['train'])
  steps_per_epoch = durations.steps_per_epoch(num_examples=num_train, batch_size=config.batch_size)
  cadence = durations.make_cadence(config, steps_per_epoch=steps_per_epoch)
  tx, schedule = optim.make_optimizer(config, steps_per_epoch=steps_per_epoch)

  train_ds = pipeline.train_dataset(
      splits['train'], global_batch=config.batch_size, num_epochs=cadence.num_epochs,
      seed=config.seed, preprocess=setup.data.train_preprocess,
      process_index=jax.process_index(), process_count=jax.process_count())
  example_train = train_ds[0]
  example_eval = next(pipeline.eval_batches(
      splits['val'], global_batch=config.eval_batch_size, preprocess=setup.data.eval_preprocess,
      process_index=jax.process_index(), process_count=jax.process_count()))
  _check_vocabulary(setup, workdir)
  checkpointer = ckpt_lib.Checkpointer(workdir / 'checkpoints', best_metric=setup.best_metric,
                                       best_mode=setup.best_mode,
                                       keep_latest=config.checkpoint_keep_latest)
  cleanup.callback(checkpointer.close)
  _check_resume(setup, workdir, checkpointer, example_train)

  initial = init_state(setup, tx, example_train)
  num_params = state_lib.count_params(initial.params)
  _check_epochs_left(checkpointer, cadence, workdir)
  names = steps_lib.layer_names(initial.params)
  train_step, eval_step, empty_train, empty_eval, compile_s = compile_steps(
      setup, tx, initial, example_train, example_eval)
  log.info('Compiled train and eval steps in %.1fs; %s parameters; %d steps/epoch on %d %s; '
           'micro-batches per step: %d in sequence x %d side by side.', compile_s,
           f'{num_params:,}', steps_per_epoch, jax.device_count(), jax.devices()[0].device_kind,
           *microbatching(setup, initial))
  loop = _restore(checkpointer, initial, empty_train)
  history = [r for r in runfiles.read_history(workdir) if r.get('epoch', 0) <= loop.meta['epoch']]
  runfiles.write_history(workdir, history)
  runfiles.write_json(workdir / runfiles.CONFIG, config.to_dict())

  writer = writers.create(config.metric_writer, str(workdir), is_writer=runfiles.is_writer())
  cleanup.callback(writer.close)  # Before the checkpointer's close (callbacks run last first).
  doctor = _make_doctor(setup, num_params, num_train, workdir)
  device_images = None
  if config.input_mode == 'device':
    device_images = setup.data.device_loader(splits['train'], train=True, seed=config.seed)
  advance = Advancer(setup, tx, initial, empty_train, train_step, example_batch=example_train,
                     device_images=device_images)
  chunk = int(config.steps_per_call)
  advance.prepare([min(chunk, steps_per_epoch)] + (
      [steps_per_epoch % chunk] if steps_per_epoch % chunk else []))
  compile_s += advance.compile_s
  feeder = _make_feeder(setup, train_ds, loop.data_state, steps_per_epoch=steps_per_epoch,
                        num_epochs=cadence.num_epochs, num_train=num_train)
  val_eval = None
  if config.input_mode == 'device':
    val_eval = DeviceEvaluator(setup, splits['val'], initial, empty_eval)
    compile_s += val_eval.compile_s
  progress = Progress(cadence)
  status, sanity = 'finished', None

  with preemption.watch() as stop_signal:
    step = int(loop.state.step)
    if step < cadence.total_steps and stop_signal.requested(step):
      # The signal came during start-up or compilation: nothing new to save.
      log.info('Stopped by %s before training step %d; nothing new to save. Run the same '
               'command to %s.', stop_signal.signal_name, step + 1,
               'resume' if step else 'start')
      status = 'preempted'
    while status != 'preempted' and step < cadence.total_steps:
      epoch = cadence.epoch_of(step + 1)
      progress.reset(step)
      t0 = time.perf_counter() - float(loop.meta['partial_epoch_s'])
      preempted = False
      epoch_end = epoch * steps_per_epoch
      while step < epoch_end:
        # Chunks never cross an epoch end: history rows and evaluation happen there.
        k = min(chunk, epoch_end - step)
        loop.state, loop.metrics = advance(loop.state, feeder.next(k), loop.metrics, k)
        step += k
        if progress.due(step, k):
          progress.report(step, float(loop.metrics[0].loss.compute()))
        if step < epoch_end and stop_signal.requested(step):
          preempted = True
          break
      if preempted:
        # Mid-epoch checkpoint: the metric accumulators and the epoch's elapsed time go with it,
        # so the resumed epoch reports exactly what an uninterrupted one would.
        jax.block_until_ready(loop.state)
        loop.meta['partial_epoch_s'] = time.perf_counter() - t0
        _save(checkpointer, loop, feeder, step=step, is_best=False, value=None)
        writer.flush()
        log.info('Stopped by %s at step %d (epoch %d); checkpoint saved. Run the same command to '
                 'resume.', stop_signal.signal_name, step, epoch)
        status = 'preempted'
        break
      train_row, nonfinite = _train_row(setup, loop.metrics, names)  # Waits for the epoch.
      epoch_time = time.perf_counter() - t0
      loop.meta['partial_epoch_s'] = 0.0
      lr = float(schedule(step - 1)) * float(loop.state.lr_scale)
      row = {'epoch': epoch, 'step': step, 'learning_rate': lr}
      row.update(train_row)
      eval_time = 0.0
      if nonfinite['count'] == 0 and cadence.should_eval(step):
        t1 = time.perf_counter()
        row.update(evaluate(setup, eval_step, loop.state, splits['val'], empty_eval, prefix='val',
                            device_eval=val_eval))
        eval_time = time.perf_counter() - t1
      elapsed = float(loop.meta['elapsed_s']) + epoch_time + eval_time
      row.update(epoch_time_s=epoch_time, eval_time_s=eval_time, elapsed_s=elapsed,
                 examples_per_s=steps_per_epoch * config.batch_size / max(epoch_time, 1e-9),
                 peak_memory_bytes=_peak_memory())
      if 'tokens' in row:  # Language models: real (unpadded) tokens per second.
        row['tokens_per_s'] = row.pop('tokens') * steps_per_epoch / max(epoch_time, 1e-9)

      if nonfinite['count']:
        if _roll_back(setup, checkpointer, loop, nonfinite, epoch=epoch, initial=initial,
                      empty_train=empty_train):
          feeder = _make_feeder(setup, train_ds, loop.data_state, steps_per_epoch=steps_per_epoch,
                                num_epochs=cadence.num_epochs, num_train=num_train)
          history = [r for r in history if r['epoch'] <= loop.meta['epoch']]
          runfiles.write_history(workdir, history)
          step = int(loop.state.step)
          continue
        history.append(row)
        runfiles.append_history(workdir, row)
        writer.flush()
        _check_finite(nonfinite, epoch=epoch, last_saved=loop.saved_step)

      loop.meta['elapsed_s'] = elapsed
      history.append(row)
      runfiles.append_history(workdir, row)
      _write_scalars(writer, epoch, row)
      log.info('epoch %d: %s', epoch, ', '.join(
          f'{k}={row[k]:.4g}' for k in row if k.startswith(('train_', 'val_'))
          and isinstance(row[k], float)))

      value = row.get(setup.best_metric)
      if _improved(value, loop.meta['best_value'], mode=setup.best_mode,
                   min_delta=config.early_stopping_min_delta):
        loop.meta.update(best_value=value, best_epoch=epoch, best_step=step, bad_epochs=0)
      elif value is not None:
        loop.meta['bad_epochs'] = int(loop.meta['bad_epochs']) + 1
      loop.meta['epoch'] = epoch

      stop_reason = None
      if config.sanity_examples > 0 and setup.task.sanity_passed(
          row, loss_threshold=config.sanity_loss_threshold):
        sanity, stop_reason = {'passed': True, 'epochs': epoch}, 'sanity'
      elif config.early_stopping_patience and (
          loop.meta['bad_epochs'] >= config.early_stopping_patience):
        status, stop_reason = 'early_stopped', 'early_stopped'
      elif config.max_train_seconds and elapsed >= config.max_train_seconds:
        # Equal wall-clock budgets: the comparison the reference grid could not make.
        status, stop_reason = 'time_budget', 'time_budget'
      if doctor is not None:
        for finding in doctor.update(history):
          advice = f' -> try {finding.recommendations[0]}' if finding.recommendations else ''
          log.info('doctor: %s [%s] %s%s', finding.id, finding.severity,
                   finding.evidence.get('text', ''), advice)
        runfiles.write_json(workdir / 'diagnosis.json', doctor.to_json())
        if doctor.should_stop and stop_reason is None:
          status, stop_reason = 'stopped_by_doctor', 'doctor'
          log.info('doctor stopped the run: %s', doctor.stop_reason)

      loop.metrics = jax.tree.map(jnp.copy, empty_train)
      is_best = loop.meta['best_step'] == step
      # Sanity runs never restore a best checkpoint: saving each improvement would only cost time.
      save_best = is_best and not config.sanity_examples
      if cadence.should_checkpoint(step) or stop_reason is not None or save_best:
        _save(checkpointer, loop, feeder, step=step, is_best=is_best, value=value)
      if stop_reason is not None:
        break
      if stop_signal.requested(step):
        # A signal that arrived during evaluation: the epoch-end checkpoint is the resume point.
        if loop.saved_step != step:
          _save(checkpointer, loop, feeder, step=step, is_best=False, value=value)
        log.info('Stopped by %s after epoch %d; checkpoint saved. Run the same command to resume.',
                 stop_signal.signal_name, epoch)
        status = 'preempted'
        break

  if status == 'preempted':
    return {'status': 'preempted', 'step': step, 'epochs_run': len(history)}
  if config.sanity_examples > 0 and sanity is None:
    last = history[-1] if history else {}
    sanity = {'passed': False, 'epochs': len(history), 'train_loss': last.get('train_loss')}
  summary = _finish(setup, workdir, checkpointer, loop.state, splits, empty_eval, eval_step,
                    loop.meta, history, num_params=num_params, num_train=num_train,
                    compile_s=compile_s, status=status, sanity=sanity,
                    total_s=time.perf_counter() - t_start)
  return summary


def _roll_back(setup: Setup, checkpointer, loop: _Loop, nonfinite: dict, *, epoch: int, initial,
               empty_train) -> bool:
  """``nan_policy=rollback``: restore the last good checkpoint with a reduced learning rate.

  Returns:
    True when the loop rolled back; False when the policy is ``stop`` or exhausted.
  """
  config = setup.config
  if config.nan_policy != 'rollback' or loop.saved_step is None:
    return False
  if int(loop.meta['rollbacks']) >= config.nan_max_rollbacks:
    log.info('non-finite loss again after %d rollbacks: giving up.', loop.meta['rollbacks'])
    return False
  target = loop.saved_step
  checkpointer.delete_after(target)
  state, metrics, data_state, meta = checkpointer.restore(
      target, ckpt_lib.abstract(initial), ckpt_lib.abstract(empty_train))
  scale = float(state.lr_scale) * float(config.nan_lr_factor)
  rollbacks = int(loop.meta['rollbacks']) + 1
  loop.state = state.replace(lr_scale=jax.device_put(
      jnp.asarray(scale, jnp.float32), sharding.replicated(setup.mesh)))
  loop.metrics, loop.data_state = metrics, data_state
  loop.meta = {**_fresh_meta(), **meta, 'rollbacks': rollbacks}
  log.info('non-finite loss at epoch %d, step %d: rolled back to step %d with the learning rate '
           'scaled by %.3g (rollback %d of %d).', epoch, nonfinite['first_step'], target, scale,
           rollbacks, config.nan_max_rollbacks)
  return True


def _finish(setup: Setup, workdir, checkpointer, state, splits, empty_eval, eval_step, meta,
            history, *, num_params, num_train, compile_s, status, sanity, total_s) -> dict:
  """Evaluates the best checkpoint and the final model on the test split; writes summary.json.

  ``test_*`` are the best-validation checkpoint's (curvelab's protocol), ``last_test_*`` the final
  epoch's model (the reference study's): the same numbers when the last epoch was the best.
  """
  config = setup.config
  test, last_test = {}, {}
  best_step = meta.get('best_step')
  if best_step is not None and sanity is None:
    if best_step != int(state.step):
      last_test = evaluate(setup, eval_step, state, splits['test'], empty_eval, prefix='test')
      state, _, _, _ = checkpointer.restore(best_step, ckpt_lib.abstract(state))
    test = evaluate(setup, eval_step, state, splits['test'], empty_eval, prefix='test')
    last_test = last_test or test
  best_row = next((r for r in history if r['epoch'] == meta.get('best_epoch')), {})
  summary = {
      'num_params': num_params,
      'num_train_examples': num_train,
      'best_epoch': meta.get('best_epoch'),
      'best_step': best_step,
      'best_metric': setup.best_metric,
      'best_mode': setup.best_mode,
      'epochs_run': len(history),
      'status': status,
      'total_time_s': total_s,
      'compile_time_s': compile_s,
      'device_kind': jax.devices()[0].device_kind,
      'device_count': jax.device_count(),
      'config': config.to_dict(),
  }
  for key in ('val_loss',) + tuple(f'val_{m}' for m in setup.task.metric_names):
    summary[f'best_{key}'] = best_row.get(key)
  rates = [r['tokens_per_s'] for r in history if r.get('tokens_per_s')]
  if rates:
    summary['tokens_per_s'] = float(np.median(rates))
  summary.update(test)
  summary.update({f'last_{k}': v for k, v in last_test.items()})
  if last_test:
    summary['last_epoch'] = history[-1]['epoch'] if history else None
  if sanity is not None:
    summary['sanity'] = sanity
    log.info('sanity: %s in %d epochs%s', 'passed' if sanity['passed'] else 'failed',
                 sanity['epochs'], '' if sanity['passed'] else
                 f' (training loss reached {sanity.get("train_loss")})')
  runfiles.write_json(workdir / runfiles.SUMMARY, summary)
  return summary


# --------------------------------------------------------------------------------- CLI

def main(argv):
  from absl import flags  # pylint: disable=g-import-not-at-top
  del argv
  flags_ = flags.FLAGS
  if not flags_.workdir:
    print('error: --workdir is required (the folder the run writes to).', file=sys.stderr)
    return 2
  try:
    summary = train_and_evaluate(flags_.config, flags_.workdir)
  except errors.CurvelabError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  brief = {k: v for k, v in summary.items() if k != 'config'}
  import json  # pylint: disable=g-import-not-at-top
  print(json.dumps(brief, indent=2, sort_keys=True, default=str))
  return 0


if __name__ == '__main__':
  from curvelab import cli  # pylint: disable=g-import-not-at-top
  cli.run_training_main(main)
