"""The JAX machine's commands other than grep, each `(fs, args, name, stdin, alone) -> Result` and
each following the method of `reference.Shell` with its name. A command computes every outcome
and picks with masks: its errors and output are appended under conditions (`msg`)."""
import jax
import jax.numpy as jnp

from rt_jax.envs.limits import (HOME, MAX_COMMAND, MAX_ENTRIES, MAX_FILE, MAX_PATH, MAX_STREAM,
                                MAX_WORDS)
from rt_jax.envs.shell_args import (arg, find, msg, no_result, operands, option_error, options,
                                    reason_text)
from rt_jax.envs.shell_paths import IS_DIR, NOT_DIR, OK, TOO_LONG, lookup, rank, under
from rt_jax.envs.shell_syntax import is_one_of
from rt_jax.envs.text import append_pieces, compact, const, number_text, padded, window

I32 = jnp.int32


def pwd(fs, args, name, stdin, alone):
  res = no_result(fs)
  return res.replace(out=msg(res.out, True, (fs.cwd, fs.cwd_len), '\n'))


def cd(fs, args, name, stdin, alone):
  res = no_result(fs)
  found, slot, reason = find(fs, args, 0)
  reason = jnp.where(found & ~fs.is_dir[slot], NOT_DIR, reason)
  home = padded(HOME, MAX_PATH)
  many, none = args.count > 1, args.count == 0
  err = msg(res.err, many, 'bash: cd: too many arguments\n')
  failed = ~many & ~none & (args.length[0] > 0) & (reason >= 0)
  err = reason_text(msg(err, failed, 'bash: cd: ', arg(args, 0), ': '), reason, failed)
  err = msg(err, failed, '\n')
  move = alone & ~many & (none | (~failed & (args.length[0] > 0)))
  cwd = jnp.where(move, jnp.where(none, home, args.path[0]), fs.cwd)
  cwd_len = jnp.where(move, jnp.where(none, len(HOME), args.path_len[0]), fs.cwd_len)
  return res.replace(err=err, cwd=cwd, cwd_len=cwd_len)


def echo(fs, args, name, stdin, alone):
  """Leading words made of -n/-e/-E letters are options (the later of -e and -E wins); the rest
  is printed, joined as typed. Vectorized over the words: no unrolled loop over them."""
  res = no_result(fs)
  w, n = args.word, args.length
  pos = jnp.arange(MAX_COMMAND)
  inside = (pos >= 1) & (pos < n[:, None])
  looks = args.valid & (n >= 2) & (w[:, 0] == ord('-')) & jnp.all(~inside | is_one_of(w, 'neE'),
                                                                  axis=1)
  is_opt = jnp.cumprod(looks.astype(I32)).astype(bool)  # only a leading run of them counts
  newline = ~jnp.any(is_opt[:, None] & inside & (w == ord('n')))
  last_e = jnp.max(jnp.where(inside & (w == ord('e')), pos, -1), axis=1)
  last_big = jnp.max(jnp.where(inside & (w == ord('E')), pos, -1), axis=1)
  decides = is_opt & (last_e != last_big)
  k = MAX_WORDS - 1 - jnp.argmax(decides[::-1])  # the last option that names -e or -E
  escapes = jnp.any(decides) & (last_e[k] > last_big[k])
  skipped = jnp.sum(is_opt).astype(I32)
  last = jnp.maximum(args.count - 1, 0)
  start = args.start[jnp.minimum(skipped, MAX_WORDS - 1)]
  length = jnp.where(skipped < args.count, args.start[last] + args.length[last] - start, 0)
  text = window(args.clean, start, MAX_COMMAND)
  text, length = jax.tree.map(lambda a, b: jnp.where(escapes, a, b), unescape(text, length),
                              (text, length))
  return res.replace(out=msg(res.out, True, (text, length), (const('\n'), newline.astype(I32))))


def unescape(text, length):
  """echo -e: \\n, \\t and \\\\ become newline, tab and backslash, left to right."""
  idx = jnp.arange(text.shape[0])
  live = idx < length
  bs = live & (text == ord('\\'))
  run_pos = idx - jax.lax.cummax(jnp.where(bs, -1, idx)) - 1
  nxt = jnp.concatenate([text[1:], jnp.zeros(1, text.dtype)])
  starter = bs & (run_pos % 2 == 0) & (idx + 1 < length) & is_one_of(nxt, 'nt\\')
  second = jnp.concatenate([jnp.zeros(1, bool), starter[:-1]])
  value = jnp.where(starter, jnp.where(nxt == ord('n'), 10, jnp.where(nxt == ord('t'), 9, 92)),
                    text)
  return compact(value.astype(text.dtype), live & ~second)


def ls(fs, args, name, stdin, alone):
  res = no_result(fs)
  code, j, pos, letters, operand, _ = options(args, 'a')
  err = option_error(res.err, name, code, args, j, pos)
  count, order = operands(operand)
  show_all = letters[0]
  err = msg(err, (code == 0) & (count > 1), 'ls: only one PATH is supported\n')
  go = (code == 0) & (count <= 1)
  k = order[0]
  found, slot, reason = find(fs, args, k)
  given = count == 1
  found = jnp.where(given, found, True)
  slot = jnp.where(given, slot, lookup(fs, fs.cwd, fs.cwd_len)[1])
  reason = jnp.where(given, reason, -1)
  shown = jax.tree.map(lambda a, b: jnp.where(given, a, b), arg(args, k),
                       (jnp.zeros(MAX_COMMAND, jnp.uint8).at[0].set(ord('.')), jnp.int32(1)))
  failed = go & ~found
  err = reason_text(msg(err, failed, "ls: cannot access '", shown, "': "), reason, failed)
  err = msg(err, failed, '\n')
  out = msg(res.out, go & found & ~fs.is_dir[slot], shown, '\n')
  out = _listing(fs, slot, show_all, (go, found), out)
  return res.replace(out=out, err=err)


def _listing(fs, slot, show_all, listed, out):
  """ls of entry `slot` when both of `listed` hold and it is a directory: its children plus,
  with -a, '.' and '..', in byte order, one name a line."""
  path, path_len = fs.path[slot], fs.path_len[slot]
  prefix_len = jnp.where(path_len == 1, 0, path_len)
  extra = jnp.stack([path.at[prefix_len].set(ord('/')).at[prefix_len + 1].set(ord('.')),
                     path.at[prefix_len].set(ord('/')).at[prefix_len + 1].set(ord('.'))
                     .at[prefix_len + 2].set(ord('.'))])
  rows = jnp.concatenate([fs.path, extra])
  lens = jnp.concatenate([fs.path_len, jnp.stack([prefix_len + 2, prefix_len + 3])])
  child = under(fs, path, path_len, children_only=True)
  name_byte = lambda k: fs.path[jnp.arange(MAX_ENTRIES), jnp.minimum(prefix_len + 1 + k,
                                                                      MAX_PATH - 1)]
  hidden = name_byte(0) == ord('.')
  listing = listed[0] & listed[1] & fs.is_dir[slot]
  shown = child & (show_all | ~hidden) & listing
  dots = show_all & listing
  include = jnp.concatenate([shown, jnp.stack([dots, dots])])
  # '.' and '..' are no entries: a child's name sorts before '.' when its first byte does, and
  # before '..' when its first byte does or it is '.' followed by a smaller byte (no name is '.'
  # or '..' itself, so a name starting with either is longer and sorts after it).
  dot = ord('.')
  before_dot = name_byte(0) < dot
  before_dotdot = before_dot | (hidden & (name_byte(1) < dot))
  after_dots = (~before_dot).astype(I32) + (~before_dotdot).astype(I32)
  children_first = rank(fs.order, shown) + jnp.where(dots, after_dots, 0)
  order_of = jnp.concatenate([children_first, jnp.stack([jnp.sum(shown & before_dot),
                                                         jnp.sum(shown & before_dotdot) + 1])])
  return append_pieces(out, rows, jnp.full(MAX_ENTRIES + 2, prefix_len + 1), lens - prefix_len - 1,
                       order_of, include, '\n')


def cat(fs, args, name, stdin, alone):
  res = no_result(fs)
  code, j, pos, _, operand, _ = options(args, '')
  err = option_error(res.err, name, code, args, j, pos)
  count, order = operands(operand)
  out = msg(res.out, (code == 0) & (count == 0), (stdin.buf[:MAX_STREAM], stdin.n))

  def one(i, carry):
    out, err, read = carry
    k = order[i]
    live = (code == 0) & (i < count)
    found, slot, reason = find(fs, args, k)
    reason = jnp.where(found & fs.is_dir[slot], IS_DIR, reason)
    failed = live & (reason >= 0)
    err = reason_text(msg(err, failed, 'cat: ', arg(args, k), ': '), reason, failed)
    err = msg(err, failed, '\n')
    ok = live & (reason < 0)
    out = msg(out, ok, (fs.data[slot], fs.data_len[slot]))
    return out, err, read.at[slot].set(read[slot] | ok)

  out, err, read = jax.lax.fori_loop(0, MAX_WORDS, one, (out, err, res.read))
  return res.replace(out=out, err=err, read=read)


def source(fs, args, name, operand, stdin):
  """The text a one-PATH filter reads -> (failed, err pieces, text u8[MAX_STREAM], length, slot,
  from_file), following reference.Shell._source."""
  count, order = operands(operand)
  k = order[0]
  found, slot, reason = find(fs, args, k)
  from_file = count == 1
  is_dir = from_file & found & fs.is_dir[slot]
  text = jnp.where(from_file, jnp.pad(fs.data[slot], (0, MAX_STREAM - MAX_FILE)),
                   stdin.buf[:MAX_STREAM])
  length = jnp.where(from_file, fs.data_len[slot], jnp.minimum(stdin.n, MAX_STREAM))
  return count, k, found, slot, reason, is_dir, text, length, from_file


def source_error(err, when, name, args, count, k, reason, is_dir):
  err = msg(err, when & (count > 1), name, ': only one PATH is supported\n')
  single = when & (count == 1)
  missing = single & (reason >= 0)
  err = reason_text(msg(err, missing, name, ": cannot open '", arg(args, k), "' for reading: "),
                reason, missing)
  err = msg(err, missing, '\n')
  return msg(err, single & (reason < 0) & is_dir, name, ": error reading '", arg(args, k),
             "': Is a directory\n")


def head_tail(fs, args, name, stdin, alone):
  """head and tail, one program: the command's name picks the span (one runner traced, not two)."""
  res = no_result(fs)
  is_head = name[0][0] == ord('h')
  code, j, pos, _, operand, (vtok, voff, has_value) = options(args, '', valued=True)
  err = option_error(res.err, name, code, args, j, pos)
  lines_wanted, bad_count, err = _line_count(args, name, code, (vtok, voff, has_value), err)
  go = (code == 0) & ~bad_count
  count, k, found, slot, reason, is_dir, text, length, from_file = source(
      fs, args, name, operand, stdin)
  err = source_error(err, go, name, args, count, k, reason, is_dir)
  ok = go & (count <= 1) & (~from_file | (reason < 0) & ~is_dir)
  start, end = _line_span(text, length, lines_wanted, is_head)
  out = msg(res.out, ok, (window(text, start, MAX_STREAM), end - start))
  read = res.read.at[slot].set(ok & from_file)
  return res.replace(out=out, err=err, read=read)


def _line_count(args, name, code, value_at, err):
  """(lines wanted: the -n value capped at 10**9, or 10; whether the value is not a number, err)."""
  vtok, voff, has_value = value_at
  vj = jnp.argmax(args.token == vtok)
  value = window(args.word[vj], voff, MAX_COMMAND)
  vlen = args.length[vj] - voff
  idx = jnp.arange(MAX_COMMAND)
  digits = (idx < vlen) & (value >= ord('0')) & (value <= ord('9'))
  bad_count = has_value & ((vlen == 0) | jnp.any((idx < vlen) & ~digits))
  err = msg(err, (code == 0) & bad_count, name, ": invalid number of lines: '", (value, vlen),
            "'\n")

  # A number of ten or more significant digits caps at 10**9; fewer fit int32 as they are.
  place = vlen - 1 - idx  # the power of ten of each digit
  digit = jnp.where(digits, value.astype(I32) - ord('0'), 0)
  power = jnp.asarray([10**k for k in range(9)], I32)[jnp.clip(place, 0, 8)]
  parsed = jnp.sum(jnp.where((place >= 0) & (place < 9), digit * power, 0))
  parsed = jnp.where(jnp.any((place >= 9) & (digit > 0)), 10**9, parsed)
  return jnp.where(has_value, parsed, 10), bad_count, err


def _line_span(text, length, lines_wanted, is_head):
  """(start, end) in text of its first (head) or last (tail) lines_wanted lines."""
  pos = jnp.arange(MAX_STREAM)
  newline = (text == ord('\n')) & (pos < length)
  seen = jnp.cumsum(newline)  # newlines up to and including each byte
  total_lines = seen[-1] + ((length > 0) & (text[jnp.maximum(length - 1, 0)] != ord('\n')))
  head_end = jnp.where(seen[-1] >= lines_wanted,
                       jnp.argmax(newline & (seen == lines_wanted)) + 1, length)
  head_end = jnp.where(lines_wanted == 0, 0, head_end)
  skip = jnp.maximum(total_lines - lines_wanted, 0)  # exceeds the newlines only for -n 0
  tail_start = jnp.where(skip == 0, 0, jnp.where(skip > seen[-1], length,
                                                 jnp.argmax(newline & (seen == skip)) + 1))
  return jnp.where(is_head, 0, tail_start), jnp.where(is_head, head_end, length)


def wc(fs, args, name, stdin, alone):
  res = no_result(fs)
  code, j, pos, letters, operand, _ = options(args, 'l')
  err = option_error(res.err, name, code, args, j, pos)
  err = msg(err, (code == 0) & ~letters[0], 'wc: only wc -l is supported\n')
  go = (code == 0) & letters[0]
  count, order = operands(operand)
  err = msg(err, go & (count > 1), 'wc: only one PATH is supported\n')
  k = order[0]
  found, slot, reason = find(fs, args, k)
  from_file = count == 1
  stdin_lines = jnp.sum((stdin.buf[:MAX_STREAM] == ord('\n'))
                        & (jnp.arange(MAX_STREAM) < stdin.n))
  file_lines = jnp.sum((fs.data[slot] == ord('\n')) & (jnp.arange(MAX_FILE) < fs.data_len[slot]))
  out = msg(res.out, go & (count == 0), number_text(stdin_lines), '\n')
  single = go & from_file
  missing = single & (reason >= 0)
  err = reason_text(msg(err, missing, 'wc: ', arg(args, k), ': '), reason, missing)
  err = msg(err, missing, '\n')
  is_dir = single & found & fs.is_dir[slot]
  err = msg(err, is_dir, 'wc: ', arg(args, k), ': Is a directory\n')
  out = msg(out, is_dir, '0 ', arg(args, k), '\n')
  ok = single & found & ~fs.is_dir[slot]
  out = msg(out, ok, number_text(file_lines), ' ', arg(args, k), '\n')
  return res.replace(out=out, err=err, read=res.read.at[slot].set(ok))


def rm(fs, args, name, stdin, alone):
  res = no_result(fs)
  code, j, pos, _, operand, _ = options(args, '')
  err = option_error(res.err, name, code, args, j, pos)
  count, order = operands(operand)
  err = msg(err, (code == 0) & (count == 0),
            "rm: missing operand\nTry 'rm --help' for more information.\n")

  def one(i, carry):
    err, removed = carry
    k = order[i]
    live = (code == 0) & (i < count)
    found, slot, reason = find(fs, args, k, removed)
    reason = jnp.where(found & fs.is_dir[slot], IS_DIR, reason)
    failed = live & (reason >= 0)
    err = reason_text(msg(err, failed, "rm: cannot remove '", arg(args, k), "': "), reason, failed)
    err = msg(err, failed, '\n')
    return err, removed.at[slot].set(removed[slot] | (live & (reason < 0)))

  err, removed = jax.lax.fori_loop(0, MAX_WORDS, one, (err, res.removed))
  return res.replace(err=err, removed=removed)


def python(fs, args, name, stdin, alone):
  res = no_result(fs)
  none = args.count == 0
  option = ~none & (args.length[0] >= 1) & (args.word[0, 0] == ord('-'))
  err = msg(res.err, none, name, ': no script given (the interactive interpreter is not '
            'available)\n')
  err = msg(err, option, name, ': options are not available in this sandbox\n')
  go = ~none & ~option
  found, slot, reason = find(fs, args, 0)
  missing = go & (reason >= 0)
  too_long = args.status[0] == TOO_LONG
  resolved = (jnp.pad(args.path[0], (0, MAX_COMMAND - MAX_PATH)), args.path_len[0])
  shown = jax.tree.map(lambda a, b: jnp.where(args.status[0] == OK, a, b), resolved, arg(args, 0))
  err = msg(err, missing, name, ": can't open file '", shown, "': [Errno ")
  err = err.choice(too_long.astype(I32), ['2] ', '36] '], missing)
  err = reason_text(err, reason, missing)
  err = msg(err, missing, '\n')
  is_dir = go & found & fs.is_dir[slot]
  err = msg(err, is_dir, name, ": can't find '__main__' module in '", arg(args, 0), "'\n")
  return res.replace(err=err, read=res.read.at[slot].set(go & found & ~fs.is_dir[slot]))
