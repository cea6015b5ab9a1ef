r"""Which ``cpu_microbatch_size`` makes train.py's step fastest for a config on this machine.

Usage:
  python benchmarks/microbatch_sweep.py --config=configs/vit_postnorm.py:layers=6,optimizer=adamw \
      --sizes=0,16,8,4,2 [--steps=2] [--repeats=5]
  python benchmarks/microbatch_sweep.py --config=configs/transformer_lm.py --input=tokens \
      --sizes=0,4,2,1 --steps=1 --repeats=4

Compiles train.py's step once per size (``config.speed.cpu_microbatch_size``; 0 = no CPU split), then
times them in rounds: one repeat of each size in turn, ``--repeats`` rounds. The machine's speed
drifts by 10 % and more within minutes (other tenants); interleaving puts that drift on every size
alike, so the medians compare. Prints, per size: the micro-batches the step runs (sequential x
side by side, of so many examples per device, as train.py resolves them on this backend), the
median ms per step, examples/s and the speed against the first size. Only CPUs split; on GPUs
and TPUs every size runs the same step.
"""

import argparse
import os
import statistics
import sys

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # pylint: disable=g-import-not-at-top,wrong-import-position


def parse_sizes(text: str) -> list[int]:
  """``--sizes`` '0,8,4' -> [0, 8, 4]; exits naming the flag on anything but integers >= 0."""
  try:
    sizes = [int(x) for x in text.split(',') if x.strip()]
  except ValueError:
    sizes = []
  if not sizes or min(sizes) < 0:
    raise SystemExit(f'--sizes={text!r}: expected comma-separated integers >= 0, e.g. 0,8,4.')
  return sizes


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', required=True, help='configs/NAME.py[:variant]')
  parser.add_argument('--sizes', default='0,16,8,4',
                      help='cpu_microbatch_size values, comma-separated; the first is the base.')
  common.add_input_flags(parser)
  common.add_step_flags(parser, steps=2, dtype=None)
  args = parser.parse_args()
  sizes = parse_sizes(args.sizes)

  compiled = {}
  for size in sizes:
    config = common.configure(common.load_config(args.config), args)
    config.speed.cpu_microbatch_size = size
    batch, num_outputs = common.make_batch(args, config)
    compiled[size] = common.compile_train_step(config, batch, num_outputs=num_outputs,
                                               attention_impl=args.attention)
    print(f'  compiled size {size}', file=sys.stderr, flush=True)
  times = common.interleaved(compiled, steps=args.steps, repeats=args.repeats)
  base = statistics.median(times[sizes[0]])
  rows = []
  for size, c in compiled.items():
    step_s = statistics.median(times[size])
    sequential, concurrent = c.microbatches
    examples = c.batch // (sequential * concurrent * jax.device_count())  # Per device, as the size.
    rows.append({'cpu_microbatch_size': size,
                 'micro-batches': f'{sequential} x {concurrent} of {examples}',
                 'ms/step': f'{step_s * 1e3:,.0f}',
                 'all ms': ' '.join(f'{t * 1e3:.0f}' for t in times[size]),
                 'examples/s': f'{c.batch / step_s:,.1f}', 'speed': f'{base / step_s:.2f}x'})
  print(f'{args.config} {" ".join(args.set or [])} batch {c.batch}, {args.steps} steps x '
        f'{args.repeats} interleaved rounds, on {common.device_line()}')
  common.print_table(rows, ['cpu_microbatch_size', 'micro-batches', 'ms/step', 'examples/s',
                            'speed', 'all ms'])


if __name__ == '__main__':
  main()
