"""Model FLOPs of a JAX function, counted from its jaxpr (independent of backend and compiler).

XLA's cost analysis depends on the backend: on a GPU, matmuls lowered to cuBLAS/cuDNN custom calls
are counted differently (the reference ViT step reported 46 GFLOP on an H200 and 171 GFLOP on the
CPU for the same program). Model FLOPs utilisation needs the arithmetic the model asks for, so this
counts it from the traced program: ``2 * M * N * K`` for every ``dot_general`` and the equivalent
for every convolution, through ``jit``, ``scan`` (times its length), ``cond`` (the costliest
branch), ``remat``, custom derivatives and gradients. Elementwise work is not counted, as usual for
model FLOPs. A ``while_loop`` with an unknown trip count is counted once.
"""

import math
from typing import Any, Callable

import jax
from jax.extend import core as jax_core


def _size(shape) -> int:
  return math.prod(int(d) for d in shape)


def _dot_flops(eqn) -> int:
  lhs = eqn.invars[0].aval.shape
  (lhs_contract, _), _ = eqn.params['dimension_numbers']
  contraction = _size([lhs[i] for i in lhs_contract])
  return 2 * _size(eqn.outvars[0].aval.shape) * contraction


def _conv_flops(eqn) -> int:
  # Each output element is a dot over (input channels per group x kernel window): the kernel's
  # size divided by its output channels.
  rhs = eqn.invars[1].aval.shape
  out_channels = rhs[eqn.params['dimension_numbers'].rhs_spec[0]]
  return 2 * _size(eqn.outvars[0].aval.shape) * _size(rhs) // out_channels


def _sub_jaxprs(value) -> list:
  if isinstance(value, jax_core.ClosedJaxpr):
    return [value.jaxpr]
  if isinstance(value, jax_core.Jaxpr):
    return [value]
  if isinstance(value, (tuple, list)):
    return [j for v in value for j in _sub_jaxprs(v)]
  return []


def jaxpr_flops(jaxpr) -> int:
  """Matmul and convolution FLOPs of one evaluation of ``jaxpr`` (a Jaxpr or ClosedJaxpr)."""
  if isinstance(jaxpr, jax_core.ClosedJaxpr):
    jaxpr = jaxpr.jaxpr
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'dot_general':
      total += _dot_flops(eqn)
    elif name == 'conv_general_dilated':
      total += _conv_flops(eqn)
    elif name == 'cond':
      total += max(jaxpr_flops(b) for b in eqn.params['branches'])
    elif name == 'scan':
      total += eqn.params['length'] * jaxpr_flops(eqn.params['jaxpr'])
    elif name == 'custom_vjp_call' or name == 'custom_vjp_call_jaxpr':
      # Forward only here; its backward appears as ordinary equations where it is differentiated.
      key = 'call_jaxpr' if 'call_jaxpr' in eqn.params else 'fun_jaxpr'
      total += sum(jaxpr_flops(j) for j in _sub_jaxprs(eqn.params.get(key)))
    else:
      total += sum(jaxpr_flops(j) for v in eqn.params.values() for j in _sub_jaxprs(v))
  return total


def count(fn: Callable, *args: Any) -> int:
  """Matmul and convolution FLOPs of ``fn(*args)`` (arrays or ``jax.ShapeDtypeStruct``s)."""
  return jaxpr_flops(jax.make_jaxpr(fn)(*args))
