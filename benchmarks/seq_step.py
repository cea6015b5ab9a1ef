r"""Training throughput of the sequence models: frames/s (CTC) and target tokens/s (seq2seq).

Usage:
  python benchmarks/seq_step.py [--steps=5] [--repeats=3] [--only=ctc_bilstm,s2s] \
      [--frames=256] [--features=80] [--target_length=32] [--vocab=1000] [--dtype=float32]

Synthetic batches of each config's batch size: ``frames`` input frames of ``features`` features
(e.g. 80 log-mel bins, or landmark coordinates), targets of ``target_length`` tokens from a
vocabulary of ``vocab``. Times train.py's own compiled train step (benchmarks/common.py), compile
and warm-up excluded, median of repeats; frames/s counts input frames, tokens/s target tokens.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs import captioner  # pylint: disable=wrong-import-position
from configs import ctc_bilstm  # pylint: disable=wrong-import-position
from configs import ctc_transformer  # pylint: disable=wrong-import-position
from configs import seq2seq_transformer  # pylint: disable=wrong-import-position

RUNS = [
    ('ctc_bilstm', ctc_bilstm, ''),
    ('ctc_transformer', ctc_transformer, ''),
    ('s2s', seq2seq_transformer, ''),
    ('cap_baseline', captioner, 'arch=baseline'),
    ('cap_improved', captioner, 'arch=improved'),
    ('cap_attention', captioner, 'arch=attention'),
    ('cap_transformer', captioner, 'arch=transformer'),
]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  common.add_step_flags(parser, steps=5)
  parser.add_argument('--only', default='')
  common.add_sequence_flags(parser)
  parser.add_argument('--vocab', type=int, default=1000)
  args = parser.parse_args()
  only = common.select_runs(args.only, [name for name, _, _ in RUNS])
  rows = []
  for name, module, variant in RUNS:
    if name not in only:
      continue
    config = module.get_config(variant)
    config.doctor.enabled = False
    common.configure(config, args)
    batch = common.random_sequences(config.loop.batch_size, frames=args.frames,
                                    features=args.features, target_length=args.target_length,
                                    vocab=args.vocab)
    t = common.time_train_step(name, config, batch, num_outputs=args.vocab, steps=args.steps,
                               repeats=args.repeats, attention_impl=args.attention)
    real_frames = float(batch['input_mask'].sum())
    real_tokens = float(batch['target_mask'].sum())
    config_name = module.__name__.split('.')[-1] + (f':{variant}' if variant else '')
    row = {'run': name, 'config': config_name, 'dtype': config.speed.compute_dtype,
           'params': f'{t.params:,}', 'batch': t.batch, 'step_ms': f'{1e3 * t.step_s:.1f}',
           'frames/s': f'{real_frames / t.step_s:,.0f}',
           'tokens/s': f'{real_tokens / t.step_s:,.0f}', 'compile_s': f'{t.compile_s:.1f}',
           'peak_mem': f'{t.peak_memory_bytes / 2**20:.0f} MiB' if t.peak_memory_bytes else 'n/a'}
    if t.flops_per_step:
      row['TFLOP/s'] = f'{t.flops_per_step / t.step_s / 1e12:.2f}'
    rows.append(row)
    print(f'  measured {name}', file=sys.stderr, flush=True)
  print(f'Sequence train step, {args.frames} frames x {args.features} features, targets of '
        f'{args.target_length} tokens (vocab {args.vocab}), on '
        f'{common.device_line()}')
  common.print_table(rows, ['run', 'config', 'dtype', 'params', 'batch', 'step_ms', 'frames/s', 'tokens/s',
                            'TFLOP/s', 'peak_mem', 'compile_s'])


if __name__ == '__main__':
  main()
