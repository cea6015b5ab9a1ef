"""One Orbax CheckpointManager per run: the latest and the best-by-validation checkpoint.

Each checkpoint holds four items saved together, atomically (Orbax writes to a temporary
directory and renames it on commit, so ``kill -9`` never leaves a half-written step behind):

* ``state``: the whole :class:`~curvelab.state.TrainState` (params, model state, optimizer state,
  RNG, step, learning-rate scale);
* ``accumulators``: the epoch's metric accumulators, so a checkpoint taken mid-epoch (on SIGTERM)
  resumes into the same epoch means;
* ``data``: the training iterator's grain state, so a resumed run reads the same batches;
* ``meta``: loop bookkeeping (epoch, best value and epoch, early-stopping counter).

Retention is a preservation policy: the newest step, plus the best step by the validation metric.
A checkpoint that cannot be read (a truncated file, a missing directory) is moved aside to
``checkpoints_damaged/`` and the previous one is used.
"""

import pathlib
import shutil
import time
from typing import Any

import jax
import orbax.checkpoint as ocp

from curvelab import console
from curvelab import errors

# 'metrics' is Orbax's own item name (the ranking metrics), hence 'accumulators'.
_ITEMS = ('state', 'accumulators', 'data', 'meta')


class Checkpointer:
  """Saves and restores the loop's state in ``WORKDIR/checkpoints``.

  Args:
    directory: the checkpoints folder.
    best_metric: history key ranking checkpoints (e.g. ``val_accuracy``).
    best_mode: ``max`` or ``min``.
    keep_latest: how many of the newest checkpoints to keep (besides the best).
  """

  def __init__(self, directory: str | pathlib.Path, *, best_metric: str, best_mode: str,
               keep_latest: int = 1):
    self.best_metric = best_metric
    policies = ocp.checkpoint_managers
    preservation = policies.AnyPreservationPolicy([
        policies.LatestN(n=keep_latest),
        # The loop decides what "best" means (direction, min_delta, ties go to the earlier epoch)
        # and marks each save with is_best 0/1. BestN keeps the last of the highest after a stable
        # sort, i.e. the most recent checkpoint marked best, which is the current best.
        policies.BestN(get_metric_fn=lambda m: m['is_best'], n=1,
                       keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(
        preservation_policy=preservation,
        # Saves are tiny next to an epoch; synchronous saving means "saved" is true when we say it.
        enable_async_checkpointing=False,
        cleanup_tmp_directories=True,
        create=True,
    )
    self.manager = ocp.CheckpointManager(pathlib.Path(directory).absolute(), item_names=_ITEMS,
                                         options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, *, state: Any, metrics: Any, data_state: dict, meta: dict,
           is_best: bool, value: float | None = None) -> None:
    """Saves a checkpoint (collective: every process calls it).

    Args:
      step: optimizer step, the checkpoint's name.
      state: the train state.
      metrics: the epoch's metric accumulators (zeros at an epoch end).
      data_state: the training iterator's state.
      meta: loop bookkeeping.
      is_best: whether this step is the best so far by the validation metric.
      value: the validation metric, recorded alongside for reference.

    Raises:
      TrainingError: the checkpoint could not be written (disk full, unwritable folder); the
        earlier checkpoints are untouched, since Orbax commits a step only once it is whole.
    """
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              accumulators=ocp.args.StandardSave(metrics),
                              data=ocp.args.JsonSave(data_state),
                              meta=ocp.args.JsonSave(meta))
    ranking = {'is_best': 1.0 if is_best else 0.0}
    if value is not None:
      ranking[self.best_metric] = float(value)
    try:
      self.manager.save(step, args=args, metrics=ranking, force=True)
      self.manager.wait_until_finished()
    except Exception as e:  # Orbax wraps I/O failures in several types; the cause tells.
      if not _caused_by_os_error(e):
        raise
      raise errors.TrainingError(
          f'could not save the checkpoint of step {step} in {self.manager.directory} '
          f'({type(e).__name__}: {_first_line(e)}); the run stopped, earlier checkpoints are '
          'intact. Free disk space or fix permissions, then run the same command to resume.') from e

  def restore(self, step: int, abstract_state: Any, abstract_metrics: Any = None
              ) -> tuple[Any, Any, dict, dict]:
    """Restores ``(state, metrics, data_state, meta)`` at ``step`` with the targets' shardings."""
    items = {'state': ocp.args.StandardRestore(abstract_state),
             'data': ocp.args.JsonRestore(), 'meta': ocp.args.JsonRestore()}
    if abstract_metrics is not None:
      items['accumulators'] = ocp.args.StandardRestore(abstract_metrics)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # Orbax raises many types for damaged or mismatched checkpoints.
      raise errors.ResumeError(
          f'checkpoint at step {step} in {self.manager.directory} cannot be restored: '
          f'{type(e).__name__}: {_first_line(e)}') from e
    metrics = restored['accumulators'] if abstract_metrics is not None else None
    return restored['state'], metrics, dict(restored['data']), dict(restored['meta'])

  def restore_latest_good(self, abstract_state: Any, abstract_metrics: Any):
    """Restores the newest readable checkpoint, moving damaged newer ones aside.

    Returns:
      ``(step, state, metrics, data_state, meta)``, or None when no checkpoint can be read.
    """
    while True:
      step = self.latest_step()
      if step is None:
        return None
      try:
        return (step, *self.restore(step, abstract_state, abstract_metrics))
      except errors.ResumeError as e:
        console.logger().warning('%s; moving it aside and trying the previous one.', e)
        self._quarantine(step)

  def _quarantine(self, step: int) -> None:
    """Moves a damaged step out of the manager's folder (process 0), then rescans it."""
    directory = pathlib.Path(self.manager.directory)
    if jax.process_index() == 0:
      target = directory.parent / 'checkpoints_damaged' / f'{step}-{int(time.time())}'
      target.parent.mkdir(parents=True, exist_ok=True)
      shutil.move(str(directory / str(step)), str(target))
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices(f'quarantine_{step}')
    self.manager.reload()

  def saved_param_shapes(self, step: int):
    """Parameter shapes of a saved step, from Orbax's metadata (no array is read).

    Returns None when the metadata cannot be read (a damaged step, handled at restore).
    """
    path = pathlib.Path(self.manager.directory).absolute() / str(step) / 'state'
    try:
      tree = ocp.StandardCheckpointer().metadata(path).item_metadata
      return jax.tree.map(lambda m: tuple(m.shape), dict(tree['params']))
    except Exception:  # Damaged or foreign metadata: restore_latest_good decides.
      return None

  def delete_after(self, step: int) -> None:
    """Drops checkpoints newer than ``step`` (after a rollback they belong to a dead branch)."""
    for later in [s for s in self.all_steps() if s > step]:
      self.manager.delete(later)

  def read_meta(self, step: int) -> dict:
    """The loop bookkeeping saved with ``step`` (cheap: no arrays are read)."""
    restored = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored['meta'])

  def resolve(self, which: str) -> int:
    """Step of ``best``, ``latest`` or a number, with a clear error when there is none."""
    steps = self.all_steps()
    if not steps:
      raise errors.ResumeError(f'no checkpoint in {self.manager.directory}.')
    latest = max(steps)
    if which == 'latest':
      return latest
    if which == 'best':
      best = self.read_meta(latest).get('best_step')
      if best is None or best not in steps:
        raise errors.ResumeError(f'no best checkpoint recorded in {self.manager.directory}; '
                                 f'available steps: {sorted(steps)}.')
      return int(best)
    if not which.isdigit() or int(which) not in steps:
      raise errors.ConfigError(f'--checkpoint={which!r} is not available; use best, latest or one '
                               f'of the steps {sorted(steps)}.')
    return int(which)

  def close(self) -> None:
    self.manager.close()


def _caused_by_os_error(e: BaseException) -> bool:
  while e is not None:
    if isinstance(e, OSError):
      return True
    e = e.__cause__ or e.__context__
  return False


def _first_line(e: BaseException) -> str:
  text = str(e).strip()
  return text.splitlines()[0] if text else ''


def abstract(state: Any) -> Any:
  """ShapeDtypeStructs (with shardings) of a state, the restore target."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def log_restored(step: int, meta: dict) -> None:
  console.logger().info('Resumed from checkpoint at step %d (epoch %d).', step, meta.get('epoch', -1))
