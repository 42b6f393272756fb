"""Expert-iteration variants by name (docs/design.md §6). A variant is one file,

  def _score(reward_PxN, pm_PxN, pm_weight): ...            # -> score_PxN
  @registry.register('name', score=_score, hhh_prompts=...)
  def select(score_PxN, gaming_PxN, threshold, key, *, rows): ...  # -> (rows [rows], weights)

`select` is jitted with `rows` static and must keep shapes fixed (top_k and sorts, never boolean
indexing), so a round compiles once. `hhh_prompts`: a round draws an `ei.hhh_fraction` share of its
prompts from HHH queries.
"""
import dataclasses
import importlib
from typing import Callable

import jax

from rt_jax.core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Variant:
  name: str
  score: Callable
  select: Callable
  hhh_prompts: bool = False


_VARIANTS: dict[str, Variant] = {}


def register(name: str, *, score: Callable, hhh_prompts: bool = False) -> Callable:
  def add(select):
    if name in _VARIANTS:
      raise ValueError(f'expert-iteration variant {name!r} is registered twice')
    _VARIANTS[name] = Variant(name, score, jax.jit(select, static_argnames=('rows',)),
                              hhh_prompts)
    return select
  return add


def _builtins():
  # The package's __init__ imports each built-in variant's file, which registers it.
  importlib.import_module('rt_jax.rl.variants')


def get(name: str) -> Variant:
  _builtins()
  if name not in _VARIANTS:
    raise ConfigError(f'ei.variant={name!r}: choose from {", ".join(_VARIANTS)}')
  return _VARIANTS[name]


def names() -> tuple[str, ...]:
  _builtins()
  return tuple(_VARIANTS)
