"""What happens at the end of every epoch: an ordered list of small actions.

``train.py``'s loop trains one epoch, opens an :class:`EpochEnd` (the epoch's training row) and
runs :data:`ACTIONS` in order. Each action has one job and reads or writes only the
:class:`Run` (what lasts the whole run) and the :class:`EpochEnd` (what this epoch produced):

1. ``evaluate``        validation metrics, when the cadence says so and the epoch was finite;
2. ``time_epoch``      epoch and evaluation time, elapsed time, throughput, peak memory;
3. ``record``          the history row: ``history.jsonl``, TensorBoard scalars, the console line;
4. ``nan_policy``      a non-finite epoch rolls back to the last good checkpoint or stops;
5. ``track_best``      the best validation value, its epoch and step, epochs without improvement;
6. ``stop_policies``   sanity (memorised), early stopping, the time budget;
7. ``consult_doctor``  the online doctor's findings (``diagnosis.json``), and its stop;
8. ``checkpoint``      saved when due, when the run stops, and at every new best;
9. ``stop_signal``     a SIGTERM/SIGINT that came during the epoch's evaluation: saved, stopped.

The order matters and is tested (tests/test_epoch_end.py): the checkpoint saves what every earlier
action wrote into the loop position (the best, the epochs without improvement, elapsed time), so
a resumed run continues exactly as an uninterrupted one; the row is recorded before any stop, so
the history always holds the epoch a run stopped at.
"""

import dataclasses
import pathlib
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

from curvelab import checkpoint as ckpt_lib
from curvelab import console
from curvelab import durations
from curvelab import errors
from curvelab import evaluation
from curvelab import runfiles
from curvelab import sharding
from curvelab import validate
from curvelab.build import Setup

log = console.logger()


# --------------------------------------------------------------------------------- state

@dataclasses.dataclass
class Position:
  """Where the loop is: restored together from a checkpoint, saved together into one."""
  state: Any
  metrics: Any
  data_state: dict | None
  meta: dict
  saved_step: int | None


def fresh_meta() -> dict:
  """The bookkeeping a checkpoint carries besides the train state (all of it resumes exactly)."""
  return {'epoch': 0, 'best_value': None, 'best_epoch': None, 'best_step': None, 'bad_epochs': 0,
          'elapsed_s': 0.0, 'partial_epoch_s': 0.0, 'rollbacks': 0}


def restore(checkpointer, state, empty_train) -> Position:
  """The newest readable checkpoint, or the initial position."""
  found = checkpointer.restore_latest_good(ckpt_lib.abstract(state), ckpt_lib.abstract(empty_train))
  if found is None:
    return Position(state, jax.tree.map(jnp.copy, empty_train), None, fresh_meta(), None)
  step, state, metrics, data_state, meta = found
  ckpt_lib.log_restored(step, meta)
  return Position(state, metrics, data_state, {**fresh_meta(), **meta}, step)


@dataclasses.dataclass
class Run:
  """What lasts the whole run and what the actions need of it (built by train.py's start-up)."""
  setup: Setup
  workdir: pathlib.Path
  cadence: durations.Cadence
  schedule: Callable[[int], Any]
  splits: dict
  checkpointer: Any
  writer: Any
  doctor: Any
  make_feeder: Callable[[dict | None], Any]
  position: Position
  history: list
  initial: Any
  empty_train: Any
  empty_eval: Any
  eval_step: Any
  val_eval: Any
  layer_names: tuple
  stop_signal: Any = None
  feeder: Any = None
  advance: Any = None  # compiled.Advancer: ``advance(state, chunk, metrics, k)``.
  status: str = 'finished'
  sanity: dict | None = None

  def save(self, *, step: int, is_best: bool, value) -> None:
    """Checkpoints the position (state, metric accumulators, data position, bookkeeping)."""
    p = self.position
    self.checkpointer.save(step, state=p.state, metrics=p.metrics, data_state=self.feeder.state(),
                           meta=dict(p.meta), is_best=is_best, value=value)
    p.saved_step = step


@dataclasses.dataclass
class EpochEnd:
  """One epoch's results as the actions build them up; ``stop`` or ``restart`` end the list."""
  epoch: int
  step: int
  row: dict
  nonfinite: dict
  epoch_time: float
  eval_time: float = 0.0
  elapsed: float = 0.0
  stop_reason: str | None = None  # Set by a stop policy: the loop ends after this epoch.
  restart: bool = False  # Set by the NaN policy's rollback: the loop goes on from the restore.

  @classmethod
  def open(cls, run: Run, *, epoch: int, step: int, started: float) -> 'EpochEnd':
    """Fetches the epoch's training metrics (waiting for its last step) into a new row."""
    train_row, nonfinite = evaluation.train_row(run.setup, run.position.metrics, run.layer_names)
    epoch_time = time.perf_counter() - started
    run.position.meta['partial_epoch_s'] = 0.0
    lr = float(run.schedule(step - 1)) * float(run.position.state.lr_scale)
    row = {'epoch': epoch, 'step': step, 'learning_rate': lr, **train_row}
    return cls(epoch=epoch, step=step, row=row, nonfinite=nonfinite, epoch_time=epoch_time)


# --------------------------------------------------------------------------------- actions

def evaluate(run: Run, end: EpochEnd) -> None:
  """Validation metrics into the row, at the eval cadence, never on a non-finite epoch."""
  if end.nonfinite['count'] or not run.cadence.should_eval(end.step):
    return
  start = time.perf_counter()
  end.row.update(evaluation.evaluate(run.setup, run.eval_step, run.position.state,
                                     run.splits['val'], run.empty_eval, prefix='val',
                                     device_eval=run.val_eval))
  end.eval_time = time.perf_counter() - start


def time_epoch(run: Run, end: EpochEnd) -> None:
  """Times and throughput; elapsed time counts training and evaluation, not start-up."""
  config, steps = run.setup.config, run.cadence.steps_per_epoch
  end.elapsed = float(run.position.meta['elapsed_s']) + end.epoch_time + end.eval_time
  end.row.update(epoch_time_s=end.epoch_time, eval_time_s=end.eval_time, elapsed_s=end.elapsed,
                 examples_per_s=steps * config.loop.batch_size / max(end.epoch_time, 1e-9),
                 peak_memory_bytes=evaluation.peak_memory())
  if 'tokens' in end.row:  # Language models: real (unpadded) tokens per second.
    end.row['tokens_per_s'] = end.row.pop('tokens') * steps / max(end.epoch_time, 1e-9)


def record(run: Run, end: EpochEnd) -> None:
  """The row goes to the history (memory and file), TensorBoard and the console."""
  run.history.append(end.row)
  runfiles.append_history(run.workdir, end.row)
  write_scalars(run.writer, end.epoch, end.row)
  log.info('epoch %d: %s', end.epoch, ', '.join(
      f'{k}={v:.4g}' for k, v in end.row.items()
      if k.startswith(('train_', 'val_')) and isinstance(v, float)))


def nan_policy(run: Run, end: EpochEnd) -> None:
  """``nan_policy=rollback`` restores the last good checkpoint; otherwise the run stops.

  Raises:
    TrainingError: on a non-finite epoch that is not rolled back, naming the step and the
      checkpoint that is intact.
  """
  if not end.nonfinite['count']:
    return
  if roll_back(run, epoch=end.epoch, first_step=end.nonfinite['first_step']):
    run.feeder = run.make_feeder(run.position.data_state)
    run.history[:] = [r for r in run.history if r['epoch'] <= run.position.meta['epoch']]
    runfiles.write_history(run.workdir, run.history)
    end.restart = True
    return
  saved = run.position.saved_step
  kept = (f'the last good checkpoint (step {saved}) is intact' if saved is not None
          else 'no checkpoint was saved')
  raise errors.TrainingError(
      f'non-finite loss at epoch {end.epoch}, step {end.nonfinite["first_step"]}: training '
      f'stopped; {kept}. Lower learning_rate, add grad_clip_norm or warmup_epochs.')


def track_best(run: Run, end: EpochEnd) -> None:
  """Best value, epoch and step of ``best_metric``, and the epochs since it improved."""
  meta, config = run.position.meta, run.setup.config
  meta['elapsed_s'] = end.elapsed
  value = end.row.get(run.setup.best_metric)
  if improved(value, meta['best_value'], mode=run.setup.best_mode,
              min_delta=config.stopping.min_delta):
    meta.update(best_value=value, best_epoch=end.epoch, best_step=end.step, bad_epochs=0)
  elif value is not None:
    meta['bad_epochs'] = int(meta['bad_epochs']) + 1
  meta['epoch'] = end.epoch


def stop_policies(run: Run, end: EpochEnd) -> None:
  """Sanity runs stop once memorised; early stopping; the time budget (equal wall-clock runs)."""
  config, meta = run.setup.config, run.position.meta
  if config.sanity.examples > 0 and run.setup.task.sanity_passed(
      end.row, loss_threshold=config.sanity.loss_threshold):
    run.sanity, end.stop_reason = {'passed': True, 'epochs': end.epoch}, 'sanity'
  elif config.stopping.patience and meta['bad_epochs'] >= config.stopping.patience:
    run.status = end.stop_reason = 'early_stopped'
  elif config.stopping.max_train_seconds and end.elapsed >= config.stopping.max_train_seconds:
    run.status = end.stop_reason = 'time_budget'


def consult_doctor(run: Run, end: EpochEnd) -> None:
  """The doctor reads the history so far; a persistent ``doctor.stop_on`` finding stops the run."""
  if run.doctor is None:
    return
  for finding in run.doctor.update(run.history):
    advice = f' -> try {finding.recommendations[0]}' if finding.recommendations else ''
    log.info('doctor: %s [%s] %s%s', finding.id, finding.severity,
             finding.evidence.get('text', ''), advice)
  runfiles.write_json(run.workdir / 'diagnosis.json', run.doctor.to_json())
  if run.doctor.should_stop and end.stop_reason is None:
    run.status, end.stop_reason = 'stopped_by_doctor', 'doctor'
    log.info('doctor stopped the run: %s', run.doctor.stop_reason)


def checkpoint(run: Run, end: EpochEnd) -> None:
  """Saves when the cadence says, when the run stops here, and at each new best."""
  run.position.metrics = jax.tree.map(jnp.copy, run.empty_train)  # The next epoch's accumulators.
  is_best = run.position.meta['best_step'] == end.step
  # Sanity runs never restore a best checkpoint: saving each improvement would only cost time.
  save_best = is_best and not run.setup.config.sanity.examples
  if run.cadence.should_checkpoint(end.step) or end.stop_reason is not None or save_best:
    run.save(step=end.step, is_best=is_best, value=end.row.get(run.setup.best_metric))


def stop_signal(run: Run, end: EpochEnd) -> None:
  """A stop signal that arrived during evaluation: the epoch-end checkpoint is the resume point."""
  if end.stop_reason is not None or not run.stop_signal.requested(end.step):
    return
  if run.position.saved_step != end.step:
    run.save(step=end.step, is_best=False, value=end.row.get(run.setup.best_metric))
  log.info('Stopped by %s after epoch %d; checkpoint saved. Run the same command to resume.',
           run.stop_signal.signal_name, end.epoch)
  run.status = end.stop_reason = 'preempted'


ACTIONS: tuple[Callable[[Run, EpochEnd], None], ...] = (
    evaluate, time_epoch, record, nan_policy, track_best, stop_policies, consult_doctor,
    checkpoint, stop_signal)


def run_actions(run: Run, end: EpochEnd, actions=ACTIONS) -> EpochEnd:
  """Runs the actions in order; a rollback (``end.restart``) skips the rest."""
  for action in actions:
    action(run, end)
    if end.restart:
      break
  return end


# --------------------------------------------------------------------------------- helpers

def improved(value, best, *, mode: str, min_delta: float) -> bool:
  """Whether ``value`` beats ``best`` by more than ``min_delta`` in direction ``mode``."""
  if value is None:
    return False
  if best is None:
    return True
  return value > best + min_delta if mode == 'max' else value < best - min_delta


def write_scalars(writer, epoch: int, row: dict) -> None:
  """The row's numbers (and per-layer gradient norms) as TensorBoard scalars at ``epoch``."""
  scalars = {k: v for k, v in row.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None}
  for name, value in row.get('layer_grad_norms', {}).items():
    scalars[f'grad_norm/{name}'] = value
  writer.write_scalars(epoch, scalars)
  writer.flush()


def roll_back(run: Run, *, epoch: int, first_step: int) -> bool:
  """``nan_policy=rollback``: the last good checkpoint, with a reduced learning rate.

  Returns:
    True when the loop rolled back; False when the policy is ``stop`` or exhausted.
  """
  config, p = run.setup.config, run.position
  if config.stopping.nan_policy != 'rollback' or p.saved_step is None:
    return False
  if int(p.meta['rollbacks']) >= config.stopping.nan_max_rollbacks:
    log.info('non-finite loss again after %d rollbacks: giving up.', p.meta['rollbacks'])
    return False
  target = p.saved_step
  run.checkpointer.delete_after(target)
  state, metrics, data_state, meta = run.checkpointer.restore(
      target, ckpt_lib.abstract(run.initial), ckpt_lib.abstract(run.empty_train))
  scale = float(state.lr_scale) * float(config.stopping.nan_lr_factor)
  rollbacks = int(p.meta['rollbacks']) + 1
  p.state = state.replace(lr_scale=jax.device_put(
      jnp.asarray(scale, jnp.float32), sharding.replicated(run.setup.mesh)))
  p.metrics, p.data_state = metrics, data_state
  p.meta = {**fresh_meta(), **meta, 'rollbacks': rollbacks}
  log.info('non-finite loss at epoch %d, step %d: rolled back to step %d with the learning rate '
           'scaled by %.3g (rollback %d of %d).', epoch, first_step, target, scale,
           rollbacks, config.stopping.nan_max_rollbacks)
  return True


def make_doctor(setup: Setup, num_params: int, num_train: int, workdir: pathlib.Path):
  """The online doctor for this run, or None when disabled."""
  if not setup.config.doctor.enabled:
    return None
  from diagnostics import OnlineDoctor  # pylint: disable=g-import-not-at-top
  stop_on = validate.stop_on_ids(setup.config)  # Checked with the config (validate.check_doctor).
  num_classes = setup.data.num_outputs if setup.task.best_metric == 'val_accuracy' else None
  return OnlineDoctor(stop_on=stop_on, patience=setup.config.doctor.patience,
                      num_params=num_params, num_train_examples=num_train,
                      num_classes=num_classes, config=setup.config.to_dict(), path=str(workdir),
                      early_stopping_patience=setup.config.stopping.patience or None)
