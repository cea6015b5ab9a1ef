r"""The reference ViT's GEMM shapes alone: JAX (one jitted dot_general) against torch.mm.

Usage:
  python benchmarks/gemm_shapes.py [--repeats=10] [--rows=8320] [--pairs=1024]

Times each matmul of a 6-layer reference ViT step (batch 128 x 65 tokens = 8,320 rows, width 256,
MLP 512) outside the training step, median of ``--repeats`` after two warm-up calls, and prints
GFLOP/s for JAX and, where PyTorch is installed, for ``torch.mm`` on the same device (CPU threads:
PyTorch's default). It separates "the GEMM library is slow" from "the step around it is slow".
Then the same for attention's batched products (``--pairs`` = batch x heads matrices of 65 x 32),
one jitted ``einsum`` against ``torch.einsum`` (which runs ``bmm``). Run it under
``taskset -c 0`` as well to see which of them use more than one core.
"""

import argparse
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # pylint: disable=g-import-not-at-top,wrong-import-position

# (name, lhs shape, rhs shape, lhs contracting dim, rhs contracting dim); M = rows.
SHAPES = [
    ('qkv forward', ('M', 256), (256, 768), 1, 0),
    ('qkv input gradient', ('M', 768), (256, 768), 1, 1),
    ('qkv weight gradient', ('M', 256), ('M', 768), 0, 0),
    ('MLP in, forward', ('M', 256), (256, 512), 1, 0),
    ('MLP in, input gradient', ('M', 512), (256, 512), 1, 1),
    ('MLP out, forward', ('M', 512), (512, 256), 1, 0),
]

# Attention's batched products, (name, einsum, lhs shape, rhs shape); P = batch x heads pairs.
BATCHED = [
    ('scores Q K^T', 'pqd,pkd->pqk', ('P', 65, 32), ('P', 65, 32)),
    ('output P V', 'pqk,pkd->pqd', ('P', 65, 65), ('P', 65, 32)),
    ('value gradient P^T dO', 'pqk,pqd->pkd', ('P', 65, 65), ('P', 65, 32)),
]




def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--repeats', type=int, default=10)
  parser.add_argument('--rows', type=int, default=8320, help='M: batch x tokens.')
  parser.add_argument('--pairs', type=int, default=1024, help='P: batch x heads (attention).')
  args = parser.parse_args()
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    torch = None
  rng = np.random.default_rng(0)
  print(f'GEMM shapes, M={args.rows}, on {jax.devices()[0].device_kind}, jax {jax.__version__}')
  print('shape | JAX GFLOP/s | PyTorch GFLOP/s')
  for name, lhs_shape, rhs_shape, lc, rc in SHAPES:
    lhs_shape = tuple(args.rows if d == 'M' else d for d in lhs_shape)
    rhs_shape = tuple(args.rows if d == 'M' else d for d in rhs_shape)
    a = rng.normal(size=lhs_shape).astype(np.float32)
    b = rng.normal(size=rhs_shape).astype(np.float32)
    flops = 2 * lhs_shape[1 - lc] * lhs_shape[lc] * rhs_shape[1 - rc]
    dot = jax.jit(lambda x, y, lc=lc, rc=rc: jax.lax.dot_general(x, y, (((lc,), (rc,)), ((), ()))))
    ja, jb = jax.device_put(a), jax.device_put(b)
    jax_s = common.median_seconds(lambda: dot(ja, jb).block_until_ready(), args.repeats)
    row = f'{name} {lhs_shape} x {rhs_shape} | {flops / jax_s / 1e9:.1f}'
    if torch is not None:
      ta = torch.from_numpy(a) if lc == 1 else torch.from_numpy(a).t()
      tb = torch.from_numpy(b) if rc == 0 else torch.from_numpy(b).t()
      torch_s = common.median_seconds(lambda: torch.mm(ta, tb), args.repeats)
      row += f' | {flops / torch_s / 1e9:.1f}'
    print(row)
  for name, spec, lhs_shape, rhs_shape in BATCHED:
    lhs_shape = tuple(args.pairs if d == 'P' else d for d in lhs_shape)
    rhs_shape = tuple(args.pairs if d == 'P' else d for d in rhs_shape)
    a = rng.normal(size=lhs_shape).astype(np.float32)
    b = rng.normal(size=rhs_shape).astype(np.float32)
    sizes = dict(zip(spec[:3], lhs_shape)) | dict(zip(spec[4:7], rhs_shape))
    flops = 2 * int(np.prod(list(sizes.values())))
    product = jax.jit(lambda x, y, spec=spec: jax.numpy.einsum(spec, x, y))
    ja, jb = jax.device_put(a), jax.device_put(b)
    jax_s = common.median_seconds(lambda: product(ja, jb).block_until_ready(), args.repeats)
    row = f'{name} {lhs_shape} x {rhs_shape} | {flops / jax_s / 1e9:.1f}'
    if torch is not None:
      ta, tb = torch.from_numpy(a), torch.from_numpy(b)
      torch_s = common.median_seconds(lambda: torch.einsum(spec, ta, tb), args.repeats)
      row += f' | {flops / torch_s / 1e9:.1f}'
    print(row)


if __name__ == '__main__':
  main()
