"""Scaled dot-product attention: the kernels every attention layer can call, fast on each backend.

On GPUs and TPUs the kernel is ``jax.nn.dot_product_attention`` (XLA's implementation). On CPUs it
is :func:`head_major_attention` on chunks of the heads. XLA:CPU runs attention's batched
[T, D] x [D, S] matmuls on essentially one core (18-34 GFLOP/s on the development machine's two
cores, hardly more than on one), where PyTorch's ``bmm`` uses both. The matmuls of independent
chunks are independent thunks, which XLA:CPU's executor runs concurrently, one per core.
The CPU path has its own gradient (a custom VJP). It reads the [B, H, T, S] probabilities in the
layout they were produced in and transposes only the smaller [B, T, H, D] operands.
``docs/benchmarks.md`` has the measurements.

Models take the kernel as an argument, as ``flax.linen.MultiHeadDotProductAttention`` takes its
``attention_fn``: curvelab/plan.py resolves the run's implementation once, ``models.build(...,
attention=name)`` turns it into a function with :func:`kernel` and every attention layer gets that
function as its ``attention_fn`` attribute. Nothing here is process-global.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

import models

# Chunks of heads on CPUs. On the 2-core development machine two made the ViT step faster than
# one or four (docs/benchmarks.md).
CPU_CHUNKS = 2

# 'auto' picks by backend; the others force one, for A/B timings (benchmarks' --attention).
# 'cudnn' is jax.nn.dot_product_attention's cuDNN kernel: NVIDIA GPUs, float16/bfloat16 only.
IMPLEMENTATIONS = ('auto', 'xla', 'cudnn', 'head_major')

# ``fn(q, k, v, *, mask=None, is_causal=False) -> out``, as :func:`dot_product_attention`.
AttentionFn = Callable[..., jax.Array]


def choose(implementation: str, backend: str | None = None) -> str:
  """The implementation ``implementation`` stands for on ``backend`` (default: JAX's default).

  Raises:
    ValueError: naming the value and the allowed ones (``IMPLEMENTATIONS``).
  """
  return models.choose_by_backend(implementation, IMPLEMENTATIONS, what='attention',
                                  cpu='head_major', accelerator='xla', backend=backend)


def kernel(implementation: str, backend: str | None = None) -> AttentionFn:
  """The attention function of ``implementation`` (``'auto'``: :func:`choose`'s for ``backend``).

  The same function object for the same choice, so modules built with it compare equal.

  Args:
    implementation: one of ``IMPLEMENTATIONS``.
    backend: 'cpu', 'gpu' or 'tpu', for ``'auto'``; default: JAX's default backend.

  Returns:
    ``fn(q, k, v, *, mask=None, is_causal=False)``, with :func:`dot_product_attention`'s contract.

  Raises:
    ValueError: naming the value and the allowed ones (``IMPLEMENTATIONS``).
  """
  return _KERNELS[choose(implementation, backend)]


def dot_product_attention(q, k, v, *, mask=None, is_causal: bool = False):
  """Softmax attention of ``q`` [B, T, H, D] over ``k``, ``v`` [B, S, H, D] -> [B, T, H, D].

  The layers' default ``attention_fn``: the ``'auto'`` kernel for JAX's default backend, chosen
  when traced. Runs pass the plan's kernel instead (:func:`kernel`), so the choice is made once.

  Every kernel computes this: logits scaled by 1/sqrt(D) and a softmax in float32 whatever the
  inputs' dtype, as in ``jax.nn.dot_product_attention``. A query whose keys are all masked gets
  uniform weights, not NaN.

  Args:
    q: Queries [B, T, H, D].
    k: Keys [B, S, H, D].
    v: Values [B, S, H, D].
    mask: Optional boolean mask broadcastable to [B, H, T, S]; True where a query may attend.
    is_causal: Also hide keys after each query's own position.

  Returns:
    [B, T, H, D] in ``v``'s dtype.
  """
  return kernel('auto')(q, k, v, mask=mask, is_causal=is_causal)


def xla_attention(q, k, v, *, mask=None, is_causal: bool = False):
  """The ``'xla'`` kernel: ``jax.nn.dot_product_attention``'s XLA implementation."""
  return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=is_causal,
                                      implementation='xla')


def cudnn_attention(q, k, v, *, mask=None, is_causal: bool = False):
  """The ``'cudnn'`` kernel: ``jax.nn.dot_product_attention``'s cuDNN implementation."""
  return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=is_causal,
                                      implementation='cudnn')


def cpu_attention(q, k, v, *, mask=None, is_causal: bool = False):
  """The ``'head_major'`` kernel: :func:`chunked_attention` on ``CPU_CHUNKS`` chunks of heads."""
  return chunked_attention(q, k, v, mask=mask, is_causal=is_causal, chunks=CPU_CHUNKS)


_KERNELS: dict[str, AttentionFn] = {
    'xla': xla_attention, 'cudnn': cudnn_attention, 'head_major': cpu_attention}


def chunked_attention(q, k, v, *, mask=None, is_causal: bool = False, chunks: int):
  """:func:`head_major_attention` on up to ``chunks`` groups of heads, concatenated.

  The chunks are independent computations (forward and backward), so a runtime that runs
  independent operations concurrently can give each its own core. Heads, not the batch: the batch
  may be sharded over devices, and slicing it would move data between them. Head counts that do
  not divide evenly get chunks that differ by one head.
  """
  full = _full_mask(mask, q, k, is_causal)
  heads = q.shape[2]
  bounds = np.linspace(0, heads, min(chunks, heads) + 1).astype(int)
  outputs = []
  for start, stop in zip(bounds[:-1], bounds[1:]):
    part = lambda x, axis: jax.lax.slice_in_dim(x, start, stop, axis=axis)
    chunk_mask = None if full is None else (full if full.shape[1] == 1 else part(full, 1))
    outputs.append(head_major_attention(part(q, 2), part(k, 2), part(v, 2), chunk_mask))
  return outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=2)


def _full_mask(mask, q, k, is_causal: bool):
  """``mask`` and the causal mask combined, [B or 1, H or 1, T, S] booleans; None for neither."""
  if is_causal:
    causal = jnp.tril(jnp.ones((q.shape[1], k.shape[1]), bool))[None, None]
    mask = causal if mask is None else jnp.logical_and(mask, causal)
  if mask is None:
    return None
  mask = jnp.asarray(mask)
  if mask.dtype != jnp.bool_:
    raise TypeError(f'attention mask must be boolean (True = attend), got {mask.dtype}')
  mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
  return jnp.broadcast_to(mask, mask.shape[:2] + (q.shape[1], k.shape[1]))


def _large_negative(dtype) -> float:
  # As jax.nn.dot_product_attention: finite, so a fully masked row softmaxes to uniform weights.
  return float(-0.7 * jnp.finfo(dtype).max)


@jax.custom_vjp
def head_major_attention(q, k, v, mask):
  """Softmax attention with a hand-written gradient; ``mask`` is None or [B|1, H|1, T, S] bool."""
  return _attention_fwd(q, k, v, mask)[0]


def _attention_fwd(q, k, v, mask):
  scale = np.float32(1 / np.sqrt(q.shape[-1]))
  qh, kh, vh = (jnp.transpose(x, (0, 2, 1, 3)) for x in (q, k, v))  # [B, H, T|S, D]
  logits = jnp.einsum('bhtd,bhsd->bhts', qh, kh, preferred_element_type=jnp.float32) * scale
  if mask is not None:
    logits = jnp.where(mask, logits, _large_negative(jnp.float32))
  probs = jax.nn.softmax(logits, axis=-1)  # [B, H, T, S], float32.
  out = jnp.einsum('bhts,bhsd->bhtd', probs.astype(v.dtype), vh)
  return jnp.transpose(out, (0, 2, 1, 3)), (qh, kh, vh, probs, mask)


def _attention_bwd(residuals, d_out):
  qh, kh, vh, probs, mask = residuals
  scale = np.float32(1 / np.sqrt(qh.shape[-1]))
  d_oh = jnp.transpose(d_out, (0, 2, 1, 3))  # [B, H, T, D]
  d_probs = jnp.einsum('bhtd,bhsd->bhts', d_oh, vh, preferred_element_type=jnp.float32)
  d_logits = probs * (d_probs - jnp.sum(d_probs * probs, axis=-1, keepdims=True)) * scale
  if mask is not None:
    # Masked logits were replaced by a constant, so nothing flows back through them (a fully
    # masked row has uniform, nonzero probabilities).
    d_logits = jnp.where(mask, d_logits, 0.0)
  d_logits = d_logits.astype(qh.dtype)
  d_qh = jnp.einsum('bhts,bhsd->bhtd', d_logits, kh)
  # dK and dV contract over T, which is P's and dS's second-to-last axis. Computed transposed
  # ([B, H, D, S] = [B, H, D, T] x [B, H, T, S]) they read the [B, H, T, S] tensors as stored and
  # transpose only [B, H, T, D] operands; XLA:CPU's own transposed-operand matmul is slower.
  d_kt = jnp.matmul(jnp.swapaxes(qh, -1, -2), d_logits)
  d_vt = jnp.matmul(jnp.swapaxes(d_oh, -1, -2), probs.astype(d_oh.dtype))
  d_mask = None if mask is None else np.zeros(mask.shape, jax.dtypes.float0)
  return (jnp.transpose(d_qh, (0, 2, 1, 3)), jnp.transpose(d_kt, (0, 3, 1, 2)),
          jnp.transpose(d_vt, (0, 3, 1, 2)), d_mask)


head_major_attention.defvjp(_attention_fwd, _attention_bwd)
