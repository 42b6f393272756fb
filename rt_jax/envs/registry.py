"""Environments by name (docs/design.md §5). An environment is one file that builds a
`core.Environment` and registers it:

  ENV = registry.register(core.Environment('name', instances, info, grade, reference_grade,
                                           gaming='flag', answered='flag'))

The runner, the report and the CLIs read everything they need off the Environment's fields."""
from rt_jax.core.registry import Registry

ENVS = Registry('environment', 'rt_jax.envs')
ENVIRONMENTS = ENVS.entries  # name -> core.Environment, in registration order
get = ENVS.get


def register(env):
  return ENVS.add(env.name, env)
