"""The execution plan: each speed choice resolved for CPU, GPU and TPU, with and without BatchNorm.

No devices of those kinds are needed: ``plan.resolve`` takes the backend and the device count.
"""

import pytest

from configs import cnn as cnn_configs
from configs import lstm_lm as lstm_configs
from configs import vit_prenorm
from curvelab import plan as plan_lib


def _vit():
  return vit_prenorm.get_config('layers=2')


def test_a_vit_on_a_cpu_splits_its_batch_and_uses_the_cpu_kernels():
  config = _vit()
  p = plan_lib.resolve(config, has_model_state=False, backend='cpu', device_count=1)
  assert p.concurrent_microbatches == 2  # Two independent half-batch passes, one per core.
  # 128 images, 2 side by side: 64 per group, split into cache-sized micro-batches of 4.
  assert p.sequential_microbatches == config.batch_size // 2 // config.cpu_microbatch_size == 16
  assert (p.attention, p.conv, p.rnn_unroll, p.norm_reduction) == (
      'head_major', 'im2col_grad', 1, 'per_leaf')


@pytest.mark.parametrize('backend, norms', [('gpu', 'concatenated'), ('tpu', 'per_leaf')])
def test_accelerators_run_whole_batches_and_xla_kernels(backend, norms):
  config = _vit()
  p = plan_lib.resolve(config, has_model_state=False, backend=backend, device_count=8)
  assert p.microbatches == (config.grad_accum_steps, 1)
  assert (p.attention, p.conv, p.norm_reduction) == ('xla', 'xla', norms)
  assert p.rnn_unroll == 16


def test_batchnorm_models_never_split_a_batch_even_on_a_cpu():
  config = cnn_configs.get_config('arch=fast')
  config.cpu_microbatch_size = 8
  p = plan_lib.resolve(config, has_model_state=True, backend='cpu', device_count=1)
  assert p.microbatches == (1, 1)  # Smaller batches would change BatchNorm's statistics.
  assert p.conv == 'im2col_grad'


def test_configured_choices_are_kept_and_the_plan_is_one_line_and_json():
  config = lstm_configs.get_config()
  config.model.scan_unroll = 8
  config.concurrent_microbatches = 1
  p = plan_lib.resolve(config, has_model_state=False, backend='gpu', device_count=1)
  assert (p.rnn_unroll, p.concurrent_microbatches) == (8, 1)
  line = p.line()
  assert '\n' not in line and 'rnn unroll 8' in line and 'attention xla' in line
  assert set(p.to_json()) == {
      'backend', 'sequential_microbatches', 'concurrent_microbatches', 'steps_per_call',
      'input_mode', 'attention', 'conv', 'rnn_unroll', 'norm_reduction'}
