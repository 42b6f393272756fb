"""Drawing tokens, shared by every sampler: `sample_token` (temperature, top-p, from uniforms) and
the prompt buckets. The decode loop itself is the rollout's (rl/rollout.py); sampling chat
answers is a rollout of a one-turn environment (rl/chat.py).
"""
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

MIN_PROMPT_BUCKET = 16  # prompt buffers are padded to a power of two at least this wide


def sample_token(logits_BxV, uniform_B, temperature_B, top_p_B):
  """Greedy where temperature == 0, else softmax(logits / T) restricted to the top-p nucleus,
  drawn by inverting its CDF at `uniform_B` (one uniform in [0, 1) per row). Taking the uniforms
  rather than a key lets a subset of a batch draw exactly what the whole batch would have."""
  scaled_BxV = logits_BxV / jnp.maximum(temperature_B, 1e-6)[:, None]

  def nucleus(x_BxV):
    # Rows at top_p 1 keep everything, whatever float rounding does to the tail's mass.
    threshold_B = jnp.where(top_p_B < 1.0, nucleus_threshold(x_BxV, top_p_B), -jnp.inf)
    return jnp.where(x_BxV >= threshold_B[:, None], x_BxV, -jnp.inf)

  wanted = jnp.any((top_p_B < 1.0) & (temperature_B > 0))  # greedy rows need no nucleus
  scaled_BxV = jax.lax.cond(wanted, nucleus, lambda x: x, scaled_BxV)
  sampled_B = _inverse_cdf_draw(jax.nn.softmax(scaled_BxV, axis=-1), uniform_B)
  return jnp.where(temperature_B <= 0, jnp.argmax(logits_BxV, axis=-1), sampled_B).astype(
      jnp.int32)


def nucleus_threshold(x_BxV, top_p_B):
  """The smallest logit whose token the top-p nucleus keeps: a token is kept when the probability
  of the tokens with larger logits is below top_p (so the top token always is).

  Found by bisection over the logits' order-preserving int32 keys, 32 halvings of a masked sum,
  not by sorting the vocabulary: at a 49k vocabulary and 24 rows, 9 ms against 284 ms for the
  sort on a 2-core CPU. The kept set is the sort's, up to float rounding of the masses at the
  edge."""
  x_BxV = x_BxV.astype(jnp.float32)  # the keys below are float32's bits
  p_BxV = jax.nn.softmax(x_BxV, axis=-1)
  bits_BxV = jax.lax.bitcast_convert_type(x_BxV, jnp.int32)
  key_BxV = jnp.where(bits_BxV < 0, bits_BxV ^ 0x7FFFFFFF, bits_BxV)  # negatives: order flipped

  def halve(_, bounds):
    lo_B, hi_B = bounds  # the answer's key lies in [lo, hi]; hi (the top token) always qualifies
    mid_B = (lo_B >> 1) + (hi_B >> 1) + (lo_B & hi_B & 1)  # floor((lo + hi) / 2), no overflow
    above_B = jnp.sum(jnp.where(key_BxV > mid_B[:, None], p_BxV, 0.0), axis=-1)
    kept_B = above_B < top_p_B
    return jnp.where(kept_B, lo_B, mid_B + 1), jnp.where(kept_B, mid_B, hi_B)

  _, key_B = jax.lax.fori_loop(0, 32, halve, (jnp.min(key_BxV, axis=-1),
                                               jnp.max(key_BxV, axis=-1)))
  return jnp.min(jnp.where(key_BxV >= key_B[:, None], x_BxV, jnp.inf), axis=-1)


def _inverse_cdf_draw(probs_BxV, uniform_B, block: int = 128):
  """One token per row from `probs_BxV`, by inverting the CDF at its uniform in [0, 1).

  On CPU both obvious routes are slow at a 49k vocabulary: `jax.random.categorical` draws Gumbel
  noise for every entry, and a full-length cumsum is a long sequential scan. So the CDF is
  inverted in two levels: across blocks of `block` tokens, then within the chosen block. Each u
  lies in (0, mass], so an entry of zero probability is never the first whose cumulative mass
  reaches it."""
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


def bucket(longest: int) -> int:
  """The padded width of prompts up to `longest` tokens: the next power of two, at least
  MIN_PROMPT_BUCKET (few distinct shapes to compile, and at most 2x prefill waste)."""
  return max(MIN_PROMPT_BUCKET, 1 << (longest - 1).bit_length())


def pad_prompts(prompts: Sequence[Sequence[int]], pad_id: int):
  """Right-pads token lists into one [B, bucket(longest)] buffer."""
  longest = max(len(p) for p in prompts)
  if min(len(p) for p in prompts) == 0:
    raise ValueError('empty prompt: every row needs at least one token')
  width = bucket(longest)
  buf = np.full((len(prompts), width), pad_id, np.int32)
  for i, p in enumerate(prompts):
    buf[i, :len(p)] = p
  return buf, np.array([len(p) for p in prompts], np.int32)
