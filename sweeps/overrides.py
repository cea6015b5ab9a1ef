"""Config overrides on train.py's command line: parsing --set and formatting values."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from sweeps.experiments import ExperimentSetError, check_field


def parse_set_args(items: Iterable[str] | None) -> dict[str, str]:
  """Parses `--set FIELD=VALUE` items into {field: value}.

  Values stay strings: train.py's ml_collections flags parse them with the field's type.
  A leading "config." is accepted and dropped. Later items win over earlier ones.

  Raises:
    ExperimentSetError: an item without "=", an invalid field name, or "seed".
  """
  out: dict[str, str] = {}
  for item in items or ():
    if "=" not in item:
      raise ExperimentSetError(f"--set {item!r}: expected FIELD=VALUE, e.g. --set loop.num_epochs=5")
    field, value = item.split("=", 1)
    field = field.strip()
    if field.startswith("config."):
      field = field[len("config."):]
    check_field(field, where=f"--set {item!r}")
    out[field] = value
  return out


def format_value(value: Any) -> str:
  """Formats an override value the way ml_collections config flags parse it back."""
  if isinstance(value, str):
    return value
  if isinstance(value, (list, tuple)):
    return repr(tuple(value))
  return repr(value) if isinstance(value, float) else str(value)


def merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
  """Merges override dicts; later layers win (so --set beats the experiment set)."""
  out: dict[str, Any] = {}
  for layer in layers:
    out.update(layer)
  return out
