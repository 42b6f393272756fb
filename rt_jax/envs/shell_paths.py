"""The JAX machine's filesystem: fixed tables of entries, lexical path resolution (as
`reference.Shell.resolve`), lookup and directory walks without Python branching on traced values."""
import jax
import jax.numpy as jnp
from flax import struct

from rt_jax.envs.limits import HOME, MAX_ENTRIES, MAX_PATH
from rt_jax.envs.text import compact, equal, padded

EMPTY, TOO_LONG, OK = 0, 1, 2  # how a word resolves as a path
# Why a path cannot be used: indices into REASONS (-1 where it can).
NO_SUCH, IS_DIR, NAME_TOO_LONG, NOT_DIR, NO_SPACE = range(5)
REASONS = ('No such file or directory', 'Is a directory', 'File name too long', 'Not a directory',
           'No space left on device')
I32 = jnp.int32


@struct.dataclass
class FileSystem:
  path: jax.Array  # u8[MAX_ENTRIES, MAX_PATH]
  path_len: jax.Array  # i32[MAX_ENTRIES]
  data: jax.Array  # u8[MAX_ENTRIES, MAX_FILE]
  data_len: jax.Array  # i32[MAX_ENTRIES]
  exists: jax.Array  # bool[MAX_ENTRIES]
  is_dir: jax.Array  # bool[MAX_ENTRIES]
  original: jax.Array  # bool[MAX_ENTRIES]: the instance's own entry, not removed since
  read: jax.Array  # bool[MAX_ENTRIES]: the slot's original file was read (kept after it is removed)
  cwd: jax.Array  # u8[MAX_PATH]
  cwd_len: jax.Array  # i32
  order: jax.Array  # i32[MAX_ENTRIES]: sorts the existing entries in byte order of their paths
  #   (kept as entries are created, so listing them takes no sort)


def normalize(raw, raw_len):
  """Lexical resolution of an absolute path: drops '', '.' and the components '..' pops."""
  size = raw.shape[0]
  idx = jnp.arange(size)
  live = idx < raw_len
  sep = live & (raw == ord('/'))
  comp = jnp.cumsum(sep)  # component ids from 1; raw[0] is always '/'
  name = live & ~sep
  comp_len = jax.ops.segment_sum(name.astype(I32), comp, size + 1)
  dots = jax.ops.segment_sum((name & (raw == ord('.'))).astype(I32), comp, size + 1)
  dot = (comp_len == 1) & (dots == 1)
  dotdot = (comp_len == 2) & (dots == 2)
  delta = jnp.where((comp_len == 0) | dot, 0, jnp.where(dotdot, -1, 1))
  total = jnp.cumsum(delta)
  depth = total - jnp.minimum(0, jax.lax.cummin(total))
  later_min = jnp.concatenate([jax.lax.cummin(depth[::-1])[::-1][1:], jnp.array([size])])
  kept = (delta == 1) & (later_min >= depth)
  out, out_len = compact(raw, live & kept[comp])
  return jnp.where(out_len == 0, out.at[0].set(ord('/')), out), jnp.maximum(out_len, 1)


def resolve(word, word_len, cwd, cwd_len):
  """(path u8[MAX_PATH], length, EMPTY | TOO_LONG | OK) for one path argument."""
  tilde = (word_len >= 1) & (word[0] == ord('~')) & ((word_len == 1) | (word[1] == ord('/')))
  absolute = (word_len >= 1) & (word[0] == ord('/'))
  home = padded(HOME, MAX_PATH)
  prefix = jnp.where(absolute, 0, jnp.where(tilde, home, cwd.at[cwd_len].set(ord('/'))))
  prefix_len = jnp.where(absolute, 0, jnp.where(tilde, len(HOME), cwd_len + 1))
  skip = tilde.astype(I32)
  size = 2 * MAX_PATH + 1
  idx = jnp.arange(size)
  word_part = jnp.pad(word, (0, size))[jnp.clip(idx - prefix_len + skip, 0, size - 1)]
  raw = jnp.where(idx < prefix_len, jnp.pad(prefix, (0, size - MAX_PATH)), word_part)
  raw_len = prefix_len + word_len - skip
  path, path_len = normalize(raw, raw_len)
  status = jnp.where(word_len == 0, EMPTY,
                     jnp.where((word_len > MAX_PATH) | (path_len > MAX_PATH), TOO_LONG, OK))
  return path[:MAX_PATH], path_len, status


def lookup(fs: FileSystem, path, path_len):
  """(found, slot) of the existing entry at path."""
  hit = fs.exists & equal(fs.path, fs.path_len, path[None], path_len)
  return jnp.any(hit), jnp.argmax(hit).astype(I32)


def under(fs: FileSystem, path, path_len, children_only: bool):
  """bool[MAX_ENTRIES]: entries strictly below the directory path (its children only, if asked)."""
  plen = jnp.where(path_len == 1, 0, path_len)  # '/' contributes no prefix
  pos = jnp.arange(MAX_PATH)
  prefix_ok = jnp.all((fs.path == path[None]) | (pos >= plen), -1)
  slash = jnp.take_along_axis(fs.path, jnp.full((MAX_ENTRIES, 1), plen), -1)[:, 0] == ord('/')
  deeper = (fs.path == ord('/')) & (pos > plen) & (pos < fs.path_len[:, None])
  ok = fs.exists & prefix_ok & slash & (fs.path_len > plen + 1)
  return ok & ~jnp.any(deeper, -1) if children_only else ok


def rank(order, include):
  """Each included entry's position among the included ones, given their sort keys."""
  return jnp.sum(include[None, :] & (order[None, :] < order[:, None]), -1).astype(I32)


def before(fs: FileSystem, path, path_len):
  """bool[MAX_ENTRIES]: the entries whose paths sort before path (byte order; a prefix first)."""
  idx = jnp.arange(MAX_PATH)
  diff = (fs.path != path[None]) & (idx < jnp.minimum(fs.path_len, path_len)[:, None])
  k = jnp.argmax(diff, -1)
  mine = jnp.take_along_axis(fs.path, k[:, None], -1)[:, 0]
  return jnp.where(jnp.any(diff, -1), mine < path[k], fs.path_len < path_len)


def insert_order(fs: FileSystem, slot, path, path_len, new):
  """fs.order with a new entry (at slot, with path) placed among the existing ones, if new."""
  earlier = fs.exists & before(fs, path, path_len)
  pred = jnp.max(jnp.where(earlier, fs.order, -1))
  order = jnp.where(fs.exists & (fs.order > pred), fs.order + 1, fs.order)
  return jnp.where(new, order.at[slot].set(pred + 1), fs.order)
