"""Llama-family decoder: RMSNorm, RoPE, SwiGLU, grouped-query attention.

One attention path serves training, prefill, decode and appending tokens mid-episode: a chunk of T
tokens is written into the KV cache at a per-row start slot, and every query attends to the cache
slots at or before its own position. Cache slot == token position, so ragged batches need no
left-padding and no position offsets.

Layers are a Python loop, not `nn.scan`: each layer keeps its own cache buffer, which the sampler's
`lax.while_loop` then updates in place (a scanned, stacked cache would be rewritten every step).
"""
import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import flax.linen as nn

# One cache entry per layer: {'k': [B, N, K, H, C], 'v': [B, N, K, C, H]}, the slots in N blocks
# of C = CACHE_BLOCK. A block is contiguous for each row, heads before slots, and keys have
# slots minor: the attention reads block i as cache[:, i] in the layout its contractions want
# (slicing slots out of a [B, K, S, H] cache copied every block it visited, 2.5x slower).
Cache = list[dict[str, jax.Array]]
CACHE_BLOCK = 128  # cache slots per step of the cached attention's loop


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  vocab_size: int
  d_model: int
  n_layers: int
  n_heads: int
  n_kv_heads: int
  head_dim: int
  mlp_dim: int
  max_len: int  # context limit (prompt + generation)
  rope_base: float = 10_000.0
  norm_eps: float = 1e-5
  tie_embeddings: bool = True
  qkv_bias: bool = False
  dtype: str = 'float32'  # compute dtype; parameters stay in param_dtype
  param_dtype: str = 'float32'

  def __post_init__(self):
    if self.n_heads % self.n_kv_heads:
      raise ValueError(f'n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}')
    for name in ('dtype', 'param_dtype'):
      if getattr(self, name) not in ('float32', 'bfloat16', 'float16'):
        raise ValueError(f'{name}={getattr(self, name)!r}: expected float32, bfloat16 or float16')

  def num_params(self) -> int:
    d, h = self.d_model, self.head_dim
    attn = d * h * (2 * self.n_heads + 2 * self.n_kv_heads)
    if self.qkv_bias:
      attn += h * (self.n_heads + 2 * self.n_kv_heads)
    layer = attn + 3 * d * self.mlp_dim + 2 * d
    head = 0 if self.tie_embeddings else self.vocab_size * d
    return self.vocab_size * d + self.n_layers * layer + d + head


PRESETS = {
    # About 3.2M parameters over the builtin byte tokenizer: tests and CPU smoke runs.
    'tiny': ModelConfig(vocab_size=384, d_model=256, n_layers=4, n_heads=8, n_kv_heads=4,
                        head_dim=32, mlp_dim=768, max_len=2048),
    # HuggingFaceTB/SmolLM2-135M-Instruct (shapes from its GGUF metadata).
    'smollm2_135m': ModelConfig(vocab_size=49_152, d_model=576, n_layers=30, n_heads=9,
                                n_kv_heads=3, head_dim=64, mlp_dim=1536, max_len=8192,
                                rope_base=100_000.0, norm_eps=1e-5),
    # Qwen/Qwen2.5-0.5B-Instruct shapes, for accelerators.
    'qwen2_5_0_5b': ModelConfig(vocab_size=151_936, d_model=896, n_layers=24, n_heads=14,
                                n_kv_heads=2, head_dim=64, mlp_dim=4864, max_len=32_768,
                                rope_base=1_000_000.0, norm_eps=1e-6, qkv_bias=True),
}


def preset(name: str, **overrides) -> ModelConfig:
  if name not in PRESETS:
    raise ValueError(f'unknown model preset {name!r}; known: {sorted(PRESETS)}')
  return dataclasses.replace(PRESETS[name], **overrides)


def _param(init, *logical_axes):
  return nn.with_logical_partitioning(init, logical_axes)


_init = nn.initializers.normal(stddev=0.02)


class RMSNorm(nn.Module):
  eps: float
  dtype: jnp.dtype
  param_dtype: jnp.dtype

  @nn.compact
  def __call__(self, x):
    scale = self.param('scale', _param(nn.initializers.ones, 'embed'), (x.shape[-1],),
                       self.param_dtype)
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return (x32 * scale.astype(jnp.float32)).astype(self.dtype)


def rope(x_BxTxNxH, positions_BxT, base: float):
  """Rotary embedding in the half-split layout (HF Llama's `rotate_half`)."""
  half = x_BxTxNxH.shape[-1] // 2
  inv_freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angle_BxTxh = positions_BxT[..., None].astype(jnp.float32) * inv_freq
  sin, cos = jnp.sin(angle_BxTxh)[:, :, None], jnp.cos(angle_BxTxh)[:, :, None]
  x1, x2 = jnp.split(x_BxTxNxH.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x_BxTxNxH.dtype)


def _write_chunk(cache, chunk_BxTxKxH, positions_BxT, keys: bool):
  """Scatters each row's chunk into the cache slots at its positions (past the end: dropped)."""
  block = cache.shape[-1] if keys else cache.shape[-2]
  rows_Bx1 = jnp.arange(positions_BxT.shape[0])[:, None]
  blk_BxT, slot_BxT = positions_BxT // block, positions_BxT % block
  index = ((rows_Bx1, blk_BxT, slice(None), slice(None), slot_BxT) if keys else
           (rows_Bx1, blk_BxT, slice(None), slot_BxT, slice(None)))
  return cache.at[index].set(chunk_BxTxKxH.astype(cache.dtype), mode='drop')


def _masked_logits(q_BxKxGxTxH, k_BxKxSxH, q_pos_BxT, k_pos_BxS, keys='bksh'):
  """Scaled attention logits (f32); a query sees the keys at or before its own position."""
  logits_BxKxGxTxS = jnp.einsum(f'bkgth,{keys}->bkgts', q_BxKxGxTxH, k_BxKxSxH,
                                preferred_element_type=jnp.float32)
  logits_BxKxGxTxS = logits_BxKxGxTxS * q_BxKxGxTxH.shape[-1] ** -0.5
  visible_BxTxS = k_pos_BxS[:, None, :] <= q_pos_BxT[:, :, None]
  return jnp.where(visible_BxTxS[:, None, None], logits_BxKxGxTxS, -1e30)


def _attend_cache(q_BxKxGxTxH, k_BxNxKxHxC, v_BxNxKxCxH, positions_BxT):
  """Attention over the cache, a block at a time with a running softmax, visiting only the blocks
  that the furthest query can see: a decode step costs what the longest row's length costs, not
  what the whole cache does (3.4x less per SmolLM2 layer at 350 of 1,088 slots on CPU)."""
  b, k, g, t, h = q_BxKxGxTxH.shape
  n, block = k_BxNxKxHxC.shape[1], k_BxNxKxHxC.shape[-1]
  n_blocks = jnp.minimum(jnp.max(positions_BxT) // block + 1, n)

  def body(i, carry):
    max_BxKxGxT, sum_BxKxGxT, acc_BxKxGxTxH = carry
    keys_BxKxHxC, values_BxKxCxH = k_BxNxKxHxC[:, i], v_BxNxKxCxH[:, i]
    slots_BxC = jnp.broadcast_to(i * block + jnp.arange(block), (b, block))
    logits_BxKxGxTxC = _masked_logits(q_BxKxGxTxH, keys_BxKxHxC, positions_BxT, slots_BxC,
                                      keys='bkhs')
    new_max = jnp.maximum(max_BxKxGxT, jnp.max(logits_BxKxGxTxC, axis=-1))
    rescale = jnp.exp(max_BxKxGxT - new_max)
    probs_BxKxGxTxC = jnp.exp(logits_BxKxGxTxC - new_max[..., None])
    acc_BxKxGxTxH = acc_BxKxGxTxH * rescale[..., None] + jnp.einsum(
        'bkgtc,bkch->bkgth', probs_BxKxGxTxC.astype(values_BxKxCxH.dtype), values_BxKxCxH,
        preferred_element_type=jnp.float32)
    return new_max, sum_BxKxGxT * rescale + jnp.sum(probs_BxKxGxTxC, axis=-1), acc_BxKxGxTxH

  init = (jnp.full((b, k, g, t), -1e30, jnp.float32), jnp.zeros((b, k, g, t), jnp.float32),
          jnp.zeros((b, k, g, t, h), jnp.float32))
  _, sum_BxKxGxT, acc_BxKxGxTxH = jax.lax.fori_loop(0, n_blocks, body, init)
  return acc_BxKxGxTxH / sum_BxKxGxT[..., None]


class Attention(nn.Module):
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x_BxTxD, positions_BxT, cache: Optional[dict]):
    cfg = self.cfg
    dtype, pdtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)

    def proj(name, n_heads, heads_axis):
      return nn.DenseGeneral(
          (n_heads, cfg.head_dim), use_bias=cfg.qkv_bias, dtype=dtype, param_dtype=pdtype,
          kernel_init=_param(_init, 'embed', heads_axis, 'head_dim'),
          bias_init=_param(nn.initializers.zeros, heads_axis, 'head_dim'), name=name)(x_BxTxD)

    q_BxTxNxH = rope(proj('q', cfg.n_heads, 'q_heads'), positions_BxT, cfg.rope_base)
    k_BxTxKxH = rope(proj('k', cfg.n_kv_heads, 'kv_heads'), positions_BxT, cfg.rope_base)
    v_BxTxKxH = proj('v', cfg.n_kv_heads, 'kv_heads')

    b, t, n, h = q_BxTxNxH.shape
    g = n // cfg.n_kv_heads
    q_BxKxGxTxH = q_BxTxNxH.reshape(b, t, cfg.n_kv_heads, g, h).transpose(0, 2, 3, 1, 4)
    if cache is None:  # training / plain forward: keys are this chunk
      k_BxKxTxH, v_BxKxTxH = k_BxTxKxH.transpose(0, 2, 1, 3), v_BxTxKxH.transpose(0, 2, 1, 3)
      logits_BxKxGxTxT = _masked_logits(q_BxKxGxTxH, k_BxKxTxH, positions_BxT, positions_BxT)
      probs_BxKxGxTxT = jax.nn.softmax(logits_BxKxGxTxT, axis=-1).astype(dtype)
      out_BxKxGxTxH = jnp.einsum('bkgts,bksh->bkgth', probs_BxKxGxTxT, v_BxKxTxH)
    else:  # cached: write the chunk at its positions, attend over the slots up to them
      cache = {'k': _write_chunk(cache['k'], k_BxTxKxH, positions_BxT, keys=True),
               'v': _write_chunk(cache['v'], v_BxTxKxH, positions_BxT, keys=False)}
      out_BxKxGxTxH = _attend_cache(q_BxKxGxTxH, cache['k'], cache['v'], positions_BxT)
    out_BxTxNxH = out_BxKxGxTxH.astype(dtype).transpose(0, 3, 1, 2, 4).reshape(b, t, n, h)
    out_BxTxD = nn.DenseGeneral(
        cfg.d_model, axis=(-2, -1), use_bias=False, dtype=dtype, param_dtype=pdtype,
        kernel_init=_param(_init, 'q_heads', 'head_dim', 'embed'),
        name='o')(out_BxTxNxH)
    return out_BxTxD, cache


class Mlp(nn.Module):
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x_BxTxD):
    cfg = self.cfg
    dense = lambda features, axes, name: nn.Dense(
        features, use_bias=False, dtype=jnp.dtype(cfg.dtype),
        param_dtype=jnp.dtype(cfg.param_dtype), kernel_init=_param(_init, *axes), name=name)
    gate_BxTxM = dense(cfg.mlp_dim, ('embed', 'mlp'), 'gate')(x_BxTxD)
    up_BxTxM = dense(cfg.mlp_dim, ('embed', 'mlp'), 'up')(x_BxTxD)
    return dense(cfg.d_model, ('mlp', 'embed'), 'down')(nn.silu(gate_BxTxM) * up_BxTxM)


class Block(nn.Module):
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x_BxTxD, positions_BxT, cache):
    cfg = self.cfg
    norm = lambda name: RMSNorm(cfg.norm_eps, jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype),
                                name=name)
    attn_BxTxD, cache = Attention(cfg, name='attn')(norm('attn_norm')(x_BxTxD), positions_BxT,
                                                    cache)
    x_BxTxD = x_BxTxD + attn_BxTxD
    x_BxTxD = x_BxTxD + Mlp(cfg, name='mlp')(norm('mlp_norm')(x_BxTxD))
    return nn.with_logical_constraint(x_BxTxD, ('batch', 'seq', 'embed')), cache


class Decoder(nn.Module):
  """tokens -> logits. `select_B` keeps one position per row before the vocabulary projection
  (prefill needs only the last prompt token, not [B, T, V] logits). `return_hidden` returns the
  final-norm hidden states [B, T, D] instead of logits (the preference model's scalar head reads
  them; the vocabulary projection is then skipped)."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, tokens_BxT, positions_BxT=None, cache: Optional[Cache] = None,
               select_B=None, return_hidden: bool = False):
    cfg = self.cfg
    dtype = jnp.dtype(cfg.dtype)
    if positions_BxT is None:
      positions_BxT = jnp.broadcast_to(jnp.arange(tokens_BxT.shape[1]), tokens_BxT.shape)
    embedding_VxD = self.param('embedding', _param(_init, 'vocab', 'embed'),
                               (cfg.vocab_size, cfg.d_model), jnp.dtype(cfg.param_dtype))
    x_BxTxD = jnp.take(embedding_VxD, tokens_BxT, axis=0).astype(dtype)
    new_cache = []
    for i in range(cfg.n_layers):
      x_BxTxD, layer_cache = Block(cfg, name=f'layer_{i}')(
          x_BxTxD, positions_BxT, None if cache is None else cache[i])
      new_cache.append(layer_cache)
    x_BxTxD = RMSNorm(cfg.norm_eps, dtype, jnp.dtype(cfg.param_dtype), name='final_norm')(x_BxTxD)
    if select_B is not None:
      x_BxTxD = jnp.take_along_axis(x_BxTxD, select_B[:, None, None], axis=1)
    if return_hidden:
      return x_BxTxD, (None if cache is None else new_cache)
    if cfg.tie_embeddings:
      logits_BxTxV = jnp.einsum('btd,vd->btv', x_BxTxD, embedding_VxD.astype(dtype),
                                preferred_element_type=jnp.float32)
    else:
      logits_BxTxV = nn.Dense(cfg.vocab_size, use_bias=False, dtype=dtype,
                              param_dtype=jnp.dtype(cfg.param_dtype),
                              kernel_init=_param(_init, 'embed', 'vocab'),
                              name='lm_head')(x_BxTxD).astype(jnp.float32)
    return logits_BxTxV, (None if cache is None else new_cache)


def init_cache(cfg: ModelConfig, batch: int, length: int) -> Cache:
  """Zeros for at least `length` slots, rounded up to whole CACHE_BLOCKs (see `_attend_cache`)."""
  n = -(-length // CACHE_BLOCK)
  k, h, c, dtype = cfg.n_kv_heads, cfg.head_dim, CACHE_BLOCK, jnp.dtype(cfg.dtype)
  return [{'k': jnp.zeros((batch, n, k, h, c), dtype), 'v': jnp.zeros((batch, n, k, c, h), dtype)}
          for _ in range(cfg.n_layers)]


@functools.partial(jax.jit, static_argnums=0)
def init_params(cfg: ModelConfig, key) -> dict:
  """Plain (unboxed) parameter pytree; logical axis names are in `param_axes`. Jitted: flax's
  init runs a forward pass, which op by op is ~80 small compiles."""
  tokens = jnp.zeros((1, 8), jnp.int32)
  return nn.unbox(Decoder(cfg).init(key, tokens)['params'])


def abstract_params(cfg: ModelConfig) -> dict:
  """Shapes and dtypes of `init_params`, computed without allocating anything."""
  return jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))


def param_axes(cfg: ModelConfig) -> dict:
  """Logical axis names of every parameter, same tree as `init_params`."""
  boxed = jax.eval_shape(lambda: Decoder(cfg).init(jax.random.key(0),
                                                   jnp.zeros((1, 8), jnp.int32))['params'])
  return nn.get_partition_spec(boxed)


def forward(params, cfg: ModelConfig, tokens_BxT, positions_BxT=None, cache=None, select_B=None,
            return_hidden: bool = False):
  return Decoder(cfg).apply({'params': params}, tokens_BxT, positions_BxT, cache, select_B,
                            return_hidden)
