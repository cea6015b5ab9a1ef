"""One registration style for every family a config chooses from: data pipelines, tasks, models.

Each family is a :class:`Registry` in its package's ``__init__``. A module registers its entry
beside the code, with the family's ``register(name)`` decorator; the registry imports the family's
modules the first time an entry is asked for, so importing a package stays cheap and every entry
is known before a name is judged. An unknown name is a ConfigError naming the config field and the
allowed values.
"""

import importlib
from typing import Any, Callable

from curvelab import errors


class Registry:
  """Names -> factories (with optional facts about each) of one family.

  Attributes:
    field: the config field that names an entry (``model.name``), for error messages.
  """

  def __init__(self, field: str, modules: tuple[str, ...]):
    """Args:
      field: the config field that chooses an entry.
      modules: the modules whose ``register`` decorators fill the registry.
    """
    self.field = field
    self._modules = modules
    self._entries: dict[str, Callable[..., Any]] = {}
    self._facts: dict[str, dict[str, Any]] = {}
    self._loaded = False

  def register(self, name: str, **facts):
    """Decorator adding ``factory`` under ``name``, with ``facts`` :meth:`facts` returns."""
    def wrap(factory):
      self._entries[name] = factory
      self._facts[name] = facts
      return factory
    return wrap

  def unregister(self, name: str) -> None:
    """Removes an entry (tests register their own and take them out again)."""
    self._entries.pop(name, None)
    self._facts.pop(name, None)

  def _load(self) -> None:
    if not self._loaded:
      for module in self._modules:
        importlib.import_module(module)  # Runs the module's register decorators.
      self._loaded = True

  def names(self) -> tuple[str, ...]:
    self._load()
    return tuple(sorted(self._entries))

  def get(self, name: str) -> Callable[..., Any]:
    """The factory registered as ``name``.

    Raises:
      ConfigError: ``name`` is unknown (the message names the field and the allowed values).
    """
    self._load()
    if name not in self._entries:
      raise errors.ConfigError(
          f'{self.field}={name!r} is unknown; allowed: {", ".join(self.names())}.')
    return self._entries[name]

  def facts(self, name: str) -> dict[str, Any]:
    """What ``name`` was registered with besides its factory (e.g. a model's validator)."""
    self.get(name)
    return self._facts[name]
