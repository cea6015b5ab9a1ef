"""Checks before a run resumes from a workdir: each refuses with one line, before compiling.

Nothing in the workdir is changed by a refusal, so the saved run stays as it was.
"""

import json
import pathlib

from curvelab import configdicts
from curvelab import durations
from curvelab import errors
from curvelab import runfiles
from curvelab import workdir as workdir_lib
from curvelab.build import Setup
from curvelab.build import param_shapes


def check_shapes(setup: Setup, workdir: pathlib.Path, checkpointer, example_batch: dict) -> None:
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
    saved_config = runfiles.read_config(saved_path)
    fields = workdir_lib.shape_changing_fields(saved_config, setup.config, current_fn)
    if fields in ([], ['model']):  # Not a model field: the data (classes, input shape) changed.
      flat_saved = configdicts.flatten(saved_config)
      flat_now = configdicts.flatten(setup.config.to_dict())
      fields = [k for k in sorted(flat_now) if k.startswith('dataset.')
                and flat_saved.get(k) != flat_now[k]] or fields
  where = ', '.join(fields) if fields else 'the model or data'
  raise errors.ResumeError(
      f'workdir {workdir} holds a run whose config differs in {where}, which changes parameter '
      'shapes; use a new --workdir or restore the saved value.')


def check_epochs_left(checkpointer, cadence: durations.Cadence, workdir: pathlib.Path) -> None:
  """Refuses to resume a checkpoint that is past the end of the configured run.

  Its data-loader position lies beyond the shorter run's epochs, so resuming cannot continue it;
  the check runs before compilation, and the workdir's files are left as they are.
  """
  step = checkpointer.latest_step()
  if step is not None and step > cadence.total_steps:
    raise errors.ResumeError(
        f'workdir {workdir} holds a checkpoint at step {step} (epoch '
        f'{cadence.epoch_of(step)}), past the end of this config\'s run '
        f'(loop.num_epochs={cadence.num_epochs}: {cadence.total_steps} steps); raise '
        f'loop.num_epochs to '
        f'at least {cadence.epoch_of(step)} or use a new --workdir.')


def check_vocabulary(setup: Setup, workdir: pathlib.Path) -> None:
  """Saves the tokenizer with the run, or refuses to resume with a different one."""
  tokenizer = setup.data.extra.get('tokenizer')
  if tokenizer is None:
    return
  from input_pipeline import text  # pylint: disable=g-import-not-at-top
  path = workdir / 'vocab.json'
  if path.exists():
    saved = text.Tokenizer.from_json(json.loads(path.read_text()))
    if saved != tokenizer and (workdir / 'checkpoints').exists():
      raise errors.ResumeError(
          f'the vocabulary saved in {path} ({saved.kind}, {saved.vocab_size} tokens) differs from '
          f'the one built from the current training data ({tokenizer.kind}, '
          f'{tokenizer.vocab_size} tokens); use a new --workdir or the original corpus.')
  if runfiles.is_writer():
    tokenizer.save(path)
