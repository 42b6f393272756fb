"""What every preset config file starts from (configs/*.py)."""
import ml_collections


def preset_base(job: str, path: str, preset: str, presets) -> ml_collections.ConfigDict:
  """A config for `job` named after `preset` (one of `presets`), with the command that runs it."""
  if preset not in presets:
    raise ValueError(f'unknown preset {preset!r}; choose from {", ".join(presets)}')
  c = ml_collections.ConfigDict()
  c.job = job
  c.name = preset
  c.command = f'python -m rt_jax.main --config={path}:{preset} --workdir=WORKDIR'
  return c
