"""A tiny expert-iteration round on a mesh, run as its own process so that XLA_FLAGS can give it
simulated CPU devices before JAX starts (tests/test_sharding.py, tests/test_distributed.py).

  python tests/sharded_round.py '{"devices": 8, "meshes": [null, [2, 2, 2]], "job": "round"}'

Spec fields: devices (simulated CPU devices of this process); meshes (one result per mesh, in one
process so that tracing is shared; null: the unsharded code path on one device); job ('params':
placement only, 'cache': the rollout's KV cache per device, 'round': one EI round, 'save' /
'restore': a checkpoint in `workdir`, 'pm': the run's preference model, on no mesh); workdir
(also TensorBoard's, under tb/). Multi-process runs set the RT_JAX_* variables of
rt_jax.core.sharding. Prints one JSON line.
"""
import hashlib
import json
import math
import os
import re
import sys

SPEC = json.loads(sys.argv[1])
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           f' --xla_force_host_platform_device_count={SPEC["devices"]}')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=wrong-import-position
import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from rt_jax.core import checkpoint  # noqa: E402
from rt_jax import envs  # noqa: E402
from rt_jax.rl import expert_iteration as ei  # noqa: E402
from rt_jax.core import metrics  # noqa: E402
from rt_jax.core import model as model_lib  # noqa: E402
from rt_jax.rl import pm  # noqa: E402
from rt_jax.rl import rollout  # noqa: E402
from rt_jax.core import sharding  # noqa: E402
from rt_jax.core import tokenizer as tokenizer_lib  # noqa: E402
from rt_jax.core import train  # noqa: E402

CFG = model_lib.preset('tiny')
ENV = 'hhh'  # the shortest prompts (up to 178 tokens)
EI = ml_collections.ConfigDict({
    'prompts': 8, 'samples': 2, 'temperature': 1.0, 'top_p': 1.0, 'threshold': 0.0, 'train_rows': 8,
    'train_len': 256, 'sft_steps': 2, 'microbatch_rows': 0})
RC = rollout.RolloutConfig(context=256, max_turns=2, max_segment_tokens=24, chunk=64)
OPT = train.make_optimizer(ml_collections.ConfigDict({
    'lr': 1e-3, 'warmup_steps': 1, 'steps': 10, 'final_lr_frac': 0.1, 'b1': 0.9, 'b2': 0.95,
    'weight_decay': 0.01, 'grad_clip': 1.0}))
SEED = 0  # the init key's; a key made at import would start JAX before jax.distributed


def initial_state(plan):
  return plan.init_state(CFG, jax.random.key(SEED), OPT)


def specs(tree) -> dict:
  """PartitionSpec of every array (or sharding, or abstract array) by its path."""
  spec = lambda x: x.spec if isinstance(x, sharding.NamedSharding) else x.sharding.spec
  return {jax.tree_util.keystr(path): str(spec(leaf))
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def digests(tree) -> list:
  """A hash of every array's host bytes: equal iff the values are, bit for bit."""
  return [hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()
          for x in jax.tree.leaves(tree)]


def held_here(x: jax.Array) -> bool:
  """Whether this process's devices together hold every element of `x` (replicas count once)."""
  tiles = {tuple(s.indices(n)[:2] for s, n in zip(shard.index, x.shape))
           for shard in x.addressable_shards}
  return sum(math.prod(stop - start for start, stop in tile) for tile in tiles) == x.size


def score_fn(env, table):
  def score(eps) -> ei.Scored:
    flags = jax.device_get(envs.core.grade(env, table, eps.env))
    reward = np.asarray(flags['reward'], np.float32)
    # A stand-in for the PM that depends on every sampled token: selection must see them all.
    learn = np.asarray(eps.learn_BxS)
    pm = (np.sum(np.asarray(eps.tokens_BxS) * learn, axis=1) % 97 / 97.0).astype(np.float32)
    shape = (-1, EI.samples)
    return ei.Scored(reward.reshape(shape), reward.reshape(shape) > 0, pm.reshape(shape),
                     ei.scores(reward, pm, 'hhh', 0.5).reshape(shape))
  return score


def ei_round(plan, workdir):
  tok = tokenizer_lib.builtin()
  env, table, _ = envs.make(ENV, tok, 'train')
  policy = rollout.Policy.make(CFG, tok, RC)
  state = initial_state(plan)
  ids = np.arange(EI.prompts, dtype=np.int32) * 3
  state, eps, scored, (rows, weights), m = ei.round_step(
      state, policy, table, ids, jax.random.key(1), score_fn(env, table), EI, variant='hhh',
      optimizer=OPT, plan=plan)
  writer = metrics.Writer(os.path.join(workdir, 'tb'))
  writer.scalars(1, {'ei/loss': m['loss']})
  writer.close()
  params = sharding.to_host(state.params)
  return {'rows': rows.tolist(), 'weights': weights.tolist(), 'loss': m['loss'],
          'kept': m['kept'], 'lengths': np.asarray(eps.lengths_B).tolist(),
          'tokens_sum': int(np.sum(np.asarray(eps.tokens_BxS, np.int64))),
          'pm': np.asarray(scored.pm).reshape(-1).tolist(),
          'params': {jax.tree_util.keystr(p): x.tolist() for p, x in
                     jax.tree_util.tree_leaves_with_path(params)} if SPEC.get('dump') else None,
          'param_specs': specs(state.params)}


def errors(plan) -> list:
  """The messages of what this mesh cannot hold: 3 KV heads on a tensor axis of 2 or 4, and a
  batch of 6 rows."""
  out = []
  for attempt in (lambda: plan.params(model_lib.preset('tiny', n_kv_heads=3, n_heads=6)),
                  lambda: plan.put_rows({'tokens': np.zeros((6, 4), np.int32)}, 'ei.train_rows')):
    try:
      attempt()
      out.append(None)
    except sharding.ConfigError as e:
      out.append(str(e))
  return out


def cache_shapes(plan) -> list:
  """Per-device [rows, kv heads] of the rollout's value cache buffers ([rows, blocks, kv heads,
  block slots, head dim]) in the compiled program: sharded, they are a fraction of the whole."""
  tok = tokenizer_lib.builtin()
  _, table, _ = envs.make(ENV, tok, 'train')
  b = EI.prompts * EI.samples
  rows = lambda x: plan.put(x, plan.rows(1))
  lowered = rollout.rollout.lower(
      plan.init_state(CFG, jax.random.key(SEED), OPT).params, CFG, RC,
      plan.put(table, plan.replicated), rows(np.arange(EI.prompts, dtype=np.int32)),
      plan.put_key(jax.random.key(1)), rows(np.ones(b, np.float32)),
      rows(np.ones(b, np.float32)), plan.put(rollout.allowed_tokens(tok, CFG.vocab_size),
                                             plan.replicated), tok.im_end_id, samples=EI.samples)
  blocks = -(-(RC.context + RC.chunk) // model_lib.CACHE_BLOCK)
  found = re.findall(rf'f32\[(\d+),{blocks},(\d+),{model_lib.CACHE_BLOCK},{CFG.head_dim}\]',
                     lowered.compile().as_text())
  return sorted({(int(r), int(k)) for r, k in found})


def trained_pm(workdir: str) -> dict:
  """A run's PM (rt_jax.rl.pm.trained), each process given its own workdir as hosts with their own
  disks are. Then process 1 reads process 0's copy on its own, while process 0 waits for nothing."""
  pm_cfg = pm.default_config()
  pm_cfg.update(steps=3, batch_size=4, train_pairs=32, heldout_pairs=8, seq_len=48)
  model, metrics = pm.trained(pm_cfg, os.path.join(workdir, 'pm'), jax.random.key(SEED))
  result = {'digests': digests(model.params), 'seq_len': model.seq_len,
            'heldout_accuracy': metrics.get('heldout_accuracy')}
  if jax.process_index():
    process_0s = os.path.join(os.path.dirname(workdir), 'p0', 'pm')
    result['read_alone'] = digests(pm.load(process_0s).params) == result['digests']
  return result


def run(job: str, plan, workdir: str) -> dict:
  if job == 'cache':
    return {'cache': cache_shapes(plan)}
  if job == 'params':
    state = plan.init_state(CFG, jax.random.key(SEED), OPT)
    return {'specs': specs(state), 'rules': specs(plan.state(CFG, OPT)),
            'shard_shapes': {jax.tree_util.keystr(p): list(x.addressable_shards[0].data.shape)
                             for p, x in jax.tree_util.tree_leaves_with_path(state.params)},
            'errors': errors(plan)}
  if job == 'round':
    return ei_round(plan, workdir)
  if job == 'save':
    state = initial_state(plan)
    batch = {'tokens': np.arange(8 * 32, dtype=np.int32).reshape(8, 32) % 250,
             'mask': np.ones((8, 32), np.int32)}
    state, _ = plan.train_step(state, batch, jax.random.key(1), cfg=CFG, optimizer=OPT)
    mngr = checkpoint.Manager(workdir)
    mngr.save(1, state.params, state.opt_state, {'step': 1})
    mngr.close()
    return {'digests': digests(sharding.to_host((state.params, state.opt_state))),
            'holds_every_parameter': all(map(held_here, jax.tree.leaves(state.params)))}
  if job == 'pm':
    return trained_pm(workdir)
  assert job == 'restore', job
  mngr = checkpoint.Manager(workdir)
  target = plan.abstract_state(CFG, OPT)
  params, opt_state, _ = mngr.restore(1, target.params, target.opt_state)
  mngr.close()
  return {'digests': digests(sharding.to_host((params, opt_state))),
          'specs': specs((params, opt_state)), 'rules': specs((target.params, target.opt_state))}


def main():
  sharding.initialize_distributed()
  results = []
  for mesh in SPEC['meshes']:
    # No mesh: this process's first device alone, the reference every mesh is compared with.
    plan = sharding.Plan(sharding.make_mesh(mesh)) if mesh else sharding.Plan.one_device()
    results.append(run(SPEC['job'], plan, SPEC.get('workdir', '')))
  print(json.dumps({'process': jax.process_index(), 'devices': jax.device_count(),
                    'results': results}))


if __name__ == '__main__':
  main()
