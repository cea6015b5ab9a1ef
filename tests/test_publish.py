"""sweeps.publish: a sweep's finished runs into results/, run files only, each naming its code."""

import json

import pytest

from sweeps import publish
from sweeps import runner


def _sweep(tmp_path, commit):
  workdir = tmp_path / 'root' / 'exp1' / 'seed_0'
  (workdir / 'checkpoints' / '8').mkdir(parents=True)
  (workdir / 'config.json').write_text('{"seed": 0}')
  (workdir / 'history.jsonl').write_text('{"epoch": 1, "val_accuracy": 0.5}\n')
  (workdir / 'summary.json').write_text(json.dumps({'device_kind': 'NVIDIA H200',
                                                     'device_count': 1, 'status': 'finished'}))
  runs = {'exp1/seed_0': {'name': 'exp1', 'seed': 0, 'workdir': str(workdir), 'state': 'finished',
                          'commit': commit, 'ended': '2026-12-03T12:00:00',
                          'command': ['/x/python', f'{publish.__file__.rsplit("/sweeps", 1)[0]}'
                                      '/train.py', '--config=configs/vit_prenorm.py:layers=2']},
          'exp2/seed_0': {'name': 'exp2', 'seed': 0, 'workdir': str(tmp_path / 'nope'),
                          'state': 'failed'}}
  (tmp_path / 'root' / runner.STATUS_FILE).write_text(json.dumps({'runs': runs}))
  return tmp_path / 'root'


def test_finished_runs_are_copied_without_checkpoints_with_what_made_them(tmp_path):
  root = _sweep(tmp_path, 'abc123')
  (folder,) = publish.publish(str(root), str(tmp_path / 'results'))
  assert sorted(p.name for p in folder.iterdir()) == [
      'RUN.md', 'config.json', 'history.jsonl', 'summary.json']
  note = (folder / 'RUN.md').read_text()
  assert 'device: 1 x NVIDIA H200' in note and 'commit: abc123' in note
  assert 'command: python train.py --config=configs/vit_prenorm.py:layers=2' in note
  assert 'date: 2026-12-03T12:00:00' in note


def test_runs_of_modified_code_are_refused(tmp_path):
  root = _sweep(tmp_path, 'abc123+modified')
  with pytest.raises(ValueError, match='uncommitted changes'):
    publish.publish(str(root), str(tmp_path / 'results'))
  assert publish.publish(str(root), str(tmp_path / 'results'), allow_modified=True)


def test_sweep_records_the_code_version(tmp_path):
  assert runner.code_version(tmp_path) == 'unknown'  # Not a git checkout.
  assert runner.code_version(publish.__file__.rsplit('/sweeps', 1)[0])[:7].isalnum()
