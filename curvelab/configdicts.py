"""Nested config dicts as flat dotted keys, the one ``flatten`` for resume checks, reports and the
doctor. JAX-free (no imports beyond the standard library), so the report and the doctor use it too.
"""

from typing import Any, Mapping


def _plain(value: Any) -> Any:
  # ConfigDict.to_dict() keeps tuples where config.json (JSON) has lists, nested ones included;
  # lists throughout make a live config compare equal to the same config read back from disk.
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


def flatten(config: Any, prefix: str = '') -> dict[str, Any]:
  """Flattens nested mappings into dotted keys: {'model': {'name': 'vit'}} -> {'model.name': 'vit'}.

  Keys are joined with '.' as they are (``f'{prefix}{key}'``). Lists and tuples stay whole leaf
  values, since a list-valued field is one factor, and tuples become lists (see ``_plain``). An
  empty mapping is a leaf value ({}), so a field set to {} still shows in a comparison.

  Args:
    config: a nested dict (or any Mapping), e.g. config.json or ``ConfigDict.to_dict()``.
    prefix: prepended to every key (used by the recursion).

  Returns:
    {dotted key: leaf value}; {} when ``config`` is not a mapping (a missing or malformed config).
  """
  if not isinstance(config, Mapping):
    return {}
  flat: dict[str, Any] = {}
  for key, value in config.items():
    dotted = f'{prefix}{key}'
    if isinstance(value, Mapping) and value:
      flat.update(flatten(value, dotted + '.'))
    else:
      flat[dotted] = _plain(value)
  return flat
