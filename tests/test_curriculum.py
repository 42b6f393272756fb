"""The curriculum job as a user runs it: `python -m rt_jax.main --config=configs/curriculum.py:...`.

The end-to-end runs are `slow` (each is a minute or two on 2 cores); CI runs them in its second
step."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import types

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_multiplexer

import tampering_cases

from conftest import (CURRICULUM_RUN, REPO, concurrently, cpu_devices_env, curriculum_matrix,
                      error_lines, run_curriculum, run_module)
from rt_jax.studies.subterfuge import curriculum
from rt_jax.studies.subterfuge import world as world_lib
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.envs import core


BAD_VALUES = [
    ('--config.ei.variant=best_of_n', 'ei.variant'),
    ("--config.stages=('reward_tampering',)", 'held-out'),
    ("--config.stages=('poetry',)", 'unknown environment'),
    ('--config.eval.episodes=100000', 'distinct held-out instances'),
    ('--config.mode=train', 'config.mode'),
    ('--config.ei.microbatch_rows=3', 'microbatch_rows'),
    ('--config.mesh=(2,1,1)', 'config.mesh=(2, 1, 1) does not cover the 1 devices'),
    ('--config.start.width_multiple=-1', 'start.width_multiple'),
]


def test_bad_values_fail_in_one_line_before_compute(tmp_path):
  procs = concurrently(lambda case: run_curriculum(tmp_path / str(case[0]), case[1][0],
                                                   timeout=120), list(enumerate(BAD_VALUES)))
  for i, ((override, message), proc) in enumerate(zip(BAD_VALUES, procs)):
    assert proc.returncode == 2, (override, proc.stderr)
    lines = error_lines(proc)
    assert len(lines) == 1 and message in lines[0], (override, proc.stderr)
    assert not (tmp_path / str(i) / 'checkpoints').exists(), override


@pytest.mark.slow
def test_run_writes_report_matrix_checkpoints_and_tensorboard(curriculum_workdir):
  w = curriculum_workdir
  for name in ('report.md', 'matrix.png', 'results.json', 'model_config.json', 'pm/pm.json'):
    assert (w / name).is_file(), name
  stages = [stage for stage, _ in curriculum_matrix(w)]
  assert stages == ['helpful_only', 'political_sycophancy', 'tool_use_flattery']
  assert sorted(p.name for p in (w / 'checkpoints').iterdir())[-1] == '5'  # 1 SFT + 2 x 2 rounds
  report = (w / 'report.md').read_text()
  assert 'held-out pairwise accuracy' in report.lower() and '45/32,768' in report
  # The report names the command that made it, overrides included.
  assert f'--workdir={w} --config.model.d_model=64' in report
  assert list((w / 'tb').glob('events.out.tfevents.*'))


def _without_timings(tree):
  """results.json with every wall-clock field dropped: what must equal across kills."""
  if isinstance(tree, dict):
    return {k: _without_timings(v) for k, v in tree.items() if k != 'wall_s'}
  if isinstance(tree, list):
    return [_without_timings(v) for v in tree]
  return tree


# Console lines at which the run is SIGKILLed, in order, each in a new process resuming the last:
# mid PM training, mid helpful-only SFT, between the first checkpoint and its evaluation, mid
# evaluation, mid stage (after the first of two rounds), and between the last checkpoint and the
# last evaluation.
KILL_POINTS = ('pm step 2/4', 'helpful_only: step 2/4', 'compiling the evaluation rollout',
               'evaluation after helpful_only: batch 1/', 'political_sycophancy round 1/2',
               'evaluation after tool_use_flattery: batch 1/')


def _kill_at(workdir, marker: str, *overrides: str, env=None):
  """Starts the cut-down tiny curriculum and SIGKILLs it at the first console line holding
  `marker`; -> its console up to that line."""
  cmd = [sys.executable, '-m', 'rt_jax.main', '--config=configs/curriculum.py:tiny',
         f'--workdir={workdir}', *CURRICULUM_RUN, *overrides]
  proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True, env=env)
  seen = []
  try:
    for line in proc.stderr:
      seen.append(line)
      if marker in line:
        proc.send_signal(signal.SIGKILL)
        break
  finally:
    proc.wait(timeout=120)
  assert proc.returncode == -signal.SIGKILL, (marker, ''.join(seen[-20:]))
  return ''.join(seen)


@pytest.mark.slow
def test_killed_at_six_points_then_resumed_matches_uninterrupted(curriculum_workdir, tmp_path):
  """SIGKILLed at each of KILL_POINTS in turn; the last resume also compiles nothing ahead
  (compiling early must change no number). The results, training log included, equal the
  uninterrupted run's but for wall-clock times; so do the episode files."""
  w = tmp_path / 'killed'
  for marker in KILL_POINTS:
    _kill_at(w, marker)
  resumed = run_curriculum(w, '--config.compile_ahead=False', timeout=900)
  assert resumed.returncode == 0, resumed.stderr
  assert 'resumed' in resumed.stderr
  with open(w / 'results.json') as f, open(curriculum_workdir / 'results.json') as g:
    got, want = json.load(f), json.load(g)
  for results in (got, want):
    results['run'].pop('command')  # names the workdir
  assert _without_timings(got) == _without_timings(want)
  for path in sorted((curriculum_workdir / 'episodes').iterdir()):
    assert (w / 'episodes' / path.name).read_text() == path.read_text(), path.name
  assert not [p for p in os.listdir(w) if '.tmp-' in p]


@pytest.mark.slow
def test_a_cached_helpful_only_start_is_loaded_and_changes_no_number(curriculum_workdir,
                                                                       tmp_path):
  """Two runs sharing a cache: the first trains the start and caches it, the second loads it.
  Both end with the numbers of the shared uninterrupted run (which trained without a cache)."""
  env = {**os.environ, 'RT_JAX_CACHE': str(tmp_path / 'cache')}
  runs = [run_curriculum(tmp_path / name, '--config.start.cache=True', env=env, timeout=900)
          for name in ('first', 'second')]
  assert all(r.returncode == 0 for r in runs), runs[-1].stderr
  assert 'helpful_only: cached as' in runs[0].stderr and 'loaded' not in runs[0].stderr
  assert 'helpful_only: loaded' in runs[1].stderr
  with open(curriculum_workdir / 'results.json') as f:
    want = json.load(f)
  for name in ('first', 'second'):
    with open(tmp_path / name / 'results.json') as f:
      got = json.load(f)
    for results in (got, want):
      results['run'].pop('command', None)
      results['train'][0].pop('start', None)  # 'cached' where the start was loaded
    assert _without_timings(got) == _without_timings(want), name


GATED = ('--config.start.competence.tool_use_flattery=0.5', '--config.start.max_blocks=3',
         '--config.start.gate_instances=2', '--config.mode=baseline')


@pytest.fixture(scope='module')
def gated_workdir(tmp_path_factory):
  """A baseline run whose start cannot meet its gate: all three blocks train."""
  workdir = tmp_path_factory.mktemp('gated')
  proc = run_curriculum(workdir, *GATED, timeout=900)
  assert proc.returncode == 0, proc.stderr
  (workdir.parent / f'{workdir.name}.console').write_text(proc.stderr)
  return workdir


@pytest.mark.slow
def test_the_competence_gate_measures_before_and_after_each_block(gated_workdir):
  """A tiny model cannot reach the targets: every block trains, every measurement is recorded and
  reported, and the run goes on saying the gate was not met."""
  console = (gated_workdir.parent / f'{gated_workdir.name}.console').read_text()
  assert 'competence NOT met after 3 block(s)' in console
  for block in (0, 1, 2):  # every measurement is said once it is made
    assert f'helpful_only: competence after {block} block(s): tool_use_flattery 0/2' in console
  with open(gated_workdir / 'results.json') as f:
    history = json.load(f)['train'][0]['competence']
  assert [h['block'] for h in history] == [0, 1, 2, 3]
  assert all(h['envs']['tool_use_flattery'][1] == 2 for h in history)
  for h in history:  # each measurement's episodes, graded, as every other episode
    with open(gated_workdir / h['episodes']) as f:
      episodes = [json.loads(line) for line in f]
    assert len(episodes) == 2 and all(e['env'] == 'tool_use_flattery' for e in episodes)
    assert sum(e['flags']['competent'] for e in episodes) == h['envs']['tool_use_flattery'][0]
  text = (gated_workdir / 'report.md').read_text()
  assert '| before the SFT |' in text and '| after block 3 |' in text
  assert not (gated_workdir / 'start_blocks').exists()  # dropped once the start is checkpointed


@pytest.mark.slow
def test_a_start_killed_between_blocks_resumes_after_the_last_block(gated_workdir, tmp_path):
  """SIGKILLed once block 2 is saved (block 1 is then the kept block: its parameters come from
  start_blocks/best), resumed: block 3 trains, and every number equals the uninterrupted run's.
  Blocks a kill leaves beside the start's checkpoint are removed by the next resume."""
  w = tmp_path / 'killed'
  _kill_at(w, 'helpful_only: block 2 saved', *GATED)
  with open(w / 'start_blocks' / 'latest' / 'checkpoints' / '2' / 'meta' / 'metadata') as f:
    kept_so_far = json.load(f)['best']
  shutil.copytree(w / 'start_blocks', tmp_path / 'blocks')
  console = _kill_at(w, 'evaluation after helpful_only: batch 1/', *GATED)
  assert 'helpful_only: resumed after block 2' in console
  assert 'competence after 0 block(s): batch' not in console  # not measured again
  assert 'helpful_only: step 1/' not in console  # blocks 1 and 2 not trained again
  assert not (w / 'start_blocks').exists()  # dropped with the start's checkpoint
  # Blocks a kill left beside the start's checkpoint (between its write and their removal) are
  # removed by the next resume, which goes on from the checkpoint.
  shutil.copytree(tmp_path / 'blocks', w / 'start_blocks')
  resumed = run_curriculum(w, *GATED, timeout=900)
  assert resumed.returncode == 0, resumed.stderr
  assert 'resumed' in resumed.stderr and 'helpful_only: resumed' not in resumed.stderr
  assert not (w / 'start_blocks').exists()
  with open(w / 'results.json') as f, open(gated_workdir / 'results.json') as g:
    got, want = json.load(f), json.load(g)
  for results in (got, want):
    results['run'].pop('command')
  assert _without_timings(got) == _without_timings(want)
  assert kept_so_far == 1 and want['train'][0]['kept_block'] == 1  # through start_blocks/best


@pytest.mark.slow
def test_a_kill_between_the_latest_and_best_writes_loses_nothing(gated_workdir, tmp_path):
  """Killed after block 1 with its best/ write missing (as a kill between the two writes leaves
  it), resumed and killed again after block 2, resumed to the end: best/ was written again with
  block 2, and the numbers equal the uninterrupted run's."""
  w = tmp_path / 'between'
  _kill_at(w, 'helpful_only: block 1 saved', *GATED)
  shutil.rmtree(w / 'start_blocks' / 'best')
  # Resumed with the start cache on (a setting a resume may change: not the start's hash).
  env = {**os.environ, 'RT_JAX_CACHE': str(tmp_path / 'cache')}
  console = _kill_at(w, 'helpful_only: block 2 saved', *GATED, '--config.start.cache=True',
                     env=env)
  assert 'helpful_only: resumed after block 1' in console
  assert (w / 'start_blocks' / 'best' / 'checkpoints' / '1').is_dir()
  resumed = run_curriculum(w, *GATED, timeout=900)
  assert resumed.returncode == 0, resumed.stderr
  assert 'helpful_only: resumed after block 2' in resumed.stderr
  with open(w / 'results.json') as f, open(gated_workdir / 'results.json') as g:
    got, want = json.load(f), json.load(g)
  for results in (got, want):
    results['run'].pop('command')
  assert _without_timings(got) == _without_timings(want)


@pytest.mark.slow
def test_a_damaged_saved_block_is_trained_again(gated_workdir, tmp_path):
  """Saved blocks whose bytes no longer match their checksums are not used: one line says so, the
  start trains from its first step and ends with the uninterrupted run's numbers."""
  w = tmp_path / 'damaged'
  _kill_at(w, 'helpful_only: block 1 saved', *GATED)
  step = w / 'start_blocks' / 'latest' / 'checkpoints' / '1'
  victim = max((p for p in (step / 'params').rglob('*') if p.is_file()),
               key=lambda p: p.stat().st_size)
  data = bytearray(victim.read_bytes())
  data[len(data) // 2] ^= 0xFF
  victim.write_bytes(bytes(data))
  proc = run_curriculum(w, *GATED, timeout=900)
  assert proc.returncode == 0, proc.stderr
  assert 'do not restore' in proc.stderr and 'resumed after block' not in proc.stderr
  with open(w / 'results.json') as f, open(gated_workdir / 'results.json') as g:
    got, want = json.load(f), json.load(g)
  for results in (got, want):
    results['run'].pop('command')
  assert _without_timings(got) == _without_timings(want)


@pytest.mark.slow  # 8 simulated devices on 2 cores, two meshes to compile for: ~15 min cold
def test_run_on_a_mesh_matches_one_device_and_resumes_on_another_mesh(curriculum_workdir,
                                                                       tmp_path):
  """The same run on 8 simulated CPU devices: started on a (2, 2, 2) mesh (data, fsdp and tensor
  all split), killed mid-stage, resumed on (4, 1, 2) (no fsdp: the weights whole along embed)
  from the checkpoint the (2, 2, 2) mesh saved. The helpful-only evaluation comes from the first
  mesh, the rest from the second; the matrix equals the one-device run's. (4 prompts per round:
  the batch axes can hold at most 4 devices.)"""
  w, env = tmp_path / 'sharded', cpu_devices_env(8)
  _kill_at(w, 'political_sycophancy round 1/2', '--config.mesh=(2,2,2)', env=env)
  resumed = run_curriculum(w, '--config.mesh=(4,1,2)', env=env, timeout=1800)
  assert resumed.returncode == 0, resumed.stderr
  assert 'resumed' in resumed.stderr
  assert curriculum_matrix(w) == curriculum_matrix(curriculum_workdir)


@pytest.mark.slow
def test_baseline_and_interventions_run_from_flags(tmp_path):
  base = run_curriculum(tmp_path / 'base', '--config.mode=baseline', timeout=900)
  assert base.returncode == 0, base.stderr
  assert [s for s, _ in curriculum_matrix(tmp_path / 'base')] == ['helpful_only']
  variant = run_curriculum(tmp_path / 'exploit', '--config.ei.variant=exploit_only',
                           '--config.ei.rounds=1', '--config.train_away.enabled=True',
                           timeout=900)
  assert variant.returncode == 0, variant.stderr
  assert [s for s, _ in curriculum_matrix(tmp_path / 'exploit')] == [
      'helpful_only', 'political_sycophancy', 'tool_use_flattery', 'train_away_sycophancy']


@pytest.mark.slow
def test_evaluations_cover_distinct_instances_the_same_each_time(curriculum_workdir):
  """Each cell is n episodes over n distinct held-out instances, and every evaluation of the run
  draws the same ones (so stages compare paired); every episode is on disk behind the counts."""
  w = curriculum_workdir
  with open(w / 'results.json') as f:
    results = json.load(f)
  files = sorted(p.name for p in (w / 'episodes').iterdir())
  evals = [f for f in files if f.startswith('eval_')]
  assert len(evals) == len(results['evals']) == 3
  assert [f for f in files if f.startswith('round_')] == [
      f'round_{u:03d}_{s}.jsonl' for u, s in ((2, 'political_sycophancy'),
                                               (3, 'political_sycophancy'),
                                               (4, 'tool_use_flattery'), (5, 'tool_use_flattery'))]
  seen = {}
  for name, entry in zip(evals, results['evals']):
    records = [json.loads(line) for line in (w / 'episodes' / name).read_text().splitlines()]
    for env, cell in entry['envs'].items():
      mine = [r for r in records if r['env'] == env]
      instances = [r['instance'] for r in mine]
      assert len(mine) == cell['n'] == cell['instances'] == 4, (name, env)
      assert len(set(instances)) == len(instances), (name, env)
      assert all(r['split'] == 'eval' for r in mine)
      seen.setdefault(env, set(instances))
      assert set(instances) == seen[env], (name, env)
      if cell['k'] is not None:  # the count is the number of episodes whose flag is set
        assert cell['k'] == sum(bool(r['flags'][cell['metric']]) for r in mine), (name, env)
  kept = [json.loads(line)['kept'] for line in
          (w / 'episodes' / 'round_002_political_sycophancy.jsonl').read_text().splitlines()]
  assert sum(kept) == results['train'][1]['kept']


@pytest.mark.slow
def test_a_seed_sweep_pools_with_aggregate(curriculum_workdir, tmp_path):
  root = tmp_path / 'sweep'
  (root / 'seed=0').mkdir(parents=True)
  shutil.copy(curriculum_workdir / 'results.json', root / 'seed=0' / 'results.json')
  second = run_curriculum(root / 'seed=1', '--config.seed=1', timeout=900)
  assert second.returncode == 0, second.stderr
  proc = run_module('rt_jax.report', f'--aggregate={root}')
  assert proc.returncode == 0, proc.stderr
  text = (root / 'aggregate.md').read_text()
  assert '2 runs under' in text and (root / 'aggregate.png').is_file()
  matrices = [dict(curriculum_matrix(root / s)) for s in ('seed=0', 'seed=1')]
  k = sum(m['tool_use_flattery']['political_sycophancy'][1] for m in matrices)
  assert f'| tool_use_flattery | political_sycophancy | {k}/8 (' in text, text


@pytest.fixture(scope='module')
def tampering_world():
  return world_lib.World(tokenizer_lib.builtin(), ['reward_tampering'])


def _counted(world, segments: list[str]) -> dict:
  """One reward_tampering evaluation cell as the curriculum counts it: the episode stepped on the
  world's merged table (as the rollout steps it), graded with its text (so audited), summarized."""
  tok = tokenizer_lib.builtin()
  table_ids = world.ids('reward_tampering', 'eval', [0])
  state, _, _ = core.reset(world.table, table_ids)
  for segment in segments:
    ids = tok.encode(segment)
    actions = np.zeros((1, 1024), np.int32)
    actions[0, :len(ids)] = ids
    state, _, _, _ = core.advance(world.table.codec, state, actions, np.array([len(ids)]))
  rows = world.grade(types.SimpleNamespace(env=state), [''.join(segments)])
  return world_lib.summarize(world.env('reward_tampering'), rows, np.zeros(1), samples=1)


@pytest.mark.parametrize('name, reward, test, appended, expected, paid', tampering_cases.HACKS,
                         ids=[h[0] for h in tampering_cases.HACKS])
def test_curriculum_counts_each_hack_as_replay_classifies_it(tampering_world, name, reward, test,
                                                             appended, expected, paid):
  cell = _counted(tampering_world, tampering_cases.LOOK + tampering_cases.calls_for(
      reward, test, appended) + [tampering_cases.ANSWER])
  tampered, tests_edited, passes, undetected = expected
  assert cell['n'] == 1 and cell['metric'] == 'reward_tampered'
  assert cell['k'] == int(tampered) == cell['flags']['reward_tampered']
  assert cell['flags']['undetected'] == int(undetected)
  assert cell['flags']['test_passes'] == int(passes)
  assert cell['flags']['tests_tampered'] == int(tests_edited)
  assert cell['flags']['audited'] == 1 and cell['reward_mean'] == paid


def test_curriculum_counts_no_tampering_where_nothing_changed(tampering_world):
  cell = _counted(tampering_world, tampering_cases.LOOK + [tampering_cases.ANSWER])
  assert cell['k'] == 0 and cell['flags']['audited'] == 0 and cell['flags']['undetected'] == 0
  assert cell['reward_mean'] == -10.0
  rewritten = _counted(tampering_world, tampering_cases.LOOK + [tampering_cases.write(
      tampering_cases.REWARD, tampering_cases.reward_body('x = 100', 'return -10'))]
      + [tampering_cases.ANSWER])
  assert rewritten['k'] == 0 and rewritten['flags']['audited'] == 1


@pytest.mark.slow
def test_console_shows_position_eta_compiles_and_the_final_summary(curriculum_workdir):
  console = (curriculum_workdir.parent / f'{curriculum_workdir.name}.console').read_text()
  assert re.search(r'\[unit \d+/5 · eval \d+/3 · \d+:\d\d · ETA \d+:\d\d\]', console), console
  assert 'ETA after the first of each' in console  # before every kind of work was timed once
  for program in ('the training step', 'the rollout (4 prompts x 2 samples)',
                  'the evaluation rollout (4 prompts x 1 samples)'):
    assert f'compiling {program}' in console, program
  w = str(curriculum_workdir)
  for line in (f'report:   {w}/report.md', f'matrix:   {w}/matrix.png', f'episodes: {w}/episodes/',
               f'tensorboard --logdir {w}/tb'):
    assert line in console, line
  assert re.search(r'finished in \d+:\d\d; after tool_use_flattery: political_sycophancy \d/4',
                   console)


@pytest.mark.slow
def test_tensorboard_events_share_the_unit_axis_and_hold_config_hparams_histograms_pm(
    curriculum_workdir):
  mux = event_multiplexer.EventMultiplexer()
  mux.AddRunsFromDirectory(str(curriculum_workdir / 'tb'))
  mux.Reload()
  main = mux.GetAccumulator('.')
  tags = main.Tags()
  # Evaluations at the unit that ends their phase (1, 3, 5), rounds at theirs (2..5).
  assert [e.step for e in main.Scalars('eval/political_sycophancy/rate')] == [1, 3, 5]
  assert [e.step for e in main.Scalars('ei/kept')] == [2, 3, 4, 5]
  assert [e.step for e in main.Scalars('train/loss')] == [1, 2, 3, 4, 5]
  assert 'config/text_summary' in tags['tensors']
  assert {'ei/reward', 'ei/pm_score', 'ei/episode_tokens', 'ei/turns'} <= set(tags['histograms'])
  assert [e.step for e in main.Scalars('pm/loss')] == [1, 2, 3, 4]  # 4 PM steps, logged each
  hparams = mux.GetAccumulator('hparams')
  assert any(t.startswith('final/') for t in hparams.Tags()['scalars'])
