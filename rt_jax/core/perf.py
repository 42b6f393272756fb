"""FLOP accounting and the machine's measured matmul peak, for tokens/s -> MFU figures."""
import time

import jax
import jax.numpy as jnp

from rt_jax.core.model import ModelConfig


def matmul_peak_flops(n: int = 2048, dtype: str = 'float32', repeats: int = 8) -> float:
  """Best observed FLOP/s of one jitted n x n matmul on the default device."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.dtype(dtype))
  matmul = jax.jit(lambda x, y: x @ y)
  matmul(a, a).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a, a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n ** 3 / best


def best_time(call, repeats: int) -> tuple[float, float]:
  """(seconds of the first call, which compiles; best of `repeats` later calls)."""
  start = time.perf_counter()
  call()
  first = time.perf_counter() - start
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    call()
    best = min(best, time.perf_counter() - start)
  return first, best


def decode_flops_per_token(cfg: ModelConfig) -> float:
  """2 FLOPs per parameter per token (the tied embedding counts once, as the output head).
  Attention over the cache is left out, as in the usual FLOP limit of decoding."""
  return 2.0 * cfg.num_params()


def train_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
  """6N for the matmuls (forward + backward) plus 12·L·H·Dh·T for attention scores and values
  (PaLM, arXiv 2204.02311, appendix B)."""
  attention = 12.0 * cfg.n_layers * cfg.n_heads * cfg.head_dim * seq_len
  return 6.0 * cfg.num_params() + attention
