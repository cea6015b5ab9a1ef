"""One registration style (curvelab/registry.py) for data pipelines, tasks and models.

A run builds the data first, then the task with the data's vocabulary, then the model
(curvelab/build.py); nothing is looked up through a process-global cache.
"""

import pytest

from configs import ctc_bilstm
from configs import vit_prenorm
from curvelab import build as build_lib
from curvelab import errors
from curvelab import registry
import input_pipeline
import models
import tasks


@pytest.mark.parametrize('family, field, some', [
    (input_pipeline.REGISTRY, 'task.name', 'classification'),
    (tasks.REGISTRY, 'task.name', 'seq2seq'),
    (models.REGISTRY, 'model.name', 'vit'),
])
def test_each_family_names_its_field_and_the_allowed_values(family, field, some):
  assert some in family.names()
  with pytest.raises(errors.ConfigError) as info:
    family.get('no_such_entry')
  message = str(info.value)
  assert message.startswith(f"{field}='no_such_entry' is unknown; allowed: ")
  assert some in message


def test_every_task_has_a_data_pipeline():
  assert tasks.names() == input_pipeline.REGISTRY.names()


def test_register_loads_the_modules_once_and_keeps_facts():
  family = registry.Registry('thing.name', modules=('json',))
  family.register('a', flavour='plain')(lambda: 'built a')
  assert family.names() == ('a',)
  assert family.get('a')() == 'built a'
  assert family.facts('a') == {'flavour': 'plain'}
  family.unregister('a')
  with pytest.raises(errors.ConfigError, match="thing.name='a'"):
    family.get('a')


def test_the_decoding_task_gets_the_vocabulary_the_data_built():
  config = build_lib.prepare_config(ctc_bilstm.get_config('tiny=True'))
  setup = build_lib.build(config)
  assert setup.task.vocabulary is setup.data.extra['vocabulary']


def test_a_task_built_without_data_says_it_has_no_vocabulary():
  task = tasks.build(ctc_bilstm.get_config('tiny=True'))
  with pytest.raises(ValueError, match='without data'):
    _ = task.vocabulary


def test_an_unknown_task_fails_before_any_data_is_read():
  config = build_lib.prepare_config(vit_prenorm.get_config('tiny=True'))
  config.task.name = 'regression'
  with pytest.raises(errors.ConfigError, match="task.name='regression' is unknown"):
    build_lib.build(config)
