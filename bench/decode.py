"""Batched sampling throughput against the machine's FLOP limit and, optionally, against HF
transformers + PyTorch `generate` on the same GGUF and prompts; prints one JSON line per batch
size (and appends it to bench/results/decode.jsonl).

  python -m bench.decode [--preset=tiny] [--batch=32,128] [--prompt_len=64] [--new_tokens=128]
  python -m bench.decode --checkpoint=DIR --peer=hf [--gguf=PATH]   # DIR converted from PATH

tokens_per_s counts generated tokens over the whole call (prefill included), best of --repeats
timed calls after one compiling call; every row generates exactly --new_tokens tokens (no stop
token) at temperature 1 over the full vocabulary, on both sides. The FLOP limit is the measured
f32 matmul peak divided by 2 x parameters per token (rt_jax.core.perf.decode_flops_per_token).
rt_jax's peak resident memory (over all batch sizes so far) is read before the peer is imported;
every rt_jax batch size is timed before the peer's.
"""
import os
import resource

import jax
import numpy as np
from absl import flags

import bench
from rt_jax.core import checkpoint
from rt_jax.core import cli
from rt_jax.core import fetch
from rt_jax.core import metrics
from rt_jax.core import model as model_lib
from rt_jax.core import perf
from rt_jax.core import sharding
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.core.errors import ConfigError
from rt_jax.envs import chat as chat_env
from rt_jax.rl import chat
from rt_jax.rl import rollout

_PRESET = flags.DEFINE_enum('preset', 'tiny', sorted(model_lib.PRESETS),
                            'Model preset with random weights (ignored with --checkpoint).')
_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'Model directory to sample from instead.')
_PEER = flags.DEFINE_enum('peer', None, ['hf'], 'Also time HF transformers on --gguf.')
_GGUF = flags.DEFINE_string('gguf', None, 'GGUF the checkpoint was converted from (default: the '
                            'fetched SmolLM2-135M-Instruct).')
_BATCH = flags.DEFINE_list('batch', ['32', '128'], 'Rows sampled together; one result per size.')
_PROMPT_LEN = flags.DEFINE_integer('prompt_len', 64, 'Prompt tokens per row (random weights).',
                                   lower_bound=1)
_NEW_TOKENS = flags.DEFINE_integer('new_tokens', 128, 'Generated tokens per row.', lower_bound=1)
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed calls (the best is reported).', lower_bound=1)
_SEED = flags.DEFINE_integer('seed', 0, 'Seed for weights, prompts and sampling.')

QUESTIONS = ('What is the capital of France?', 'Write a haiku about the sea.',
             'How do I reverse a list in Python?', 'Why is the sky blue?',
             'Give me three tips for a job interview.', 'What is 17 times 23?',
             'Explain photosynthesis to a child.', 'Suggest a name for a grey cat.')


def _prompts(tok, batch: int) -> list[list[int]]:
  chats = [[{'role': 'user', 'content': QUESTIONS[i % len(QUESTIONS)]}] for i in range(batch)]
  return [tokenizer_lib.encode_chat(tok, c, add_generation_prompt=True)[0] for c in chats]


def time_rt_jax(cfg, params, prompts, new_tokens: int, repeats: int, seed: int) -> dict:
  # The one-turn chat rollout every sampler uses (rl/chat.py), over the full vocabulary and with
  # no stop token, so that every row decodes `new_tokens` tokens.
  table = chat_env.table(prompts, 0)
  policy = rollout.Policy(cfg, None, chat.rollout_config(table.prompt.shape[1], new_tokens),
                          np.ones(cfg.vocab_size, bool))
  plan, b = sharding.Plan.one_device(), len(prompts)

  def call():
    eps = rollout.on_mesh(plan, params, policy, table, np.arange(b), jax.random.key(seed), 1.0, 1,
                          stop_id=-1)
    generated = eps.lengths_B - eps.prompt_lengths_B
    assert generated.min() == new_tokens, generated  # no row stopped early
  first, best = perf.best_time(call, repeats)
  return {'tokens_per_s': round(b * new_tokens / best, 1), 'seconds': round(best, 3),
          'first_call_s': round(first, 2),
          'peak_rss_gb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def time_hf(hf, prompts, pad_id: int, new_tokens: int, repeats: int, seed: int) -> dict:
  import torch
  width = max(len(p) for p in prompts)
  ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
  mask = torch.zeros_like(ids)
  for i, p in enumerate(prompts):  # HF generate wants left padding
    ids[i, width - len(p):] = torch.tensor(p)
    mask[i, width - len(p):] = 1

  def call():
    torch.manual_seed(seed)
    with torch.no_grad():
      out = hf.generate(ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0,
                        top_p=1.0, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                        pad_token_id=pad_id)
    assert out.shape[1] == width + new_tokens
  first, best = perf.best_time(call, repeats)
  return {'tokens_per_s': round(len(prompts) * new_tokens / best, 1),
          'seconds': round(best, 3), 'first_call_s': round(first, 2),
          'torch_threads': torch.get_num_threads()}


def _load_hf(gguf_path: str):
  import torch  # the peer is imported only when asked for, after rt_jax's memory is read
  from transformers import AutoModelForCausalLM
  return AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf_path),
                                              gguf_file=os.path.basename(gguf_path),
                                              dtype=torch.float32).eval()


def main(argv):
  del argv
  try:
    batches = [int(b) for b in _BATCH.value]
  except ValueError as e:
    raise ConfigError(f'--batch={",".join(_BATCH.value)}: expected integers') from e
  if not batches or min(batches) < 1:
    raise ConfigError(f'--batch={",".join(_BATCH.value)}: expected sizes of at least 1')
  if _CHECKPOINT.value:
    cfg, tok, params = checkpoint.load_model(_CHECKPOINT.value)
    name = _CHECKPOINT.value
    prompts = {b: _prompts(tok, b) for b in batches}
  else:
    if _PEER.value:
      raise ConfigError('--peer needs --checkpoint (a model converted from the peer\'s GGUF)')
    cfg, name = model_lib.preset(_PRESET.value), _PRESET.value
    params = model_lib.init_params(cfg, jax.random.key(_SEED.value))
    rng = np.random.default_rng(_SEED.value)
    prompts = {b: rng.integers(0, cfg.vocab_size, size=(b, _PROMPT_LEN.value)).tolist()
               for b in batches}
    tok = None
  peak = perf.matmul_peak_flops()
  limit = peak / perf.decode_flops_per_token(cfg)
  results = []
  for b in batches:
    ours = time_rt_jax(cfg, params, prompts[b], _NEW_TOKENS.value, _REPEATS.value, _SEED.value)
    metrics.console(f'rt_jax, batch {b}: {ours["tokens_per_s"]} tok/s')
    results.append({'bench': 'decode', 'model': name, 'device': jax.devices()[0].device_kind,
                    'params': cfg.num_params(), 'batch': b,
                    'prompt_tokens_max': max(len(p) for p in prompts[b]),
                    'new_tokens': _NEW_TOKENS.value, 'rt_jax': ours,
                    'matmul_peak_gflops': round(peak / 1e9, 1),
                    'flop_limit_tokens_per_s': round(limit, 1),
                    'fraction_of_flop_limit': round(ours['tokens_per_s'] / limit, 4)})
  if _PEER.value == 'hf':
    hf = _load_hf(_GGUF.value or fetch.fetch())
    for result in results:
      peer = time_hf(hf, prompts[result['batch']], tok.pad_id, _NEW_TOKENS.value,
                     _REPEATS.value, _SEED.value)
      result['hf'] = peer
      metrics.console(f'HF, batch {result["batch"]}: {peer["tokens_per_s"]} tok/s')
      result['ratio_rt_jax_over_hf'] = round(result['rt_jax']['tokens_per_s'] /
                                             peer['tokens_per_s'], 2)
  for result in results:
    bench.emit('decode', result)


if __name__ == '__main__':
  cli.run(main)
