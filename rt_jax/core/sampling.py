"""Batched sampling: one prefill over the (right-padded) prompts, then a `lax.while_loop` of
single-token decode steps against a fixed KV cache.

Everything that varies between calls (prompt lengths, temperature, top-p, stop tokens) is an array,
so a new prompt set of the same bucketed shape reuses the compiled program. Each row writes its
next token at its own length, so ragged prompts need no left-padding.
"""
import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rt_jax.core import model as model_lib
from rt_jax.core.tokenizer import Tokenizer

MIN_PROMPT_BUCKET = 16  # prompt buffers are padded to a power of two at least this wide


@struct.dataclass
class SamplerState:
  tokens_BxS: jax.Array  # prompt then generated tokens; each row valid up to lengths_B
  lengths_B: jax.Array  # valid tokens per row == cache slot of the row's next token
  done_B: jax.Array
  cache: model_lib.Cache
  logits_BxNxV: Optional[jax.Array]  # logits behind each generated token (return_logits only)
  step: jax.Array  # tokens generated so far by rows that are still running
  key: jax.Array


@struct.dataclass
class SampleOutput:
  tokens_BxS: jax.Array
  prompt_lengths_B: jax.Array
  lengths_B: jax.Array
  logits_BxNxV: Optional[jax.Array]


def sample_token(logits_BxV, uniform_B, temperature_B, top_p_B):
  """Greedy where temperature == 0, else softmax(logits / T) restricted to the top-p nucleus,
  drawn by inverting its CDF at `uniform_B` (one uniform in [0, 1) per row). Taking the uniforms
  rather than a key lets a subset of a batch draw exactly what the whole batch would have."""
  scaled_BxV = logits_BxV / jnp.maximum(temperature_B, 1e-6)[:, None]

  def nucleus(x_BxV):
    sorted_BxV = jnp.sort(x_BxV, axis=-1)[:, ::-1]
    mass_before_BxV = jnp.cumsum(jax.nn.softmax(sorted_BxV, axis=-1), axis=-1) - \
        jax.nn.softmax(sorted_BxV, axis=-1)
    kept_BxV = mass_before_BxV < top_p_B[:, None]  # always keeps the top token
    threshold_B = jnp.min(jnp.where(kept_BxV, sorted_BxV, jnp.inf), axis=-1)
    return jnp.where(x_BxV >= threshold_B[:, None], x_BxV, -jnp.inf)

  # The sort is the costliest op of a decode step; skip it when no row asks for a nucleus.
  scaled_BxV = jax.lax.cond(jnp.any(top_p_B < 1.0), nucleus, lambda x: x, scaled_BxV)
  sampled_B = _inverse_cdf_draw(jax.nn.softmax(scaled_BxV, axis=-1), uniform_B)
  return jnp.where(temperature_B <= 0, jnp.argmax(logits_BxV, axis=-1), sampled_B).astype(
      jnp.int32)


def _inverse_cdf_draw(probs_BxV, uniform_B, block: int = 128):
  """One token per row from `probs_BxV`, by inverting the CDF at its uniform in [0, 1).

  On CPU both obvious routes are slow at a 49k vocabulary: `jax.random.categorical` draws Gumbel
  noise for every entry, and a full-length cumsum is a long sequential scan. So the CDF is
  inverted in two levels: across blocks of `block` tokens, then within the chosen block. Each u lies in (0, mass], so an entry of zero probability is never the first whose
  cumulative mass reaches it."""
  b, v = probs_BxV.shape
  probs_BxNxK = jnp.pad(probs_BxV, ((0, 0), (0, -v % block))).reshape(b, -1, block)
  first = lambda cdf_BxX, u_B: jnp.minimum(jnp.sum(cdf_BxX < u_B[:, None], axis=-1),
                                           cdf_BxX.shape[-1] - 1)
  mass_BxN = jnp.sum(probs_BxNxK, axis=-1)
  cdf_BxN = jnp.cumsum(mass_BxN, axis=-1)
  u_B = (1.0 - uniform_B) * cdf_BxN[:, -1]
  block_B = first(cdf_BxN, u_B)
  rows = jnp.arange(b)
  cdf_BxK = jnp.cumsum(probs_BxNxK[rows, block_B], axis=-1)
  # The mass left inside the block, kept in (0, block mass] against rounding.
  u_B = jnp.clip(u_B - (cdf_BxN[rows, block_B] - mass_BxN[rows, block_B]), 1e-30, cdf_BxK[:, -1])
  return block_B * block + first(cdf_BxK, u_B)


@functools.partial(jax.jit, static_argnames=('cfg', 'max_new_tokens', 'return_logits'))
def sample(params, cfg: model_lib.ModelConfig, prompt_BxP, prompt_lengths_B, key, temperature_B,
           top_p_B, stop_tokens_BxK, vocab_limit=None, *, max_new_tokens: int,
           return_logits: bool = False):
  """Samples up to `max_new_tokens` per row; a row stops after emitting any of its stop tokens
  (`stop_tokens_BxK`, padded with -1). The stop token is kept in the output. Ids at or above
  `vocab_limit` (the tokenizer's size, when the model's vocabulary is padded past it) are never
  sampled; returned logits are the model's own."""
  b, p = prompt_BxP.shape
  s = p + max_new_tokens
  is_stop = lambda tok_B: jnp.any(tok_B[:, None] == stop_tokens_BxK, axis=-1)
  limit = cfg.vocab_size if vocab_limit is None else vocab_limit
  pick = lambda logits_BxV, k: sample_token(
      jnp.where(jnp.arange(cfg.vocab_size) < limit, logits_BxV, -jnp.inf),
      jax.random.uniform(k, (b,)), temperature_B, top_p_B)

  prefill_logits_Bx1xV, cache = model_lib.forward(
      params, cfg, prompt_BxP, None, model_lib.init_cache(cfg, b, s),
      select_B=prompt_lengths_B - 1)
  key, first_key = jax.random.split(key)
  first_B = pick(prefill_logits_Bx1xV[:, 0], first_key)
  tokens_BxS = jnp.zeros((b, s), jnp.int32).at[:, :p].set(prompt_BxP)
  tokens_BxS = tokens_BxS.at[jnp.arange(b), prompt_lengths_B].set(first_B)
  logits_BxNxV = None
  if return_logits:
    logits_BxNxV = jnp.zeros((b, max_new_tokens, cfg.vocab_size), jnp.float32)
    logits_BxNxV = logits_BxNxV.at[:, 0].set(prefill_logits_Bx1xV[:, 0])
  state = SamplerState(tokens_BxS, prompt_lengths_B + 1, is_stop(first_B), cache, logits_BxNxV,
                       jnp.array(1, jnp.int32), key)

  def cond(st: SamplerState):
    return (st.step < max_new_tokens) & ~jnp.all(st.done_B)

  def body(st: SamplerState):
    rows = jnp.arange(b)
    last_B = st.lengths_B - 1
    logits_Bx1xV, cache = model_lib.forward(
        params, cfg, st.tokens_BxS[rows, last_B][:, None], last_B[:, None], st.cache)
    next_B = pick(logits_Bx1xV[:, 0], jax.random.fold_in(st.key, st.step))
    running_B = ~st.done_B
    # Finished rows keep recomputing their last slot (static shapes); their output is dropped.
    tokens_BxS = st.tokens_BxS.at[rows, st.lengths_B].set(
        jnp.where(running_B, next_B, st.tokens_BxS[rows, st.lengths_B]), mode='drop')
    logits_BxNxV = st.logits_BxNxV
    if return_logits:
      logits_BxNxV = jax.lax.dynamic_update_slice_in_dim(logits_BxNxV, logits_Bx1xV, st.step, 1)
    return SamplerState(tokens_BxS, st.lengths_B + running_B, st.done_B | is_stop(next_B), cache,
                        logits_BxNxV, st.step + 1, st.key)

  state = jax.lax.while_loop(cond, body, state)
  return SampleOutput(state.tokens_BxS, prompt_lengths_B, state.lengths_B, state.logits_BxNxV)


def pad_prompts(prompts: Sequence[Sequence[int]], pad_id: int):
  """Right-pads token lists into one [B, P] buffer, P the next power of two (at least
  MIN_PROMPT_BUCKET): few distinct shapes to compile, and at most 2x prefill waste."""
  longest = max(len(p) for p in prompts)
  if min(len(p) for p in prompts) == 0:
    raise ValueError('empty prompt: every row needs at least one token')
  width = max(MIN_PROMPT_BUCKET, 1 << (longest - 1).bit_length())
  buf = np.full((len(prompts), width), pad_id, np.int32)
  for i, p in enumerate(prompts):
    buf[i, :len(p)] = p
  return buf, np.array([len(p) for p in prompts], np.int32)


def generate(params, cfg: model_lib.ModelConfig, tok: Tokenizer,
             prompts: Sequence[Sequence[int]], key, *, max_new_tokens: int,
             temperature: float = 1.0, top_p: float = 1.0,
             stop_ids: Sequence[int] = ()) -> list[list[int]]:
  """Host-side convenience: token lists in, the generated token lists out (stop token kept)."""
  longest = max(len(p) for p in prompts)
  if longest + max_new_tokens > cfg.max_len:
    raise ValueError(f'prompt of {longest} tokens + max_new_tokens={max_new_tokens} exceeds the '
                     f'model context of {cfg.max_len} tokens')
  buf, lengths = pad_prompts(prompts, tok.pad_id)
  b = len(prompts)
  stops = np.array([list(stop_ids) or [-1]] * b, np.int32)
  out = sample(params, cfg, buf, lengths, key, np.full(b, temperature, np.float32),
               np.full(b, top_p, np.float32), stops, tok.vocab_size,
               max_new_tokens=max_new_tokens)
  tokens, ends = np.asarray(out.tokens_BxS), np.asarray(out.lengths_B)
  return [tokens[i, lengths[i]:ends[i]].tolist() for i in range(b)]
