"""Expert-iteration variants by name (docs/design.md §6). A variant is one file,

  def _score(reward_PxN, pm_PxN, pm_weight): ...            # -> score_PxN
  @registry.register('name', score=_score, hhh_prompts=...)
  def select(score_PxN, gaming_PxN, threshold, key, *, rows): ...  # -> (rows [rows], weights)

`select` is jitted with `rows` static and must keep shapes fixed (top_k and sorts, never boolean
indexing), so a round compiles once. `hhh_prompts`: a round draws an `ei.hhh_fraction` share of its
prompts from HHH queries.
"""
import dataclasses
from typing import Callable

import jax

from rt_jax.core.registry import Registry


@dataclasses.dataclass(frozen=True)
class Variant:
  name: str
  score: Callable
  select: Callable
  hhh_prompts: bool = False


VARIANTS = Registry('variant', 'rt_jax.rl.variants', where='config.ei.variant')
get, names = VARIANTS.get, VARIANTS.names


def register(name: str, *, score: Callable, hhh_prompts: bool = False) -> Callable:
  def add(select):
    VARIANTS.add(name, Variant(name, score, jax.jit(select, static_argnames=('rows',)),
                               hhh_prompts))
    return select
  return add
