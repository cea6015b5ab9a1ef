"""The benchmark scripts' config overrides (the timings themselves are never asserted)."""

import pytest

import helpers
from benchmarks import common
from configs import lstm_lm


def test_set_overrides_parse_literals_and_strings():
  config = lstm_lm.get_config('layers=1')
  common.apply_overrides(config, ['model.scan_unroll=8', 'speed.compute_dtype=bfloat16',
                                  'optimizer.learning_rate=0.5'])
  assert config.model.scan_unroll == 8
  assert config.speed.compute_dtype == 'bfloat16'
  assert config.optimizer.learning_rate == 0.5


def test_set_override_with_an_earlier_versions_name_says_where_it_went():
  with pytest.raises(SystemExit, match="is now 'optimizer.learning_rate'"):
    common.apply_overrides(lstm_lm.get_config('layers=1'), ['learning_rate=0.5'])


@pytest.mark.parametrize('item', ['model.no_such_field=1', 'no_such_group.x=1', 'model.scan_unroll'])
def test_set_overrides_reject_unknown_fields_and_bad_syntax(item):
  with pytest.raises(SystemExit, match='--set'):
    common.apply_overrides(lstm_lm.get_config('layers=1'), [item])


def test_shared_step_flags_configure_a_config_and_set_wins():
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser()
  common.add_step_flags(parser, steps=7, dtype=None)
  args = parser.parse_args([])
  assert (args.steps, args.repeats, args.dtype, args.batch_size, args.steps_per_call) == (
      7, 3, None, None, None)
  config = lstm_lm.get_config('layers=1')
  config.speed.steps_per_call = 4
  kept = (config.speed.compute_dtype, config.loop.batch_size, config.speed.steps_per_call)
  common.configure(config, args)
  assert (config.speed.compute_dtype, config.loop.batch_size, config.speed.steps_per_call) == kept
  args = parser.parse_args(['--dtype=bfloat16', '--batch_size=4', '--steps_per_call=2',
                            '--set=loop.batch_size=8', '--set=model.scan_unroll=4',
                            '--attention=head_major'])
  assert args.attention == 'head_major'
  assert parser.parse_args([]).attention == 'auto'
  with pytest.raises(SystemExit):
    parser.parse_args(['--attention=flash'])
  common.configure(config, args)
  assert (config.speed.compute_dtype, config.loop.batch_size, config.speed.steps_per_call,
          config.model.scan_unroll) == ('bfloat16', 8, 2, 4)


def test_only_selects_named_runs_and_refuses_unknown_ones():
  names = ['1', '7', 'lm1']
  assert common.select_runs('', names) == set(names)
  assert common.select_runs('7, lm1', names) == {'7', 'lm1'}
  with pytest.raises(SystemExit, match=r'unknown run\(s\) 8, s2s; choose from 1, 7, lm1'):
    common.select_runs('7,8,s2s', names)


# --- benchmarks/profile_step.py: the trace analysis (synthetic traces; no profiler needed) ---

from benchmarks import profile_step  # pylint: disable=g-import-not-at-top,wrong-import-position


def _meta(pid, name, tid=None):
  if tid is None:
    return {'ph': 'M', 'pid': pid, 'name': 'process_name', 'args': {'name': name}}
  return {'ph': 'M', 'pid': pid, 'tid': tid, 'name': 'thread_name', 'args': {'name': name}}


def _x(pid, tid, name, ts, dur, **args):
  return {'ph': 'X', 'pid': pid, 'tid': tid, 'name': name, 'ts': ts, 'dur': dur, 'args': args}


def _gpu_trace():
  return {'traceEvents': [
      _meta(1, '/host:CPU'), _meta(1, 'python', tid=10),
      _meta(2, '/device:GPU:0'), _meta(2, 'Stream #13(Compute)', tid=20),
      _meta(2, 'Stream #14(MemcpyD2D)', tid=21), _meta(2, 'XLA Modules', tid=22),
      _x(1, 10, 'PjitFunction(train_step)', 0, 50),  # Host: not a kernel.
      _x(2, 22, 'jit_train_step', 0, 100),  # A derived line: would double count.
      _x(2, 20, 'sm90_xmma_gemm_f32f32_tf32', 0, 10, hlo_op='command_buffer_3'),
      _x(2, 20, 'loop_add_fusion_2', 10, 4, hlo_op='command_buffer_3'),
      _x(2, 20, 'sm90_xmma_gemm_f32f32_tf32', 20, 10, hlo_op='command_buffer_3'),
      _x(2, 21, 'wrapped_transpose_1', 25, 10, hlo_op='wrapped_transpose.1'),  # Overlaps.
  ]}


def test_device_events_take_stream_kernels_only_and_name_them_by_kernel():
  ops, kernels, source = profile_step.device_events(_gpu_trace())
  assert source == 'device' and ops == []
  assert [k.name for k in kernels] == ['sm90_xmma_gemm_f32f32_tf32', 'loop_add_fusion_2',
                                       'sm90_xmma_gemm_f32f32_tf32', 'wrapped_transpose_1']
  # Inside a CUDA graph the op is only the graph's name, which says nothing: dropped.
  assert [k.op for k in kernels] == ['', '', '', 'wrapped_transpose.1']


def test_busy_time_counts_overlapping_streams_once():
  _, kernels, _ = profile_step.device_events(_gpu_trace())
  assert sum(k.dur for k in kernels) == 34
  # [0, 10) + [10, 14) + [20, 35): the transpose's [25, 35) overlaps the GEMM's [20, 30).
  assert profile_step.busy_time(kernels) == 29


def test_summaries_group_by_kernel_and_kind_per_step():
  _, kernels, _ = profile_step.device_events(_gpu_trace())
  rows = profile_step.summarize(kernels, steps=2, top=10)
  assert rows[0]['name'] == 'sm90_xmma_gemm_f32f32_tf32'
  assert (rows[0]['calls/step'], rows[0]['us/step'], rows[0]['us/call']) == ('1', '10.0', '10.0')
  kinds = {r['kind']: r for r in profile_step.by_kind(kernels, steps=2)}
  assert set(kinds) == {'matmul', 'fusion', 'copy'}
  assert kinds['matmul']['share'] == f'{100 * 20 / 34:.1f}%'


def test_cpu_traces_fall_back_to_the_runtime_thunks():
  trace = {'traceEvents': [
      _meta(1, '/host:CPU'), _meta(1, 'tf_XLAEigen/1', tid=5), _meta(1, 'python', tid=6),
      _x(1, 5, 'ynn_fusion.3', 0, 30), _x(1, 5, 'ThreadpoolListener::StartRegion', 0, 1),
      _x(1, 5, 'loop_fusion.1', 30, 5), _x(1, 6, 'PjitFunction(f)', 0, 40),
  ]}
  ops, kernels, source = profile_step.device_events(trace)
  assert source == 'cpu-thunks' and ops == []
  assert [k.name for k in kernels] == ['ynn_fusion.3', 'loop_fusion.1']
  assert profile_step.kind_of('ynn_fusion.3') == 'matmul'


@pytest.mark.parametrize('name,kind', [
    ('void cutlass::Kernel2<cutlass_80_tensorop_s1688gemm_128x128>', 'matmul'),
    ('gemm_fusion_dot_187', 'matmul'), ('triton_softmax_11', 'fusion'),
    ('input_add_reduce_fusion_47', 'fusion'), ('input_transpose_fusion_12', 'copy'),
    ('memcpy32_post', 'copy'), ('wrapped_slice_1', 'other'),
    ('loop_convert_fusion_18', 'fusion'), ('convert.12', 'other'),
    ('void convolve_common_engine_float_NHWC<float>', 'matmul'),
    ('cudnn-conv-bias-activation.3', 'matmul'), ('wgrad_alg0_engine conv_kernel', 'matmul')])
def test_kernel_kinds(name, kind):
  assert profile_step.kind_of(name) == kind


def test_load_config_accepts_variants_and_refuses_other_paths(tmp_path):
  config = common.load_config('configs/vit_postnorm.py:layers=6,optimizer=adamw')
  assert config.model.num_layers == 6 and config.model.block == 'postnorm'
  with pytest.raises(SystemExit, match='configs/NAME.py'):
    common.load_config(str(tmp_path / 'x.py'))
  with pytest.raises(SystemExit, match='configs/NAME.py'):
    common.load_config('configs/no_such_config.py')


def test_load_trace_names_the_folder_when_there_is_no_trace(tmp_path):
  with pytest.raises(SystemExit, match=str(tmp_path)):
    profile_step.load_trace(str(tmp_path))


# --- benchmarks/microbatch_sweep.py ---

from benchmarks import microbatch_sweep  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_sweep_sizes_parse_and_refuse_bad_values():
  assert microbatch_sweep.parse_sizes('0, 8,4') == [0, 8, 4]
  for text in ('', '8,-2', '4,x', '2.5'):
    with pytest.raises(SystemExit, match='--sizes'):
      microbatch_sweep.parse_sizes(text)


def test_sweep_runs_and_prints_each_size_with_its_microbatches():
  """The script end to end on the tiny ViT: one row per size, the split as train.py resolves it."""
  proc = helpers.run_cli('benchmarks/microbatch_sweep.py',
                         '--config=configs/vit_prenorm.py:tiny=True', '--sizes=0,2',
                         '--batch_size=8', '--steps=1', '--repeats=1')
  assert proc.returncode == 0, proc.stderr[-2000:]
  rows = {line.split('|')[0].strip(): line for line in proc.stdout.splitlines() if '|' in line}
  # 8 images, two side by side on a CPU; size 2 adds two sequential groups of them.
  assert '1 x 2 of 4' in rows['0'] and '2 x 2 of 2' in rows['2']
