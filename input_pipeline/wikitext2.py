"""WikiText-2 as a TFDS dataset builder (word-level and raw variants), one example per line.

Online, the builder downloads the official archive. Offline, place the archive
(``wikitext-2-v1.zip`` for ``word``, ``wikitext-2-raw-v1.zip`` for ``raw``) or its extracted folder
in TFDS's manual dir (``dataset.manual_dir``, default ``<data_dir>/downloads/manual``); the
builder prepares it in ``array_record`` format under ``dataset.data_dir`` on first use.
"""

import pathlib
import zipfile

import tensorflow_datasets as tfds

_BASE_URL = 'https://s3.amazonaws.com/research.metamind.io/wikitext/'
_VARIANTS = {
    # variant: (archive, folder inside, file suffix)
    'word': ('wikitext-2-v1.zip', 'wikitext-2', 'tokens'),
    'raw': ('wikitext-2-raw-v1.zip', 'wikitext-2-raw', 'raw'),
}
_SPLITS = {'train': 'train', 'validation': 'valid', 'test': 'test'}


class Wikitext2Config(tfds.core.BuilderConfig):
  """A WikiText-2 variant (word-level tokens with <unk>, or raw text)."""


class Wikitext2(tfds.core.GeneratorBasedBuilder):
  """WikiText-2 (Merity et al. 2016): 2M training tokens of Wikipedia articles."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'One example per line of the official files.'}
  BUILDER_CONFIGS = [
      Wikitext2Config(name='word', description='Word-level (rare words replaced by <unk>).'),
      Wikitext2Config(name='raw', description='Raw characters.'),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Place wikitext-2-v1.zip (word) or wikitext-2-raw-v1.zip (raw), or the extracted folder, '
      'in the manual dir.')

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({'text': tfds.features.Text()}),
        supervised_keys=None,
        homepage='https://www.salesforce.com/blog/the-wikitext-long-term-dependency-language-modeling-dataset/',
    )

  def _folder(self, dl_manager) -> pathlib.Path:
    archive, folder, _ = _VARIANTS[self.builder_config.name]
    manual = pathlib.Path(dl_manager.manual_dir) if dl_manager.manual_dir else None
    if manual is not None and (manual / folder).is_dir():
      return manual / folder
    if manual is not None and (manual / archive).is_file():
      target = manual / f'.{folder}-extracted'
      if not (target / folder).is_dir():
        with zipfile.ZipFile(manual / archive) as z:
          z.extractall(target)
      return target / folder
    return pathlib.Path(dl_manager.download_and_extract(_BASE_URL + archive)) / folder

  def _split_generators(self, dl_manager):
    folder = self._folder(dl_manager)
    suffix = _VARIANTS[self.builder_config.name][2]
    return {split: self._generate_examples(folder / f'wiki.{name}.{suffix}')
            for split, name in _SPLITS.items()}

  def _generate_examples(self, path: pathlib.Path):
    with open(path, encoding='utf-8') as f:
      for i, line in enumerate(f):
        yield i, {'text': line.rstrip('\n')}
