"""Byte-string primitives for the JAX machine: fixed-size buffers with lengths as arrays.

Output is built by appending chunks to a `Stream`: each append writes a whole fixed-size chunk at
the current end with one `dynamic_update_slice` and advances the length by the chunk's valid part,
so the bytes past the end are scratch that the next append overwrites. Writes start at most at
MAX_STREAM, so nothing is ever clamped, and a stream longer than MAX_STREAM is cut there.
"""
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rt_jax.envs.limits import MAX_STREAM

CHUNK = MAX_STREAM  # the largest chunk one append may write
U8 = jnp.uint8


def const(text: str) -> np.ndarray:
  return np.frombuffer(text.encode('utf-8'), np.uint8)


def padded(text: str, size: int) -> np.ndarray:
  """Constant text zero-padded to `size` bytes."""
  data = const(text)
  return np.pad(data, (0, size - len(data)))


def table(texts) -> tuple[np.ndarray, np.ndarray]:
  """Constant strings as a padded [n, longest] byte table and their lengths."""
  rows = [const(t) for t in texts]
  out = np.zeros((len(rows), max(1, max(len(r) for r in rows))), np.uint8)
  for i, row in enumerate(rows):
    out[i, :len(row)] = row
  return out, np.array([len(r) for r in rows], np.int32)


@struct.dataclass
class Stream:
  buf: jax.Array  # u8[limit + CHUNK]
  n: jax.Array  # i32, the full length even past the limit
  limit: int = struct.field(pytree_node=False, default=MAX_STREAM)

  @classmethod
  def empty(cls, limit: int = MAX_STREAM):
    return cls(jnp.zeros(limit + CHUNK, U8), jnp.int32(0), limit)

  def append(self, chunk, length):
    pos = jnp.minimum(self.n, self.limit)
    buf = jax.lax.dynamic_update_slice(self.buf, jnp.asarray(chunk, U8), (pos,))
    return self.replace(buf=buf, n=self.n + jnp.asarray(length, jnp.int32))

  def text(self, text: str, when=True):
    chunk = const(text)
    return self.append(chunk, jnp.where(when, len(chunk), 0))

  def choice(self, index, texts, when=True):
    rows, lens = table(texts)
    return self.append(jnp.asarray(rows)[index], jnp.where(when, jnp.asarray(lens)[index], 0))

  def cut(self):
    """(bytes up to the limit, valid length, whether it was cut)."""
    return self.buf[:self.limit], jnp.minimum(self.n, self.limit), self.n > self.limit


def window(buf, start, size: int):
  """buf[start:start + size], zero-padded past the end (dynamic_slice alone would clamp)."""
  return jax.lax.dynamic_slice(jnp.pad(buf, (0, size)), (start,), (size,))


def matches_at(buf, pattern: str):
  """bool[len(buf)]: the constant `pattern` starts at each position."""
  pat = const(pattern)
  padded = jnp.pad(buf, (0, len(pat)))
  hits = jnp.ones(buf.shape, bool)
  for k, byte in enumerate(pat):
    hits &= padded[k:k + buf.shape[0]] == byte
  return hits


def equal(a, a_len, b, b_len):
  """Byte strings a[:a_len] == b[:b_len] (a and b of the same padded size)."""
  idx = jnp.arange(a.shape[-1])
  return (a_len == b_len) & jnp.all((a == b) | (idx >= jnp.asarray(a_len)[..., None]), axis=-1)


def append_pieces(stream: Stream, rows_NxL, start_N, len_N, order_N, include_N, sep: str):
  """Appends the included pieces rows[i][start_i:start_i + len_i], each followed by sep, in the
  order of order_N (distinct among the included): what appending them one by one in a loop
  writes below the stream's limit, with one scatter."""
  n, size = rows_NxL.shape
  tail = const(sep)
  sizes_N = jnp.where(include_N, len_N + len(tail), 0)
  before_NxN = include_N[None, :] & (order_N[None, :] < order_N[:, None])  # [i, j]: j first
  offset_N = jnp.sum(jnp.where(before_NxN, sizes_N[None, :], 0), -1)
  p = jnp.arange(size + len(tail))
  piece = jnp.take_along_axis(rows_NxL, jnp.clip(start_N[:, None] + p, 0, size - 1), -1)
  sep_byte = jnp.asarray(np.pad(tail, (0, size)))[jnp.clip(p[None] - len_N[:, None], 0, size)]
  byte = jnp.where(p[None] < len_N[:, None], piece, sep_byte)
  at = stream.n + offset_N[:, None] + p[None]
  keep = include_N[:, None] & (p[None] < sizes_N[:, None]) & (at < stream.limit)
  buf = stream.buf.at[jnp.where(keep, at, stream.buf.shape[0]).ravel()].set(
      byte.astype(U8).ravel(), mode='drop')
  return stream.replace(buf=buf, n=stream.n + jnp.sum(sizes_N).astype(jnp.int32))


def compact(buf, keep):
  """The bytes of buf where keep is true, moved to the front (rest zero), and their count."""
  pos = jnp.where(keep, jnp.cumsum(keep) - 1, buf.shape[0])
  out = jnp.zeros(buf.shape[0] + 1, buf.dtype).at[pos].set(buf)
  return out[:-1], jnp.sum(keep).astype(jnp.int32)


def number_text(value, digits: int = 10):
  """Decimal text of a non-negative int32 as (chunk u8[digits], length)."""
  powers = jnp.asarray(10 ** np.arange(digits - 1, -1, -1, dtype=np.int64), jnp.int32)
  ds = (jnp.asarray(value, jnp.int32) // powers) % 10
  first = jnp.argmax((ds != 0) | (jnp.arange(digits) == digits - 1))
  return window((ds + ord('0')).astype(U8), first, digits), (digits - first).astype(jnp.int32)


def join(pieces, size: int):
  """Concatenates (chunk, length) pieces into (u8[size], total length)."""
  out, offset = jnp.zeros(size, U8), jnp.int32(0)
  idx = jnp.arange(size)
  for chunk, length in pieces:
    chunk = jnp.asarray(chunk, U8)
    rel = idx - offset
    take = (rel >= 0) & (rel < length)
    out = jnp.where(take, jnp.pad(chunk, (0, 1))[jnp.clip(rel, 0, chunk.shape[0])], out)
    offset = offset + length
  return out, offset


def utf8_length(lead):
  """Bytes in the UTF-8 character that starts with `lead`."""
  return jnp.where(lead >= 0xF0, 4, jnp.where(lead >= 0xE0, 3, jnp.where(lead >= 0xC0, 2, 1)))
