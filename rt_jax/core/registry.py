"""Named extension points: environments, safety methods, expert-iteration variants. A registry
maps names to entries in registration order; it imports its package of built-in entries on first
use, so a lookup never depends on which module happened to be imported first, and an entry added
from anywhere else (a test, a user's file) lands after the built-ins."""
import importlib
from typing import Any

from rt_jax.core.errors import ConfigError


class Registry:

  def __init__(self, kind: str, builtins: str | None = None, where: str = ''):
    self.kind = kind  # 'environment', 'method', ...
    self.where = where  # the config field that names one, for errors ('' for none)
    self.builtins = builtins  # the package whose import registers the built-in entries
    self.entries: dict[str, Any] = {}

  def add(self, name: str, entry):
    if name in self.entries:
      raise ValueError(f'{self.kind} {name!r} is registered twice')
    self.entries[name] = entry
    return entry

  def _load(self):
    if self.builtins:
      importlib.import_module(self.builtins)

  def get(self, name: str):
    self._load()
    if name not in self.entries:
      where = f'{self.where}: ' if self.where else ''
      raise ConfigError(f'{where}unknown {self.kind} {name!r}; choose from '
                        f'{", ".join(self.entries)}')
    return self.entries[name]

  def names(self) -> tuple[str, ...]:
    self._load()
    return tuple(self.entries)
