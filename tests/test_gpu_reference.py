"""experiments/gpu_reference.py end to end on a CPU, in its tiny mode.

Which runs fit a budget depends on the machine's speed, so the tests fix what they check: one run
of three stages with a budget nothing can exhaust, and a budget too small for any first estimate.
"""

import json
import pathlib

import pytest

from curvelab import data_parts
from tests import helpers

SCRIPT = 'experiments/gpu_reference.py'


@pytest.fixture(scope='module')
def tiny_grid(early_children):
  """One run of three stages, started with the session (conftest.py's EARLY_CHILDREN)."""
  root, child = early_children['gpu_tiny']
  return root, child.wait(timeout=900)


def test_tiny_mode_runs_each_stage_and_publishes_run_files_and_report(tiny_grid):
  root, done = tiny_grid
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
  results = root / 'results'
  runs = sorted(p.parent for p in results.rglob('summary.json'))
  assert [p.relative_to(results).parts[:2] for p in runs] == [
      ('cnn', 'cnn_resnet'), ('lstm', 'lm1_l1_adam'), ('vit_seed0', 'exp1_l2_adam')]
  for run in runs:
    assert sorted(f.name for f in run.iterdir()) == [
        'RUN.md', 'config.json', 'history.jsonl', 'summary.json']  # No checkpoints.
    note = (run / 'RUN.md').read_text()
    assert 'device: ' in note and 'commit: ' in note and 'command: python train.py' in note
  for name in ('table.md', 'report.html'):
    assert (results / 'report' / name).exists()
  plan = json.loads((results / 'plan.json').read_text())
  assert [r['returncode'] for r in plan['runs']] == [0, 0, 0]


def test_data_parts_are_verified_and_what_does_not_fit_is_listed_not_run(tmp_path):
  source = tmp_path / 'src' / 'cifar10'
  source.mkdir(parents=True)
  (source / 'dataset_info.json').write_text('{"name": "cifar10"}')
  data_parts.split(str(source), str(tmp_path / 'parts'), max_mib=1)
  done = helpers.run_cli(SCRIPT, '--tiny', f'--out={tmp_path / "results"}', '--budget_s=1',
                         f'--data_parts={tmp_path / "parts"}', f'--data_dir={tmp_path / "tfds"}',
                         f'--work_root={tmp_path / "work"}', timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'reassembled and verified' in done.stdout
  assert (tmp_path / 'tfds' / 'cifar10' / 'dataset_info.json').exists()
  listed = (tmp_path / 'results' / 'NOT_RUN.md').read_text()
  assert 'vit_seed0/exp1_l2_adam seed 0' in listed and 'recipe/vit_recipe seed 0' in listed
  assert not list((tmp_path / 'results').rglob('summary.json'))


def test_a_missing_data_part_stops_before_any_training(tmp_path):
  source = tmp_path / 'cifar10'
  source.mkdir()
  (source / 'a.bin').write_bytes(b'x' * 3000)
  manifest = data_parts.split(str(source), str(tmp_path / 'parts'), max_mib=1000 / (1 << 20))
  (tmp_path / 'parts' / manifest['parts'][1]['name']).unlink()
  done = helpers.run_cli(SCRIPT, '--tiny', f'--out={tmp_path / "results"}',
                         f'--data_parts={tmp_path / "parts"}', timeout=120)
  assert done.returncode == 1
  assert helpers.last_line(done.stderr).startswith('error: part 2 of')
  assert not (tmp_path / 'results' / 'plan.json').exists()


def test_bad_options_are_one_line(tmp_path):
  done = helpers.run_cli(SCRIPT, '--tiny', f'--out={tmp_path}', '--stages=vit,gpu', timeout=60)
  assert done.returncode == 2 and 'unknown gpu, vit' in done.stderr
  done = helpers.run_cli(SCRIPT, f'--out={tmp_path}', f'--wikitext_dir={tmp_path}', timeout=60)
  assert done.returncode == 2 and 'lacks wiki.train.npz' in done.stderr
  assert not pathlib.Path(tmp_path, 'plan.json').exists()
