"""Environments by name (docs/design.md §5). An environment is one file that builds a
`core.Environment` and registers it:

  ENV = registry.register(core.Environment('name', instances, info, grade, reference_grade,
                                           gaming='flag', answered='flag'))

The runner, the report and the CLIs read everything they need off the Environment's fields."""
from rt_jax.core.errors import ConfigError

ENVIRONMENTS: dict = {}  # name -> core.Environment, in registration order


def register(env):
  if env.name in ENVIRONMENTS:
    raise ValueError(f'environment {env.name!r} is registered twice')
  ENVIRONMENTS[env.name] = env
  return env


def get(name: str):
  if name not in ENVIRONMENTS:
    raise ConfigError(f'unknown environment {name!r}; choose from {", ".join(ENVIRONMENTS)}')
  return ENVIRONMENTS[name]
