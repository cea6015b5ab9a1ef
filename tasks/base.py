"""The interface between the training loop and a task.

A batch is a dict of arrays whose leading axis is the example axis; ``weight`` (float, 0 for
padding) is present in every batch, per example or per token. A task:

* picks the model's inputs out of a batch (``model_inputs``);
* computes the loss as a *sum* over weighted examples/tokens and the total weight
  (``loss_terms``), so that gradient accumulation and sharding give exactly the same mean as one
  big batch;
* names its clu metric collections for training and evaluation, and feeds them
  (``metric_inputs``);
* says which history key chooses the best checkpoint and in which direction.
"""

import abc
from typing import Any

import jax


class Task(abc.ABC):
  """What the loop needs from a task."""

  #: Task metric names written to the history as ``train_<name>``/``val_<name>``/``test_<name>``.
  metric_names: tuple[str, ...] = ()
  #: The validation metric that picks the best checkpoint, and its direction.
  best_metric: str = 'val_loss'
  best_mode: str = 'min'
  #: Size of the output layer is given by the data (classes, vocabulary).
  train_metrics: Any = None
  eval_metrics: Any = None
  #: Tasks that decode (CTC, seq2seq) set this and implement ``decode`` and ``decoded_metrics``.
  decodes: bool = False

  @abc.abstractmethod
  def model_inputs(self, batch: dict) -> dict:
    """Keyword arguments for ``model.apply`` (besides ``train``)."""

  @abc.abstractmethod
  def loss_terms(self, outputs: Any, batch: dict) -> tuple[jax.Array, jax.Array, dict]:
    """Returns ``(weighted loss sum, weight sum, per-example values for the metrics)``."""

  @abc.abstractmethod
  def metric_inputs(self, outputs: Any, batch: dict, per_example: dict) -> dict:
    """Keyword arguments for ``Collection.single_from_model_output``."""

  def decode(self, model, variables, outputs: Any, batch: dict) -> dict:
    """Inside the compiled eval step: fixed-shape predictions per example (e.g. token ids)."""
    raise NotImplementedError

  def decoded_metrics(self, decoded: list[tuple[dict, dict]], *, split: str) -> dict:
    """On the host: ``[(decode() output, batch)]`` of a split -> history values (WER, samples)."""
    raise NotImplementedError

  def sanity_passed(self, train_row: dict, *, loss_threshold: float) -> bool:
    """Whether training metrics show the sanity examples were memorised."""
    return train_row['train_loss'] <= loss_threshold


DECODERS = ('greedy', 'beam')


class DecodingTask(Task):
  """What the decoding tasks (CTC, seq2seq) share: decoder settings and the data's vocabulary."""
  decodes = True

  def __init__(self, *, vocabulary, decoder: str, beam_size: int, num_samples: int):
    """Args:
      vocabulary: the run's vocabulary (ids -> text; the data's ``extra['vocabulary']``), or None
        for a task that only trains on synthetic batches (benchmarks) and never decodes to text.
      decoder: ``greedy`` or ``beam``.
      beam_size: hypotheses kept by the beam search.
      num_samples: target/prediction pairs written to each validation row.
    """
    from curvelab import errors  # pylint: disable=g-import-not-at-top
    if decoder not in DECODERS:
      raise errors.ConfigError(
          f'task.decoder={decoder!r} is unknown; allowed: {", ".join(DECODERS)}.')
    if beam_size < 1:
      raise errors.ConfigError(f'task.beam_size must be >= 1, got {beam_size}.')
    self._vocabulary = vocabulary
    self.decoder = decoder
    self.beam_size = beam_size
    self.num_samples = num_samples

  @property
  def vocabulary(self):
    if self._vocabulary is None:
      raise ValueError('this task was built without data (tasks.build(config, vocabulary=None)), '
                       'so it has no vocabulary to turn ids into text.')
    return self._vocabulary
