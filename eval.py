r"""Evaluates a run's checkpoint on any split and prints one JSON object.

Usage:
  python eval.py --workdir=runs/exp1 [--split=test] [--checkpoint=best|latest|STEP]

``--split`` is a role of the run's config (train, val, test) or any split string of its dataset
(e.g. ``train[:1000]``).
"""

import json
import pathlib
import sys

import jax
import ml_collections

from curvelab import evaluation
from curvelab import compiled
from curvelab import build as build_lib
from curvelab import checkpoint as ckpt_lib
from curvelab import errors
from curvelab import runfiles
from input_pipeline import pipeline

ROLES = ('train', 'val', 'test')


def load_run_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
  path = workdir / runfiles.CONFIG
  if not path.exists():
    raise errors.ResumeError(f'{workdir} has no {runfiles.CONFIG}: not a curvelab run workdir.')
  config = ml_collections.ConfigDict(runfiles.read_config(path))
  config.loop.metric_writer = 'events'  # Evaluation writes no metrics: TensorFlow stays optional.
  return config


def evaluate_checkpoint(workdir: str, *, split: str = 'test', checkpoint: str = 'best') -> dict:
  """Restores a checkpoint of a finished or running run and evaluates it on ``split``.

  Args:
    workdir: the run's workdir.
    split: ``train``, ``val``, ``test`` or a split string of the run's dataset.
    checkpoint: ``best``, ``latest`` or a step number.

  Returns:
    ``{"workdir", "checkpoint", "step", "split", "<split>_loss", "<split>_<metric>", ...}``.
  """
  workdir = pathlib.Path(workdir)
  config = load_run_config(workdir)
  setup = build_lib.build(config)
  checkpointer = ckpt_lib.Checkpointer(workdir / 'checkpoints', best_metric=setup.best_metric,
                                       best_mode=setup.best_mode)
  step = checkpointer.resolve(checkpoint)
  if split in ROLES:
    data = setup.data.load(split)
  else:
    from input_pipeline import sources  # pylint: disable=g-import-not-at-top
    data = sources.load(config.dataset, split, field='--split')
  example = next(pipeline.eval_batches(data, global_batch=config.loop.eval_batch_size,
                                       preprocess=setup.data.eval_preprocess,
                                       process_index=jax.process_index(),
                                       process_count=jax.process_count()))
  from curvelab import optim  # pylint: disable=g-import-not-at-top
  tx, _ = optim.make_optimizer(config, steps_per_epoch=1)
  state = build_lib.init_state(setup, tx, example)
  state, _, _, _ = checkpointer.restore(step, ckpt_lib.abstract(state))
  _, eval_step, _, empty_eval, _ = compiled.compile_steps(setup, tx, state, example, example)
  prefix = split if split in ROLES else 'eval'
  values = evaluation.evaluate(setup, eval_step, state, data, empty_eval, prefix=prefix)
  checkpointer.close()
  values = {k: v for k, v in values.items() if k.startswith(prefix + '_')}
  return {'workdir': str(workdir), 'checkpoint': checkpoint, 'step': step, 'split': split,
          'num_examples': len(data), **values}


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  try:
    result = evaluate_checkpoint(f.workdir, split=f.split, checkpoint=f.checkpoint)
  except errors.CurvelabError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(json.dumps(result, sort_keys=True))
  return 0


if __name__ == '__main__':
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  from curvelab import cli, console  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('workdir', None, 'Run workdir.', required=True)
  flags.DEFINE_string('split', 'test', 'train, val, test or a split string.')
  flags.DEFINE_string('checkpoint', 'best', 'best, latest or a step number.')
  argv = cli.parse_or_exit(sys.argv)
  app.run(lambda a: (console.quiet_libraries(), main(a))[1], argv=argv, flags_parser=lambda a: a)
