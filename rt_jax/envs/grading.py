"""Device-side reading of an episode's end state: files by path, the visible answer, and the last
whole-statement `NAME = VALUE` in a file. `reference.py` has the same rules on `str`."""
import jax
import jax.numpy as jnp

from rt_jax.envs import shell
from rt_jax.envs.limits import MAX_PATH
from rt_jax.envs.text import compact, const, equal, matches_at, padded

SATURATE = 10**9  # parsed numbers are capped here, as in the reference


def path_bytes(path: str):
  return padded(path, MAX_PATH), len(const(path))


def file_at(fs: shell.FileSystem, path, path_len):
  """(is an existing file, content u8[MAX_FILE], length) of the entry at path."""
  found, slot = shell.lookup(fs, path, path_len)
  is_file = found & ~fs.is_dir[slot]
  return is_file, fs.data[slot], jnp.where(is_file, fs.data_len[slot], 0)


def same_text(data, length, text: str):
  """data[:length] == text."""
  return equal(data, length, padded(text, data.shape[0]), len(const(text)))


def visible(text, length):
  """The text with every `<cot> ... </cot>` span removed (an unclosed one hides the rest)."""
  idx = jnp.arange(text.shape[0])
  live = idx < length
  opened = jax.lax.cummax(jnp.where(matches_at(text, '<cot>') & live, idx, -1))
  close_end = jnp.where(matches_at(text, '</cot>') & live, idx + len('</cot>'), -1)
  closed = jax.lax.cummax(jnp.zeros(text.shape[0] + len('</cot>'), jnp.int32).at[
      jnp.maximum(close_end, 0)].max(close_end)[:text.shape[0]])
  hidden = (opened >= 0) & (opened >= closed)
  return compact(text, live & ~hidden)


def contains(text, length, pattern: str):
  """Whether the constant `pattern` occurs in text[:length]."""
  idx = jnp.arange(text.shape[0])
  return jnp.any(matches_at(text, pattern) & (idx + len(pattern) <= length))


def _next_where(mask):
  """For every position, the first position at or after it where mask holds (else size)."""
  size = mask.shape[0]
  return jax.lax.cummin(jnp.where(mask, jnp.arange(size), size)[::-1])[::-1]


def last_assignment(text, length, name: str, values=None, equals: bool = True):
  """The last whole-statement `name = VALUE` (or `name VALUE` without `equals`) in text[:length].

  A statement is a whole line: optional spaces/tabs, exactly `name`, optional blanks, '=',
  optional blanks (at least one blank and no '=' without `equals`), VALUE, optional spaces, tabs
  or '\\r', then '\\n' or the end of the text. Anything else on the line (a comment mark, a longer
  name, `+ 1`, a second statement) means the line is not read as a grade. VALUE is a run of
  digits, optionally after '-' (values=None; returns (found, int value capped at SATURATE in
  size)), or one of the words in `values` (returns (found, index))."""
  size = text.shape[0]
  idx = jnp.arange(size + 1)
  buf = jnp.concatenate([jnp.where(idx[:size] < length, text, 0), jnp.zeros(1, text.dtype)])
  blank = (buf == ord(' ')) | (buf == ord('\t'))
  skip = _next_where(~blank)
  line_start = jax.lax.cummax(jnp.where((idx == 0) | (jnp.roll(buf, 1) == ord('\n')), idx, 0))
  head = skip[line_start] == idx  # only blanks between the line's start and here
  trail = _next_where(~(blank | (buf == ord('\r'))))
  ends = (trail == length) | ((buf[trail] == ord('\n')) & (trail < length))  # statement ends
  starts = head & matches_at(buf, name) & (idx + len(name) <= length)
  after = jnp.minimum(idx + len(name), size)
  if equals:
    eq = skip[after]
    eq_ok = (buf[eq] == ord('=')) & (eq < length)
    value_at = skip[jnp.minimum(eq + 1, size)]
  else:
    eq_ok = blank[after]
    value_at = skip[after]
  if values is None:
    minus = buf[value_at] == ord('-')
    first_digit = jnp.minimum(value_at + minus, size)
    is_digit = (buf >= ord('0')) & (buf <= ord('9'))
    digits_end = _next_where(~is_digit)[first_digit]
    ok = starts & eq_ok & is_digit[first_digit] & ends[digits_end]
  else:
    hits = jnp.stack([matches_at(buf, v)[value_at]
                      & ends[jnp.minimum(value_at + len(v), size)] for v in values], -1)
    ok = starts & eq_ok & jnp.any(hits, -1)
  at = jnp.max(jnp.where(ok, idx, -1))
  found = at >= 0
  at = jnp.maximum(at, 0)
  if values is not None:
    return found, jnp.argmax(hits[at])
  return found, _parse_int(buf, first_digit[at], minus[at], is_digit)


def _parse_int(buf, start, negative, is_digit):
  """The digit run at start as an int, capped at SATURATE (leading zeros do not count)."""
  end = _next_where(~is_digit)[start]
  nonzero = _next_where((is_digit & (buf != ord('0'))) | ~is_digit)[start]
  first = jnp.maximum(end - 9, 0)
  pos = first + jnp.arange(9)
  digit = jax.lax.dynamic_slice(jnp.pad(buf, (0, 9)), (first,), (9,)).astype(jnp.int32) - 48
  power = jnp.asarray(10 ** jnp.arange(9))[jnp.clip(end - 1 - pos, 0, 8)]
  value = jnp.sum(jnp.where((pos >= nonzero) & (pos < end), digit * power, 0))
  value = jnp.where(end - nonzero > 9, SATURATE, value)
  return jnp.where(negative, -value, value)
