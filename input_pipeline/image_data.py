"""Image classification data (digits, CIFAR-10 and other TFDS image datasets)."""

import input_pipeline
from input_pipeline import Data
from input_pipeline import pipeline
from input_pipeline import sources

_FIELDS = {'train': 'dataset.train_split', 'val': 'dataset.val_split', 'test': 'dataset.test_split'}


@input_pipeline.register('classification')
def build(config) -> Data:
  ds = config.dataset
  info = sources.info(ds)
  specs = {role: ds[field.split('.')[1]] for role, field in _FIELDS.items()}
  sizes = {role: sources.check_split(ds, spec, field=_FIELDS[role]) for role, spec in specs.items()}
  channels = info.image_shape[-1]
  for field in ('mean', 'std'):
    if len(ds[field]) != channels:
      from curvelab import errors  # pylint: disable=g-import-not-at-top
      raise errors.ConfigError(
          f'dataset.{field} has {len(ds[field])} values but {ds.name} images have {channels} '
          'channels.')

  def loader(role: str):
    return sources.load(ds, specs[role], field=_FIELDS[role])

  def device_loader(split, *, train: bool, seed: int):
    from input_pipeline import device  # pylint: disable=g-import-not-at-top
    return device.DeviceImages(split, ds, train=train, seed=seed)

  return Data(num_outputs=info.num_classes, example_shape=info.image_shape, split_specs=specs,
              split_sizes=sizes, loader=loader, device_loader=device_loader,
              train_preprocess=pipeline.ImagePreprocess(ds, train=True,
                                                        num_classes=info.num_classes),
              eval_preprocess=pipeline.ImagePreprocess(ds, train=False))
