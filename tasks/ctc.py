"""CTC recognition: ``optax.ctc_loss`` with padding masks, decoding, WER/CER and blank statistics.

Batches (input_pipeline/sequence_data.py): ``inputs`` [B, T, F], ``input_mask`` [B, T],
``targets`` int32 [B, L] (id 0 is the blank and the padding), ``target_mask`` [B, L],
``weight`` [B]. The model returns ``{'logits': [B, T', V], 'mask': [B, T']}``.

Loss: the CTC negative log-likelihood of each target, summed over the batch and divided by the
number of target tokens (so the loss is per token and does not grow with target length).

History: ``train_loss``, ``val_loss``, ``val_wer``, ``val_cer`` (fractions, corpus level) and,
for the doctor, ``val_blank_share`` (share of real output frames whose most likely label is the
blank), ``val_empty_share``, ``val_length_ratio``, ``val_repetition_rate``, ``val_samples`` and
``pred_entropy`` (mean per-frame entropy). WER needs decoding, so training rows have no
``train_wer``; the test split gets ``test_wer``/``test_cer``.
"""

import flax
import jax
import jax.numpy as jnp
import optax
from clu import metrics as clu_metrics

from curvelab import metrics
import tasks
from tasks import base
from tasks import decoding
from tasks import seq_metrics

DECODERS = base.DECODERS
BLANK_ID = 0


@flax.struct.dataclass
class TrainMetrics(clu_metrics.Collection):
  loss: metrics.masked_average('loss')
  tokens: metrics.scalar_average('tokens')  # Target tokens per step -> tokens_per_s.


@flax.struct.dataclass
class EvalMetrics(clu_metrics.Collection):
  loss: metrics.masked_average('loss')
  pred_entropy: metrics.masked_average('entropy')


def ctc_losses(logits, logit_mask, targets, target_mask) -> jax.Array:
  """Per-example CTC negative log-likelihood [B] (blank id 0)."""
  return optax.ctc_loss(logits.astype(jnp.float32), 1.0 - logit_mask.astype(jnp.float32),
                        targets, 1.0 - target_mask.astype(jnp.float32), blank_id=BLANK_ID)


class CTCTask(base.DecodingTask):
  """CTC training and decoding (greedy or prefix beam search)."""
  metric_names = ('wer', 'cer')
  best_metric = 'val_wer'
  best_mode = 'min'
  train_metrics = TrainMetrics
  eval_metrics = EvalMetrics

  def __init__(self, *, vocabulary, decoder: str = 'greedy',
               beam_size: int = 8, length_bonus: float = 0.0, num_samples: int = 3):
    """Args:
      vocabulary: the run's vocabulary (ids -> text), None without data (benchmarks).
      decoder: ``greedy`` or ``beam`` (prefix beam search).
      beam_size: prefixes kept by the beam search.
      length_bonus: log-probability bonus per emitted token when ranking prefixes.
      num_samples: target/prediction pairs written to each validation row.
    """
    super().__init__(vocabulary=vocabulary, decoder=decoder, beam_size=beam_size,
                     num_samples=num_samples)
    self.length_bonus = length_bonus

  # ------------------------------------------------------------------ device side

  def model_inputs(self, batch):
    return {'inputs': batch['inputs'], 'input_mask': batch['input_mask']}

  def loss_terms(self, outputs, batch):
    losses = ctc_losses(outputs['logits'], outputs['mask'], batch['targets'], batch['target_mask'])
    tokens = batch['target_mask'].sum(axis=1)
    weight = batch['weight'] * tokens
    per_token = losses / jnp.maximum(tokens, 1.0)
    return (losses * batch['weight']).sum(), weight.sum(), {'loss': per_token, 'weight': weight}

  def metric_inputs(self, outputs, batch, per_example):
    logp = jax.nn.log_softmax(outputs['logits'])
    frames = outputs['mask']
    entropy = -(jnp.exp(logp) * logp).sum(-1)
    mean_entropy = (entropy * frames).sum(1) / jnp.maximum(frames.sum(1), 1.0)
    tokens = (batch['target_mask'] * batch['weight'][:, None]).sum()
    return {'loss': per_example['loss'], 'weight': per_example['weight'],
            'entropy': mean_entropy, 'tokens': tokens}

  def decode(self, model, variables, outputs, batch):
    del model, variables  # CTC decodes the frame posteriors the eval step already computed.
    logp = jax.nn.log_softmax(outputs['logits'])
    mask = outputs['mask']
    if self.decoder == 'beam':
      tokens, lengths, _ = decoding.ctc_prefix_beam_search(
          logp, mask, beam_size=self.beam_size, blank=BLANK_ID, length_bonus=self.length_bonus)
    else:
      tokens, lengths = decoding.ctc_greedy(logp, mask, blank=BLANK_ID)
    blank = (jnp.argmax(logp, -1) == BLANK_ID) & (mask > 0)
    return {'tokens': tokens, 'lengths': lengths,
            'blank_frames': blank.sum(1).astype(jnp.int32),
            'frames': (mask > 0).sum(1).astype(jnp.int32)}

  # ------------------------------------------------------------------ host side

  def decoded_metrics(self, decoded, *, split):
    vocab = self.vocabulary
    refs, hyps, ref_ids, hyp_ids = [], [], [], []
    blank = frames = 0
    for out, batch in seq_metrics.real_examples(decoded):
      target = vocab.content_ids(batch['targets'])
      predicted = [int(t) for t in out['tokens'][:int(out['lengths'])]]
      ref_ids.append(target)
      hyp_ids.append(predicted)
      refs.append(vocab.decode(target))
      hyps.append(vocab.decode(predicted))
      blank += int(out['blank_frames'])
      frames += int(out['frames'])
    values = {'wer': seq_metrics.wer(refs, hyps), 'cer': seq_metrics.cer(refs, hyps)}
    if split == 'val':
      stats = seq_metrics.decoding_stats(ref_ids, hyp_ids)
      stats['blank_share'] = blank / max(frames, 1)
      values.update(seq_metrics.with_prefix(stats, 'val'))
      values['val_samples'] = seq_metrics.samples(refs, hyps, count=self.num_samples)
    return values

  def sanity_passed(self, train_row, *, loss_threshold):
    del loss_threshold  # Memorised means every validation (= training) example decodes exactly.
    return train_row.get('val_wer') == 0.0


@tasks.register('ctc')
def from_config(config, vocabulary) -> CTCTask:
  t = config.task
  return CTCTask(vocabulary=vocabulary, decoder=t.get('decoder', 'greedy'),
                 beam_size=int(t.get('beam_size', 8)),
                 length_bonus=float(t.get('length_bonus', 0.0)),
                 num_samples=int(t.get('num_samples', 3)))
