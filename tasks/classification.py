"""Image (or any vector) classification: softmax cross-entropy, accuracy, prediction statistics."""

import flax
import jax
import jax.numpy as jnp
import optax
from clu import metrics as clu_metrics

from curvelab import metrics
import tasks
from tasks import base


@flax.struct.dataclass
class TrainMetrics(clu_metrics.Collection):
  loss: metrics.masked_average('loss')
  accuracy: metrics.masked_average('correct')


@flax.struct.dataclass
class EvalMetrics(clu_metrics.Collection):
  loss: metrics.masked_average('loss')
  accuracy: metrics.masked_average('correct')
  pred_entropy: metrics.masked_average('entropy')
  pred_class_hist: metrics.vector_average('pred_onehot', per_example=True)


class ClassificationTask(base.Task):
  """Softmax classification with optional label smoothing.

  Batches hold ``inputs`` (e.g. images), ``label`` (int32) and ``weight``, and optionally
  ``label_probs`` [B, classes]: soft targets (mixup/CutMix) that replace the one-hot of ``label``
  in the loss. Accuracy always compares the prediction with ``label``.
  """
  metric_names = ('accuracy',)
  best_metric = 'val_accuracy'
  best_mode = 'max'
  train_metrics = TrainMetrics
  eval_metrics = EvalMetrics

  def __init__(self, *, label_smoothing: float = 0.0):
    self.label_smoothing = label_smoothing

  def model_inputs(self, batch):
    return {'inputs': batch['inputs']}

  def loss_terms(self, outputs, batch):
    logits = outputs
    targets = self.targets(batch, num_classes=logits.shape[-1])
    if self.label_smoothing:
      targets = optax.smooth_labels(targets, self.label_smoothing)
    losses = optax.softmax_cross_entropy(logits, targets)
    weight = batch['weight']
    return (losses * weight).sum(), weight.sum(), {'loss': losses}

  @staticmethod
  def targets(batch, *, num_classes: int):
    """Target distributions [B, classes]: ``label_probs`` when the batch has them, else one-hot."""
    if 'label_probs' in batch:
      return batch['label_probs'].astype(jnp.float32)
    return jax.nn.one_hot(batch['label'], num_classes)

  def metric_inputs(self, outputs, batch, per_example):
    logits = outputs
    pred = logits.argmax(-1)
    logp = jax.nn.log_softmax(logits)
    return {
        'loss': per_example['loss'],
        'correct': (pred == batch['label']).astype(jnp.float32),
        'entropy': -(jnp.exp(logp) * logp).sum(-1),
        'pred_onehot': jax.nn.one_hot(pred, logits.shape[-1]),
        'weight': batch['weight'],
    }

  def sanity_passed(self, train_row, *, loss_threshold):
    return (train_row['train_loss'] <= loss_threshold
            and train_row.get('train_accuracy', 0.0) >= 1.0 - 1e-9)


@tasks.register('classification')
def from_config(config, vocabulary=None) -> ClassificationTask:
  del vocabulary  # Labels are class ids.
  return ClassificationTask(label_smoothing=float(config.task.label_smoothing))
