"""pyproject.toml: every console script names a module that imports and an `entry` it defines,
every package under rt_jax/ is found, and the dependency files it reads exist."""
import os
import subprocess
import sys
import tomllib

import setuptools

from conftest import REPO, concurrently

with open(os.path.join(REPO, 'pyproject.toml'), 'rb') as f:
  PYPROJECT = tomllib.load(f)
SCRIPTS = PYPROJECT['project']['scripts']

# Run in a fresh process per module: entry modules define absl flags, some of them alike.
_CHECK = '''
import importlib, sys
module = importlib.import_module(sys.argv[1])
assert callable(getattr(module, sys.argv[2], None)), f'{sys.argv[1]} has no {sys.argv[2]}()'
'''


def test_every_entry_point_has_a_console_script():
  entry_modules = {f'rt_jax.{name}' for name in
                   ('main', 'sample', 'report', 'episodes', 'replay', 'probe_copy', 'convert',
                    'fetch')}
  assert {target.split(':')[0] for target in SCRIPTS.values()} == entry_modules
  assert SCRIPTS['rt-jax'] == 'rt_jax.main:entry'


def test_every_console_script_target_imports_and_is_callable():
  def check(target):
    module, function = target.split(':')
    return target, subprocess.run([sys.executable, '-c', _CHECK, module, function], cwd=REPO,
                                  capture_output=True, text=True, timeout=300)
  for target, proc in concurrently(check, sorted(SCRIPTS.values())):
    assert proc.returncode == 0, (target, proc.stderr[-2000:])


def test_packages_found_are_every_package_under_rt_jax():
  find = PYPROJECT['tool']['setuptools']['packages']['find']
  found = set(setuptools.find_packages(REPO, include=find['include']))
  on_disk = {os.path.relpath(root, REPO).replace(os.sep, '.')
             for root, _, files in os.walk(os.path.join(REPO, 'rt_jax'))
             if '__init__.py' in files}
  assert found == on_disk and 'rt_jax.core' in found


def test_dependency_files_exist():
  dynamic = PYPROJECT['tool']['setuptools']['dynamic']
  files = list(dynamic['dependencies']['file'])
  for extra in dynamic.get('optional-dependencies', {}).values():
    files += extra['file']
  for name in files:
    assert os.path.isfile(os.path.join(REPO, name)), name
