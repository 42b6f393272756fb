"""What every command of the JAX machine shares: its arguments (`Args`), its effect (`Result`),
GNU short options parsed as `reference_syntax.options` parses them, paths looked up, and error
text appended under a condition (`msg`), since nothing may branch on a traced value."""
import jax
import jax.numpy as jnp
from flax import struct

from rt_jax.envs.limits import MAX_COMMAND, MAX_ENTRIES, MAX_WORDS
from rt_jax.envs.shell_paths import (NAME_TOO_LONG, NO_SUCH, OK, REASONS, TOO_LONG, FileSystem,
                                     lookup)
from rt_jax.envs.shell_syntax import is_one_of
from rt_jax.envs.text import Stream, utf8_length

I32 = jnp.int32


@struct.dataclass
class Args:
  """The arguments of one command of the line (argument j is token first + 1 + j)."""
  valid: jax.Array  # bool[MAX_WORDS]
  token: jax.Array  # i32[MAX_WORDS]
  clean: jax.Array  # u8[MAX_COMMAND]: the line's clean buffer, for text spanning arguments
  start: jax.Array  # i32[MAX_WORDS]: where each argument starts in clean
  word: jax.Array  # u8[MAX_WORDS, MAX_COMMAND]
  length: jax.Array  # i32[MAX_WORDS]
  path: jax.Array  # u8[MAX_WORDS, MAX_PATH]
  path_len: jax.Array  # i32[MAX_WORDS]
  status: jax.Array  # i32[MAX_WORDS]: EMPTY, TOO_LONG or OK
  count: jax.Array  # i32


@struct.dataclass
class Result:
  out: Stream
  err: Stream
  removed: jax.Array  # bool[MAX_ENTRIES]
  read: jax.Array  # bool[MAX_ENTRIES]
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


def _value_words(args: Args, dash):
  """bool[MAX_WORDS]: the words that are the value of the bare `-n` before them. In a run of
  bare `-n`s each odd one (counting from 1) takes the next word as its value, so a word is a
  value when the run of bare `-n`s just before it is of odd length."""
  exact_n = dash & (args.length == 2) & (args.word[:, 1] == ord('n'))
  idx = jnp.arange(MAX_WORDS)
  run_start = jax.lax.cummax(jnp.where(exact_n, 0, idx + 1))  # where the run through j began
  run_before = jnp.concatenate([jnp.zeros(1, I32), jnp.where(exact_n, idx + 1 - run_start, 0)[:-1]])
  return args.valid & (run_before % 2 == 1)


def options(args: Args, allowed: str, valued: bool = False):
  """GNU short options anywhere among args, as reference_syntax.options parses them.

  Returns (error code: 0 none, 1 unrecognized '--x', 2 invalid letter, 3 missing value;
  the argument j and byte position of the error; letters present: bool[len(allowed)];
  operand mask; (token, offset, present) of the last `-n` value)."""
  w, n, valid = args.word, args.length, args.valid
  idx = jnp.arange(MAX_WORDS)
  dash = valid & (n >= 2) & (w[:, 0] == ord('-'))
  is_value = _value_words(args, dash) if valued else jnp.zeros(MAX_WORDS, bool)
  opt = dash & ~is_value
  long = opt & (w[:, 1] == ord('-'))
  value_opt = opt & ~long & (w[:, 1] == ord('n')) if valued else jnp.zeros(MAX_WORDS, bool)
  missing = value_opt & (n == 2) & (idx == args.count - 1)
  pos = jnp.arange(MAX_COMMAND)
  inside = (pos >= 1) & (pos < n[:, None])
  char_start = (w & 0xC0) != 0x80
  bad = inside & char_start & ~is_one_of(w, allowed) if allowed else inside & char_start
  letters_opt = opt & ~long & ~value_opt
  has_bad = letters_opt & jnp.any(bad, -1)
  wrong = long | missing | has_bad
  j = jnp.argmax(wrong)
  code = jnp.where(~jnp.any(wrong), 0, jnp.where(long[j], 1, jnp.where(missing[j], 3, 2)))
  present = jnp.array([jnp.any(letters_opt[:, None] & inside & (w == ord(c))) for c in allowed],
                      bool) if allowed else jnp.zeros(0, bool)
  last = MAX_WORDS - 1 - jnp.argmax(value_opt[::-1])
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
  """(count, indices in order padded with MAX_WORDS - 1) of the arguments where mask holds."""
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


def reason_text(err: Stream, reason, when=True) -> Stream:
  return err.choice(jnp.maximum(reason, 0), REASONS, when & (reason >= 0))


def no_result(fs: FileSystem) -> Result:
  """A command's effect before it runs: no output, nothing removed or read, the same cwd."""
  return Result(Stream.empty(), Stream.empty(), jnp.zeros(MAX_ENTRIES, bool),
                jnp.zeros(MAX_ENTRIES, bool), fs.cwd, fs.cwd_len)
