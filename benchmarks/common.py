"""Shared timing harness: the real compiled train step of train.py on synthetic device data.

It times exactly what the training loop runs (the same jit-compiled, sharded, donated step), with
the batch already on the device, so the figure is the step's own pace; host input is measured
separately by the pipeline benchmark of each script when asked. Compilation and warm-up steps are
excluded; the figure is the median over repeats. FLOPs per step are model FLOPs counted from the
traced step (``curvelab.flops``).
"""

import ast
import dataclasses
import importlib
import os
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from curvelab import compiled
from curvelab import build as build_lib
from curvelab import configdicts
from curvelab import flops as flops_lib
from curvelab import optim
from curvelab import sharding
from curvelab import state as state_lib
from models import attention


@dataclasses.dataclass
class StepTiming:
  name: str
  params: int
  batch: int
  step_s: float
  flops_per_step: float | None
  compile_s: float
  peak_memory_bytes: int | None
  baseline_step_s: float | None = None  # The baseline's median, timed interleaved with ours.


def peak_flops(device) -> tuple[float, float] | None:
  """Dense (bf16, float32-matmul) peaks of known GPUs in FLOP/s, for model-FLOPs utilisation.

  The float32 figure is the TF32 tensor-core peak: JAX computes float32 matmuls on these GPUs
  with TF32 by default (``jax_default_matmul_precision``), so that is the ceiling they run
  against. H100 SXM and H200 share the compute die.
  """
  kind = device.device_kind.lower()
  table = {'h100': (989e12, 494.7e12), 'h200': (989e12, 494.7e12), 'a100': (312e12, 156e12)}
  for key, (bf16, fp32) in table.items():
    if key in kind:
      return bf16, fp32
  return None


@dataclasses.dataclass
class CompiledStep:
  """train.py's compiled step for one config, ready to call: ``state, metrics = call(state, metrics)``.

  One call runs ``steps_per_call`` optimizer steps on a fixed batch already on the device.
  """
  state: object
  metrics: object
  call: object
  steps_per_call: int
  params: int
  batch: int
  flops_per_step: float
  compile_s: float
  microbatches: tuple[int, int]  # (sequential, side by side), as train.microbatching resolved.


def compile_train_step(config, batch: dict, *, num_outputs: int,
                       attention_impl: str = 'auto') -> CompiledStep:
  """Builds, initialises and compiles train.py's train step for ``config`` on ``batch``.

  ``attention_impl`` forces an attention implementation (``attention.IMPLEMENTATIONS``) on the
  model built; 'auto' picks by backend, as training does.
  """
  config.loop.metric_writer = 'events'  # Nothing is written; this keeps TensorFlow optional here.
  config = build_lib.prepare_config(config)
  setup = build_lib.build_without_data(config, num_outputs=num_outputs, attention=attention_impl)
  tx, _ = optim.make_optimizer(config, steps_per_epoch=1000)
  state = build_lib.init_state(setup, tx, batch)
  train_step, _, empty, _, compile_s = compiled.compile_steps(setup, tx, state, batch, batch)
  # Model FLOPs from the traced step (matmuls and convolutions, forward and backward), the same on
  # every backend; XLA's cost analysis is not (it undercounts GPU library calls).
  python_step = compiled.make_train_step(setup, tx, state)
  flops = float(flops_lib.count(python_step.single, state, batch))
  k = int(config.speed.steps_per_call)
  if k > 1:
    # Several optimizer steps per compiled call: the loop's Advancer, on a stacked batch.
    advance = compiled.Advancer(setup, tx, state, empty, train_step, example_batch=batch)
    advance.prepare([k])
    compile_s += advance.compile_s
    stacked = {key: np.stack([v] * k) for key, v in batch.items()}
    shard = jax.sharding.NamedSharding(setup.mesh, jax.sharding.PartitionSpec(
        None, sharding.DATA_AXIS))
    chunk = jax.tree.map(lambda x: jax.make_array_from_process_local_data(shard, x), stacked)
    call = lambda st, m: advance(st, chunk, m, k)
  else:
    global_batch = sharding.to_global(batch, setup.mesh)
    call = lambda st, m: train_step(st, global_batch, m)
  metrics = jax.tree.map(jnp.copy, empty)
  for _ in range(2):  # Warm-up (first-call allocations).
    state, metrics = call(state, metrics)
  jax.block_until_ready(state)
  return CompiledStep(state=state, metrics=metrics, call=call, steps_per_call=k,
                      params=state_lib.count_params(state.params), batch=config.loop.batch_size,
                      flops_per_step=flops, compile_s=compile_s,
                      microbatches=compiled.microbatching(setup, state))


def time_train_step(name: str, config, batch: dict, *, num_outputs: int, steps: int,
                    repeats: int, attention_impl: str = 'auto',
                    baseline: Callable[[int], float] | None = None) -> StepTiming:
  """Compiles train.py's step for ``config`` and times ``steps`` steps, ``repeats`` times.

  ``baseline`` (``run(steps) -> seconds per step``, e.g. a PyTorch model's step) is timed in
  alternation with ours, one repeat each in turn, so that drift in the machine's speed (other
  tenants, clocks: +-10 % within minutes on the development CPU) falls on both alike and their
  ratio stays meaningful.
  """
  c = compile_train_step(config, batch, num_outputs=num_outputs, attention_impl=attention_impl)
  ours, theirs = [], []
  for _ in range(repeats):
    ours.append(run_steps(c, steps=steps))
    if baseline is not None:
      theirs.append(baseline(steps))
  stats = jax.local_devices()[0].memory_stats() or {}
  return StepTiming(name=name, params=c.params, batch=c.batch, step_s=statistics.median(ours),
                    flops_per_step=c.flops_per_step, compile_s=c.compile_s,
                    peak_memory_bytes=stats.get('peak_bytes_in_use'),
                    baseline_step_s=statistics.median(theirs) if theirs else None)


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
  """Median seconds of ``fn()`` (which must wait for its result) over ``repeats`` calls, after
  two warm-up calls (compilation, first-call allocations)."""
  fn()
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def interleaved(compiled: dict, *, steps: int, repeats: int) -> dict:
  """``{key: [seconds per step, one per round]}``: one repeat of each compiled step in turn.

  The machine's speed drifts by 10 % and more within minutes (other tenants); interleaving the
  variants puts that drift on every one alike, so their medians compare.
  """
  times = {key: [] for key in compiled}
  for _ in range(repeats):
    for key, c in compiled.items():
      times[key].append(run_steps(c, steps=steps))
  return times


def run_steps(c: CompiledStep, *, steps: int, repeats: int = 1) -> float:
  """Runs ``steps`` steps (whole calls), ``repeats`` times; the median seconds per step.

  ``c.state`` and ``c.metrics`` advance with the run (the compiled call donates them), so a
  following run, e.g. under the profiler, continues from where this one ended.
  """
  calls = max(1, steps // c.steps_per_call)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
      c.state, c.metrics = c.call(c.state, c.metrics)
    jax.block_until_ready(c.state)
    times.append((time.perf_counter() - start) / (calls * c.steps_per_call))
  return statistics.median(times)


def add_step_flags(parser, *, steps: int, dtype: str | None = 'float32',
                   batch_size: int | None = None) -> None:
  """The flags every step benchmark shares.

  ``--steps``, ``--repeats``, ``--dtype``, ``--batch_size``, ``--steps_per_call`` (each left
  unset keeps the config's value), the repeatable ``--set FIELD=VALUE`` and ``--attention``.
  :func:`configure` applies them to a config; ``--attention`` goes to :func:`compile_train_step`.
  """
  parser.add_argument('--steps', type=int, default=steps, help='Steps timed per repeat.')
  parser.add_argument('--repeats', type=int, default=3, help='Repeats; the median is reported.')
  parser.add_argument('--dtype', default=dtype, choices=['float32', 'bfloat16'],
                      help='speed.compute_dtype (parameters and optimizer state stay float32).')
  parser.add_argument('--batch_size', type=int, default=batch_size,
                      help='Global batch size (default: the config\'s).')
  parser.add_argument('--steps_per_call', type=int, default=None,
                      help='Optimizer steps per compiled call (lax.scan; default: the config\'s).')
  parser.add_argument('--set', action='append', metavar='FIELD=VALUE',
                      help='Config override, repeatable (e.g. model.scan_unroll=8).')
  parser.add_argument('--attention', default='auto', choices=attention.IMPLEMENTATIONS,
                      help='Attention implementation: auto (by backend), xla, cudnn, head_major.')


def configure(config, args):
  """Applies :func:`add_step_flags`' flags to ``config``; ``--set`` comes last and wins."""
  if args.dtype:
    config.speed.compute_dtype = args.dtype
  if args.batch_size:
    config.loop.batch_size = args.batch_size
  if args.steps_per_call:
    config.speed.steps_per_call = args.steps_per_call
  return apply_overrides(config, args.set)


def apply_overrides(config, items: list[str] | None):
  """Applies ``--set FIELD=VALUE`` overrides (e.g. ``model.scan_unroll=8``) to ``config``.

  Values are Python literals where they parse as one, else strings. An unknown field is an error
  naming it, as in train.py.
  """
  for item in items or []:
    if '=' not in item:
      raise SystemExit(f'--set {item!r}: expected FIELD=VALUE, e.g. model.scan_unroll=8.')
    path, text = item.split('=', 1)
    if configdicts.alias_message(path):  # An earlier version's name: say where it went.
      raise SystemExit(f'--set {item!r}: {configdicts.alias_message(path)}')
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    node = config
    *parents, leaf = path.split('.')
    for name in parents:
      if name not in node:
        raise SystemExit(f'--set {item!r}: config has no field {path!r}.')
      node = node[name]
    if leaf not in node:
      raise SystemExit(f'--set {item!r}: config has no field {path!r}.')
    node[leaf] = value
  return config


def load_config(spec: str):
  """``configs/NAME.py[:variant]`` -> that module's ``get_config(variant)``."""
  path, _, variant = spec.partition(':')
  name = os.path.splitext(os.path.basename(path))[0]
  if os.path.dirname(os.path.normpath(path)) != 'configs' or not os.path.exists(path):
    raise SystemExit(f'--config={spec!r}: expected configs/NAME.py[:variant], an existing file '
                     'of configs/.')
  module = importlib.import_module(f'configs.{name}')
  return module.get_config(variant or None)


def add_sequence_flags(parser) -> None:
  """The shape of :func:`random_sequences`' batches: ``--frames``, ``--features``,
  ``--target_length``."""
  parser.add_argument('--frames', type=int, default=256, help='Input frames per sequence.')
  parser.add_argument('--features', type=int, default=80, help='Features per frame.')
  parser.add_argument('--target_length', type=int, default=32, help='Target tokens per sequence.')


def add_input_flags(parser) -> None:
  """``--input`` (images | tokens | sequences), ``--vocab`` and the sequence shape: the synthetic
  batch of :func:`make_batch`."""
  parser.add_argument('--input', default='images', choices=['images', 'tokens', 'sequences'],
                      help='Synthetic CIFAR-10-shaped images, tokens of --vocab words, or '
                           'frame sequences with token targets (CTC, seq2seq, captioning).')
  parser.add_argument('--vocab', type=int, default=None,
                      help='Vocabulary size (default: 33,278 for tokens, 1,000 for sequences).')
  add_sequence_flags(parser)


def make_batch(args, config) -> tuple[dict, int]:
  """A synthetic batch for ``config`` as :func:`add_input_flags` chose, and the output count."""
  if args.input == 'tokens':
    vocab = args.vocab or 33_278  # WikiText-2's.
    return random_tokens(config.loop.batch_size, config.dataset.sequence_length, vocab), vocab
  if args.input == 'sequences':
    vocab = args.vocab or 1_000
    return random_sequences(config.loop.batch_size, frames=args.frames, features=args.features,
                            target_length=args.target_length, vocab=vocab), vocab
  return random_images(config.loop.batch_size), 10


def select_runs(only: str, names: list[str]) -> set[str]:
  """The run names that ``--only`` (comma-separated; empty = all) picks; exits on unknown names."""
  picked = {x.strip() for x in only.split(',') if x.strip()}
  unknown = sorted(picked - set(names))
  if unknown:
    raise SystemExit(f'--only: unknown run(s) {", ".join(unknown)}; '
                     f'choose from {", ".join(names)}.')
  return picked or set(names)


def print_table(rows: list[dict], columns: list[str]) -> None:
  widths = {c: max(len(c), *(len(str(r.get(c, ''))) for r in rows)) for c in columns}
  print(' | '.join(c.ljust(widths[c]) for c in columns))
  print('-|-'.join('-' * widths[c] for c in columns))
  for r in rows:
    print(' | '.join(str(r.get(c, '')).ljust(widths[c]) for c in columns))


def device_line() -> str:
  d = jax.devices()[0]
  return f'{jax.device_count()} x {d.device_kind} ({d.platform}), jax {jax.__version__}'


def random_images(batch: int, shape=(32, 32, 3), classes: int = 10, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  return {'inputs': rng.normal(size=(batch,) + shape).astype(np.float32),
          'label': rng.integers(0, classes, batch).astype(np.int32),
          'weight': np.ones(batch, np.float32)}


def random_tokens(batch: int, length: int, vocab: int, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, vocab, (batch, length + 1)).astype(np.int32)
  return {'inputs': ids[:, :-1], 'targets': ids[:, 1:], 'weight': np.ones((batch, length), np.float32)}


def random_sequences(batch: int, *, frames: int, features: int, target_length: int, vocab: int,
                     seed: int = 0) -> dict:
  """A synthetic sequence batch: lengths between half and all of ``frames``/``target_length``."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(frames // 2, frames + 1, batch)
  input_mask = (np.arange(frames)[None] < lengths[:, None]).astype(np.float32)
  target_lengths = rng.integers(max(target_length // 2, 1), target_length + 1, batch)
  target_mask = (np.arange(target_length)[None] < target_lengths[:, None]).astype(np.float32)
  targets = rng.integers(3, vocab, (batch, target_length)).astype(np.int32) * target_mask
  inputs = rng.normal(size=(batch, frames, features)).astype(np.float32) * input_mask[..., None]
  return {'inputs': inputs, 'input_mask': input_mask, 'targets': targets.astype(np.int32),
          'target_mask': target_mask, 'weight': np.ones(batch, np.float32)}
