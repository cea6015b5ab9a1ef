r"""The CPU convolution kernel gradient (models/conv.py) against XLA's, per shape and per step.

Usage:
  python benchmarks/conv_step.py --config=configs/cnn.py:arch=fast [--steps=2] [--repeats=3]
  python benchmarks/conv_step.py --config=configs/cnn.py:arch=resnet --batch_size=128
  python benchmarks/conv_step.py --shapes      # the kernel gradient alone, per layer shape

With ``--config``: compiles train.py's step twice, ``model.conv_impl`` = ``xla`` and
``im2col_grad``, and times them in interleaved rounds (the machine's speed drifts; interleaving
puts the drift on both), printing ms per step, examples/s and the speed-up. With ``--shapes``:
the forward convolution, XLA's kernel gradient and the im2col kernel gradient of the 3x3 layer
shapes of the CIFAR networks, in GFLOP/s (2 x multiply-adds per second).
"""

import argparse
import os
import statistics
import sys

import jax
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from models import conv  # pylint: disable=g-import-not-at-top,wrong-import-position

IMPLS = ('xla', 'im2col_grad')
# (batch, side, in channels, out channels) of 3x3 stride-1 layers in ResNet-20 and the fast CNN.
SHAPES = ((256, 32, 16, 16), (256, 16, 32, 32), (256, 15, 32, 128), (256, 7, 128, 128),
          (256, 7, 128, 256), (256, 3, 256, 256))


def _seconds(fn, *args, repeats: int) -> float:
  fn = jax.jit(fn)
  return common.median_seconds(lambda: jax.block_until_ready(fn(*args)), repeats)


def shapes_table(repeats: int) -> None:
  """GFLOP/s of the forward pass and both kernel gradients for each of ``SHAPES``."""
  dims, pads = ('NHWC', 'HWIO', 'NHWC'), ((1, 1), (1, 1))
  rows = []
  for b, side, c, k in SHAPES:
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (b, side, side, c))
    w = jax.random.normal(keys[1], (3, 3, c, k))
    g = jax.random.normal(keys[2], (b, side, side, k))
    fwd = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=dims)
    xla_dw = lambda x, w, g: jax.vjp(lambda w: fwd(x, w), w)[1](g)[0]
    ours_dw = lambda x, w, g: conv.kernel_gradient(x, g, w.shape, (1, 1), pads)
    flop = 2 * b * side * side * c * k * 9
    rate = lambda s: f'{flop / s / 1e9:.1f}'
    t_fwd = _seconds(fwd, x, w, repeats=repeats)
    t_xla = _seconds(xla_dw, x, w, g, repeats=repeats)
    t_ours = _seconds(ours_dw, x, w, g, repeats=repeats)
    rows.append({'shape (B, side, C, K)': f'{b}, {side}, {c}, {k}', 'forward': rate(t_fwd),
                 'XLA kernel grad': rate(t_xla), 'im2col kernel grad': rate(t_ours),
                 'speed-up': f'{t_xla / t_ours:.1f}x'})
  print(f'3x3 convolutions, GFLOP/s (median of {repeats}), on {common.device_line()}')
  common.print_table(rows, list(rows[0]))


def step_table(args) -> None:
  """train.py's step with each implementation, timed in interleaved rounds."""
  compiled = {}
  for impl in IMPLS:
    config = common.configure(common.load_config(args.config), args)
    config.model.conv_impl = impl
    batch, num_outputs = common.make_batch(args, config)
    compiled[impl] = common.compile_train_step(config, batch, num_outputs=num_outputs)
    print(f'  compiled conv_impl={impl}', file=sys.stderr, flush=True)
  times = common.interleaved(compiled, steps=args.steps, repeats=args.repeats)
  base = statistics.median(times[IMPLS[0]])
  rows = []
  for impl, c in compiled.items():
    step_s = statistics.median(times[impl])
    rows.append({'conv_impl': impl, 'ms/step': f'{step_s * 1e3:,.0f}',
                 'examples/s': f'{c.batch / step_s:,.1f}', 'speed': f'{base / step_s:.2f}x',
                 'all ms': ' '.join(f'{t * 1e3:.0f}' for t in times[impl])})
  print(f'{args.config} batch {c.batch}, {args.steps} steps x {args.repeats} interleaved rounds, '
        f'on {common.device_line()}')
  common.print_table(rows, ['conv_impl', 'ms/step', 'examples/s', 'speed', 'all ms'])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', help='configs/NAME.py[:variant] of a CNN')
  parser.add_argument('--shapes', action='store_true', help='Time the kernel gradient per shape.')
  common.add_input_flags(parser)
  common.add_step_flags(parser, steps=2, dtype=None)
  args = parser.parse_args()
  if not args.shapes and not args.config:
    raise SystemExit('give --config=configs/NAME.py[:variant] or --shapes')
  if args.shapes:
    shapes_table(args.repeats)
  if args.config:
    step_table(args)


if __name__ == '__main__':
  main()
