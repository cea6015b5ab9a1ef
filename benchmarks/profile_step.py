r"""Where the time of one training step goes: a device profile of train.py's compiled step.

Usage:
  python benchmarks/profile_step.py --config=configs/vit_postnorm.py:layers=6,optimizer=adamw
  python benchmarks/profile_step.py --config=configs/lstm_lm.py:layers=1 --input=tokens \
      --set=model.scan_unroll=8 --dtype=bfloat16 --top=40

Compiles exactly the step that train.py runs (benchmarks/common.py), warms it up, times it, then
records ``--steps`` more steps under ``jax.profiler`` and prints:
  * wall time per step, the device's busy time per step (the union of its kernel intervals) and
    the sum of kernel times, and kernels launched per step: a step whose busy time is far below
    its wall time waits on the host or on launches, one whose kernel count is high pays per-kernel
    overhead;
  * the kernels that take the most time per step (XLA's fusions by their names, library GEMMs and
    convolutions), with calls per step, time per call and share, and the same time grouped into
    matmul / fusion / copy / other; where the trace has an ``XLA Ops`` line, the operations too.
The trace itself stays in ``--trace_dir`` for TensorBoard's or Perfetto's viewer. On a CPU, where
the trace has no device lines, the XLA runtime's thunks on its worker threads are summarised.
"""

import argparse
import collections
import dataclasses
import glob
import gzip
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # pylint: disable=g-import-not-at-top,wrong-import-position

# Host-side bookkeeping events of the CPU runtime: not work, and they nest around the real thunks.
_CPU_NOISE = ('ThreadpoolListener', 'ThunkExecutor', 'end: ', 'TfrtCpu', 'PjRt', 'Await')


@dataclasses.dataclass
class Event:
  name: str  # Kernel (GPU), thunk (CPU) or operation name.
  start: float  # Microseconds.
  dur: float  # Microseconds.
  op: str = ''  # The HLO operation that launched a kernel, where the trace says.


def kind_of(name: str) -> str:
  """Coarse class of an op or kernel name: matmul, fusion, copy, or other.

  XLA:CPU hands dots (with any fused elementwise work) to YNNPACK/XNNPACK/oneDNN: those count as
  matmuls.
  """
  low = name.lower()
  # 'convolution'/'convolve'/'conv_', never 'conv' alone: XLA's convert fusions are elementwise.
  if any(k in low for k in ('gemm', 'cublas', 'cutlass', 'xmma', 'dot', 'convolution', 'convolve',
                            'conv_', 'conv-', 'matmul', 'sm90_', 'sm80_', 'cudnn', 'flash',
                            'ynn_', 'xnn_', 'onednn')):
    return 'matmul'
  if any(k in low for k in ('copy', 'memcpy', 'memset', 'transpose')):
    return 'copy'
  if 'fusion' in low or 'reduce' in low or 'triton' in low:
    return 'fusion'
  return 'other'


def load_trace(trace_dir: str) -> dict:
  paths = sorted(glob.glob(os.path.join(trace_dir, '**', 'perfetto_trace.json.gz'),
                           recursive=True))
  if not paths:
    raise SystemExit(f'no perfetto_trace.json.gz under {trace_dir}: was the profiler able to run?')
  with gzip.open(paths[-1]) as f:
    data = json.load(f)
  return data if isinstance(data, dict) else {'traceEvents': data}


def device_events(trace: dict) -> tuple[list[Event], list[Event], str]:
  """Returns (operation events, kernel events, what they are) from a perfetto trace.

  GPU traces have a ``/device:...`` process whose ``Stream`` lines hold the kernels and whose
  ``XLA Ops`` line holds the HLO operations that launched them. CPU traces have neither; the
  runtime's thunks on its ``tf_XLA`` worker threads stand in for both.
  """
  processes, threads = {}, {}
  for e in trace['traceEvents']:
    if e.get('ph') == 'M' and e.get('name') == 'process_name':
      processes[e['pid']] = e['args']['name']
    elif e.get('ph') == 'M' and e.get('name') == 'thread_name':
      threads[(e['pid'], e['tid'])] = e['args']['name']
  ops, kernels, host = [], [], []
  for e in trace['traceEvents']:
    if e.get('ph') != 'X':
      continue
    process = processes.get(e['pid'], '')
    thread = threads.get((e['pid'], e.get('tid')), '')
    args = e.get('args') or {}
    if process.startswith('/device:'):
      if thread.startswith('Stream'):
        # Grouped by kernel: inside a CUDA graph (XLA's command buffers) ``hlo_op`` names only the
        # graph, and the kernel name is the fusion's (loop_add_fusion_3) or the library's.
        op = args.get('hlo_op', '')
        kernels.append(Event(e['name'], e['ts'], e['dur'],
                             '' if op.startswith('command_buffer') else op))
      elif thread == 'XLA Ops':
        ops.append(Event(e['name'], e['ts'], e['dur']))
    elif thread.startswith('tf_XLA') and not e['name'].startswith(_CPU_NOISE):
      host.append(Event(e['name'], e['ts'], e['dur']))
  if kernels:
    return ops, kernels, 'device'
  return [], host, 'cpu-thunks'


def busy_time(events: list[Event]) -> float:
  """Length of the union of the events' intervals (overlapping streams counted once)."""
  total, end = 0.0, float('-inf')
  for e in sorted(events, key=lambda e: e.start):
    if e.start >= end:
      total += e.dur
      end = e.start + e.dur
    elif e.start + e.dur > end:
      total += e.start + e.dur - end
      end = e.start + e.dur
  return total


def summarize(events: list[Event], steps: int, top: int) -> list[dict]:
  by_name = collections.defaultdict(lambda: [0, 0.0, ''])
  for e in events:
    row = by_name[e.name]
    row[0] += 1
    row[1] += e.dur
    row[2] = row[2] or e.op
  total = sum(r[1] for r in by_name.values()) or 1.0
  rows = sorted(by_name.items(), key=lambda kv: -kv[1][1])
  return [{'name': name[:70], 'kind': kind_of(f'{name} {op}'), 'calls/step': f'{n / steps:g}',
           'us/step': f'{dur / steps:,.1f}', 'us/call': f'{dur / max(n, 1):,.1f}',
           'share': f'{100 * dur / total:.1f}%', 'hlo op': op[:40] if op != name else ''}
          for name, (n, dur, op) in rows[:top]]


def by_kind(events: list[Event], steps: int) -> list[dict]:
  sums = collections.defaultdict(lambda: [0, 0.0])
  for e in events:
    k = kind_of(f'{e.name} {e.op}')
    sums[k][0] += 1
    sums[k][1] += e.dur
  total = sum(v[1] for v in sums.values()) or 1.0
  return [{'kind': k, 'calls/step': f'{n / steps:g}', 'us/step': f'{d / steps:,.1f}',
           'share': f'{100 * d / total:.1f}%'} for k, (n, d) in sorted(sums.items(),
                                                                       key=lambda kv: -kv[1][1])]


COLUMNS = ['name', 'kind', 'calls/step', 'us/step', 'us/call', 'share', 'hlo op']


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', required=True, help='configs/NAME.py[:variant]')
  common.add_input_flags(parser)
  parser.add_argument('--top', type=int, default=30)
  parser.add_argument('--trace_dir', default='/tmp/curvelab-profile')
  parser.add_argument('--json', default='', help='Also write the summary to this file.')
  common.add_step_flags(parser, steps=10, dtype=None)
  args = parser.parse_args()
  import jax  # pylint: disable=g-import-not-at-top

  config = common.load_config(args.config)
  common.configure(config, args)
  batch, num_outputs = common.make_batch(args, config)
  c = common.compile_train_step(config, batch, num_outputs=num_outputs,
                               attention_impl=args.attention)
  k = c.steps_per_call
  wall_us = common.run_steps(c, steps=args.steps, repeats=args.repeats) * 1e6

  jax.profiler.start_trace(args.trace_dir, create_perfetto_trace=True)
  common.run_steps(c, steps=args.steps)
  jax.profiler.stop_trace()
  steps = max(1, args.steps // k) * k
  ops, kernels, source = device_events(load_trace(args.trace_dir))
  print(f'{args.config} {" ".join(args.set or [])} batch {c.batch}, steps_per_call {k}, on '
        f'{common.device_line()}')
  summary = {
      'wall_us_per_step': wall_us, 'examples_per_s': c.batch / wall_us * 1e6,
      'busy_us_per_step': busy_time(kernels) / steps,
      'kernel_sum_us_per_step': sum(e.dur for e in kernels) / steps,
      'kernels_per_step': len(kernels) / steps, 'source': source,
      'tflops': c.flops_per_step / wall_us / 1e6,
  }
  print(f"wall {wall_us:,.0f} us/step ({summary['examples_per_s']:,.0f} examples/s, "
        f"{summary['tflops']:.1f} TFLOP/s); device busy {summary['busy_us_per_step']:,.0f} us/step "
        f"({100 * summary['busy_us_per_step'] / wall_us:.0f}% of wall), kernel sum "
        f"{summary['kernel_sum_us_per_step']:,.0f} us/step, {summary['kernels_per_step']:g} "
        f"{'kernels' if source == 'device' else 'thunks'}/step")
  print('\nby kind')
  common.print_table(by_kind(kernels, steps), ['kind', 'calls/step', 'us/step', 'share'])
  top = summarize(kernels, steps, args.top)
  print(f"\ntop {args.top} {'kernels' if source == 'device' else 'XLA:CPU thunks'}")
  common.print_table(top, COLUMNS)
  if ops:
    print(f'\ntop {args.top} XLA ops')
    common.print_table(summarize(ops, steps, args.top), COLUMNS)
  if args.json:
    summary['top'] = top
    with open(args.json, 'w') as f:
      json.dump(summary, f, indent=1)


if __name__ == '__main__':
  main()
