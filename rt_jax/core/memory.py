"""Host memory: keep what XLA frees from staying resident (glibc only; no-ops elsewhere).

XLA:CPU allocates its buffers with malloc. glibc keeps freed heap memory mapped for reuse, so the
rollout's working set (KV cache blocks, logits) and the training step's (activations kept for the
backward pass) add up in RSS instead of taking turns. Two knobs:

- `map_large_buffers()` (once, at start): buffers of 8 MB and more get their own mappings, which
  go back to the system when freed. glibc's default threshold starts at 128 KB but rises (up to
  32 MB) after large frees, so a layer's KV cache and the training temporaries end up on the heap.
  A lower threshold costs time instead: every mapping is a fresh set of zeroed pages, and much
  lower the decode loop's few-MB temporaries would be mapped anew on every step.
- `release_free_memory()` (between phases): hands the heap's free pages back (malloc_trim), so
  the next phase starts from what is live, not from the previous phase's peak, at no cost in time
  that could be measured.
(Measurements behind both choices: docs/performance.md.)
"""
import ctypes

_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc's malloc.h)
_MMAP_THRESHOLD_BYTES = 8 << 20


def _libc():
  try:
    return ctypes.CDLL('libc.so.6')
  except OSError:
    return None


_LIBC = _libc()


def map_large_buffers():
  if _LIBC is not None and hasattr(_LIBC, 'mallopt'):
    _LIBC.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


def release_free_memory():
  if _LIBC is not None and hasattr(_LIBC, 'malloc_trim'):
    _LIBC.malloc_trim(0)
