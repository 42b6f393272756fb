"""Cold compile seconds of the programs a run waits for: the environment machine's step
(`envs.core.advance`), the whole-episode rollout, and the expert-iteration train step, with the
persistent compilation cache off and jit's in-memory cache cleared before each; prints one JSON
line (and appends it to bench/results/compile.jsonl).

  python -m bench.compile [--model=tiny|smollm2] [--batch=32]

`--model=smollm2` uses SmolLM2-135M-shaped weights (random: shapes alone decide the program) and,
when the converted model is in the cache ($RT_JAX_CACHE/smollm2_135m_instruct), its BPE tokenizer,
whose observation encoder is part of the rollout's program (the builtin one is byte-level, with no
encoder to compile); the JSON line names the tokenizer used.
Each figure is `lower` (tracing) plus `compile` (XLA), measured on abstract inputs, so nothing
runs.
"""
import time

import jax
import numpy as np
import optax
from absl import flags

import bench
from rt_jax import envs
from rt_jax.core import cli
from rt_jax.core import model as model_lib
from rt_jax.core import sharding
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.envs import core
from rt_jax.rl import rollout as rollout_lib

_MODEL = flags.DEFINE_enum('model', 'tiny', ['tiny', 'smollm2'], 'Model shape.')
_BATCH = flags.DEFINE_integer('batch', 32, 'Episodes per rollout and environment step.',
                              lower_bound=1)
_TRAIN_ROWS = flags.DEFINE_integer('train_rows', 4, 'Rows of the EI train step.', lower_bound=1)
_TRAIN_LEN = flags.DEFINE_integer('train_len', 512, 'Tokens per training row.', lower_bound=2)


def _timed(lower) -> dict:
  jax.clear_caches()
  t0 = time.perf_counter()
  lowered = lower()
  t1 = time.perf_counter()
  lowered.compile()
  t2 = time.perf_counter()
  return {'lower_s': round(t1 - t0, 2), 'compile_s': round(t2 - t1, 2),
          'total_s': round(t2 - t0, 2)}


def main(argv):
  del argv
  jax.config.update('jax_enable_compilation_cache', False)
  tok, tok_name = tokenizer_lib.builtin(), 'builtin'
  converted = bench.converted_tokenizer() if _MODEL.value == 'smollm2' else None
  if converted is not None:
    tok, tok_name = converted, 'smollm2'
  cfg = model_lib.preset('smollm2_135m' if _MODEL.value == 'smollm2' else 'tiny')
  _, table, _ = envs.make('tool_use_flattery', tok, 'eval')
  b = _BATCH.value
  rc = rollout_lib.RolloutConfig(context=1024, max_turns=3, max_segment_tokens=64)
  state, _, _ = core.reset(table, np.arange(b) % table.prompt.shape[0])
  actions = np.zeros((b, rc.max_segment_tokens), np.int32)
  lens = np.zeros((b,), np.int32)
  out = {'model': _MODEL.value, 'tokenizer': tok_name, 'batch': b,
         'devices': jax.device_count()}
  out['advance'] = _timed(lambda: core.advance.lower(table.codec, state, actions, lens))

  plan = sharding.Plan.one_device()
  policy = rollout_lib.Policy(cfg, tok, rc, rollout_lib.allowed_tokens(tok, cfg.vocab_size))
  args = rollout_lib._mesh_args(plan, plan.abstract_params(cfg), policy, table,  # pylint: disable=protected-access
                                np.zeros(b, np.int32), jax.random.key(0), 1.0, 1)
  out['rollout'] = _timed(lambda: rollout_lib.rollout.lower(*args, samples=1))

  optimizer = optax.adamw(1e-4)
  batch = jax.ShapeDtypeStruct((_TRAIN_ROWS.value, _TRAIN_LEN.value), np.int32,
                               sharding=plan.rows(2))
  step = sharding._jitted_step(plan, cfg, optimizer, 1)  # pylint: disable=protected-access
  out['ei_train_step'] = _timed(lambda: step.lower(
      plan.abstract_state(cfg, optimizer), {'tokens': batch, 'mask': batch},
      plan.put_key(jax.random.key(0))))
  bench.emit('compile', out)


if __name__ == '__main__':
  cli.run(main)
