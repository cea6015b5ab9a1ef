"""One Orbax CheckpointManager per run: the latest and the best-by-validation checkpoint.

Each checkpoint holds three items saved together, atomically (Orbax writes to a temporary
directory and renames it on commit, so ``kill -9`` never leaves a half-written step behind):

* ``state``: the whole :class:`~curvelab.state.TrainState` (params, model state, optimizer state,
  RNG, step);
* ``data``: the training iterator's grain state, so a resumed run reads the same batches;
* ``meta``: loop bookkeeping (epoch, best value and epoch, early-stopping counter).

Retention is a preservation policy: the newest step, plus the best step by the validation metric.
"""

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from curvelab import console
from curvelab import errors

_ITEMS = ('state', 'data', 'meta')


class Checkpointer:
  """Saves and restores the loop's state in ``WORKDIR/checkpoints``.

  Args:
    directory: the checkpoints folder.
    best_metric: history key ranking checkpoints (e.g. ``val_accuracy``).
    best_mode: ``max`` or ``min``.
  """

  def __init__(self, directory: str | pathlib.Path, *, best_metric: str, best_mode: str):
    self.best_metric = best_metric
    policies = ocp.checkpoint_managers
    preservation = policies.AnyPreservationPolicy([
        policies.LatestN(n=1),
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

  def save(self, step: int, *, state: Any, data_state: dict, meta: dict, is_best: bool,
           value: float | None = None) -> None:
    """Saves a checkpoint (collective: every process calls it).

    Args:
      step: optimizer step, the checkpoint's name.
      state: the train state.
      data_state: the training iterator's state.
      meta: loop bookkeeping.
      is_best: whether this step is the best so far by the validation metric.
      value: the validation metric, recorded alongside for reference.
    """
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              data=ocp.args.JsonSave(data_state),
                              meta=ocp.args.JsonSave(meta))
    metrics = {'is_best': 1.0 if is_best else 0.0}
    if value is not None:
      metrics[self.best_metric] = float(value)
    self.manager.save(step, args=args, metrics=metrics)
    self.manager.wait_until_finished()

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict, dict]:
    """Restores ``(state, data_state, meta)`` at ``step`` with ``abstract_state``'s shardings."""
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                              data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore())
    try:
      restored = self.manager.restore(step, args=args)
    except Exception as e:  # Orbax raises many types for damaged or mismatched checkpoints.
      raise errors.ResumeError(
          f'checkpoint at step {step} in {self.manager.directory} cannot be restored: '
          f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}') from e
    return restored['state'], dict(restored['data']), dict(restored['meta'])

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


def abstract(state: Any) -> Any:
  """ShapeDtypeStructs (with shardings) of a state, the restore target."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def log_restored(step: int, meta: dict) -> None:
  console.logger().info('Resumed from checkpoint at step %d (epoch %d).', step, meta.get('epoch', -1))
