"""Task registry: what a run optimises and measures (loss, metrics, decoding, "best" direction).

The training loop only talks to the :class:`tasks.base.Task` interface; the config's
``task.name`` picks the implementation, which each task module registers with
``@tasks.register(name)`` (curvelab/registry.py) as a ``from_config(config, vocabulary)``
factory.
"""

from curvelab import registry

REGISTRY = registry.Registry('task.name', modules=(
    'tasks.classification', 'tasks.language_modeling', 'tasks.ctc', 'tasks.seq2seq'))
register = REGISTRY.register


def names() -> tuple[str, ...]:
  return REGISTRY.names()


def build(config, *, vocabulary=None):
  """Builds the task named by ``config.task.name``.

  Args:
    config: the run's config.
    vocabulary: the data's vocabulary (``Data.extra['vocabulary']``), which the decoding tasks
      (ctc, seq2seq) use to turn ids into text; None where no data was built (benchmarks).
  """
  return REGISTRY.get(config.task.name)(config, vocabulary)
