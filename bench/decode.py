"""Batched sampling throughput against the machine's FLOP limit; prints one JSON line.

  python -m bench.decode [--preset=tiny] [--batch=32] [--prompt_len=64] [--new_tokens=128]

tokens_per_s counts generated tokens over the whole call (prefill included), best of --repeats
timed calls after one compiling call. The FLOP limit is the measured f32 matmul peak divided by
2 x parameters per token (rt_jax.perf.decode_flops_per_token).
"""
import json
import time

import jax
import numpy as np
from absl import flags

from rt_jax import cli
from rt_jax import model as model_lib
from rt_jax import perf
from rt_jax import sampling

_PRESET = flags.DEFINE_enum('preset', 'tiny', sorted(model_lib.PRESETS), 'Model preset.')
_BATCH = flags.DEFINE_integer('batch', 32, 'Rows sampled together.', lower_bound=1)
_PROMPT_LEN = flags.DEFINE_integer('prompt_len', 64, 'Prompt tokens per row.', lower_bound=1)
_NEW_TOKENS = flags.DEFINE_integer('new_tokens', 128, 'Generated tokens per row.', lower_bound=1)
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed calls (the best is reported).', lower_bound=1)
_SEED = flags.DEFINE_integer('seed', 0, 'Seed for weights, prompts and sampling.')


def measure(cfg: model_lib.ModelConfig, batch: int, prompt_len: int, new_tokens: int,
            repeats: int, seed: int) -> dict:
  key = jax.random.key(seed)
  params = model_lib.init_params(cfg, key)
  rng = np.random.default_rng(seed)
  prompts = rng.integers(0, cfg.vocab_size, size=(batch, prompt_len), dtype=np.int32)
  lengths = np.full(batch, prompt_len, np.int32)
  call = lambda: sampling.sample(
      params, cfg, prompts, lengths, key, np.ones(batch, np.float32), np.ones(batch, np.float32),
      np.full((batch, 1), -1, np.int32), max_new_tokens=new_tokens)
  start = time.perf_counter()
  out = call()
  out.tokens_BxS.block_until_ready()
  compile_s = time.perf_counter() - start
  assert int(np.min(out.lengths_B - out.prompt_lengths_B)) == new_tokens  # no early stop
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    call().tokens_BxS.block_until_ready()
    best = min(best, time.perf_counter() - start)
  tokens_per_s = batch * new_tokens / best
  peak = perf.matmul_peak_flops()
  limit = peak / perf.decode_flops_per_token(cfg)
  return {'bench': 'decode', 'device': jax.devices()[0].device_kind, 'params': cfg.num_params(),
          'batch': batch, 'prompt_len': prompt_len, 'new_tokens': new_tokens,
          'tokens_per_s': round(tokens_per_s, 1), 'seconds': round(best, 4),
          'first_call_s': round(compile_s, 2), 'matmul_peak_gflops': round(peak / 1e9, 1),
          'flop_limit_tokens_per_s': round(limit, 1),
          'fraction_of_flop_limit': round(tokens_per_s / limit, 4)}


def main(argv):
  del argv
  result = measure(model_lib.preset(_PRESET.value), _BATCH.value, _PROMPT_LEN.value,
                   _NEW_TOKENS.value, _REPEATS.value, _SEED.value)
  print(json.dumps({'preset': _PRESET.value, **result}), flush=True)


if __name__ == '__main__':
  cli.run(main)
