"""The execution plan: each speed choice resolved for CPU, GPU and TPU, with and without BatchNorm.

No devices of those kinds are needed: ``plan.resolve`` takes the backend and the device count.
"""

import pytest

from configs import cnn as cnn_configs
from configs import lstm_lm as lstm_configs
from configs import vit_prenorm
from curvelab import build as build_lib
from curvelab import plan as plan_lib
from models import attention


def _vit():
  return vit_prenorm.get_config('layers=2')


def test_a_vit_on_a_cpu_splits_its_batch_and_uses_the_cpu_kernels():
  config = _vit()
  p = plan_lib.resolve(config, has_model_state=False, backend='cpu', device_count=1)
  assert p.concurrent_microbatches == 2  # Two independent half-batch passes, one per core.
  # 128 images, 2 side by side: 64 per group, split into cache-sized micro-batches of 4.
  assert p.sequential_microbatches == config.loop.batch_size // 2 // config.speed.cpu_microbatch_size == 16
  assert (p.attention, p.conv, p.rnn_unroll, p.norm_reduction) == (
      'head_major', 'im2col_grad', 1, 'per_leaf')


@pytest.mark.parametrize('backend, norms', [('gpu', 'concatenated'), ('tpu', 'per_leaf')])
def test_accelerators_run_whole_batches_and_xla_kernels(backend, norms):
  config = _vit()
  p = plan_lib.resolve(config, has_model_state=False, backend=backend, device_count=8)
  assert p.microbatches == (config.speed.grad_accum_steps, 1)
  assert (p.attention, p.conv, p.norm_reduction) == ('xla', 'xla', norms)
  assert p.rnn_unroll == 16


def test_batchnorm_models_never_split_a_batch_even_on_a_cpu():
  config = cnn_configs.get_config('arch=fast')
  config.speed.cpu_microbatch_size = 8
  p = plan_lib.resolve(config, has_model_state=True, backend='cpu', device_count=1)
  assert p.microbatches == (1, 1)  # Smaller batches would change BatchNorm's statistics.
  assert p.conv == 'im2col_grad'


def test_configured_choices_are_kept_and_the_plan_is_one_line_and_json():
  config = lstm_configs.get_config()
  config.model.scan_unroll = 8
  config.speed.concurrent_microbatches = 1
  p = plan_lib.resolve(config, has_model_state=False, backend='gpu', device_count=1)
  assert (p.rnn_unroll, p.concurrent_microbatches) == (8, 1)
  line = p.line()
  assert '\n' not in line and 'rnn unroll 8' in line and 'attention xla' in line
  assert set(p.to_json()) == {
      'backend', 'sequential_microbatches', 'concurrent_microbatches', 'steps_per_call',
      'input_mode', 'attention', 'conv', 'rnn_unroll', 'norm_reduction'}


def test_a_forced_attention_is_kept_on_any_backend_and_unknown_names_are_refused():
  config = _vit()
  for forced, backend in (('xla', 'cpu'), ('head_major', 'gpu'), ('cudnn', 'gpu')):
    p = plan_lib.resolve(config, has_model_state=False, backend=backend, device_count=1,
                         attention=forced)
    assert p.attention == plan_lib.resolve_attention(forced, backend) == forced
  with pytest.raises(ValueError, match="attention implementation 'flash': choose from auto, xla, "
                                       "cudnn, head_major"):
    plan_lib.resolve_attention('flash')


@pytest.mark.parametrize('forced', ['auto', 'xla', 'head_major'])
def test_the_model_is_built_with_the_attention_the_plan_reports(forced):
  """The build resolves the attention once, hands its kernel to the model and the plan reports it."""
  config = build_lib.prepare_config(_vit())
  setup = build_lib.build_without_data(config, num_outputs=10, attention=forced)
  expected = attention.choose(forced)  # 'auto': the default backend's choice.
  assert setup.attention == expected
  assert setup.model.attention_fn is attention.kernel(expected)
  p = plan_lib.resolve(config, has_model_state=False, attention=setup.attention)
  assert p.attention == expected and p.to_json()['attention'] == expected
