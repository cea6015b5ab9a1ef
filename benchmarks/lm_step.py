r"""Training throughput of the six reference LSTM configurations and the Transformer LM.

Usage:
  python benchmarks/lm_step.py [--steps=5] [--repeats=3] [--only=lm1,tlm] [--vocab=33278]

Synthetic tokens with the WikiText-2 vocabulary size (33,278 words), batch 16, sequences of 256.
Prints tokens/s and seconds per epoch of 2.36M training tokens (the reference corpus size),
compile and warm-up excluded, median of repeats, with model FLOPs per step counted from the traced step (curvelab.flops).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs import lstm_lm  # pylint: disable=wrong-import-position
from configs import transformer_lm  # pylint: disable=wrong-import-position

EPOCH_TOKENS = 2_360_000
REFERENCE = [
    ('lm1', lstm_lm, 'layers=1,optimizer=adam'),
    ('lm2', lstm_lm, 'layers=1,optimizer=adamw'),
    ('lm3', lstm_lm, 'layers=1,optimizer=sgd'),
    ('lm4', lstm_lm, 'layers=1,optimizer=momentum'),
    ('lm5', lstm_lm, 'layers=2,optimizer=adamw'),
    ('lm6', lstm_lm, 'layers=4,optimizer=adamw'),
    ('tlm', transformer_lm, 'layers=4,optimizer=adamw'),
]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  common.add_step_flags(parser, steps=5)
  parser.add_argument('--only', default='')
  parser.add_argument('--vocab', type=int, default=33_278)
  parser.add_argument('--torch', action='store_true',
                      help='Also time the LSTMs in plain PyTorch (benchmarks/torch_baseline.py).')
  args = parser.parse_args()
  only = common.select_runs(args.only, [name for name, _, _ in REFERENCE])
  rows = []
  for name, module, variant in REFERENCE:
    if name not in only:
      continue
    config = module.get_config(variant)
    common.configure(config, args)
    batch = common.random_tokens(config.loop.batch_size, config.dataset.sequence_length, args.vocab)
    baseline, baseline_error = None, ''
    if args.torch and module is lstm_lm:
      from benchmarks import torch_baseline  # pylint: disable=g-import-not-at-top
      try:
        baseline, _, _ = torch_baseline.lstm_stepper(
            config.model.num_layers, config.optimizer.name, vocab=args.vocab, batch=config.loop.batch_size,
            length=config.dataset.sequence_length, dtype=config.speed.compute_dtype)
      except RuntimeError as exc:  # E.g. PyTorch's CPU LSTM has no bfloat16 kernel.
        baseline_error = f'failed: {str(exc).splitlines()[0][:60]}'
    t = common.time_train_step(name, config, batch, num_outputs=args.vocab, steps=args.steps,
                               repeats=args.repeats, attention_impl=args.attention,
                               baseline=baseline)
    tokens = config.loop.batch_size * config.dataset.sequence_length
    row = {'run': name, 'config': f'{module.__name__.split(".")[-1]}:{variant}',
           'batch': f'{config.loop.batch_size} x {config.dataset.sequence_length}',
           'dtype': config.speed.compute_dtype,
           'params': f'{t.params:,}', 'tokens/s': f'{tokens / t.step_s:,.0f}',
           's/epoch': f'{EPOCH_TOKENS / tokens * t.step_s:.1f}', 'compile_s': f'{t.compile_s:.1f}',
           'peak_mem': f'{t.peak_memory_bytes / 2**20:.0f} MiB' if t.peak_memory_bytes else 'n/a'}
    if t.flops_per_step:
      row['GFLOP/step'] = f'{t.flops_per_step / 1e9:.1f}'
      row['TFLOP/s'] = f'{t.flops_per_step / t.step_s / 1e12:.2f}'
    if baseline_error:
      row['torch tok/s'] = baseline_error
    elif baseline is not None:
      row['torch tok/s'] = f'{tokens / t.baseline_step_s:,.0f}'
      row['speedup'] = f'{t.baseline_step_s / t.step_s:.2f}x'
    rows.append(row)
    print(f'  measured {name}', file=sys.stderr, flush=True)
  print(f'LM train step, synthetic tokens, vocab {args.vocab}, on {common.device_line()}')
  common.print_table(rows, ['run', 'config', 'batch', 'dtype', 'params', 'tokens/s', 's/epoch', 'GFLOP/step',
                            'TFLOP/s', 'peak_mem', 'compile_s', 'torch tok/s', 'speedup'])


if __name__ == '__main__':
  main()
