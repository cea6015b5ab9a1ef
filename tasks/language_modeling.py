"""Next-token language modelling: token-weighted cross-entropy and exact perplexity.

The loss is summed over real (weight 1) tokens and divided by their count over the whole batch,
epoch or split, so perplexity = exp(total NLL / total tokens) exactly, never an average of
per-batch means.
"""

import flax
import jax.numpy as jnp
import optax
from clu import metrics as clu_metrics

from curvelab import metrics
import tasks
from tasks import base


@flax.struct.dataclass
class TrainMetrics(clu_metrics.Collection):
  loss: metrics.masked_average('nll')
  perplexity: metrics.masked_average('nll', transform=jnp.exp)
  accuracy: metrics.masked_average('correct')
  tokens: metrics.scalar_average('tokens')  # Mean tokens per step (x steps = tokens per epoch).


@flax.struct.dataclass
class EvalMetrics(clu_metrics.Collection):
  loss: metrics.masked_average('nll')
  perplexity: metrics.masked_average('nll', transform=jnp.exp)
  accuracy: metrics.masked_average('correct')
  pred_entropy: metrics.masked_average('entropy')


class LanguageModelingTask(base.Task):
  """Batches hold ``inputs`` and ``targets`` (int32 [B, T]) and ``weight`` (float [B, T])."""
  metric_names = ('perplexity', 'accuracy')
  best_metric = 'val_perplexity'
  best_mode = 'min'
  train_metrics = TrainMetrics
  eval_metrics = EvalMetrics

  def __init__(self, *, label_smoothing: float = 0.0):
    self.label_smoothing = label_smoothing

  def model_inputs(self, batch):
    return {'inputs': batch['inputs']}

  def loss_terms(self, outputs, batch):
    logits = outputs
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch['targets'])
    loss = nll
    if self.label_smoothing:
      # Smoothed objective for the gradient; the reported loss stays the true NLL.
      uniform = -jnp.mean(jax_log_softmax(logits), axis=-1)
      loss = (1 - self.label_smoothing) * nll + self.label_smoothing * uniform
    weight = batch['weight']
    return (loss * weight).sum(), weight.sum(), {'nll': nll}

  def metric_inputs(self, outputs, batch, per_example):
    logits = outputs
    logp = jax_log_softmax(logits)
    weight = batch['weight']
    return {
        'nll': per_example['nll'],
        'correct': (logits.argmax(-1) == batch['targets']).astype(jnp.float32),
        'entropy': -(jnp.exp(logp) * logp).sum(-1),
        'tokens': weight.sum(),
        'weight': weight,
    }


def jax_log_softmax(logits):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.nn.log_softmax(logits)


@tasks.register('language_modeling')
def from_config(config, vocabulary=None) -> LanguageModelingTask:
  del vocabulary  # Perplexity needs no text.
  return LanguageModelingTask(label_smoothing=float(config.task.label_smoothing))
