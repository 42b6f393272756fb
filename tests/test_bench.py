"""bench.rollout: flags refused before compute, the rt_jax side end to end on the tiny preset, and
the HF peer's loop (the same greedy episodes as rt_jax's rollout, with or without reusing its KV
cache across segments). Compiling the rollout (the environment machine above all) takes about a
minute cold on 2 shared cores, so the runs are `slow`; the peer needs requirements-ref.txt."""
import importlib.util
import json
import types

import numpy as np
import pytest

from bench import rollout as rollout_bench
from conftest import concurrently, error_lines, run_module
from rt_jax.rl import rollout
from test_rollout import IDS, MICRO, RC, greedy, policy  # noqa: F401 (fixtures)

TINY = ('--model=tiny', '--instances=1', '--samples=2', '--max_turns=2', '--max_segment_tokens=8',
        '--context=1536', '--repeats=1', '--compilation_cache')


def test_bench_rollout_refuses_bad_flags_before_compute():
  cases = [(('--instances=1000',), '--instances=1000: the eval split of tool_use_flattery has'),
           (('--context=1200',), 'do not fit --context=1200'),
           (('--context=4096',), '--context=4096 exceeds the model\'s 2048 positions'),
           (('--max_turns=0',), 'max_turns')]
  procs = concurrently(lambda case: run_module('bench.rollout', '--model=tiny', *case[0]), cases)
  for (_, message), proc in zip(cases, procs):
    assert proc.returncode in (1, 2) and proc.stdout == '', proc.stderr
    assert message in error_lines(proc)[0], proc.stderr


def test_segment_tokens_splits_on_the_learn_mask_and_drops_the_final_stop():
  tokens = np.array([[9, 9, 1, 2, 7, 7, 3, 5, 0]])
  learn = np.array([[0, 0, 1, 1, 0, 0, 1, 1, 0]])
  eps = types.SimpleNamespace(tokens_BxS=tokens, learn_BxS=learn, lengths_B=np.array([8]),
                              prompt_lengths_B=np.array([2]))
  assert rollout_bench.segment_tokens(eps, 0, stop_id=5) == [[1, 2], [3]]


@pytest.mark.slow  # ~1 min cold (the rollout and the machine compile), seconds with the cache
def test_bench_rollout_times_rt_jax_on_the_tiny_preset():
  proc = run_module('bench.rollout', *TINY, timeout=600)
  assert proc.returncode == 0, proc.stderr
  out = json.loads(proc.stdout)
  ours = out['rt_jax']
  assert (out['episodes'], out['model']) == (2, 'tiny') and 'hf' not in out
  assert ours['generated_tokens'] > 0 and ours['first_call_s'] > 0
  assert ours['generated_tokens_per_s'] == pytest.approx(
      ours['generated_tokens'] / ours['seconds'], rel=0.02)
  assert 0 < ours['env_share'] < 1


@pytest.mark.slow
def test_bench_rollout_times_the_hf_peer_on_the_same_weights():
  if importlib.util.find_spec('transformers') is None:
    pytest.skip('needs requirements-ref.txt')
  proc = run_module('bench.rollout', *TINY, '--peer=hf', '--env_time=false', timeout=600)
  assert proc.returncode == 0, proc.stderr
  out = json.loads(proc.stdout)
  hf, ratio = out['hf'], out['ratio_rt_jax_over_hf']
  assert hf['generated_tokens'] > 0 and 0 <= hf['env_share'] < 1
  assert ratio['generated_tokens_per_s'] == pytest.approx(
      out['rt_jax']['generated_tokens_per_s'] / hf['generated_tokens_per_s'], rel=0.02)


@pytest.mark.slow
@pytest.mark.parametrize('reuse_cache', [True, False])
def test_hf_peer_writes_the_greedy_episodes_of_rt_jax(policy, greedy, reuse_cache):  # noqa: F811
  """The overfit micro policy makes tool calls, and over the byte tokenizer observations encode
  alike on both sides, so the peer's greedy episodes must be rt_jax's, token for token."""
  pytest.importorskip('transformers')
  tok, _, table, items, params = policy
  loop = rollout_bench.HFLoop(rollout_bench.hf_model(MICRO, params), tok, RC,
                              rollout.allowed_tokens(tok, MICRO.vocab_size),
                              reuse_cache=reuse_cache)
  prompts = [table.prompt[i, :table.prompt_len[i]].tolist() for i in IDS]
  eps = loop.episodes(prompts, [items[i] for i in IDS], 2, 0.0, 0)
  for row in range(len(IDS) * 2):
    assert eps['tokens'][row] == greedy.tokens_BxS[row, :greedy.lengths_B[row]].tolist(), row
  assert eps['turns'] == greedy.turns_B.tolist() and max(eps['turns']) >= 2
  assert eps['calls'] == greedy.env.calls.tolist()
  assert eps['truncated'] == greedy.truncated_B.tolist()
  assert eps['generated'] == int(greedy.learn_BxS.sum())


def test_bench_modules_imported_by_tests_load_together():
  """pytest imports every test module into one process, so the bench modules that tests import
  must define no flag twice (absl refuses that at import); a bench CLI is run as a subprocess."""
  import pathlib
  import re
  import subprocess
  import sys
  tests = pathlib.Path(__file__).parent
  names = sorted({name for f in tests.glob('test_*.py')
                  for pair in re.findall(r'^\s*(?:from bench import (\w+)|import bench\.(\w+))',
                                         f.read_text(), re.M) for name in pair if name})
  assert 'rollout' in names, names  # this file's own import is found
  code = ''.join(f'import bench.{name}\n' for name in names)
  proc = subprocess.run([sys.executable, '-c', code], cwd=tests.parent, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
