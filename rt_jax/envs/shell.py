"""The bash-subset machine in JAX: one command line over a fixed-size virtual filesystem.

Semantics are those of `reference.py` (read it first); the machine computes them with fixed shapes
and no Python branching on traced values. `run_lines` takes a batch of lines: the per-line work is
vmapped, and each command runs (vmapped over the whole batch) only when some line names it.

The parts: `shell_syntax` (lex, parse), `shell_paths` (the filesystem, path resolution),
`shell_args` (arguments, options, error text), `shell_commands` and `shell_grep` (the runners);
this module dispatches a line's commands and applies redirects and the pipe.
"""
import jax
import jax.numpy as jnp

from rt_jax.envs import limits, rows
from rt_jax.envs.limits import MAX_ENTRIES, MAX_FILE, MAX_PATH, MAX_STREAM, MAX_WORDS
from rt_jax.envs.reference import COMMANDS
from rt_jax.envs.shell_args import Args, Result, msg, no_result, reason_text
from rt_jax.envs.shell_commands import cat, cd, echo, head_tail, ls, pwd, python, rm, wc
from rt_jax.envs.shell_grep import grep
from rt_jax.envs.shell_paths import (EMPTY, IS_DIR, NAME_TOO_LONG, NO_SPACE, NO_SUCH, NOT_DIR,
                                     TOO_LONG, FileSystem, insert_order, lookup, resolve)
from rt_jax.envs.shell_syntax import (OUT, WORD, Lexed, Parsed, lex_lines, parse, token_is,
                                      token_text, words)
from rt_jax.envs.text import Stream

I32 = jnp.int32

# Command name -> runner, in the order of reference.COMMANDS (python3 is python).
RUNNERS = {'ls': ls, 'cd': cd, 'pwd': pwd, 'cat': cat, 'echo': echo, 'grep': grep,
           'head': head_tail, 'tail': head_tail, 'wc': wc, 'rm': rm, 'python': python,
           'python3': python}
assert tuple(RUNNERS) == COMMANDS, 'one runner per reference command, in its order'
# Each distinct runner is traced once; a line names one by its index here (UNKNOWN: none).
DISTINCT = tuple(dict.fromkeys(RUNNERS.values()))
RUNNER_OF = tuple(DISTINCT.index(run) for run in RUNNERS.values())
UNKNOWN = len(DISTINCT)


def _command_args(lexed: Lexed, resolved, first, size):
  """The Args of tokens first .. first + size - 1, its name and which runner it names (an index
  into DISTINCT; -1 for no command, UNKNOWN for an unknown one)."""
  token = jnp.clip(first + 1 + jnp.arange(MAX_WORDS), 0, MAX_WORDS - 1)
  wordmat = words(lexed)
  paths, path_lens, status = resolved
  valid = jnp.arange(MAX_WORDS) < size - 1
  args = Args(valid=valid, token=token, clean=lexed.clean, start=lexed.start[token],
              word=wordmat[token], length=jnp.where(valid, lexed.length[token], 0),
              path=paths[token], path_len=path_lens[token], status=status[token],
              count=jnp.maximum(size - 1, 0).astype(I32))
  name_tok = jnp.clip(first, 0, MAX_WORDS - 1)
  known = jnp.stack([token_is(lexed, c)[name_tok] for c in RUNNERS])
  runner = jnp.asarray(RUNNER_OF)[jnp.argmax(known)]
  which = jnp.where(size == 0, -1, jnp.where(jnp.any(known), runner, UNKNOWN))
  return args, (wordmat[name_tok], lexed.length[name_tok]), which


def _not_found(fs, name, which):
  res = no_result(fs)
  return res.replace(err=msg(res.err, which == UNKNOWN, 'bash: ', name,
                             ': command not found\n'))


COMMAND_CHUNKS = 4  # a runner runs on chunks of a quarter batch, as many as its rows fill


def commands(fs, lexed, resolved, first, size, stdin, alone) -> Result:
  """Runs one command per line of a batch (every argument has a leading batch axis). Each runner
  runs only on the rows that name it, gathered into chunks (`rows.chunked`), so a mixed batch
  pays for the commands it runs, not for every command on every row."""
  args, name, which = jax.vmap(_command_args)(lexed, resolved, first, size)
  result = jax.vmap(_not_found)(fs, name, which)
  chunk = -(-which.shape[0] // COMMAND_CHUNKS)
  for k, run in enumerate(DISTINCT):
    # A runner marked `batched` takes a whole chunk and its valid rows (grep, which picks one
    # of its programs per chunk); the others are per-row functions.
    batched = getattr(run, 'batched', False)
    fn = (lambda valid, *a, run=run: run(*a, valid)) if batched else run
    with jax.named_scope(run.__name__):  # a profile's time per runner
      result = rows.chunked(fn, which == k, chunk, fs, args, name, stdin, alone, into=result,
                            on_chunk=batched)
  return result


def _apply(fs: FileSystem, res: Result) -> FileSystem:
  return fs.replace(exists=fs.exists & ~res.removed, original=fs.original & ~res.removed,
                    read=fs.read | (res.read & fs.original), cwd=res.cwd, cwd_len=res.cwd_len)


def _path_words(lexed: Lexed, parsed: Parsed):
  """bool[MAX_WORDS]: the tokens a command may open as a path: the arguments of each command but
  echo's and pwd's (which open none), and the redirect target. A command's name and the
  operators never are."""
  idx = jnp.arange(MAX_WORDS)
  printing = token_is(lexed, 'echo') | token_is(lexed, 'pwd')
  need = (parsed.redirect != WORD) & (idx == parsed.target)
  for s in range(2):
    first, size = parsed.first[s], parsed.size[s]
    need |= (idx > first) & (idx < first + size) & ~printing[jnp.clip(first, 0, MAX_WORDS - 1)]
  return need & (idx < lexed.count)


def _resolve_words(fs: FileSystem, lexed: Lexed, need_BxW):
  """The tokens in need_BxW resolved as paths -> (paths [B, W, MAX_PATH], lengths [B, W],
  status [B, W]), a chunk of them at a time; every other slot gets what resolving an empty word
  gives (the cwd, EMPTY), which no command reads."""
  batch = lexed.count.shape[0]
  flat = lambda a: a.reshape((batch * MAX_WORDS,) + a.shape[2:])
  each_word = lambda a: flat(jnp.repeat(a[:, None], MAX_WORDS, axis=1))
  words_BxWxP = jax.vmap(lambda lx: words(lx, MAX_PATH))(lexed)
  got = rows.chunked(resolve, flat(need_BxW), batch, flat(words_BxWxP), flat(lexed.length),
                     each_word(fs.cwd), each_word(fs.cwd_len))
  cwd = jnp.where(jnp.arange(MAX_PATH) < fs.cwd_len[:, None], fs.cwd, 0)
  empty = (cwd, fs.cwd_len, jnp.full(batch, EMPTY, I32))
  merged = rows.pick(flat(need_BxW), got, jax.tree.map(each_word, empty))
  return jax.tree.map(lambda a: a.reshape((batch, MAX_WORDS) + a.shape[1:]), merged)


def _open(fs: FileSystem, lexed: Lexed, lex_err, parsed: Parsed, parse_err, resolved):
  """Opens a parsed line's redirect target (created or truncated before the command runs, as in
  bash) -> (fs, opened slot, error)."""
  err = jax.tree.map(lambda a, b: jnp.where(lex_err.n > 0, a, b), lex_err, parse_err)
  t = parsed.target
  path, path_len, status = resolved[0][t], resolved[1][t], resolved[2][t]
  found, slot, reason = _target(fs, path, path_len, status)
  redirect = (err.n == 0) & (parsed.redirect != WORD)
  refused = redirect & (reason >= 0)
  err = reason_text(msg(err, refused, 'bash: ', token_text(lexed, t), ': '), reason, refused)
  err = msg(err, refused, '\n')
  opened = redirect & ~refused
  slot = jnp.where(found, slot, jnp.argmax(~fs.exists))
  fs = _opened(fs, slot, (path, path_len), opened, found, parsed.redirect)
  return fs, jnp.where(opened, slot, -1), err


def _target(fs: FileSystem, path, path_len, status):
  """(found, slot, reason the redirect target cannot be opened or -1)."""
  found, slot = lookup(fs, path, path_len)
  up_len = jnp.maximum(jnp.max(jnp.where((path == ord('/')) & (jnp.arange(MAX_PATH) < path_len),
                                         jnp.arange(MAX_PATH), 0)), 1)
  up_found, up_slot = lookup(fs, path, up_len)
  reason = jnp.where(status == TOO_LONG, NAME_TOO_LONG, jnp.where(
      status == EMPTY, NO_SUCH, jnp.where(found, jnp.where(fs.is_dir[slot], IS_DIR, -1), jnp.where(
          ~up_found, NO_SUCH, jnp.where(~fs.is_dir[up_slot], NOT_DIR, jnp.where(
              jnp.sum(fs.exists) >= MAX_ENTRIES, NO_SPACE, -1))))))
  return found, slot, reason


def _opened(fs: FileSystem, slot, target, opened, found, redirect) -> FileSystem:
  """fs with the target at slot created (when new) or emptied (`>`) if it was opened."""
  path, path_len = target
  new = opened & ~found
  return fs.replace(
      order=insert_order(fs, slot, path, path_len, new),
      path=fs.path.at[slot].set(jnp.where(new, path, fs.path[slot])),
      path_len=fs.path_len.at[slot].set(jnp.where(new, path_len, fs.path_len[slot])),
      exists=fs.exists.at[slot].set(fs.exists[slot] | opened),
      is_dir=fs.is_dir.at[slot].set(fs.is_dir[slot] & ~new),
      original=fs.original.at[slot].set(fs.original[slot] & ~new),
      data_len=fs.data_len.at[slot].set(
          jnp.where(opened & ((redirect == OUT) | new), 0, fs.data_len[slot])))


def _close(before: FileSystem, fs: FileSystem, lexed: Lexed, parsed: Parsed, slot, early_err,
           out: Stream, err: Stream):
  """Writes the line's stdout to its opened file (if still there and the result fits) and
  picks what the line shows -> (fs, stdout, stderr)."""
  out_bytes, out_len, out_cut = out.cut()
  opened = slot >= 0
  slot = jnp.maximum(slot, 0)
  alive = opened & fs.exists[slot]
  fits = ~out_cut & (fs.data_len[slot] + out_len <= MAX_FILE)
  go = early_err.n == 0
  # A line that failed before running keeps `before`. Only the redirect's slot of `data` can
  # change, so the other fields are picked whole and `data` is written at that slot alone.
  write = alive & fits & go
  row = jax.lax.dynamic_update_slice(jnp.pad(fs.data[slot], (0, MAX_FILE)),
                                     out_bytes[:MAX_FILE], (fs.data_len[slot],))[:MAX_FILE]
  data_len = fs.data_len.at[slot].add(jnp.where(write, out_len, 0))
  small = jax.tree.map(lambda a, b: jnp.where(go, a, b), fs.replace(data=None, data_len=data_len),
                       before.replace(data=None))
  fs = small.replace(data=fs.data.at[slot].set(jnp.where(write, row, fs.data[slot])))
  t = parsed.target
  err = msg(err, alive & ~fits, 'bash: ', token_text(lexed, t), ': File too large\n')
  err = jax.tree.map(lambda a, b: jnp.where(go, a, b), err, early_err)
  return fs, out.replace(n=jnp.where(go & ~opened, out.n, 0)), err


def run_lines(fs: FileSystem, cmd, n):
  """Runs one command line per episode: cmd u8[B, MAX_COMMAND], n i32[B] ->
  (fs, stdout Stream, stderr Stream), all with a leading batch axis."""
  with jax.named_scope('lex'):
    lexed, lex_err = lex_lines(cmd, n)
    parsed, parse_err = jax.vmap(parse)(lexed)
  with jax.named_scope('resolve'):
    resolved = _resolve_words(fs, lexed, jax.vmap(_path_words)(lexed, parsed))
  with jax.named_scope('open'):
    opened_fs, slot, early_err = jax.vmap(_open)(fs, lexed, lex_err, parsed, parse_err, resolved)
  sizes = jnp.where((early_err.n == 0)[:, None], parsed.size, 0)
  piped = sizes[:, 1] > 0
  empty = jax.vmap(lambda _: Stream.empty())(n)

  def segment(carry, s):
    """The command, then (s = 1) the piped one reading its output; a scan, so traced once."""
    fs, out, err = carry
    stdin = out.replace(n=jnp.where(s == 0, 0, jnp.minimum(out.n, MAX_STREAM)))
    res = commands(fs, lexed, resolved, parsed.first[:, s], sizes[:, s], stdin, ~piped)
    out = rows.pick(sizes[:, s] > 0, res.out, out)
    err = jax.vmap(lambda e, r: e.append(r.buf[:MAX_STREAM], r.n))(err, res.err)
    return (jax.vmap(_apply)(fs, res), out, err), None

  (done_fs, out, err), _ = jax.lax.scan(segment, (opened_fs, empty, empty), jnp.arange(2))
  with jax.named_scope('close'):
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
