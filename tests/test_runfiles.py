"""curvelab/runfiles.py: the run files' writers and readers, their one torn-line policy, the one
config flatten, and that all of it imports without JAX. No model, no JAX: quick."""

import json
import math
import pathlib
import subprocess
import sys
import textwrap

import pytest

from curvelab import configdicts
from curvelab import errors
from curvelab import runfiles

REPO = pathlib.Path(__file__).resolve().parent.parent
ROWS = [{'epoch': 1, 'train_loss': 2.0}, {'epoch': 2, 'train_loss': 1.5}]
TORN = '{"epoch": 3, "train_lo'  # What a process killed in the middle of an append leaves.


@pytest.fixture(autouse=True)
def writer(monkeypatch):
  # is_writer asks JAX for the process index; these tests stay JAX-free, as process 0.
  monkeypatch.setattr(runfiles, 'is_writer', lambda: True)


def _history_text(*lines: str) -> str:
  return ''.join(line + '\n' for line in lines)


# --- writers and readers -------------------------------------------------------------------------


def test_write_then_append_then_read_round_trip(tmp_path):
  runfiles.write_history(tmp_path, ROWS)
  runfiles.append_history(tmp_path, {'epoch': 3, 'train_loss': 1.0})
  expected = ROWS + [{'epoch': 3, 'train_loss': 1.0}]
  assert runfiles.read_history(tmp_path) == expected
  history = runfiles.load_history(tmp_path)
  assert history.rows == expected and not history.torn and history.note is None


def test_write_history_replaces_the_whole_file(tmp_path):
  runfiles.write_history(tmp_path, ROWS)
  runfiles.write_history(tmp_path, ROWS[:1])
  assert runfiles.read_history(tmp_path) == ROWS[:1]
  assert not (tmp_path / (runfiles.HISTORY + '.tmp')).exists()


def test_no_history_yet_reads_as_no_rows(tmp_path):
  assert runfiles.read_history(tmp_path) == []
  with pytest.raises(runfiles.HistoryError, match='cannot be read'):
    runfiles.load_history(tmp_path)


def test_non_finite_values_are_written_as_null(tmp_path):
  row = {'epoch': 1, 'train_loss': float('nan'), 'grad_norm': float('inf'),
         'layer_grad_norms': {'a': float('-inf'), 'b': 1.0}, 'hist': (0.5, float('nan'))}
  runfiles.append_history(tmp_path, row)
  line = (tmp_path / runfiles.HISTORY).read_text()
  assert 'NaN' not in line and 'Infinity' not in line
  assert runfiles.read_history(tmp_path) == [
      {'epoch': 1, 'train_loss': None, 'grad_norm': None,
       'layer_grad_norms': {'a': None, 'b': 1.0}, 'hist': [0.5, None]}]
  runfiles.write_json(tmp_path / runfiles.SUMMARY, {'best_val_loss': math.nan, 'epochs': 2})
  text = (tmp_path / runfiles.SUMMARY).read_text()
  assert json.loads(text) == {'best_val_loss': None, 'epochs': 2} and 'NaN' not in text


def test_write_json_then_read_json_object(tmp_path):
  config = {'seed': 0, 'model': {'name': 'vit', 'patch': (4, 4)}}
  runfiles.write_json(tmp_path / runfiles.CONFIG, config)
  assert runfiles.read_json_object(tmp_path / runfiles.CONFIG) == {
      'seed': 0, 'model': {'name': 'vit', 'patch': [4, 4]}}
  assert runfiles.read_json_object(tmp_path / runfiles.SUMMARY) is None  # Absent.


@pytest.mark.parametrize('text, problem', [
    ('{"seed": ', 'is not valid JSON'),
    ('[1, 2]', 'holds a JSON list, not an object'),
])
def test_a_broken_json_object_file_names_itself(tmp_path, text, problem):
  path = tmp_path / runfiles.CONFIG
  path.write_text(text)
  with pytest.raises(runfiles.RunFileError, match=problem) as raised:
    runfiles.read_json_object(path)
  assert raised.value.path == path and str(raised.value).startswith(str(path))


def test_nothing_is_written_by_other_processes(tmp_path, monkeypatch):
  monkeypatch.setattr(runfiles, 'is_writer', lambda: False)
  runfiles.write_history(tmp_path, ROWS)
  runfiles.append_history(tmp_path, ROWS[0])
  runfiles.write_json(tmp_path / runfiles.SUMMARY, {})
  assert not list(tmp_path.iterdir())


# --- the torn-line policy ------------------------------------------------------------------------


def test_a_torn_last_line_is_dropped_and_reported(tmp_path):
  (tmp_path / runfiles.HISTORY).write_text(_history_text(*map(json.dumps, ROWS)) + TORN)
  history = runfiles.load_history(tmp_path)
  assert history.rows == ROWS and history.torn and history.torn_line == 3
  assert 'line 3' in history.note and 'incomplete' in history.note and 'dropped' in history.note
  assert runfiles.read_history(tmp_path) == ROWS  # Resume: the same rows, no error.


def test_blank_lines_are_skipped_and_do_not_hide_a_torn_line(tmp_path):
  text = _history_text(json.dumps(ROWS[0]), '', '  ', json.dumps(ROWS[1])) + TORN + '\n\n'
  history = runfiles.parse_history(text)
  assert history.rows == ROWS and history.torn_line == 5


def test_a_torn_only_line_leaves_no_rows(tmp_path):
  history = runfiles.parse_history(TORN)
  assert history.rows == [] and history.torn_line == 1


@pytest.mark.parametrize('lines, line, problem', [
    ([json.dumps(ROWS[0]), TORN, json.dumps(ROWS[1])], 2, 'not valid JSON'),
    ([json.dumps(ROWS[0]), '[1, 2]', json.dumps(ROWS[1])], 2, 'a JSON list, not an object'),
    ([json.dumps(ROWS[0]), '7'], 2, 'a JSON int, not an object'),  # Valid JSON is never torn.
])
def test_a_malformed_line_that_is_not_a_torn_last_line_raises(tmp_path, lines, line, problem):
  (tmp_path / runfiles.HISTORY).write_text(_history_text(*lines))
  with pytest.raises(runfiles.HistoryError, match=problem) as raised:
    runfiles.read_history(tmp_path)
  error = raised.value
  assert error.line == line and f'line {line} ' in str(error)
  assert str(error).startswith(str(tmp_path / runfiles.HISTORY))
  # train.py prints CurvelabErrors as one line; other tools can catch it as a ValueError.
  assert isinstance(error, errors.CurvelabError) and isinstance(error, ValueError)


def test_rows_need_not_have_an_epoch_for_runfiles():
  assert runfiles.parse_history('{"loss": 1.0}\n').rows == [{'loss': 1.0}]


def test_training_the_report_and_the_doctor_apply_the_same_rule(tmp_path):
  """A torn last line: every reader drops it and the report and doctor say so; a broken middle
  line: every reader refuses the history, naming the line."""
  from diagnostics import readers  # pylint: disable=g-import-not-at-top
  from reporting import runs  # pylint: disable=g-import-not-at-top
  torn = tmp_path / 'torn'
  torn.mkdir()
  (torn / runfiles.HISTORY).write_text(_history_text(*map(json.dumps, ROWS)) + TORN)
  location = runs.RunLocation(torn, 'runs', 'torn')
  report_run = runs.load_run(location)
  (doctor_run,) = readers.load(str(torn))
  assert runfiles.read_history(torn) == report_run.history == ROWS
  assert [r['epoch'] for r in doctor_run.rows] == [1, 2]
  note = runfiles.load_history(torn).note
  assert report_run.notes == [note] and doctor_run.notes[0] == note

  damaged = tmp_path / 'damaged'
  damaged.mkdir()
  (damaged / runfiles.HISTORY).write_text(_history_text(json.dumps(ROWS[0]), TORN,
                                                        json.dumps(ROWS[1])))
  with pytest.raises(runfiles.HistoryError, match='line 2 '):
    runfiles.read_history(damaged)
  with pytest.raises(runs.RunLoadError, match='line 2 is not valid JSON'):
    runs.load_run(runs.RunLocation(damaged, 'runs', 'damaged'))
  with pytest.raises(readers.ReadError, match='line 2 is not valid JSON'):
    readers.load(str(damaged))


# --- names ---------------------------------------------------------------------------------------


def test_the_other_tools_use_runfiles_names():
  from diagnostics import readers  # pylint: disable=g-import-not-at-top
  from reporting import doctor as report_doctor  # pylint: disable=g-import-not-at-top
  from reporting import runs  # pylint: disable=g-import-not-at-top
  from sweeps import publish, runner  # pylint: disable=g-import-not-at-top
  assert (runs.HISTORY, runs.CONFIG, runs.SUMMARY, runs.SWEEP_ERROR) == (
      runfiles.HISTORY, runfiles.CONFIG, runfiles.SUMMARY, runfiles.SWEEP_ERROR)
  assert (readers.HISTORY, readers.CONFIG, readers.SUMMARY) == (
      runfiles.HISTORY, runfiles.CONFIG, runfiles.SUMMARY)
  assert (runner.HISTORY, runner.SUMMARY, runner.ERROR_FILE) == (
      runfiles.HISTORY, runfiles.SUMMARY, runfiles.SWEEP_ERROR)
  assert publish.RUN_FILES == (runfiles.CONFIG, runfiles.HISTORY, runfiles.SUMMARY)
  assert report_doctor.DIAGNOSIS == runfiles.DIAGNOSIS == 'diagnosis.json'


# --- without JAX ---------------------------------------------------------------------------------

_BLOCK_JAX = textwrap.dedent('''
    import importlib.abc, sys

    class BlockJax(importlib.abc.MetaPathFinder):
      def find_spec(self, name, path=None, target=None):
        if name == "jax" or name.startswith("jax."):
          raise ImportError(f"{name} is blocked: this import must not need JAX")
        return None

    sys.meta_path.insert(0, BlockJax())
''')


@pytest.mark.parametrize('modules', [
    'curvelab.runfiles, curvelab.configdicts',
    'reporting.runs, diagnostics.readers, sweeps.runner, sweeps.publish',
])
def test_imports_without_jax(modules):
  code = _BLOCK_JAX + textwrap.dedent(f'''
      import {modules}
      assert not any(m == "jax" or m.startswith("jax.") for m in sys.modules), "jax imported"
      print("ok")
  ''')
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0 and result.stdout.strip() == 'ok', result.stderr[-2000:]


# --- the one flatten -----------------------------------------------------------------------------


def test_flatten_joins_keys_with_dots_and_keeps_lists_whole():
  config = {'seed': 0, 'model': {'name': 'vit', 'block': {'mlp_dim': 64}},
            'schedule': [1, 2], 'patch': (4, (2, 2)), 'empty': {}}
  assert configdicts.flatten(config) == {
      'seed': 0, 'model.name': 'vit', 'model.block.mlp_dim': 64, 'schedule': [1, 2],
      'patch': [4, [2, 2]],  # Tuples as lists: a live config equals the one read from JSON.
      'empty': {}}  # An empty sub-config is a value, not nothing.


def test_flatten_of_a_live_config_equals_its_config_json(tmp_path):
  live = {'model': {'patch': (4, 4)}, 'stop_on': ('diverged',)}
  runfiles.write_json(tmp_path / runfiles.CONFIG, live)
  saved = runfiles.read_json_object(tmp_path / runfiles.CONFIG)
  assert configdicts.flatten(live) == configdicts.flatten(saved)


@pytest.mark.parametrize('not_a_mapping', [None, [], 'config', 3])
def test_flatten_of_anything_but_a_mapping_is_empty(not_a_mapping):
  assert configdicts.flatten(not_a_mapping) == {}


def test_there_is_one_flatten():
  from curvelab import workdir  # pylint: disable=g-import-not-at-top
  from diagnostics import compare, doctor, readers  # pylint: disable=g-import-not-at-top
  from reporting import configs  # pylint: disable=g-import-not-at-top
  users = (workdir, compare, doctor, readers, configs)
  assert all(module.flatten is configdicts.flatten for module in users)
