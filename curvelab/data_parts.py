r"""A data folder carried in parts of bounded size, reassembled only when every part checks out.

Some machines take files in calls of limited size (a GPU lent for minutes, 64 MiB a call): the
prepared CIFAR-10 (140 MB) must travel in pieces. `split` packs a folder into one tar stream cut
into parts of at most `max_mib` MiB, with a manifest of SHA-256 checksums (each part, the whole
stream, and every file inside); `join` refuses a missing, extra-short or corrupted part with one
line naming it, then unpacks and checks every file against the manifest.

    python -m curvelab.data_parts split ../shared/tensorflow_datasets/cifar10 OUT --max_mib=60
    python -m curvelab.data_parts join OUT DEST    # DEST/cifar10/... as it was
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pathlib
import sys
import tarfile

MANIFEST = 'manifest.json'
_CHUNK = 1 << 20


class PartsError(Exception):
  """The parts cannot be reassembled; the message is one line naming the part or file."""


def _sha256_file(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(_CHUNK), b''):
      digest.update(block)
  return digest.hexdigest()


def _tar_bytes(folder: pathlib.Path) -> tuple[bytes, dict]:
  """The folder as an uncompressed tar (sorted, fixed metadata) and {relative path: sha256}."""
  buffer = io.BytesIO()
  files = {}
  with tarfile.open(fileobj=buffer, mode='w', format=tarfile.PAX_FORMAT) as tar:
    for path in sorted(p for p in folder.rglob('*') if p.is_file()):
      relative = path.relative_to(folder.parent).as_posix()
      info = tar.gettarinfo(str(path), arcname=relative)
      info.uid = info.gid = 0
      info.uname = info.gname = ''
      info.mtime = 0
      with open(path, 'rb') as f:
        tar.addfile(info, f)
      files[relative] = _sha256_file(path)
  return buffer.getvalue(), files


def split(folder: str, out_dir: str, *, max_mib: float = 60.0) -> dict:
  """Packs `folder` into parts of at most `max_mib` MiB in `out_dir`; returns the manifest."""
  source = pathlib.Path(folder)
  if not source.is_dir():
    raise PartsError(f'{folder}: not a folder')
  if max_mib <= 0:
    raise PartsError(f'--max_mib must be positive, got {max_mib}')
  stream, files = _tar_bytes(source)
  size = int(max_mib * (1 << 20))
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  parts = []
  for index, start in enumerate(range(0, len(stream), size)):
    name = f'{source.name}.part-{index:03d}'
    chunk = stream[start:start + size]
    (out / name).write_bytes(chunk)
    parts.append({'name': name, 'bytes': len(chunk), 'sha256': hashlib.sha256(chunk).hexdigest()})
  manifest = {'folder': source.name, 'bytes': len(stream),
              'sha256': hashlib.sha256(stream).hexdigest(), 'parts': parts, 'files': files}
  (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
  return manifest


def _read_manifest(parts_dir: pathlib.Path) -> dict:
  path = parts_dir / MANIFEST
  if not path.is_file():
    raise PartsError(f'{parts_dir}: no {MANIFEST} (made by `data_parts split`)')
  try:
    manifest = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise PartsError(f'{path}: not valid JSON ({e.msg})') from None
  if not isinstance(manifest, dict) or not manifest.get('parts'):
    raise PartsError(f'{path}: lists no parts')
  return manifest


def verify(parts_dir: str) -> dict:
  """Checks every part's presence, size and checksum; returns the manifest.

  Raises:
    PartsError: naming the first missing or damaged part.
  """
  folder = pathlib.Path(parts_dir)
  manifest = _read_manifest(folder)
  total = len(manifest['parts'])
  for number, part in enumerate(manifest['parts'], 1):
    path = folder / part['name']
    if not path.is_file():
      raise PartsError(f'part {number} of {total} ({part["name"]}) is missing from {folder}')
    if path.stat().st_size != part['bytes']:
      raise PartsError(f'part {number} of {total} ({part["name"]}) has {path.stat().st_size} '
                       f'bytes, the manifest says {part["bytes"]}: copy it again')
    if _sha256_file(path) != part['sha256']:
      raise PartsError(f'part {number} of {total} ({part["name"]}) is corrupted (SHA-256 '
                       'differs from the manifest): copy it again')
  return manifest


def join(parts_dir: str, dest: str) -> pathlib.Path:
  """Verifies the parts, reassembles the stream, unpacks it into `dest`, checks every file.

  Returns:
    The reassembled folder (`dest/<folder>`).

  Raises:
    PartsError: a part or a file does not match the manifest; nothing is unpacked then, except
      when a file check fails after unpacking (the message names the file).
  """
  manifest = verify(parts_dir)
  folder = pathlib.Path(parts_dir)
  digest = hashlib.sha256()
  buffer = io.BytesIO()
  for part in manifest['parts']:
    chunk = (folder / part['name']).read_bytes()
    digest.update(chunk)
    buffer.write(chunk)
  if digest.hexdigest() != manifest['sha256']:
    raise PartsError(f'{folder}: the parts are in order but the whole differs from the manifest '
                     '(parts from two different splits?)')
  buffer.seek(0)
  out = pathlib.Path(dest)
  out.mkdir(parents=True, exist_ok=True)
  with tarfile.open(fileobj=buffer, mode='r') as tar:
    for member in tar.getmembers():  # Only the manifest's own relative paths are extracted.
      if member.name not in manifest['files'] or os.path.isabs(member.name) or '..' in member.name:
        raise PartsError(f'{folder}: unexpected member {member.name!r} in the stream')
    tar.extractall(out, filter='data')
  for relative, sha in manifest['files'].items():
    if _sha256_file(out / relative) != sha:
      raise PartsError(f'{out / relative}: checksum differs from the manifest after unpacking')
  return out / manifest['folder']


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m curvelab.data_parts',
                                   description=__doc__.split('\n\n', maxsplit=1)[0])
  sub = parser.add_subparsers(dest='command', required=True)
  p_split = sub.add_parser('split', help='pack a folder into checksummed parts')
  p_split.add_argument('folder')
  p_split.add_argument('out_dir')
  p_split.add_argument('--max_mib', type=float, default=60.0)
  p_join = sub.add_parser('join', help='verify the parts and unpack them')
  p_join.add_argument('parts_dir')
  p_join.add_argument('dest')
  args = parser.parse_args(argv)
  try:
    if args.command == 'split':
      manifest = split(args.folder, args.out_dir, max_mib=args.max_mib)
      print(f'{len(manifest["parts"])} parts, {manifest["bytes"]} bytes, in {args.out_dir}')
    else:
      print(f'reassembled and verified: {join(args.parts_dir, args.dest)}')
  except PartsError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
