"""Task registry: what a run optimises and measures (loss, metrics, decoding, "best" direction).

The training loop only talks to the :class:`tasks.base.Task` interface; the config's
``task.name`` picks the implementation.
"""

from curvelab import errors


def names() -> tuple[str, ...]:
  return ('classification', 'language_modeling', 'ctc', 'seq2seq')


def build(config):
  """Builds the task named by ``config.task.name``."""
  name = config.task.name
  if name == 'classification':
    from tasks import classification  # pylint: disable=g-import-not-at-top
    return classification.ClassificationTask(label_smoothing=float(config.task.label_smoothing))
  if name == 'language_modeling':
    from tasks import language_modeling  # pylint: disable=g-import-not-at-top
    return language_modeling.LanguageModelingTask(
        label_smoothing=float(config.task.label_smoothing))
  if name in ('ctc', 'seq2seq'):
    # pylint: disable=g-import-not-at-top
    from input_pipeline import sequence_data
    from tasks import ctc
    from tasks import seq2seq
    module = ctc if name == 'ctc' else seq2seq
    return module.from_config(config, lambda: sequence_data.vocabulary(config))
  raise errors.ConfigError(f'task.name={name!r} is unknown; allowed: {", ".join(names())}.')
