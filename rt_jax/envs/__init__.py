"""The curriculum environments (docs/design.md §5), by name."""
import functools

from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.data import splits
from rt_jax.envs import (core, hhh, political_sycophancy, reference, reward_tampering,
                         rubric_modification, tool_use_flattery)
from rt_jax.core.errors import ConfigError

ENVIRONMENTS = {env.name: env for env in (
    political_sycophancy.ENV, tool_use_flattery.ENV, rubric_modification.NUDGED,
    rubric_modification.INSUBORDINATE, reward_tampering.ENV, hhh.ENV)}


def get(name: str) -> core.Environment:
  if name not in ENVIRONMENTS:
    raise ConfigError(f'unknown environment {name!r}; choose from {", ".join(ENVIRONMENTS)}')
  return ENVIRONMENTS[name]


def make(name: str, tok: tokenizer_lib.Tokenizer, split: str = 'train'):
  """-> (environment, device params, instances) of one split, instance i at index i."""
  env = get(name)
  if split not in splits.SPLITS:
    raise ConfigError(f'unknown split {split!r}; choose from {", ".join(splits.SPLITS)}')
  items = env.instances(split)
  return env, core.build(items, env.info(items), tok), items


@functools.cache
def flag_names(name: str) -> tuple[str, ...]:
  """The flags an environment's grader gives (the plain-Python grader on an untouched episode of
  its first instance: no compile)."""
  item = get(name).instances('train')[0]
  return tuple(get(name).reference_grade(reference.Episode(item.files, item.dirs), item))
