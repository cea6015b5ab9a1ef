"""curvelab.data_parts: a data folder in checksummed parts, refused whole when a part is bad."""

import pathlib

import pytest

from curvelab import data_parts
from tests import helpers


@pytest.fixture
def parts(tmp_path):
  source = tmp_path / 'src' / 'cifar_like'
  (source / '3.0.2').mkdir(parents=True)
  (source / '3.0.2' / 'train.array_record').write_bytes(bytes(range(256)) * 40)
  (source / '3.0.2' / 'dataset_info.json').write_text('{"name": "cifar_like"}')
  manifest = data_parts.split(str(source), str(tmp_path / 'parts'), max_mib=4096 / (1 << 20))
  return source, tmp_path / 'parts', manifest


def test_split_bounds_every_part_and_join_restores_every_file(parts, tmp_path):
  source, folder, manifest = parts
  assert len(manifest['parts']) >= 3
  assert all(p['bytes'] <= 4096 for p in manifest['parts'])
  restored = data_parts.join(str(folder), str(tmp_path / 'dest'))
  assert restored == tmp_path / 'dest' / 'cifar_like'
  for path in source.rglob('*'):
    if path.is_file():
      assert (restored / path.relative_to(source)).read_bytes() == path.read_bytes()


def test_a_missing_part_is_refused_naming_it(parts, tmp_path):
  _, folder, manifest = parts
  second = manifest['parts'][1]['name']
  (folder / second).unlink()
  with pytest.raises(data_parts.PartsError,
                     match=rf'part 2 of {len(manifest["parts"])} \({second}\) is missing'):
    data_parts.join(str(folder), str(tmp_path / 'dest'))
  assert not (tmp_path / 'dest').exists()  # Nothing unpacked.


def test_a_corrupted_or_truncated_part_is_refused(parts, tmp_path):
  _, folder, manifest = parts
  first = folder / manifest['parts'][0]['name']
  data = bytearray(first.read_bytes())
  data[100] ^= 0xFF
  first.write_bytes(bytes(data))
  with pytest.raises(data_parts.PartsError, match=r'part 1 of \d+ .* is corrupted'):
    data_parts.join(str(folder), str(tmp_path / 'dest'))
  first.write_bytes(bytes(data[:50]))
  with pytest.raises(data_parts.PartsError, match=r'has 50 bytes, the manifest says'):
    data_parts.verify(str(folder))


def test_cli_says_one_line_and_exits_nonzero(parts, tmp_path):
  _, folder, manifest = parts
  (folder / manifest['parts'][-1]['name']).unlink()
  done = helpers.run_cli('curvelab/data_parts.py', 'join', str(folder), str(tmp_path / 'd'))
  assert done.returncode == 1
  assert done.stderr.strip().count('\n') == 0 and 'is missing' in done.stderr
  done = helpers.run_cli('curvelab/data_parts.py', 'join', str(tmp_path), str(tmp_path / 'd'))
  assert done.returncode == 1 and 'no manifest.json' in done.stderr
