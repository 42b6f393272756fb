"""grep in the JAX machine: every text it reads (stdin, one file, or a directory's files in byte
order of their paths) laid side by side in one flat buffer, lines matched by rolling hashes, and
the matching lines written out with their prefixes in one gather (`reference.Shell.grep`).

The buffer is packed: the texts' live bytes back to back in the smallest of PACKS units that
holds what every row of the batch reads, so a scan costs what the text it reads does, not what a
full filesystem would. When some row reads more than the largest, the whole batch takes the full
layout instead (every file in its own MAX_FILE block); all these programs have the same
semantics, and which one ran is invisible in the output."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from rt_jax.envs.limits import MAX_COMMAND, MAX_ENTRIES, MAX_FILE, MAX_PATH, MAX_STREAM
from rt_jax.envs.shell_args import (arg, find, msg, no_result, operands, option_error, options,
                                    reason_text)
from rt_jax.envs.shell_paths import NO_SUCH, lookup, rank, under
from rt_jax.envs.text import const, join, window

I32 = jnp.int32

# (base, modulus; 0: 2**32). A line matches when every hash of a window equals the pattern's. Two
# hashes mod 2**32 alone collide on Thue-Morse strings (a 128-byte one and its complement) for any
# odd bases; hashes mod primes do not share that structure. Each prime is under 2**16, so a term
# is under 2**16 after reduction and a prefix sum of 32,768 of them stays exact in 32 bits.
HASHES = ((0x01000193, 0), (0x5BD1E995, 0), (40503, 65521), (52429, 65519))
_MOD = np.array([[m or 1] for _, m in HASHES], np.uint32)
_WRAPS = np.array([[m == 0] for _, m in HASHES])
PACKS = (1024, MAX_STREAM)  # packed sizes: stdin always fits the largest, and so do most greps
FULL = MAX_ENTRIES * MAX_FILE
_DIGITS = len(str(FULL))  # a line number has at most this many digits


@functools.cache
def _powers(size: int) -> np.ndarray:
  """u32[hashes, size]: powers of each hash's base, reduced by its modulus."""
  rows = []
  for base, mod in HASHES:
    if mod:
      rows.append(np.array([pow(base, i, mod) for i in range(size)], np.uint32))
    else:
      rows.append(np.cumprod(np.concatenate([[1], np.full(size - 1, base)]), dtype=np.uint32))
  return np.stack(rows)


def _reduce(x_HxN):
  """Each hash's row reduced by its modulus (mod 2**32 is the arithmetic's own)."""
  return jnp.where(_WRAPS, x_HxN, x_HxN % _MOD)


def _prefix_hash(text, powers):
  """u32[hashes, len + 1]: polynomial hashes of every prefix (prime rows exact, not reduced)."""
  terms = _reduce((text.astype(jnp.uint32) + 1)[None] * powers[:, :text.shape[0]])
  return jnp.concatenate([jnp.zeros((len(HASHES), 1), jnp.uint32), jnp.cumsum(terms, -1)], -1)


def grep_units(units, valid, source, first, pattern, pattern_len, prefixes, prefix_lens,
               numbered):
  """grep over texts laid side by side in one flat buffer -> (u8[MAX_STREAM], full length).

  units: u8[U], valid: bool[U] (padding is invalid), source: i32[U] (which text), first: bool[U]
  (a text starts here; texts may follow each other with no padding between them); each text's
  matching lines are shown after its prefix (prefixes: u8[S, P], prefix_lens: i32[S])."""
  size = units.shape[0]
  idx = jnp.arange(size)
  newline = valid & (units == ord('\n'))
  after_newline = jnp.concatenate([jnp.zeros(1, bool), newline[:-1]])
  starts = valid & (first | after_newline)
  line = jnp.cumsum(starts)  # global line id, from 1
  number = line - jax.lax.cummax(jnp.where(first, line - 1, 0))
  keep = _matching_lines(units, valid, newline, starts, first, idx, pattern, pattern_len)
  num_len = 1 + sum((number >= 10**d).astype(I32) for d in range(1, _DIGITS))
  extra = jnp.where(starts, prefix_lens[source] + jnp.where(numbered, num_len + 1, 0), 0)
  next_open = jnp.concatenate([valid[1:] & ~first[1:], jnp.zeros(1, bool)])
  close = keep & ~next_open & ~newline
  count = jnp.where(keep, extra + 1 + close, 0)
  return _write_lines(units, source, (number, num_len), extra, count, prefixes, prefix_lens)


def _matching_lines(units, valid, newline, starts, first, idx, pattern, pattern_len):
  """bool[U]: the units of the lines that hold the pattern. A line matches when the pattern's
  pair of 32-bit polynomial hashes equals that of a window inside the line. A line ends at its
  newline, at padding, or with its text (the next text may start on the next unit)."""
  size = units.shape[0]
  powers = jnp.asarray(_powers(max(size, MAX_COMMAND) + 1))
  h = _prefix_hash(units, powers)
  # The pattern's hashes alone: one masked sum, not a prefix sum over its whole buffer.
  terms = _reduce((pattern.astype(jnp.uint32) + 1)[None] * powers[:, :pattern.shape[0]])
  ph = _reduce(jnp.sum(jnp.where(jnp.arange(pattern.shape[0]) < pattern_len, terms, 0), -1,
                       dtype=jnp.uint32)[:, None])
  next_at = lambda mask: jax.lax.cummin(jnp.where(mask, idx, size)[::-1])[::-1]
  line_end = next_at(newline | ~valid)  # the unit that ends the line
  text_end = next_at(jnp.concatenate([first[1:], jnp.ones(1, bool)]))  # the text's last unit
  ends = jnp.clip(idx + pattern_len, 0, size)
  hit = valid & (idx + pattern_len <= jnp.minimum(line_end, text_end + 1)) & jnp.all(
      _reduce(h[:, ends] - h[:, :size]) == _reduce(ph * powers[:, :size]), 0)
  # A line matches if a hit lies in it: hit counts at its end and start (gathers, no scatter).
  hits = jnp.concatenate([jnp.zeros(1, I32), jnp.cumsum(hit)])
  line_start = jax.lax.cummax(jnp.where(starts, idx, 0))
  last = jnp.minimum(jnp.minimum(line_end, text_end), size - 1)
  return valid & (hits[last + 1] > hits[line_start])


def _write_lines(units, source, numbers, extra, count, prefixes, prefix_lens):
  """(u8[MAX_STREAM], full length): unit u written as count[u] bytes, the first extra[u] of
  them its line's prefix and number, then the unit, then a newline that closes an open line."""
  number, num_len = numbers
  size = units.shape[0]
  end = jnp.cumsum(count)
  pos = jnp.arange(MAX_STREAM)
  # The unit each output byte comes from: units that write mark their first byte, and a running
  # max carries the mark over the bytes they write (a binary search per byte cost 3x more).
  first_byte = jnp.where(count > 0, end - count, MAX_STREAM)
  u = jax.lax.cummax(jnp.zeros(MAX_STREAM, I32).at[first_byte].max(jnp.arange(size, dtype=I32),
                                                                     mode='drop'))
  r = pos - (end[u] - count[u])
  src = source[u]
  k = jnp.clip(r - prefix_lens[src], 0, _DIGITS - 1)  # which digit of the line number
  place = jnp.asarray([10**d for d in range(_DIGITS)], I32)[jnp.clip(num_len[u] - 1 - k, 0,
                                                                      _DIGITS - 1)]
  digit = (number[u] // place) % 10 + ord('0')
  prefix_byte = prefixes[src, jnp.clip(r, 0, prefixes.shape[1] - 1)]
  extra_byte = jnp.where(r < prefix_lens[src], prefix_byte,
                         jnp.where(k < num_len[u], digit, ord(':')))
  byte = jnp.where(r < extra[u], extra_byte, jnp.where(r == extra[u], units[u], ord('\n')))
  return jnp.where(pos < end[-1], byte, 0).astype(jnp.uint8), end[-1]


def _select(fs, args, name, stdin):
  """One row: the options, the operands and the files grep reads -> (result so far, selection)."""
  res = no_result(fs)
  code, j, pos, letters, operand, _ = options(args, 'rn')
  recursive, numbered = letters[0], letters[1]
  err = option_error(res.err, name, code, args, j, pos)
  count, order = operands(operand)
  err = msg(err, (code == 0) & (count == 0), 'Usage: grep [OPTION]... PATTERNS [FILE]...\n'
            "Try 'grep --help' for more information.\n")
  err = msg(err, (code == 0) & (count > 2), 'grep: only one PATH is supported\n')
  go = (code == 0) & (count >= 1) & (count <= 2)
  k = order[1]
  given = count == 2
  found, slot, reason = find(fs, args, k)
  cwd_found, cwd_slot = lookup(fs, fs.cwd, fs.cwd_len)
  found, slot = jnp.where(given, found, cwd_found), jnp.where(given, slot, cwd_slot)
  reason = jnp.where(given, reason, jnp.where(cwd_found, -1, NO_SUCH))
  shown = jax.tree.map(lambda a, b: jnp.where(given, a, b), arg(args, k),
                       (jnp.zeros(MAX_COMMAND, jnp.uint8).at[0].set(ord('.')), jnp.int32(1)))
  from_stdin = go & ~given & ~recursive
  on_path = go & ~from_stdin
  missing = on_path & (reason >= 0)
  err = reason_text(msg(err, missing, 'grep: ', shown, ': '), reason, missing)
  err = msg(err, missing, '\n')
  is_dir = on_path & found & fs.is_dir[slot]
  err = msg(err, is_dir & ~recursive, 'grep: ', shown, ': Is a directory\n')
  walk = is_dir & recursive
  files = jnp.where(walk, under(fs, fs.path[slot], fs.path_len[slot], children_only=False),
                    jnp.arange(MAX_ENTRIES) == slot) & ~fs.is_dir & (walk | (on_path & found))
  selection = {'go': go, 'from_stdin': from_stdin, 'on_path': on_path, 'files': files,
               'pattern': arg(args, order[0]), 'numbered': numbered, 'shown': shown,
               'slot': slot, 'walk': walk}
  return res.replace(err=err, read=files & on_path), selection


def _search(fs, stdin, sel, size: int):
  """One row's output text and its full length, over a buffer of `size` units (one of PACKS:
  packed; FULL: a block per file)."""
  units, valid, source, first, by_rank = _texts(fs, stdin, sel['files'], sel['from_stdin'], size)
  prefixes, prefix_lens = _prefixes(fs, sel['shown'], sel['slot'], by_rank, sel['walk'])
  return grep_units(units, valid & (sel['from_stdin'] | sel['on_path']), source, first,
                    *sel['pattern'], prefixes, prefix_lens, sel['numbered'])


def grep(fs, args, name, stdin, alone, chosen):
  """A batched runner: every argument has a leading batch axis, and `chosen` marks the rows that
  run grep (the others' results are discarded). The smallest packed program that holds every
  chosen row's text serves the batch; the full layout when none does."""
  del alone
  res, sel = jax.vmap(_select)(fs, args, name, stdin)
  need = jnp.where(sel['from_stdin'], jnp.minimum(stdin.n, MAX_STREAM),
                   jnp.sum(jnp.where(sel['files'], fs.data_len, 0), axis=1))
  program = sum(jnp.any(chosen & (need > size)).astype(I32) for size in PACKS)
  text, text_len = jax.lax.switch(
      program, [lambda size=size: jax.vmap(lambda *a: _search(*a, size))(fs, stdin, sel)
                for size in PACKS + (FULL,)])
  shows = sel['go'] & (sel['from_stdin'] | jnp.any(sel['files'], axis=1))
  return res.replace(out=jax.vmap(lambda out, show, t, n: msg(out, show, (t, n)))(
      res.out, shows, text, text_len))


grep.batched = True


def _texts(fs, stdin, files, from_stdin, size: int):
  """The texts side by side, as grep_units takes them: stdin alone, or the files in byte order
  of their paths, packed back to back (a size in PACKS) or each in its MAX_FILE block (FULL)
  -> (units, valid, source, first, the files' slots in that order)."""
  order_of = rank(fs.order, files)
  by_rank = jnp.argsort(jnp.where(files, order_of, MAX_ENTRIES))
  flat = jnp.arange(size)
  stdin_units = jnp.pad(stdin.buf[:MAX_STREAM], (0, max(0, size - MAX_STREAM)))[:size]
  stdin_valid = flat < jnp.minimum(stdin.n, MAX_STREAM)
  if size == FULL:
    col = jnp.arange(MAX_FILE)
    file_valid = files[by_rank][:, None] & (col < fs.data_len[by_rank][:, None])
    file_units, file_valid = fs.data[by_rank].reshape(-1), file_valid.reshape(-1)
    text, file_first = flat // MAX_FILE, flat % MAX_FILE == 0
  else:
    lens = jnp.where(files[by_rank], fs.data_len[by_rank], 0)
    ends = jnp.cumsum(lens)
    text = jnp.minimum(jnp.searchsorted(ends, flat, side='right'), MAX_ENTRIES - 1)
    offset = flat - (ends - lens)[text]
    file_units = fs.data[by_rank[text], jnp.clip(offset, 0, MAX_FILE - 1)]
    file_valid = flat < ends[-1]
    file_first = file_valid & (offset == 0)
  units = jnp.where(from_stdin, stdin_units, file_units)
  valid = jnp.where(from_stdin, stdin_valid, file_valid)
  source = jnp.where(from_stdin, 0, text)
  first = jnp.where(from_stdin, flat == 0, file_first)
  return units, valid, source, first, by_rank


def _prefixes(fs, shown, slot, by_rank, walk):
  """Each file's prefix on a walk, BASE/RELATIVE: (BASE is the argument without trailing
  slashes); none otherwise."""
  idx = jnp.arange(MAX_COMMAND)
  last = jnp.max(jnp.where((idx < shown[1]) & (shown[0] != ord('/')), idx, -1))
  base = (shown[0][:MAX_PATH], jnp.where(last >= 0, last + 1, 1))
  slash = (const('/'), jnp.where(last < 0, 0, 1))
  dir_len = jnp.where(fs.path_len[slot] == 1, 0, fs.path_len[slot])

  def prefix(path, path_len):
    rel = (window(path, dir_len + 1, MAX_PATH), path_len - dir_len - 1)
    return join([base, slash, rel, (const(':'), 1)], 2 * MAX_PATH + 2)

  prefixes, prefix_lens = jax.vmap(prefix)(fs.path[by_rank], fs.path_len[by_rank])
  return prefixes, jnp.where(walk, prefix_lens, 0)
