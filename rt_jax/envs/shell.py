"""The bash-subset machine in JAX: one command line over a fixed-size virtual filesystem.

Semantics are those of `reference.py` (read it first); this file computes them with fixed shapes and
no Python branching on traced values. `run_lines` takes a batch of lines: the per-line work is
vmapped, and each command runs (vmapped over the whole batch) only when some line names it.

Layout of one command line after `lex`: `clean` holds the words with quotes and escapes resolved,
each word after the first preceded by one space (so consecutive words join as echo prints them);
token t is a word (`start[t]`, `length[t]` in `clean`) or an operator (`kind[t]`).
"""
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rt_jax.envs import limits
from rt_jax.envs.limits import HOME, MAX_COMMAND, MAX_ENTRIES, MAX_FILE, MAX_PATH, MAX_STREAM
from rt_jax.envs.reference import BAD_CHARS, COMMANDS
from rt_jax.envs.text import (Stream, compact, const, equal, join, less, number_text, padded,
                             utf8_length, window)

W, A, F = limits.MAX_WORDS, MAX_COMMAND, MAX_ENTRIES
WORD, PIPE, OUT, APPEND = 0, 1, 2, 3
EMPTY, TOO_LONG, OK = 0, 1, 2  # how a word resolves as a path
NO_SUCH, IS_DIR, NAME_TOO_LONG, NOT_DIR, NO_SPACE = range(5)
REASONS = ('No such file or directory', 'Is a directory', 'File name too long', 'Not a directory',
           'No space left on device')
NORMAL, SINGLE, DOUBLE, ESCAPED, DOUBLE_ESCAPED = range(5)
I32 = jnp.int32


@struct.dataclass
class FileSystem:
  path: jax.Array  # u8[F, MAX_PATH]
  path_len: jax.Array  # i32[F]
  data: jax.Array  # u8[F, MAX_FILE]
  data_len: jax.Array  # i32[F]
  exists: jax.Array  # bool[F]
  is_dir: jax.Array  # bool[F]
  original: jax.Array  # bool[F]: the instance's own entry, not removed since
  read: jax.Array  # bool[F]: the slot's original file was read (kept after it is removed)
  cwd: jax.Array  # u8[MAX_PATH]
  cwd_len: jax.Array  # i32


@struct.dataclass
class Lexed:
  clean: jax.Array  # u8[A]
  start: jax.Array  # i32[W]
  length: jax.Array  # i32[W]
  kind: jax.Array  # i32[W]
  count: jax.Array  # i32, tokens in the line (may exceed W)


def _is(c, chars: str):
  return jnp.isin(c, const(chars))


def lex(cmd, n) -> tuple[Lexed, Stream]:
  """Tokens of cmd[:n], and the syntax error (an empty stream when there is none)."""
  idx = jnp.arange(A)
  live = idx < n
  c = cmd
  step = jnp.stack([
      jnp.where(c == ord('\\'), ESCAPED, jnp.where(c == ord("'"), SINGLE,
                                                    jnp.where(c == ord('"'), DOUBLE, NORMAL))),
      jnp.where(c == ord("'"), NORMAL, SINGLE),
      jnp.where(c == ord('\\'), DOUBLE_ESCAPED, jnp.where(c == ord('"'), NORMAL, DOUBLE)),
      jnp.full(A, NORMAL), jnp.full(A, DOUBLE)], -1)
  step = jnp.where(live[:, None], step, jnp.arange(5))
  after = jax.lax.associative_scan(lambda f, g: jnp.take_along_axis(g, f, -1), step)[:, NORMAL]
  state = jnp.concatenate([jnp.array([NORMAL]), after[:-1]])
  final = after[-1]
  plain = live & (state == NORMAL)
  sep, op, bad = plain & _is(c, ' \t\n'), plain & _is(c, '|>'), plain & _is(c, BAD_CHARS)
  nxt = jnp.concatenate([c[1:], jnp.zeros(1, c.dtype)])
  literal = live & (
      (plain & ~_is(c, ' \t\n|>\'"\\' + BAD_CHARS))
      | (plain & (c == ord('\\')) & (idx == n - 1))
      | ((state == SINGLE) & (c != ord("'")))
      | ((state == DOUBLE) & (c != ord('"')) & ((c != ord('\\')) | ~_is(nxt, '"\\')))
      | (state == ESCAPED) | (state == DOUBLE_ESCAPED))
  unit = live & ~(sep | op | bad)
  word_start = unit & ~jnp.concatenate([jnp.zeros(1, bool), unit[:-1]])
  gt = plain & (c == ord('>'))
  run_pos = idx - jax.lax.cummax(jnp.where(gt, -1, idx)) - 1
  next_gt = jnp.concatenate([gt[1:], jnp.zeros(1, bool)])
  op_start = (plain & (c == ord('|'))) | (gt & (run_pos % 2 == 0))
  op_kind = jnp.where(c == ord('|'), PIPE, jnp.where(next_gt, APPEND, OUT))
  tok_start = word_start | op_start
  tok = jnp.cumsum(tok_start) - 1
  space = word_start & (tok > 0)
  count = space.astype(I32) + literal
  end = jnp.cumsum(count)
  first = end - count
  clean = (jnp.zeros(A + 1, jnp.uint8).at[jnp.where(literal, end - 1, A)].set(c)
           .at[jnp.where(space, first, A)].set(ord(' ')))[:A]
  slot = jnp.where(tok_start, tok, W)
  lexed = Lexed(
      clean=clean,
      start=jnp.zeros(W + 1, I32).at[slot].set(first + space, mode='drop')[:W],
      length=jax.ops.segment_sum(literal.astype(I32), jnp.where(live, tok, W), W + 1)[:W],
      kind=jnp.zeros(W + 1, I32).at[slot].set(jnp.where(op_start, op_kind, WORD))[:W],
      count=jnp.sum(tok_start).astype(I32))
  err = Stream.empty()
  first_bad = jnp.argmax(bad)
  err = err.text('bash: syntax error near unexpected token `', jnp.any(bad))
  err = err.append(cmd[first_bad][None], jnp.any(bad).astype(I32))
  err = err.text("'\n", jnp.any(bad))
  open_quote = ~jnp.any(bad) & ((final == SINGLE) | (final == DOUBLE) | (final == DOUBLE_ESCAPED))
  err = err.choice(jnp.where(final == SINGLE, 0, 1),
                   ["bash: unexpected EOF while looking for matching `''\n",
                    'bash: unexpected EOF while looking for matching `"\'\n'], open_quote)
  return lexed, err


def words(lexed: Lexed, size: int = A):
  """u8[W, size]: every token's text from its start (zero past the clean buffer)."""
  return jax.vmap(lambda s: window(lexed.clean, s, size))(lexed.start)


def token_text(lexed: Lexed, t):
  """(u8[A] chunk, length) of token t alone, without building every token's row."""
  return window(lexed.clean, lexed.start[t], A), lexed.length[t]


def token_is(lexed: Lexed, text: str):
  """bool[W]: which tokens are the word `text`."""
  pattern = const(text)
  head = words(lexed, max(1, len(pattern)))
  return (lexed.kind == WORD) & (lexed.length == len(pattern)) & jnp.all(head == pattern, -1)


@struct.dataclass
class Parsed:
  first: jax.Array  # i32[2]: first token of the command and of the piped command
  size: jax.Array  # i32[2]: their token counts (0 when absent)
  redirect: jax.Array  # i32: WORD (none), OUT or APPEND
  target: jax.Array  # i32: token index of the redirect target


def parse(lexed: Lexed) -> tuple[Parsed, Stream]:
  n, kind = lexed.count, lexed.kind
  idx = jnp.arange(W)
  is_op = (kind != WORD) & (idx < n)
  next_kind = jnp.concatenate([kind[1:], jnp.array([WORD])])
  next_op = (next_kind != WORD) & (idx + 1 < n)
  wrong = is_op & (((kind == PIPE) & (idx == 0)) | (idx == n - 1) | next_op)
  at = jnp.argmax(wrong)
  pipes, redirects = jnp.sum(is_op & (kind == PIPE)), jnp.sum(is_op & (kind != PIPE))
  redirect_at = jnp.argmax(is_op & (kind != PIPE))
  pipe_at = jnp.where(pipes > 0, jnp.argmax(is_op & (kind == PIPE)), n)
  errors = jnp.stack([n > W, jnp.any(wrong), pipes > 1, redirects > 1,
                      (redirects == 1) & (redirect_at != n - 2)])
  code = jnp.where(jnp.any(errors), jnp.argmax(errors), -1)
  token = jnp.where((kind[at] == PIPE) & (at == 0), PIPE,
                    jnp.where(at == n - 1, WORD, next_kind[at]))
  err = Stream.empty()
  err = err.text(f'bash: too many words (at most {W})\n', code == 0)
  err = err.choice(token, ["bash: syntax error near unexpected token `newline'\n",
                           "bash: syntax error near unexpected token `|'\n",
                           "bash: syntax error near unexpected token `>'\n",
                           "bash: syntax error near unexpected token `>>'\n"], code == 1)
  err = err.text('bash: only one | is supported\n', code == 2)
  err = err.text('bash: only one > or >> is supported\n', code == 3)
  err = err.text('bash: > and >> are only supported at the end of the command line\n', code == 4)
  end = jnp.where(redirects > 0, n - 2, n)
  parsed = Parsed(
      first=jnp.stack([0, pipe_at + 1]).astype(I32),
      size=jnp.stack([jnp.minimum(pipe_at, end), jnp.where(pipes > 0, end - pipe_at - 1, 0)]
                     ).astype(I32),
      redirect=jnp.where(redirects > 0, kind[redirect_at], WORD).astype(I32),
      target=(n - 1).astype(I32))
  return parsed, err


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


@struct.dataclass
class Args:
  """The arguments of one command of the line (argument j is token first + 1 + j)."""
  valid: jax.Array  # bool[W]
  token: jax.Array  # i32[W]
  clean: jax.Array  # u8[A]: the line's clean buffer, for text spanning several arguments
  start: jax.Array  # i32[W]: where each argument starts in clean
  word: jax.Array  # u8[W, A]
  length: jax.Array  # i32[W]
  path: jax.Array  # u8[W, MAX_PATH]
  path_len: jax.Array  # i32[W]
  status: jax.Array  # i32[W]: EMPTY, TOO_LONG or OK
  count: jax.Array  # i32


@struct.dataclass
class Result:
  out: Stream
  err: Stream
  removed: jax.Array  # bool[F]
  read: jax.Array  # bool[F]
  cwd: jax.Array
  cwd_len: jax.Array


def msg(stream: Stream, when, *parts) -> Stream:
  """Appends the parts (constant text or (chunk, length)) when `when` holds."""
  for part in parts:
    if isinstance(part, str):
      stream = stream.text(part, when)
    else:
      stream = stream.append(part[0], jnp.where(when, part[1], 0))
  return stream


def arg(args: Args, j):
  return args.word[j], args.length[j]


def options(args: Args, allowed: str, valued: bool = False):
  """GNU short options anywhere among args, as reference.options parses them.

  Returns (error code: 0 none, 1 unrecognized '--x', 2 invalid letter, 3 missing value;
  the argument j and byte position of the error; letters present: bool[len(allowed)];
  operand mask; (token, offset, present) of the last `-n` value)."""
  w, n, valid = args.word, args.length, args.valid
  idx = jnp.arange(W)
  dash = valid & (n >= 2) & (w[:, 0] == ord('-'))
  is_value = jnp.zeros(W, bool)
  if valued:
    exact_n = dash & (n == 2) & (w[:, 1] == ord('n'))
    for j in range(1, W):
      is_value = is_value.at[j].set(valid[j] & exact_n[j - 1] & ~is_value[j - 1])
  opt = dash & ~is_value
  long = opt & (w[:, 1] == ord('-'))
  value_opt = opt & ~long & (w[:, 1] == ord('n')) if valued else jnp.zeros(W, bool)
  missing = value_opt & (n == 2) & (idx == args.count - 1)
  pos = jnp.arange(A)
  inside = (pos >= 1) & (pos < n[:, None])
  char_start = (w & 0xC0) != 0x80
  bad = inside & char_start & ~_is(w, allowed) if allowed else inside & char_start
  letters_opt = opt & ~long & ~value_opt
  has_bad = letters_opt & jnp.any(bad, -1)
  wrong = long | missing | has_bad
  j = jnp.argmax(wrong)
  code = jnp.where(~jnp.any(wrong), 0, jnp.where(long[j], 1, jnp.where(missing[j], 3, 2)))
  present = jnp.array([jnp.any(letters_opt[:, None] & inside & (w == ord(c))) for c in allowed],
                      bool) if allowed else jnp.zeros(0, bool)
  last = W - 1 - jnp.argmax(value_opt[::-1])
  glued = n[last] > 2
  value = (jnp.where(glued, args.token[last], args.token[last] + 1), jnp.where(glued, 2, 0),
           jnp.any(value_opt))
  operand = valid & ~opt & ~is_value
  return code, j, jnp.argmax(bad[j]), present, operand, value


def option_error(err: Stream, name, code, args: Args, j, pos) -> Stream:
  word, n = arg(args, j)
  char = jax.lax.dynamic_slice(jnp.pad(word, (0, 4)), (pos,), (4,))
  err = msg(err, code == 1, name, ": unrecognized option '", (word, n), "'\n")
  err = msg(err, code == 2, name, ": invalid option -- '", (char, utf8_length(char[0])), "'\n")
  err = msg(err, code == 3, name, ": option requires an argument -- 'n'\n")
  return msg(err, code > 0, "Try '", name, " --help' for more information.\n")


def operands(mask):
  """(count, indices in order padded with W - 1) of the arguments where mask holds."""
  order = jnp.argsort(~mask, stable=True)
  return jnp.sum(mask).astype(I32), order


def find(fs: FileSystem, args: Args, j, removed=None):
  """(found, slot, reason or -1) for argument j as a path on fs."""
  found, slot = lookup(fs, args.path[j], args.path_len[j])
  if removed is not None:
    found &= ~removed[slot]
  found &= args.status[j] == OK
  reason = jnp.where(args.status[j] == TOO_LONG, NAME_TOO_LONG, jnp.where(found, -1, NO_SUCH))
  return found, slot, reason


def _reason(err: Stream, reason, when=True) -> Stream:
  return err.choice(jnp.maximum(reason, 0), REASONS, when & (reason >= 0))


def under(fs: FileSystem, path, path_len, children_only: bool):
  """bool[F]: entries strictly below the directory path (its children only, if asked)."""
  plen = jnp.where(path_len == 1, 0, path_len)  # '/' contributes no prefix
  pos = jnp.arange(MAX_PATH)
  prefix_ok = jnp.all((fs.path == path[None]) | (pos >= plen), -1)
  slash = jnp.take_along_axis(fs.path, jnp.full((F, 1), plen), -1)[:, 0] == ord('/')
  deeper = (fs.path == ord('/')) & (pos > plen) & (pos < fs.path_len[:, None])
  ok = fs.exists & prefix_ok & slash & (fs.path_len > plen + 1)
  return ok & ~jnp.any(deeper, -1) if children_only else ok


def rank(rows, lens, include):
  """Each included row's position in byte order among the included rows."""
  before = jax.vmap(lambda r, n: less(rows, lens, r[None], n))(rows, lens)  # [i, j]: j < i
  return jnp.sum(before & include[None, :], -1)


def _none(fs: FileSystem) -> Result:
  return Result(Stream.empty(), Stream.empty(), jnp.zeros(F, bool), jnp.zeros(F, bool), fs.cwd,
                fs.cwd_len)


def pwd(fs, args, name, stdin, alone):
  res = _none(fs)
  return res.replace(out=msg(res.out, True, (fs.cwd, fs.cwd_len), '\n'))


def cd(fs, args, name, stdin, alone):
  res = _none(fs)
  found, slot, reason = find(fs, args, 0)
  reason = jnp.where(found & ~fs.is_dir[slot], NOT_DIR, reason)
  home = padded(HOME, MAX_PATH)
  many, none = args.count > 1, args.count == 0
  err = msg(res.err, many, 'bash: cd: too many arguments\n')
  failed = ~many & ~none & (args.length[0] > 0) & (reason >= 0)
  err = _reason(msg(err, failed, 'bash: cd: ', arg(args, 0), ': '), reason, failed)
  err = msg(err, failed, '\n')
  move = alone & ~many & (none | (~failed & (args.length[0] > 0)))
  cwd = jnp.where(move, jnp.where(none, home, args.path[0]), fs.cwd)
  cwd_len = jnp.where(move, jnp.where(none, len(HOME), args.path_len[0]), fs.cwd_len)
  return res.replace(err=err, cwd=cwd, cwd_len=cwd_len)


def echo(fs, args, name, stdin, alone):
  res = _none(fs)
  newline, escapes, leading = jnp.bool_(True), jnp.bool_(False), jnp.bool_(True)
  pos = jnp.arange(A)
  skipped = jnp.int32(0)
  for j in range(W):
    w, n = arg(args, j)
    inside = (pos >= 1) & (pos < n)
    is_opt = leading & args.valid[j] & (n >= 2) & (w[0] == ord('-')) & jnp.all(
        ~inside | _is(w, 'neE'))
    leading &= is_opt
    newline &= ~(is_opt & jnp.any(inside & (w == ord('n'))))
    last_e = jnp.max(jnp.where(inside & (w == ord('e')), pos, -1))
    last_big = jnp.max(jnp.where(inside & (w == ord('E')), pos, -1))
    escapes = jnp.where(is_opt & (last_e != last_big), last_e > last_big, escapes)
    skipped += is_opt
  last = jnp.maximum(args.count - 1, 0)
  start = args.start[jnp.minimum(skipped, W - 1)]
  length = jnp.where(skipped < args.count, args.start[last] + args.length[last] - start, 0)
  text = window(args.clean, start, A)
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
  starter = bs & (run_pos % 2 == 0) & (idx + 1 < length) & _is(nxt, 'nt\\')
  second = jnp.concatenate([jnp.zeros(1, bool), starter[:-1]])
  value = jnp.where(starter, jnp.where(nxt == ord('n'), 10, jnp.where(nxt == ord('t'), 9, 92)),
                    text)
  return compact(value.astype(text.dtype), live & ~second)


def ls(fs, args, name, stdin, alone):
  res = _none(fs)
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
                       (jnp.zeros(A, jnp.uint8).at[0].set(ord('.')), jnp.int32(1)))
  failed = go & ~found
  err = _reason(msg(err, failed, "ls: cannot access '", shown, "': "), reason, failed)
  err = msg(err, failed, '\n')
  out = msg(res.out, go & found & ~fs.is_dir[slot], shown, '\n')
  # Directory listing: children plus, with -a, '.' and '..', in byte order.
  path, path_len = fs.path[slot], fs.path_len[slot]
  prefix_len = jnp.where(path_len == 1, 0, path_len)
  extra = jnp.stack([path.at[prefix_len].set(ord('/')).at[prefix_len + 1].set(ord('.')),
                     path.at[prefix_len].set(ord('/')).at[prefix_len + 1].set(ord('.'))
                     .at[prefix_len + 2].set(ord('.'))])
  rows = jnp.concatenate([fs.path, extra])
  lens = jnp.concatenate([fs.path_len, jnp.stack([prefix_len + 2, prefix_len + 3])])
  child = under(fs, path, path_len, children_only=True)
  hidden = fs.path[jnp.arange(F), jnp.minimum(prefix_len + 1, MAX_PATH - 1)] == ord('.')
  include = jnp.concatenate([child & (show_all | ~hidden), jnp.stack([show_all, show_all])])
  include &= go & found & fs.is_dir[slot]
  order_of = rank(rows, lens, include)

  def emit(r, out):
    e = jnp.argmax(include & (order_of == r))
    name_chunk = window(rows[e], prefix_len + 1, MAX_PATH)
    return msg(out, jnp.any(include & (order_of == r)), (name_chunk, lens[e] - prefix_len - 1),
               '\n')

  out = jax.lax.fori_loop(0, F + 2, emit, out)
  return res.replace(out=out, err=err)


def cat(fs, args, name, stdin, alone):
  res = _none(fs)
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
    err = _reason(msg(err, failed, 'cat: ', arg(args, k), ': '), reason, failed)
    err = msg(err, failed, '\n')
    ok = live & (reason < 0)
    out = msg(out, ok, (fs.data[slot], fs.data_len[slot]))
    return out, err, read.at[slot].set(read[slot] | ok)

  out, err, read = jax.lax.fori_loop(0, W, one, (out, err, res.read))
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
  err = _reason(msg(err, missing, name, ": cannot open '", arg(args, k), "' for reading: "),
                reason, missing)
  err = msg(err, missing, '\n')
  return msg(err, single & (reason < 0) & is_dir, name, ": error reading '", arg(args, k),
             "': Is a directory\n")


def head_tail(fs, args, name, stdin, alone, *, is_head: bool):
  res = _none(fs)
  code, j, pos, _, operand, (vtok, voff, has_value) = options(args, '', valued=True)
  err = option_error(res.err, name, code, args, j, pos)
  vj = jnp.argmax(args.token == vtok)
  value = window(args.word[vj], voff, A)
  vlen = args.length[vj] - voff
  idx = jnp.arange(A)
  digits = (idx < vlen) & (value >= ord('0')) & (value <= ord('9'))
  bad_count = has_value & ((vlen == 0) | jnp.any((idx < vlen) & ~digits))
  err = msg(err, (code == 0) & bad_count, name, ": invalid number of lines: '", (value, vlen),
            "'\n")

  def accumulate(v, d):
    return jnp.where(v >= 10**8, 10**9, jnp.minimum(v * 10 + d, 10**9))

  parsed = jax.lax.fori_loop(0, A, lambda i, v: jnp.where(i < vlen, accumulate(
      v, value[i].astype(I32) - ord('0')), v), jnp.int32(0))
  lines_wanted = jnp.where(has_value, parsed, 10)
  go = (code == 0) & ~bad_count
  count, k, found, slot, reason, is_dir, text, length, from_file = source(
      fs, args, name, operand, stdin)
  err = source_error(err, go, name, args, count, k, reason, is_dir)
  ok = go & (count <= 1) & (~from_file | (reason < 0) & ~is_dir)
  pos = jnp.arange(MAX_STREAM)
  newline = (text == ord('\n')) & (pos < length)
  seen = jnp.cumsum(newline)  # newlines up to and including each byte
  total_lines = seen[-1] + ((length > 0) & (text[jnp.maximum(length - 1, 0)] != ord('\n')))
  if is_head:
    start = jnp.int32(0)
    end = jnp.where(seen[-1] >= lines_wanted, jnp.argmax(newline & (seen == lines_wanted)) + 1,
                    length)
    end = jnp.where(lines_wanted == 0, 0, end)
  else:
    skip = jnp.maximum(total_lines - lines_wanted, 0)  # exceeds the newlines only for -n 0
    start = jnp.where(skip == 0, 0, jnp.where(skip > seen[-1], length,
                                              jnp.argmax(newline & (seen == skip)) + 1))
    end = length
  out = msg(res.out, ok, (window(text, start, MAX_STREAM), end - start))
  read = res.read.at[slot].set(ok & from_file)
  return res.replace(out=out, err=err, read=read)


def head(fs, args, name, stdin, alone):
  return head_tail(fs, args, name, stdin, alone, is_head=True)


def tail(fs, args, name, stdin, alone):
  return head_tail(fs, args, name, stdin, alone, is_head=False)


def wc(fs, args, name, stdin, alone):
  res = _none(fs)
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
  err = _reason(msg(err, missing, 'wc: ', arg(args, k), ': '), reason, missing)
  err = msg(err, missing, '\n')
  is_dir = single & found & fs.is_dir[slot]
  err = msg(err, is_dir, 'wc: ', arg(args, k), ': Is a directory\n')
  out = msg(out, is_dir, '0 ', arg(args, k), '\n')
  ok = single & found & ~fs.is_dir[slot]
  out = msg(out, ok, number_text(file_lines), ' ', arg(args, k), '\n')
  return res.replace(out=out, err=err, read=res.read.at[slot].set(ok))


def rm(fs, args, name, stdin, alone):
  res = _none(fs)
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
    err = _reason(msg(err, failed, "rm: cannot remove '", arg(args, k), "': "), reason, failed)
    err = msg(err, failed, '\n')
    return err, removed.at[slot].set(removed[slot] | (live & (reason < 0)))

  err, removed = jax.lax.fori_loop(0, W, one, (err, res.removed))
  return res.replace(err=err, removed=removed)


def python(fs, args, name, stdin, alone):
  res = _none(fs)
  none = args.count == 0
  option = ~none & (args.length[0] >= 1) & (args.word[0, 0] == ord('-'))
  err = msg(res.err, none, name, ': no script given (the interactive interpreter is not '
            'available)\n')
  err = msg(err, option, name, ': options are not available in this sandbox\n')
  go = ~none & ~option
  found, slot, reason = find(fs, args, 0)
  missing = go & (reason >= 0)
  too_long = args.status[0] == TOO_LONG
  shown = jax.tree.map(lambda a, b: jnp.where(args.status[0] == OK, a, b),
                       (jnp.pad(args.path[0], (0, A - MAX_PATH)), args.path_len[0]), arg(args, 0))
  err = msg(err, missing, name, ": can't open file '", shown, "': [Errno ")
  err = err.choice(too_long.astype(I32), ['2] ', '36] '], missing)
  err = _reason(err, reason, missing)
  err = msg(err, missing, '\n')
  is_dir = go & found & fs.is_dir[slot]
  err = msg(err, is_dir, name, ": can't find '__main__' module in '", arg(args, 0), "'\n")
  return res.replace(err=err, read=res.read.at[slot].set(go & found & ~fs.is_dir[slot]))


HASH_BASES = np.array([0x01000193, 0x5BD1E995], np.uint32)


def _powers(size: int):
  """u32[2, size]: powers of the two hash bases."""
  return jnp.asarray(np.stack([np.cumprod(np.concatenate([[1], np.full(size - 1, b)]),
                                          dtype=np.uint32) for b in HASH_BASES]))


def _prefix_hash(text, powers):
  """u32[2, len + 1]: polynomial hashes of every prefix (two bases, arithmetic mod 2**32)."""
  terms = (text.astype(jnp.uint32) + 1)[None] * powers[:, :text.shape[0]]
  return jnp.concatenate([jnp.zeros((2, 1), jnp.uint32), jnp.cumsum(terms, -1)], -1)


def grep_units(units, valid, source, first, pattern, pattern_len, prefixes, prefix_lens,
               numbered):
  """grep over texts laid side by side in one flat buffer -> (u8[MAX_STREAM], full length).

  units: u8[U], valid: bool[U] (padding between texts is invalid), source: i32[U] (which text),
  first: bool[U] (a text starts here); each text's matching lines are shown after its prefix
  (prefixes: u8[S, P], prefix_lens: i32[S]). A line matches when the pattern's pair of 32-bit
  polynomial hashes equals that of a window inside the line."""
  size = units.shape[0]
  idx = jnp.arange(size)
  newline = valid & (units == ord('\n'))
  after_newline = jnp.concatenate([jnp.zeros(1, bool), newline[:-1]])
  starts = valid & (first | after_newline)
  line = jnp.cumsum(starts)  # global line id, from 1
  number = line - jax.lax.cummax(jnp.where(first, line - 1, 0))
  powers = _powers(max(size, A) + 1)
  h = _prefix_hash(units, powers)
  ph = _prefix_hash(pattern, powers)[:, pattern_len]
  line_end = jax.lax.cummin(jnp.where(newline | ~valid, idx, size)[::-1])[::-1]
  ends = jnp.clip(idx + pattern_len, 0, size)
  hit = valid & (idx + pattern_len <= line_end) & jnp.all(
      h[:, ends] - h[:, :size] == ph[:, None] * powers[:, :size], 0)
  # A line matches if a hit lies in it: hit counts at its end and start (gathers, no scatter).
  hits = jnp.concatenate([jnp.zeros(1, I32), jnp.cumsum(hit)])
  line_start = jax.lax.cummax(jnp.where(starts, idx, 0))
  keep = valid & (hits[jnp.minimum(line_end, size - 1) + 1] > hits[line_start])
  num_len = 1 + sum((number >= 10**d).astype(I32) for d in range(1, 5))
  extra = jnp.where(starts, prefix_lens[source] + jnp.where(numbered, num_len + 1, 0), 0)
  next_open = jnp.concatenate([valid[1:] & ~first[1:], jnp.zeros(1, bool)])
  close = keep & ~next_open & ~newline
  count = jnp.where(keep, extra + 1 + close, 0)
  end = jnp.cumsum(count)
  pos = jnp.arange(MAX_STREAM)
  u = jnp.clip(jnp.searchsorted(end, pos, side='right'), 0, size - 1)
  r = pos - (end[u] - count[u])
  src = source[u]
  digits, _ = jax.vmap(number_text)(number[u])
  k = jnp.clip(r - prefix_lens[src], 0, 9)
  prefix_byte = prefixes[src, jnp.clip(r, 0, prefixes.shape[1] - 1)]
  digit = jnp.take_along_axis(digits, k[:, None], 1)[:, 0]
  extra_byte = jnp.where(r < prefix_lens[src], prefix_byte,
                         jnp.where(k < num_len[u], digit, ord(':')))
  byte = jnp.where(r < extra[u], extra_byte, jnp.where(r == extra[u], units[u], ord('\n')))
  return jnp.where(pos < end[-1], byte, 0).astype(jnp.uint8), end[-1]


def grep(fs, args, name, stdin, alone):
  res = _none(fs)
  code, j, pos, letters, operand, _ = options(args, 'rn')
  recursive, numbered = letters[0], letters[1]
  err = option_error(res.err, name, code, args, j, pos)
  count, order = operands(operand)
  err = msg(err, (code == 0) & (count == 0), 'Usage: grep [OPTION]... PATTERNS [FILE]...\n'
            "Try 'grep --help' for more information.\n")
  err = msg(err, (code == 0) & (count > 2), 'grep: only one PATH is supported\n')
  go = (code == 0) & (count >= 1) & (count <= 2)
  pattern, pattern_len = arg(args, order[0])
  k = order[1]
  given = count == 2
  found, slot, reason = find(fs, args, k)
  cwd_found, cwd_slot = lookup(fs, fs.cwd, fs.cwd_len)
  found, slot = jnp.where(given, found, cwd_found), jnp.where(given, slot, cwd_slot)
  reason = jnp.where(given, reason, jnp.where(cwd_found, -1, NO_SUCH))
  shown = jax.tree.map(lambda a, b: jnp.where(given, a, b), arg(args, k),
                       (jnp.zeros(A, jnp.uint8).at[0].set(ord('.')), jnp.int32(1)))
  from_stdin = go & ~given & ~recursive
  on_path = go & ~from_stdin
  missing = on_path & (reason >= 0)
  err = _reason(msg(err, missing, 'grep: ', shown, ': '), reason, missing)
  err = msg(err, missing, '\n')
  is_dir = on_path & found & fs.is_dir[slot]
  err = msg(err, is_dir & ~recursive, 'grep: ', shown, ': Is a directory\n')
  walk = is_dir & recursive
  files = jnp.where(walk, under(fs, fs.path[slot], fs.path_len[slot], children_only=False)
                    & ~fs.is_dir, jnp.arange(F) == slot) & (walk | (on_path & found))
  # The texts side by side: stdin alone, or the files in byte order of their paths, each
  # shown as BASE/RELATIVE: on a walk (BASE is the argument without trailing slashes).
  order_of = rank(fs.path, fs.path_len, files)
  by_rank = jnp.argsort(jnp.where(files, order_of, F))
  col = jnp.arange(MAX_FILE)
  file_valid = files[by_rank][:, None] & (col < fs.data_len[by_rank][:, None])
  units = jnp.where(from_stdin, jnp.pad(stdin.buf[:MAX_STREAM], (0, F * MAX_FILE - MAX_STREAM)),
                    fs.data[by_rank].reshape(-1))
  flat = jnp.arange(F * MAX_FILE)
  valid = jnp.where(from_stdin, flat < jnp.minimum(stdin.n, MAX_STREAM), file_valid.reshape(-1))
  source = jnp.where(from_stdin, 0, flat // MAX_FILE)
  first = jnp.where(from_stdin, flat == 0, flat % MAX_FILE == 0)
  idx = jnp.arange(A)
  last = jnp.max(jnp.where((idx < shown[1]) & (shown[0] != ord('/')), idx, -1))
  base = (shown[0][:MAX_PATH], jnp.where(last >= 0, last + 1, 1))
  slash = (const('/'), jnp.where(last < 0, 0, 1))
  dir_len = jnp.where(fs.path_len[slot] == 1, 0, fs.path_len[slot])

  def prefix(path, path_len):
    rel = (window(path, dir_len + 1, MAX_PATH), path_len - dir_len - 1)
    return join([base, slash, rel, (const(':'), 1)], 2 * MAX_PATH + 2)

  prefixes, prefix_lens = jax.vmap(prefix)(fs.path[by_rank], fs.path_len[by_rank])
  prefix_lens = jnp.where(walk, prefix_lens, 0)
  text, text_len = grep_units(units, valid & (from_stdin | on_path), source, first, pattern,
                              pattern_len, prefixes, prefix_lens, numbered)
  out = msg(res.out, go & (from_stdin | jnp.any(files)), (text, text_len))
  return res.replace(out=out, err=err, read=files & on_path)


RUNNERS = (ls, cd, pwd, cat, echo, grep, head, tail, wc, rm, python)
RUNNER_OF = {name: RUNNERS.index(globals()[name.rstrip('3')]) for name in COMMANDS}


def _command_args(lexed: Lexed, resolved, first, size):
  """The Args of tokens first .. first + size - 1, its name and which runner it names (-1 for
  none, len(RUNNERS) for an unknown command)."""
  token = jnp.clip(first + 1 + jnp.arange(W), 0, W - 1)
  wordmat = words(lexed)
  paths, path_lens, status = resolved
  valid = jnp.arange(W) < size - 1
  args = Args(valid=valid, token=token, clean=lexed.clean, start=lexed.start[token],
              word=wordmat[token], length=jnp.where(valid, lexed.length[token], 0),
              path=paths[token], path_len=path_lens[token], status=status[token],
              count=jnp.maximum(size - 1, 0).astype(I32))
  name_tok = jnp.clip(first, 0, W - 1)
  known = jnp.stack([token_is(lexed, c)[name_tok] for c in COMMANDS])
  runner = jnp.asarray([RUNNER_OF[c] for c in COMMANDS])[jnp.argmax(known)]
  which = jnp.where(size == 0, -1, jnp.where(jnp.any(known), runner, len(RUNNERS)))
  return args, (wordmat[name_tok], lexed.length[name_tok]), which


def _not_found(fs, name, which):
  res = _none(fs)
  return res.replace(err=msg(res.err, which == len(RUNNERS), 'bash: ', name,
                             ': command not found\n'))


def commands(fs, lexed, resolved, first, size, stdin, alone) -> Result:
  """Runs one command per line of a batch (every argument has a leading batch axis). A command
  is evaluated only when some line of the batch names it; vmap alone would evaluate all."""
  args, name, which = jax.vmap(_command_args)(lexed, resolved, first, size)
  result = jax.vmap(_not_found)(fs, name, which)
  for k, run in enumerate(RUNNERS):
    chosen = which == k
    res = jax.lax.cond(jnp.any(chosen), lambda run=run: jax.vmap(run)(fs, args, name, stdin, alone),
                       lambda result=result: result)
    result = jax.tree.map(lambda a, b, c=chosen: jnp.where(c.reshape(c.shape + (1,) * (a.ndim - 1)),
                                                           a, b), res, result)
  return result


def _apply(fs: FileSystem, res: Result) -> FileSystem:
  return fs.replace(exists=fs.exists & ~res.removed, original=fs.original & ~res.removed,
                    read=fs.read | (res.read & fs.original), cwd=res.cwd, cwd_len=res.cwd_len)


def _open(fs: FileSystem, cmd, n):
  """Lexes, parses and resolves one line and opens its redirect target (created or truncated
  before the command runs, as in bash) -> (lexed, parsed, resolved, fs, opened slot, error)."""
  lexed, lex_err = lex(cmd, n)
  parsed, parse_err = parse(lexed)
  err = jax.tree.map(lambda a, b: jnp.where(lex_err.n > 0, a, b), lex_err, parse_err)
  resolved = jax.vmap(resolve, (0, 0, None, None))(words(lexed, MAX_PATH), lexed.length, fs.cwd,
                                                    fs.cwd_len)
  t = parsed.target
  path, path_len, status = resolved[0][t], resolved[1][t], resolved[2][t]
  found, slot = lookup(fs, path, path_len)
  up_len = jnp.maximum(jnp.max(jnp.where((path == ord('/')) & (jnp.arange(MAX_PATH) < path_len),
                                         jnp.arange(MAX_PATH), 0)), 1)
  up_found, up_slot = lookup(fs, path, up_len)
  reason = jnp.where(status == TOO_LONG, NAME_TOO_LONG, jnp.where(
      status == EMPTY, NO_SUCH, jnp.where(found, jnp.where(fs.is_dir[slot], IS_DIR, -1), jnp.where(
          ~up_found, NO_SUCH, jnp.where(~fs.is_dir[up_slot], NOT_DIR, jnp.where(
              jnp.sum(fs.exists) >= F, NO_SPACE, -1))))))
  redirect = (err.n == 0) & (parsed.redirect != WORD)
  refused = redirect & (reason >= 0)
  err = _reason(msg(err, refused, 'bash: ', token_text(lexed, t), ': '), reason,
                refused)
  err = msg(err, refused, '\n')
  opened = redirect & ~refused
  slot = jnp.where(found, slot, jnp.argmax(~fs.exists))
  new = opened & ~found
  fs = fs.replace(
      path=fs.path.at[slot].set(jnp.where(new, path, fs.path[slot])),
      path_len=fs.path_len.at[slot].set(jnp.where(new, path_len, fs.path_len[slot])),
      exists=fs.exists.at[slot].set(fs.exists[slot] | opened),
      is_dir=fs.is_dir.at[slot].set(fs.is_dir[slot] & ~new),
      original=fs.original.at[slot].set(fs.original[slot] & ~new),
      data_len=fs.data_len.at[slot].set(
          jnp.where(opened & ((parsed.redirect == OUT) | new), 0, fs.data_len[slot])))
  return lexed, parsed, resolved, fs, jnp.where(opened, slot, -1), err


def _close(before: FileSystem, fs: FileSystem, lexed: Lexed, parsed: Parsed, slot, early_err,
           out: Stream, err: Stream):
  """Writes the line's stdout to its opened file (if still there and the result fits) and
  picks what the line shows -> (fs, stdout, stderr)."""
  out_bytes, out_len, out_cut = out.cut()
  opened = slot >= 0
  slot = jnp.maximum(slot, 0)
  alive = opened & fs.exists[slot]
  fits = ~out_cut & (fs.data_len[slot] + out_len <= MAX_FILE)
  row = jax.lax.dynamic_update_slice(jnp.pad(fs.data[slot], (0, MAX_FILE)),
                                     out_bytes[:MAX_FILE], (fs.data_len[slot],))[:MAX_FILE]
  write = alive & fits
  fs = fs.replace(data=fs.data.at[slot].set(jnp.where(write, row, fs.data[slot])),
                  data_len=fs.data_len.at[slot].set(fs.data_len[slot] + jnp.where(write, out_len,
                                                                                   0)))
  t = parsed.target
  err = msg(err, alive & ~fits, 'bash: ', token_text(lexed, t), ': File too large\n')
  go = early_err.n == 0
  fs = jax.tree.map(lambda a, b: jnp.where(go, a, b), fs, before)
  err = jax.tree.map(lambda a, b: jnp.where(go, a, b), err, early_err)
  return fs, out.replace(n=jnp.where(go & ~opened, out.n, 0)), err


def run_lines(fs: FileSystem, cmd, n):
  """Runs one command line per episode: cmd u8[B, MAX_COMMAND], n i32[B] ->
  (fs, stdout Stream, stderr Stream), all with a leading batch axis."""
  lexed, parsed, resolved, opened_fs, slot, early_err = jax.vmap(_open)(fs, cmd, n)
  sizes = jnp.where((early_err.n == 0)[:, None], parsed.size, 0)
  piped = sizes[:, 1] > 0
  empty = jax.vmap(lambda _: Stream.empty())(n)

  def segment(carry, s):
    """The command, then (s = 1) the piped one reading its output; a scan, so traced once."""
    fs, out, err = carry
    stdin = out.replace(n=jnp.where(s == 0, 0, jnp.minimum(out.n, MAX_STREAM)))
    res = commands(fs, lexed, resolved, parsed.first[:, s], sizes[:, s], stdin, ~piped)
    ran = (sizes[:, s] > 0).reshape(-1, 1)
    out = jax.tree.map(lambda a, b: jnp.where(ran.reshape(ran.shape[:1] + (1,) * (a.ndim - 1)),
                                              a, b), res.out, out)
    err = jax.vmap(lambda e, r: e.append(r.buf[:MAX_STREAM], r.n))(err, res.err)
    return (jax.vmap(_apply)(fs, res), out, err), None

  (done_fs, out, err), _ = jax.lax.scan(segment, (opened_fs, empty, empty), jnp.arange(2))
  return jax.vmap(_close)(fs, done_fs, lexed, parsed, slot, early_err, out, err)


OBSERVATION_LIMIT = 2 * MAX_STREAM + 2 * len(limits.TRUNCATED) + 64


def observation(out: Stream, err: Stream) -> Stream:
  """The text after `</bash>`, as reference.observation writes it."""
  obs = Stream.empty(OBSERVATION_LIMIT)
  for tag, stream, show in (('stdout', out, None), ('stderr', err, None)):
    data, n, was_cut = stream.cut()
    if tag == 'stdout':
      e_data, e_n, e_cut = err.cut()
      show = (n > 0) | was_cut | ~((e_n > 0) | e_cut)
    else:
      show = (n > 0) | was_cut
    newline = (n > 0) & (data[jnp.maximum(n - 1, 0)] != ord('\n'))
    obs = msg(obs, show, f'\n<{tag}>\n', (data, n))
    obs = msg(obs, show & newline, '\n')
    obs = msg(obs, show & was_cut, limits.TRUNCATED)
    obs = msg(obs, show, f'</{tag}>')
  return obs.text('\n')
