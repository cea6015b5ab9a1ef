"""The execution plan: every speed choice of a run, resolved once, logged in one line, saved.

A speed choice changes how fast a run goes, never what it computes (beyond float rounding; the
one exception, dropout masks under CPU micro-batching, is documented in ``steps.py``). Each
choice's rule stays beside the code it speeds up, with the measurements behind it; this module
asks every rule once per run, for the run's backend and model, and the loop uses the answer:

* ``sequential_microbatches``, ``concurrent_microbatches``: how a step splits its batch
  (``steps.resolve_sequential_microbatches``, ``steps.resolve_concurrent_microbatches``);
* ``steps_per_call``, ``input_mode``: the config's, validated;
* ``attention``: the scaled dot-product kernel (``models/attention.py``: ``choose``). The model
  is built with it, before the rest of the plan can be resolved (that needs the model's state):
  ``curvelab/build.py`` asks :func:`resolve_attention` and :func:`resolve` reports that choice;
* ``conv``: how a convolution's kernel gradient is computed (``models/conv.py``: ``choose``);
* ``rnn_unroll``: time steps per iteration of recurrent scans (``models/recurrent.py``);
* ``norm_reduction``: how the per-step gradient and parameter norms reduce a tree
  (``steps.sum_of_squares``).

The plan is written to ``summary.json`` (``plan``) and logged once at start-up, so two runs'
speeds can be compared knowing what each actually ran.
"""

import dataclasses

import jax

from curvelab import steps as steps_lib


@dataclasses.dataclass(frozen=True)
class Plan:
  """The resolved speed choices of one run (see the module docstring for each field)."""
  backend: str
  sequential_microbatches: int
  concurrent_microbatches: int
  steps_per_call: int
  input_mode: str
  attention: str
  conv: str
  rnn_unroll: int
  norm_reduction: str

  @property
  def microbatches(self) -> tuple[int, int]:
    """``(sequential, concurrent)`` micro-batches of each train step."""
    return self.sequential_microbatches, self.concurrent_microbatches

  def line(self) -> str:
    """The one console line that says what the run executes."""
    return (f'plan on {self.backend}: micro-batches {self.sequential_microbatches} in sequence x '
            f'{self.concurrent_microbatches} side by side; {self.steps_per_call} step(s) per call; '
            f'input {self.input_mode}; attention {self.attention}; conv gradient {self.conv}; '
            f'rnn unroll {self.rnn_unroll}; norms {self.norm_reduction}.')

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def resolve_attention(implementation: str = 'auto', backend: str | None = None) -> str:
  """The attention kernel a run's model is built with (``models.build(..., attention=)``).

  Args:
    implementation: ``'auto'`` (by backend) or one of ``models/attention.py``'s
      ``IMPLEMENTATIONS``, which forces it (benchmarks' ``--attention``).
    backend: 'cpu', 'gpu' or 'tpu'; default: ``jax.default_backend()``.

  Raises:
    ValueError: naming the value and the allowed ones.
  """
  from models import attention  # pylint: disable=g-import-not-at-top
  return attention.choose(implementation, backend or jax.default_backend())


def resolve(config, *, has_model_state: bool, backend: str | None = None,
            device_count: int | None = None, attention: str = 'auto') -> Plan:
  """Asks every speed rule once, for ``backend`` (default: JAX's) and this model.

  Args:
    config: the run's resolved config.
    has_model_state: whether the model carries mutable state (BatchNorm statistics), which rules
      out splitting a batch where that would change the update.
    backend: 'cpu', 'gpu' or 'tpu'; default: ``jax.default_backend()``.
    device_count: devices the global batch is split over; default: ``jax.device_count()``.
    attention: the attention kernel the model was built with (``Setup.attention``, from
      :func:`resolve_attention`); ``'auto'`` resolves it by backend, as building does.
  """
  # pylint: disable=g-import-not-at-top
  from models import conv
  from models import recurrent
  backend = backend or jax.default_backend()
  per_device_batch = config.loop.batch_size // (device_count or jax.device_count())
  concurrent = steps_lib.resolve_concurrent_microbatches(
      config.speed.concurrent_microbatches, per_device_batch=per_device_batch,
      grad_accum_steps=config.speed.grad_accum_steps, has_model_state=has_model_state,
      platform=backend)
  sequential = steps_lib.resolve_sequential_microbatches(
      config.speed.cpu_microbatch_size, per_device_batch=per_device_batch,
      grad_accum_steps=config.speed.grad_accum_steps, concurrent_microbatches=concurrent,
      has_model_state=has_model_state, platform=backend)
  model = config.get('model', {})
  return Plan(
      backend=backend, sequential_microbatches=sequential, concurrent_microbatches=concurrent,
      steps_per_call=int(config.speed.steps_per_call), input_mode=config.speed.input_mode,
      attention=resolve_attention(attention, backend),
      conv=conv.choose(model.get('conv_impl', 'auto'), backend),
      rnn_unroll=recurrent.resolve_unroll(model.get('scan_unroll', 0), backend),
      norm_reduction='concatenated' if steps_lib.concatenates_norms(backend) else 'per_leaf')
