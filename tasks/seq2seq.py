"""Encoder-decoder (seq2seq, captioning): teacher-forced cross-entropy, decoding, BLEU-4.

Batches as for CTC (input_pipeline/sequence_data.py), with ``targets`` ending in EOS (id 2) and
0-padded. Teacher forcing: the decoder reads ``BOS, y_1 .. y_{L-1}`` (``targets`` shifted right,
built here on the device) and predicts ``targets``; the causal decoder mask keeps position ``t``
from seeing later tokens. Models implement ``encode``/``decode`` (models/seq2seq.py).

Loss: token-level cross-entropy over real target tokens (EOS included), label-smoothed for the
gradient when ``label_smoothing`` > 0; the reported loss is the true NLL.

History: ``train_loss``/``val_loss``, ``train_token_accuracy``/``val_token_accuracy``
(teacher-forced), and from decoding ``val_bleu`` (sacrebleu corpus BLEU-4, 0-100),
``val_wer``, ``val_exact_match``, plus ``val_empty_share``, ``val_length_ratio``,
``val_repetition_rate``, ``val_samples`` and ``pred_entropy`` for the doctor.
"""

import flax
import jax
import jax.numpy as jnp
import optax
from clu import metrics as clu_metrics

from curvelab import errors
from curvelab import metrics
import tasks
from tasks import base
from tasks import decoding
from tasks import seq_metrics

DECODERS = base.DECODERS
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2


@flax.struct.dataclass
class TrainMetrics(clu_metrics.Collection):
  loss: metrics.masked_average('nll')
  token_accuracy: metrics.masked_average('correct')
  tokens: metrics.scalar_average('tokens')  # Target tokens per step -> tokens_per_s.


@flax.struct.dataclass
class EvalMetrics(clu_metrics.Collection):
  loss: metrics.masked_average('nll')
  token_accuracy: metrics.masked_average('correct')
  pred_entropy: metrics.masked_average('entropy')


def shift_right(targets: jax.Array, *, bos: int = BOS_ID) -> jax.Array:
  """Decoder inputs for teacher forcing: ``[BOS, y_1, .., y_{L-1}]``."""
  start = jnp.full((targets.shape[0], 1), bos, targets.dtype)
  return jnp.concatenate([start, targets[:, :-1]], axis=1)


class Seq2SeqTask(base.DecodingTask):
  """Teacher-forced training; greedy or length-normalised beam-search decoding."""
  metric_names = ('bleu', 'wer', 'exact_match', 'token_accuracy')
  best_metric = 'val_bleu'
  best_mode = 'max'
  train_metrics = TrainMetrics
  eval_metrics = EvalMetrics

  def __init__(self, *, vocabulary, label_smoothing: float = 0.0,
               decoder: str = 'greedy', beam_size: int = 4, length_penalty: float = 0.6,
               num_samples: int = 3):
    """Args:
      vocabulary: the run's vocabulary (ids -> text), None without data (benchmarks).
      label_smoothing: smoothing of the training targets (the reported loss is the NLL).
      decoder: ``greedy`` or ``beam``.
      beam_size: hypotheses kept by the beam search.
      length_penalty: GNMT alpha of the length normalisation (0 = none).
      num_samples: target/prediction pairs written to each validation row.
    """
    if length_penalty < 0:
      raise errors.ConfigError(f'task.length_penalty must be >= 0, got {length_penalty}.')
    super().__init__(vocabulary=vocabulary, decoder=decoder, beam_size=beam_size,
                     num_samples=num_samples)
    self.label_smoothing = label_smoothing
    self.length_penalty = length_penalty

  # ------------------------------------------------------------------ device side

  def model_inputs(self, batch):
    return {'inputs': batch['inputs'], 'input_mask': batch['input_mask'],
            'decoder_inputs': shift_right(batch['targets'])}

  def loss_terms(self, outputs, batch):
    logits = outputs.astype(jnp.float32)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch['targets'])
    loss = nll
    if self.label_smoothing:
      uniform = -jnp.mean(jax.nn.log_softmax(logits), axis=-1)
      loss = (1.0 - self.label_smoothing) * nll + self.label_smoothing * uniform
    weight = batch['target_mask'] * batch['weight'][:, None]
    return (loss * weight).sum(), weight.sum(), {'nll': nll, 'weight': weight}

  def metric_inputs(self, outputs, batch, per_example):
    logp = jax.nn.log_softmax(outputs.astype(jnp.float32))
    weight = per_example['weight']
    return {'nll': per_example['nll'], 'weight': weight,
            'correct': (jnp.argmax(logp, -1) == batch['targets']).astype(jnp.float32),
            'entropy': -(jnp.exp(logp) * logp).sum(-1), 'tokens': weight.sum()}

  def decode(self, model, variables, outputs, batch):
    del outputs  # Teacher-forced logits; decoding starts again from BOS.
    max_length = batch['targets'].shape[1]
    batch_size = batch['inputs'].shape[0]
    memory = model.apply(variables, batch['inputs'], batch['input_mask'], train=False,
                         method='encode')
    if self.decoder == 'beam' and self.beam_size > 1:
      memory = jax.tree.map(lambda x: jnp.repeat(x, self.beam_size, axis=0), memory)
    logits_fn = self._logits_fn(model, variables, memory)
    if self.decoder == 'beam' and self.beam_size > 1:
      tokens, _ = decoding.beam_search(
          logits_fn, batch_size=batch_size, max_length=max_length, beam_size=self.beam_size,
          bos=BOS_ID, eos=EOS_ID, length_penalty=self.length_penalty)
    else:
      tokens = decoding.greedy_decode(logits_fn, batch_size=batch_size, max_length=max_length,
                                      bos=BOS_ID, eos=EOS_ID)
    return {'tokens': decoding.strip_after_eos(tokens, eos=EOS_ID)}

  @staticmethod
  def _logits_fn(model, variables, memory):
    def logits_fn(decoder_inputs, t):
      # The whole (causal) decoder runs on the buffer; position t only sees inputs 0..t.
      logits = model.apply(variables, memory, decoder_inputs, train=False, method='decode')
      return jax.lax.dynamic_index_in_dim(logits, t, axis=1, keepdims=False)
    return logits_fn

  # ------------------------------------------------------------------ host side

  def decoded_metrics(self, decoded, *, split):
    vocab = self.vocabulary
    refs, hyps, ref_ids, hyp_ids = [], [], [], []
    for out, batch in seq_metrics.real_examples(decoded):
      target = vocab.content_ids(batch['targets'])
      predicted = vocab.content_ids(out['tokens'])
      ref_ids.append(target)
      hyp_ids.append(predicted)
      refs.append(vocab.decode(target))
      hyps.append(vocab.decode(predicted))
    values = {'bleu': seq_metrics.bleu(refs, hyps), 'wer': seq_metrics.wer(refs, hyps),
              'exact_match': seq_metrics.exact_match(refs, hyps)}
    if split == 'val':
      values.update(seq_metrics.with_prefix(seq_metrics.decoding_stats(ref_ids, hyp_ids), 'val'))
      values['val_samples'] = seq_metrics.samples(refs, hyps, count=self.num_samples)
    return values

  def sanity_passed(self, train_row, *, loss_threshold):
    del loss_threshold  # Memorised means every validation (= training) example decodes exactly.
    return train_row.get('val_exact_match') == 1.0


@tasks.register('seq2seq')
def from_config(config, vocabulary) -> Seq2SeqTask:
  t = config.task
  return Seq2SeqTask(vocabulary=vocabulary,
                     label_smoothing=float(config.task.label_smoothing),
                     decoder=t.get('decoder', 'greedy'), beam_size=int(t.get('beam_size', 4)),
                     length_penalty=float(t.get('length_penalty', 0.6)),
                     num_samples=int(t.get('num_samples', 3)))
