"""Input pipelines: sources (TFDS, in-memory arrays, scikit-learn digits) -> grain datasets.

:func:`build` returns a :class:`Data` for the config's task: metadata first (cheap; validates the
dataset and splits before anything is decoded), the splits on :meth:`Data.load`.
"""

import dataclasses
from typing import Callable

from input_pipeline.sources import ArraySplit


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
  # pylint: disable=g-import-not-at-top
  if config.task.name == 'language_modeling':
    from input_pipeline import text_data
    return text_data.build(config)
  if config.task.name in ('ctc', 'seq2seq'):
    from input_pipeline import sequence_data
    return sequence_data.build(config)
  from input_pipeline import image_data
  return image_data.build(config)
