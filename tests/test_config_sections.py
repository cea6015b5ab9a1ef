"""Config sections: one place for defaults, the ':sanity=N' variant, and earlier versions' names.

configs/common.py groups every field in a section; curvelab/configdicts.py's ALIASES reads the
top-level names that earlier versions wrote into config.json, so their runs still resume, evaluate,
report and get the doctor's advice.
"""

import json
import pathlib
import shutil

import pytest

from configs import common
from configs import vit_prenorm
from curvelab import configdicts
from curvelab import errors
from curvelab import validate
import eval as eval_lib
from tests import helpers
import train

REPO = pathlib.Path(__file__).resolve().parent.parent
SECTIONS = {'model', 'task', 'dataset', 'optimizer', 'schedule', 'loop', 'speed', 'stopping',
            'doctor', 'sanity'}


def _downgrade(config: dict) -> dict:
  """``config`` as an earlier version wrote it: every ALIASES field back at the top level."""
  old = json.loads(json.dumps(config))
  # 'optimizer' last: it was the optimizer's name where the section of that name now stands.
  for name, dotted in sorted(configdicts.ALIASES.items(), key=lambda item: item[0] == 'optimizer'):
    if dotted is None:
      continue
    section, leaf = dotted.split('.')
    if section in old and leaf in old[section]:
      old[name] = old[section].pop(leaf)
  for section in ('optimizer', 'schedule', 'loop', 'speed', 'stopping', 'sanity'):
    if isinstance(old.get(section), dict) and not old[section]:
      del old[section]
  return old


def test_every_field_is_in_a_section():
  config = common.base_config()
  assert set(config) == SECTIONS | {'seed'}
  for name in SECTIONS:
    assert hasattr(config[name], 'keys'), name


def test_every_alias_names_a_field_of_today():
  flat = configdicts.flatten(common.base_config().to_dict())
  for name, dotted in configdicts.ALIASES.items():
    assert dotted is None or dotted in flat, (name, dotted)
    if name != 'optimizer':  # The one old name that is a section's name today.
      assert name not in common.base_config(), name  # No other old name is at the top level.


def test_upgrade_moves_old_names_and_leaves_a_new_config_alone():
  new = train.prepare_config(helpers.tiny_config()).to_dict()
  new = json.loads(json.dumps(new))
  old = _downgrade(new)
  assert old['learning_rate'] == new['optimizer']['learning_rate'] and 'loop' not in old
  assert configdicts.upgrade(old) == new
  assert configdicts.upgrade(new) == new
  # Fields added since: an old file gets the value its version ran with.
  del old['log_every_seconds']
  assert configdicts.upgrade(old)['loop']['log_every_seconds'] == 0.0
  # A sanity run of an earlier version: its epoch limit was already in num_epochs.
  assert 'sanity_max_epochs' not in configdicts.flatten(
      configdicts.upgrade({**old, 'sanity_max_epochs': 300}))


@pytest.mark.parametrize('path', sorted((REPO / 'results').rglob('config.json')),
                         ids=lambda path: str(path.relative_to(REPO)))
def test_published_config_files_of_earlier_versions_read_as_today(path):
  """results/ holds config.json files written with the old names: they read as today's fields."""
  upgraded = configdicts.upgrade(json.loads(path.read_text()))
  today = configdicts.flatten(common.base_config().to_dict())
  for key in configdicts.flatten(upgraded):
    section = key.split('.')[0]
    assert section in SECTIONS | {'seed', 'workdir'}, key
    if section in ('optimizer', 'schedule', 'loop', 'speed', 'stopping', 'sanity'):
      assert key in today, key


@pytest.mark.parametrize('path', sorted((REPO / 'results').rglob('config.json')),
                         ids=lambda path: str(path.relative_to(REPO)))
def test_published_config_files_rebuild_a_valid_config(path):
  """eval.py and sample.py rebuild a run's config from its config.json, whichever version wrote it.

  Fields added since a file was written get the value that version ran with (IMPLIED).
  """
  config = eval_lib.load_run_config(path.parent)
  validate.check(train.prepare_config(config))
  assert {'nesterov', 'learning_rate'} <= set(config.optimizer) and 'log_every_seconds' in config.loop


def test_a_workdir_of_an_earlier_version_resumes_and_evaluates(straight_run, half_run, tmp_path):
  """A config.json with the old names: the run resumes to the uninterrupted history, eval.py reads it."""
  workdir = tmp_path / 'run'
  shutil.copytree(half_run[0], workdir)
  saved = json.loads((workdir / 'config.json').read_text())
  (workdir / 'config.json').write_text(json.dumps(_downgrade(saved)))
  result = eval_lib.evaluate_checkpoint(str(workdir), split='val', checkpoint='latest')
  assert result['val_accuracy'] == pytest.approx(half_run[2][-1]['val_accuracy'], abs=1e-6)
  summary = train.train_and_evaluate(helpers.tiny_config(loop__num_epochs=4), str(workdir))
  assert helpers.without_timing(helpers.read_history(workdir)) == \
      helpers.without_timing(straight_run[2])
  assert summary['test_loss'] == straight_run[1]['test_loss']


def test_sanity_variant_writes_what_it_changes_into_the_config():
  config = vit_prenorm.get_config('tiny=True,sanity=5')
  assert config.sanity.examples == 5
  assert (config.loop.batch_size, config.loop.eval_batch_size) == (5, 5)
  assert config.loop.num_epochs == common.SANITY_EPOCHS
  for dotted, value in common.SANITY_FIELDS.items():
    node = config
    for part in dotted.split('.')[:-1]:
      node = node[part]
    if dotted.split('.')[-1] in node:
      assert node[dotted.split('.')[-1]] == value, dotted
  validate.check(config)


@pytest.mark.parametrize('field, value', [('dataset.augment.flip', True),
                                          ('optimizer.weight_decay', 1e-4),
                                          ('loop.batch_size', 8)])
def test_a_sanity_run_that_undoes_its_variant_is_refused(field, value):
  config = helpers.set_fields(vit_prenorm.get_config('tiny=True,sanity=5'), {field: value})
  with pytest.raises(errors.ConfigError, match=field.replace('.', r'\.')):
    validate.check(config)


def test_sanity_without_the_variant_points_to_it():
  config = helpers.set_fields(vit_prenorm.get_config('tiny=True'), {'sanity.examples': 5})
  with pytest.raises(errors.ConfigError, match=':sanity=5'):
    validate.check(config)


def test_unknown_variant_argument_names_the_allowed_ones():
  with pytest.raises(errors.ConfigError, match='sanity'):
    vit_prenorm.get_config('sanitee=5')
  with pytest.raises(errors.ConfigError, match='sanity=-1'):
    vit_prenorm.get_config('sanity=-1')
