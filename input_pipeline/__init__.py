"""Input pipelines: sources (TFDS, in-memory arrays, scikit-learn digits) -> grain datasets.

:func:`build` returns a :class:`Data` for the config's task: metadata first (cheap; validates the
dataset and splits before anything is decoded), the splits on :meth:`Data.load`. Each pipeline
registers its ``build(config)`` for the tasks it feeds with ``@input_pipeline.register(task_name)``
(curvelab/registry.py).
"""

import dataclasses
from typing import Callable

from curvelab import registry
from input_pipeline.sources import ArraySplit

# Keyed by task.name: the pipeline that feeds each task (image, text or sequence data).
REGISTRY = registry.Registry('task.name', modules=(
    'input_pipeline.image_data', 'input_pipeline.text_data', 'input_pipeline.sequence_data'))
register = REGISTRY.register


@dataclasses.dataclass
class Data:
  """A run's data: metadata, loaders and the per-batch preprocessing for train and eval.

  Attributes:
    num_outputs: classes (or vocabulary size) the model must output.
    example_shape: per-example input shape, for model validation (e.g. image HxWxC).
    split_specs: ``{'train': spec, 'val': spec, 'test': spec}`` split strings.
    split_sizes: examples in each of those.
    loader: ``(role) -> ArraySplit``.
    train_preprocess: ``(local_batch, rng) -> batch``.
    eval_preprocess: ``(local_batch) -> batch``.
    extra: task-specific metadata (e.g. a vocabulary).
    device_loader: for datasets whose batches can be built on the device (input_mode=device).
  """
  num_outputs: int
  example_shape: tuple
  split_specs: dict
  split_sizes: dict
  loader: Callable[[str], ArraySplit]
  train_preprocess: Callable
  eval_preprocess: Callable
  extra: dict = dataclasses.field(default_factory=dict)
  device_loader: Callable | None = None  # (split, *, train, seed) -> device-resident batches.

  def load(self, role: str) -> ArraySplit:
    return self.loader(role)


def build(config) -> Data:
  """Validates the dataset and splits named by the config and returns its :class:`Data`."""
  return REGISTRY.get(config.task.name)(config)
