r"""Training throughput of the seven reference ViT configurations on the devices present.

Usage:
  python benchmarks/vit_step.py [--steps=10] [--repeats=3] [--only=1,7] [--dtype=float32|bfloat16]
      [--torch]

Prints, per configuration: parameters, examples/s, seconds per 45,000-example epoch (compile and
warm-up excluded, median of repeats), model FLOPs per step (counted from the traced step by
curvelab.flops), achieved TFLOP/s, utilisation against the device's peak where known, and peak
memory. ``--torch`` also times the same model in plain PyTorch on the same device, one repeat of
each in turn, and prints the ratio.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs import vit_postnorm  # pylint: disable=wrong-import-position
from configs import vit_prenorm  # pylint: disable=wrong-import-position

EPOCH_EXAMPLES = 45_000
REFERENCE = [  # (experiment, config module, variant)
    (1, vit_prenorm, 'layers=2,optimizer=adam'),
    (2, vit_prenorm, 'layers=2,optimizer=adamw'),
    (3, vit_prenorm, 'layers=2,optimizer=sgd'),
    (4, vit_prenorm, 'layers=2,optimizer=momentum'),
    (5, vit_prenorm, 'layers=4,optimizer=adamw'),
    (6, vit_prenorm, 'layers=6,optimizer=adamw'),
    (7, vit_postnorm, 'layers=6,optimizer=adamw'),
]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  common.add_step_flags(parser, steps=10, batch_size=128)
  parser.add_argument('--only', default='', help='Comma-separated experiment numbers.')
  parser.add_argument('--torch', action='store_true',
                      help='Also time the same model in plain PyTorch (benchmarks/torch_baseline.py).')
  args = parser.parse_args()
  only = common.select_runs(args.only, [str(exp) for exp, _, _ in REFERENCE])
  import jax  # pylint: disable=g-import-not-at-top
  peaks = common.peak_flops(jax.devices()[0])
  rows = []
  for exp, module, variant in REFERENCE:
    if str(exp) not in only:
      continue
    config = module.get_config(variant)
    common.configure(config, args)
    batch = common.random_images(config.loop.batch_size)
    baseline = None
    if args.torch:
      from benchmarks import torch_baseline  # pylint: disable=g-import-not-at-top
      baseline, pt_params, _ = torch_baseline.vit_stepper(
          config.model.num_layers, config.model.block, config.optimizer.name, batch=config.loop.batch_size,
          dtype=config.speed.compute_dtype)
    t = common.time_train_step(f'exp{exp}', config, batch, num_outputs=10, steps=args.steps,
                               repeats=args.repeats, attention_impl=args.attention,
                               baseline=baseline)
    row = {'exp': exp, 'config': f'{module.__name__.split(".")[-1]}:{variant}',
           'params': f'{t.params:,}', 'examples/s': f'{t.batch / t.step_s:,.0f}',
           's/epoch': f'{EPOCH_EXAMPLES / t.batch * t.step_s:.2f}',
           'compile_s': f'{t.compile_s:.1f}'}
    if t.flops_per_step:
      tflops = t.flops_per_step / t.step_s / 1e12
      row['GFLOP/step'] = f'{t.flops_per_step / 1e9:.1f}'
      row['TFLOP/s'] = f'{tflops:.2f}'
      if peaks:
        row['MFU'] = f'{100 * tflops * 1e12 / peaks[config.speed.compute_dtype != "bfloat16"]:.1f}%'
    row['peak_mem'] = (f'{t.peak_memory_bytes / 2**20:.0f} MiB' if t.peak_memory_bytes
                       else 'n/a')
    if args.torch:
      assert pt_params == t.params, (pt_params, t.params)
      row['torch ex/s'] = f'{config.loop.batch_size / t.baseline_step_s:,.0f}'
      row['speedup'] = f'{t.baseline_step_s / t.step_s:.2f}x'
    rows.append(row)
    print(f'  measured exp{exp}', file=sys.stderr, flush=True)
  print(f'ViT train step, batch {config.loop.batch_size}, {config.speed.compute_dtype}, on '
        f'{common.device_line()}')
  common.print_table(rows, ['exp', 'config', 'params', 'examples/s', 's/epoch', 'GFLOP/step',
                            'TFLOP/s', 'MFU', 'peak_mem', 'compile_s', 'torch ex/s', 'speedup'])


if __name__ == '__main__':
  main()
