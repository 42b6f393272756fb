"""The curriculum environments (docs/design.md §5), by name: `get`, `make`, `register`."""
import functools

from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.data import splits
from rt_jax.core.errors import ConfigError
from rt_jax.envs import core, reference
# The built-in environments register themselves on import, in the order the CLIs list them.
from rt_jax.envs import political_sycophancy, tool_use_flattery  # noqa: F401,I001
from rt_jax.envs import rubric_modification, reward_tampering, hhh  # noqa: F401,I001
from rt_jax.envs.registry import ENVIRONMENTS, get, register  # noqa: F401


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
