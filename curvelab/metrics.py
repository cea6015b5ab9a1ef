"""clu metric building blocks shared by every task.

Metrics accumulate on the device inside the compiled steps (``collection.merge``) and are fetched
once per epoch, so there is no host round trip per step. Per-example values are always weighted
by the batch's ``weight`` (the padding mask: 0 for padded examples or tokens), which is what
makes a padded last evaluation batch count exactly once per real example.

An "empty" collection is built as zeros of the collection's shapes (:func:`zeros_like`): every
metric here is designed so that all-zeros is its identity under ``merge``.
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics as clu_metrics

# Large constant for encoding "first step with a non-finite loss" as a max-merge.
_BIG_STEP = 2**30


def _weights(kwargs, values):
  weight = kwargs.get('weight')
  if weight is None:
    return jnp.ones(values.shape[:1] if values.ndim else (), jnp.float32)
  return weight.astype(jnp.float32)


def masked_average(key: str, *, transform=None):
  """Weighted mean of per-example (or per-token) values ``kwargs[key]`` with ``kwargs['weight']``.

  Args:
    key: the model-output name.
    transform: optional function applied to the mean when computing (e.g. ``jnp.exp``).
  """

  @flax.struct.dataclass
  class MaskedAverage(clu_metrics.Metric):
    total: jnp.ndarray
    count: jnp.ndarray

    @classmethod
    def from_model_output(cls, **kwargs):
      values = jnp.asarray(kwargs[key], jnp.float32)
      w = jnp.broadcast_to(_weights(kwargs, values), values.shape)
      return cls(total=(values * w).sum(), count=w.sum())

    def merge(self, other):
      return type(self)(total=self.total + other.total, count=self.count + other.count)

    def compute(self):
      mean = self.total / jnp.maximum(self.count, 1e-12)
      return transform(mean) if transform is not None else mean

  return MaskedAverage


def scalar_average(key: str):
  """Mean over steps of a per-step scalar (e.g. the gradient norm)."""

  @flax.struct.dataclass
  class ScalarAverage(clu_metrics.Metric):
    total: jnp.ndarray
    count: jnp.ndarray

    @classmethod
    def from_model_output(cls, **kwargs):
      # A value stacked over gradient-accumulation micro-batches sums to the step's value.
      return cls(total=jnp.asarray(kwargs[key], jnp.float32).sum(), count=jnp.ones((), jnp.float32))

    def merge(self, other):
      return type(self)(total=self.total + other.total, count=self.count + other.count)

    def compute(self):
      return self.total / jnp.maximum(self.count, 1.0)

  return ScalarAverage


def scalar_max(key: str):
  """Maximum over steps of a non-negative per-step scalar."""

  @flax.struct.dataclass
  class ScalarMax(clu_metrics.Metric):
    value: jnp.ndarray

    @classmethod
    def from_model_output(cls, **kwargs):
      return cls(value=jnp.asarray(kwargs[key], jnp.float32))

    def merge(self, other):
      return type(self)(value=jnp.maximum(self.value, other.value))

    def compute(self):
      return self.value

  return ScalarMax


def vector_average(key: str, *, per_example: bool):
  """Mean of a vector value: per-step vectors, or per-example rows weighted by ``weight``."""

  @flax.struct.dataclass
  class VectorAverage(clu_metrics.Metric):
    total: jnp.ndarray
    count: jnp.ndarray

    @classmethod
    def from_model_output(cls, **kwargs):
      values = jnp.asarray(kwargs[key], jnp.float32)
      if not per_example:
        return cls(total=values, count=jnp.ones((), jnp.float32))
      w = _weights(kwargs, values)
      return cls(total=(values * w[:, None]).sum(0), count=w.sum())

    def merge(self, other):
      return type(self)(total=self.total + other.total, count=self.count + other.count)

    def compute(self):
      return self.total / jnp.maximum(self.count, 1e-12)

  return VectorAverage


@flax.struct.dataclass
class NonFinite(clu_metrics.Metric):
  """How many steps had a non-finite loss, and the first such step (1-based; 0 when none)."""
  count: jnp.ndarray
  first: jnp.ndarray  # _BIG_STEP - first bad step, so that max-merge keeps the earliest.

  @classmethod
  def from_model_output(cls, **kwargs):
    bad = ~jnp.isfinite(kwargs['loss_value'])
    step = kwargs['step_number'].astype(jnp.int32)
    return cls(count=bad.astype(jnp.int32), first=jnp.where(bad, _BIG_STEP - step, 0))

  def merge(self, other):
    return type(self)(count=self.count + other.count, first=jnp.maximum(self.first, other.first))

  def compute(self):
    return {'count': self.count, 'first_step': jnp.where(self.first > 0, _BIG_STEP - self.first, 0)}


@flax.struct.dataclass
class Dynamics(clu_metrics.Collection):
  """Training-dynamics statistics the doctor reads, for every model family."""
  grad_norm: scalar_average('grad_norm')
  grad_norm_max: scalar_max('grad_norm')
  param_norm: scalar_average('param_norm')
  update_ratio: scalar_average('update_ratio')
  layer_grad_norms: vector_average('layer_grad_norms', per_example=False)
  nonfinite: NonFinite


def zeros_like(collection_shape: Any) -> Any:
  """An empty collection (all zeros) with the shapes of ``collection_shape`` (an eval_shape)."""
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), collection_shape)


def to_host(collection) -> dict[str, Any]:
  """Computes a collection and converts it to plain Python numbers and lists."""
  values = jax.device_get(collection.compute())

  def plain(v):
    if isinstance(v, dict):
      return {k: plain(x) for k, x in v.items()}
    arr = np.asarray(v)
    return arr.item() if arr.ndim == 0 else arr.tolist()

  return {k: plain(v) for k, v in values.items()}
