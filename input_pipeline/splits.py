"""TFDS-style split strings (``train``, ``train[:45000]``, ``train[10%:]``) for every source.

TFDS sources receive the string as it is; in-memory sources (scikit-learn digits, arrays) use
:func:`resolve` so that the same config syntax works everywhere.
"""

import re

from curvelab import errors

_SPLIT_RE = re.compile(r'^\s*(?P<name>[A-Za-z0-9_]+)\s*(\[(?P<start>[^:\]]*):(?P<stop>[^\]]*)\])?\s*$')


def base_name(spec: str, *, field: str = 'split') -> str:
  """The split name without its slice, e.g. ``train`` for ``train[:45000]``."""
  match = _SPLIT_RE.match(spec)
  if not match:
    raise errors.ConfigError(
        f'{field}={spec!r} is not a valid split string; use NAME or NAME[START:STOP] '
        '(e.g. train[:45000] or train[90%:]).')
  return match.group('name')


def _bound(text: str, size: int, default: int, spec: str, field: str) -> int:
  text = text.strip()
  if not text:
    return default
  try:
    if text.endswith('%'):
      value = int(round(float(text[:-1]) * size / 100))
    else:
      value = int(text)
  except ValueError as e:
    raise errors.ConfigError(f'{field}={spec!r} has a bad bound {text!r}; use integers or '
                             'percentages (e.g. train[:45000], train[90%:]).') from e
  if value < 0:
    value += size
  return max(0, min(size, value))


def resolve(spec: str, sizes: dict[str, int], *, field: str = 'split') -> tuple[str, int, int]:
  """Resolves a split string against the available splits of an in-memory source.

  Args:
    spec: the split string.
    sizes: available split names and their sizes.
    field: the config field to name in errors.

  Returns:
    ``(name, start, stop)``.
  """
  name = base_name(spec, field=field)
  if name not in sizes:
    raise errors.DataError(
        f'{field}={spec!r}: split {name!r} does not exist; available: {", ".join(sorted(sizes))}.')
  match = _SPLIT_RE.match(spec)
  size = sizes[name]
  start = _bound(match.group('start') or '', size, 0, spec, field)
  stop = _bound(match.group('stop') or '', size, size, spec, field)
  if stop <= start:
    raise errors.DataError(f'{field}={spec!r} selects no examples (split {name!r} has {size}).')
  return name, start, stop
