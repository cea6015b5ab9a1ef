r"""Trains and evaluates one run: ``train_and_evaluate(config, workdir)``.

Usage:
  python train.py --config=configs/vit_prenorm.py:layers=6,optimizer=adamw --workdir=runs/exp6 \
      [--config.loop.num_epochs=20 --config.optimizer.learning_rate=1e-3 ...]

Running the same command again in the same workdir resumes from the latest checkpoint and
reproduces the history of an uninterrupted run. See README.md for the files a run writes.
"""

import contextlib
import pathlib
import sys
import time

if __name__ == '__main__':
  # Stop signals are recorded from here on, through the imports below, start-up and compilation,
  # to the last line (curvelab/preemption.py says where the run stops for each phase).
  from curvelab import preemption as _early_preemption  # pylint: disable=g-import-not-at-top
  _early_preemption.install()

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp
import ml_collections

from curvelab import build as build_lib
from curvelab import checkpoint as ckpt_lib
from curvelab import compiled
from curvelab import console
from curvelab import durations
from curvelab import epoch_end
from curvelab import errors
from curvelab import evaluation
from curvelab import feeders
from curvelab import optim
from curvelab import plan as plan_lib
from curvelab import preemption
from curvelab import resume
from curvelab import runfiles
from curvelab import state as state_lib
from curvelab import steps as steps_lib
from curvelab import summary as summary_lib
from curvelab import workdir as workdir_lib
from curvelab import writers
from curvelab.build import build
from curvelab.build import prepare_config
from input_pipeline import pipeline

log = console.logger()


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
    with contextlib.ExitStack() as cleanup:  # Writer and checkpointer closed however it ends.
      return _run(setup, workdir, cleanup)
  finally:
    lock.release()


def _run(setup: build_lib.Setup, workdir: pathlib.Path, cleanup: contextlib.ExitStack) -> dict:
  """Start-up, the epochs, the test evaluation; stop signals are honoured at every phase."""
  t_start = time.perf_counter()
  run, facts = _start(setup, workdir, cleanup)
  with preemption.watch() as stop_signal:
    run.stop_signal = stop_signal
    _train(run)
  if run.status == 'preempted':
    return {'status': 'preempted', 'step': int(run.position.state.step),
            'epochs_run': len(run.history)}
  return summary_lib.finish(run, total_s=time.perf_counter() - t_start, **facts)


def _load_splits(setup: build_lib.Setup) -> dict:
  splits = {role: setup.data.load(role) for role in ('train', 'val', 'test')}
  if setup.config.sanity.examples > 0:
    n = int(setup.config.sanity.examples)
    if len(splits['train']) < n:
      raise errors.ConfigError(f'sanity.examples={n} exceeds the training split '
                               f'({len(splits["train"])} examples).')
    splits['train'] = splits['train'].head(n)
    splits['val'] = splits['train']  # Memorisation is judged on the examples themselves.
  return splits


def _start(setup: build_lib.Setup, workdir: pathlib.Path, cleanup: contextlib.ExitStack):
  """Data, checks, compilation, the restored position, the writers: a ready ``epoch_end.Run``."""
  config = setup.config
  splits = _load_splits(setup)
  num_train = len(splits['train'])
  steps_per_epoch = durations.steps_per_epoch(num_examples=num_train, batch_size=config.loop.batch_size)
  cadence = durations.make_cadence(config, steps_per_epoch=steps_per_epoch)
  tx, schedule = optim.make_optimizer(config, steps_per_epoch=steps_per_epoch)
  train_ds = pipeline.train_dataset(
      splits['train'], global_batch=config.loop.batch_size, num_epochs=cadence.num_epochs,
      seed=config.seed, preprocess=setup.data.train_preprocess,
      process_index=jax.process_index(), process_count=jax.process_count())
  example_train = train_ds[0]
  example_eval = next(pipeline.eval_batches(
      splits['val'], global_batch=config.loop.eval_batch_size, preprocess=setup.data.eval_preprocess,
      process_index=jax.process_index(), process_count=jax.process_count()))
  resume.check_vocabulary(setup, workdir)
  checkpointer = ckpt_lib.Checkpointer(workdir / 'checkpoints', best_metric=setup.best_metric,
                                       best_mode=setup.best_mode,
                                       keep_latest=config.loop.checkpoint_keep_latest)
  cleanup.callback(checkpointer.close)
  resume.check_shapes(setup, workdir, checkpointer, example_train)
  initial = build_lib.init_state(setup, tx, example_train)
  num_params = state_lib.count_params(initial.params)
  resume.check_epochs_left(checkpointer, cadence, workdir)
  setup.plan = plan = plan_lib.resolve(config, has_model_state=bool(initial.model_state),
                                       attention=setup.attention)
  steps = _compile(setup, tx, initial, example_train, example_eval, splits, cadence)
  log.info('Compiled train and eval steps in %.1fs; %s parameters; %d steps/epoch on %d %s.',
           steps['compile_s'], f'{num_params:,}', steps_per_epoch, jax.device_count(),
           jax.devices()[0].device_kind)
  log.info('%s', plan.line())
  position = epoch_end.restore(checkpointer, initial, steps['empty_train'])
  history = [r for r in runfiles.read_history(workdir)
             if r.get('epoch', 0) <= position.meta['epoch']]
  runfiles.write_history(workdir, history)
  runfiles.write_json(workdir / runfiles.CONFIG, config.to_dict())
  writer = writers.create(config.loop.metric_writer, str(workdir), is_writer=runfiles.is_writer())
  cleanup.callback(writer.close)  # Before the checkpointer's close (callbacks run last first).

  def make_feeder(data_state):
    return _make_feeder(setup, train_ds, data_state, num_epochs=cadence.num_epochs,
                        num_train=num_train)

  run = epoch_end.Run(
      setup=setup, workdir=workdir, cadence=cadence, schedule=schedule, splits=splits,
      checkpointer=checkpointer, writer=writer,
      doctor=epoch_end.make_doctor(setup, num_params, num_train, workdir),
      make_feeder=make_feeder, position=position, history=history, initial=initial,
      empty_train=steps['empty_train'], empty_eval=steps['empty_eval'],
      eval_step=steps['eval_step'], val_eval=steps['val_eval'], advance=steps['advance'],
      layer_names=steps_lib.layer_names(initial.params), feeder=make_feeder(position.data_state))
  return run, {'num_params': num_params, 'num_train': num_train, 'compile_s': steps['compile_s'],
               'plan': plan.to_json()}


def _compile(setup, tx, initial, example_train, example_eval, splits, cadence) -> dict:
  """Every compiled step the run will call, compiled before any timing starts."""
  config = setup.config
  train_step, eval_step, empty_train, empty_eval, compile_s = compiled.compile_steps(
      setup, tx, initial, example_train, example_eval)
  device_images, val_eval = None, None
  if config.speed.input_mode == 'device':
    device_images = setup.data.device_loader(splits['train'], train=True, seed=config.seed)
    val_eval = evaluation.DeviceEvaluator(setup, splits['val'], initial, empty_eval)
    compile_s += val_eval.compile_s
  advance = compiled.Advancer(setup, tx, initial, empty_train, train_step,
                              example_batch=example_train, device_images=device_images)
  chunk, per_epoch = int(config.speed.steps_per_call), cadence.steps_per_epoch
  advance.prepare([min(chunk, per_epoch)] + ([per_epoch % chunk] if per_epoch % chunk else []))
  return {'eval_step': eval_step, 'empty_train': empty_train, 'empty_eval': empty_eval,
          'val_eval': val_eval, 'advance': advance, 'compile_s': compile_s + advance.compile_s}


def _make_feeder(setup: build_lib.Setup, train_ds, data_state, *, num_epochs: int,
                 num_train: int):
  """The training input for the config's ``input_mode``, positioned at ``data_state``."""
  if setup.config.speed.input_mode == 'device':
    from input_pipeline import device as device_lib  # pylint: disable=g-import-not-at-top
    order = device_lib.EpochOrder(num_train, global_batch=setup.config.loop.batch_size,
                                  num_epochs=num_epochs, seed=setup.config.seed)
    return feeders.DeviceFeeder(order, data_state, setup.mesh)
  return feeders.HostFeeder(train_ds, data_state, setup.mesh)


# --------------------------------------------------------------------------------- the loop

def _train(run: epoch_end.Run) -> None:
  """Epochs until the end, a stop policy or a stop signal; ``run.status`` says which."""
  step, total = int(run.position.state.step), run.cadence.total_steps
  if step < total and run.stop_signal.requested(step):
    # The signal came during start-up or compilation: nothing new to save.
    log.info('Stopped by %s before training step %d; nothing new to save. Run the same command '
             'to %s.', run.stop_signal.signal_name, step + 1, 'resume' if step else 'start')
    run.status = 'preempted'
    return
  progress = console.Progress(run.cadence)
  while step < total:
    epoch = run.cadence.epoch_of(step + 1)
    started = time.perf_counter() - float(run.position.meta['partial_epoch_s'])
    step = _train_epoch(run, progress, epoch=epoch, step=step, started=started)
    if run.status == 'preempted':
      return
    end = epoch_end.run_actions(run, epoch_end.EpochEnd.open(run, epoch=epoch, step=step,
                                                             started=started))
    if end.restart:
      step = int(run.position.state.step)
    elif end.stop_reason is not None:
      return


def _train_epoch(run: epoch_end.Run, progress, *, epoch: int, step: int, started: float) -> int:
  """Trains to the epoch's end in chunks of ``steps_per_call``; returns the step reached.

  A stop signal mid-epoch saves a checkpoint with the metric accumulators and the epoch's elapsed
  time, so the resumed epoch reports exactly what an uninterrupted one would.
  """
  chunk, epoch_end_step = int(run.setup.config.speed.steps_per_call), epoch * run.cadence.steps_per_epoch
  position, in_flight = run.position, None
  progress.reset(step)
  while step < epoch_end_step:
    k = min(chunk, epoch_end_step - step)  # Chunks never cross an epoch end.
    position.state, position.metrics = run.advance(position.state, run.feeder.next(k),
                                                   position.metrics, k)
    step += k
    # At most one chunk runs ahead of the host (the next batch is still prepared meanwhile), so
    # time-based progress lines and stop checks see the steps that ran, not the steps queued.
    if in_flight is not None:
      jax.block_until_ready(in_flight)
    in_flight = jnp.copy(position.state.step)  # A copy: the state itself is donated next call.
    if progress.due(step, k):
      progress.report(step, float(position.metrics[0].loss.compute()))
    if step < epoch_end_step and run.stop_signal.requested(step):
      jax.block_until_ready(position.state)
      position.meta['partial_epoch_s'] = time.perf_counter() - started
      run.save(step=step, is_best=False, value=None)
      run.writer.flush()
      log.info('Stopped by %s at step %d (epoch %d); checkpoint saved. Run the same command to '
               'resume.', run.stop_signal.signal_name, step, epoch)
      run.status = 'preempted'
      break
  return step


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

