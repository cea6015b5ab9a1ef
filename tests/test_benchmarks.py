"""The benchmark scripts' config overrides (the timings themselves are never asserted)."""

import pytest

from benchmarks import common
from configs import lstm_lm


def test_set_overrides_parse_literals_and_strings():
  config = lstm_lm.get_config('layers=1')
  common.apply_overrides(config, ['model.scan_unroll=8', 'compute_dtype=bfloat16',
                                  'learning_rate=0.5'])
  assert config.model.scan_unroll == 8
  assert config.compute_dtype == 'bfloat16'
  assert config.learning_rate == 0.5


@pytest.mark.parametrize('item', ['model.no_such_field=1', 'no_such_group.x=1', 'model.scan_unroll'])
def test_set_overrides_reject_unknown_fields_and_bad_syntax(item):
  with pytest.raises(SystemExit, match='--set'):
    common.apply_overrides(lstm_lm.get_config('layers=1'), [item])
