"""The JAX machine's lexer and parser: one command line -> tokens -> the command, the piped
command and the redirect (semantics: `reference_syntax.py`).

Layout of one command line after `lex`: `clean` holds the words with quotes and escapes resolved,
each word after the first preceded by one space (so consecutive words join as echo prints them);
token t is a word (`start[t]`, `length[t]` in `clean`) or an operator (`kind[t]`).
"""
import jax
import jax.numpy as jnp
from flax import struct

from rt_jax.envs import rows
from rt_jax.envs.limits import MAX_COMMAND, MAX_WORDS
from rt_jax.envs.reference_syntax import BAD_CHARS
from rt_jax.envs.text import Stream, const, window

WORD, PIPE, OUT, APPEND = 0, 1, 2, 3  # token kinds (OUT is `>`, APPEND `>>`)
NORMAL, SINGLE, DOUBLE, ESCAPED, DOUBLE_ESCAPED = range(5)  # quote states of the lexer
I32 = jnp.int32


@struct.dataclass
class Lexed:
  clean: jax.Array  # u8[MAX_COMMAND]
  start: jax.Array  # i32[MAX_WORDS]
  length: jax.Array  # i32[MAX_WORDS]
  kind: jax.Array  # i32[MAX_WORDS]
  count: jax.Array  # i32, tokens in the line (may exceed MAX_WORDS)


def is_one_of(c, chars: str):
  return jnp.isin(c, const(chars))


def _quote_states(c, live):
  """(quote state before each byte, state after the last): a scan that composes per-byte
  transition tables, so no loop runs over the bytes."""
  step_Lx5 = jnp.stack([
      jnp.where(c == ord('\\'), ESCAPED, jnp.where(c == ord("'"), SINGLE,
                                                    jnp.where(c == ord('"'), DOUBLE, NORMAL))),
      jnp.where(c == ord("'"), NORMAL, SINGLE),
      jnp.where(c == ord('\\'), DOUBLE_ESCAPED, jnp.where(c == ord('"'), NORMAL, DOUBLE)),
      jnp.full(c.shape, NORMAL), jnp.full(c.shape, DOUBLE)], -1)
  step_Lx5 = jnp.where(live[:, None], step_Lx5, jnp.arange(5))
  after_L = jax.lax.associative_scan(lambda f, g: jnp.take_along_axis(g, f, -1),
                                     step_Lx5)[:, NORMAL]
  return jnp.concatenate([jnp.array([NORMAL]), after_L[:-1]]), after_L[-1]


def _literal(c, n, idx, live, plain, state):
  """bool[len(c)]: the bytes that belong to a word's text (not quotes or escapes)."""
  nxt = jnp.concatenate([c[1:], jnp.zeros(1, c.dtype)])
  return live & (
      (plain & ~is_one_of(c, ' \t\n|>\'"\\' + BAD_CHARS))
      | (plain & (c == ord('\\')) & (idx == n - 1))
      | ((state == SINGLE) & (c != ord("'")))
      | ((state == DOUBLE) & (c != ord('"')) & ((c != ord('\\')) | ~is_one_of(nxt, '"\\')))
      | (state == ESCAPED) | (state == DOUBLE_ESCAPED))


def _operators(c, idx, plain):
  """(where an operator starts, its kind): a run of `>` pairs into `>>`s from its start."""
  gt = plain & (c == ord('>'))
  run_pos = idx - jax.lax.cummax(jnp.where(gt, -1, idx)) - 1
  next_gt = jnp.concatenate([gt[1:], jnp.zeros(1, bool)])
  op_start = (plain & (c == ord('|'))) | (gt & (run_pos % 2 == 0))
  return op_start, jnp.where(c == ord('|'), PIPE, jnp.where(next_gt, APPEND, OUT))


def _lex_error(cmd, bad, final) -> Stream:
  err = Stream.empty()
  first_bad = jnp.argmax(bad)
  err = err.text('bash: syntax error near unexpected token `', jnp.any(bad))
  err = err.append(cmd[first_bad][None], jnp.any(bad).astype(I32))
  err = err.text("'\n", jnp.any(bad))
  open_quote = ~jnp.any(bad) & ((final == SINGLE) | (final == DOUBLE) | (final == DOUBLE_ESCAPED))
  return err.choice(jnp.where(final == SINGLE, 0, 1),
                    ["bash: unexpected EOF while looking for matching `''\n",
                     'bash: unexpected EOF while looking for matching `"\'\n'], open_quote)


def lex(cmd, n) -> tuple[Lexed, Stream]:
  """Tokens of cmd[:n], and the syntax error (an empty stream when there is none). The clean
  buffer is as long as cmd (MAX_COMMAND, or less for a line known to be shorter)."""
  width = cmd.shape[0]
  idx = jnp.arange(width)
  live = idx < n
  c = cmd
  state, final = _quote_states(c, live)
  plain = live & (state == NORMAL)
  sep, op = plain & is_one_of(c, ' \t\n'), plain & is_one_of(c, '|>')
  bad = plain & is_one_of(c, BAD_CHARS)
  literal = _literal(c, n, idx, live, plain, state)
  unit = live & ~(sep | op | bad)
  word_start = unit & ~jnp.concatenate([jnp.zeros(1, bool), unit[:-1]])
  op_start, op_kind = _operators(c, idx, plain)
  tok_start = word_start | op_start
  tok = jnp.cumsum(tok_start) - 1
  space = word_start & (tok > 0)
  count = space.astype(I32) + literal
  end = jnp.cumsum(count)
  first = end - count
  clean = (jnp.zeros(width + 1, jnp.uint8).at[jnp.where(literal, end - 1, width)]
           .set(c).at[jnp.where(space, first, width)].set(ord(' ')))[:width]
  slot = jnp.where(tok_start, tok, MAX_WORDS)
  start_W = jnp.zeros(MAX_WORDS + 1, I32).at[slot].set(first + space, mode='drop')[:MAX_WORDS]
  length_W = jax.ops.segment_sum(literal.astype(I32), jnp.where(live, tok, MAX_WORDS),
                                 MAX_WORDS + 1)[:MAX_WORDS]
  kind_W = jnp.zeros(MAX_WORDS + 1, I32).at[slot].set(jnp.where(op_start, op_kind,
                                                                 WORD))[:MAX_WORDS]
  lexed = Lexed(clean=clean, start=start_W, length=length_W, kind=kind_W,
                count=jnp.sum(tok_start).astype(I32))
  return lexed, _lex_error(cmd, bad, final)


SHORT_COMMAND = 128  # lines up to this many bytes are lexed at this width


def lex_lines(cmd_BxL, n_B) -> tuple[Lexed, Stream]:
  """vmap(lex) over a batch, with the lines of at most SHORT_COMMAND bytes (nearly all) lexed at
  that width and only the longer ones at full width, a chunk of rows at a time; the result is
  the same as lexing every line at full width."""
  batch, width = cmd_BxL.shape
  if width <= SHORT_COMMAND:
    return jax.vmap(lex)(cmd_BxL, n_B)
  short, short_err = jax.vmap(lex)(cmd_BxL[:, :SHORT_COMMAND], n_B)
  short = short.replace(clean=jnp.pad(short.clean, ((0, 0), (0, width - SHORT_COMMAND))))
  long_B = n_B > SHORT_COMMAND
  full = rows.chunked(lex, long_B, max(1, batch // 8), cmd_BxL, n_B)
  return rows.pick(long_B, full, (short, short_err))


def words(lexed: Lexed, size: int = MAX_COMMAND):
  """u8[MAX_WORDS, size]: every token's text from its start (zero past the clean buffer)."""
  return jax.vmap(lambda s: window(lexed.clean, s, size))(lexed.start)


def token_text(lexed: Lexed, t):
  """(u8[MAX_COMMAND] chunk, length) of token t alone, without building every token's row."""
  return window(lexed.clean, lexed.start[t], MAX_COMMAND), lexed.length[t]


def token_is(lexed: Lexed, text: str):
  """bool[MAX_WORDS]: which tokens are the word `text`."""
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
  idx = jnp.arange(MAX_WORDS)
  is_op = (kind != WORD) & (idx < n)
  next_kind = jnp.concatenate([kind[1:], jnp.array([WORD])])
  next_op = (next_kind != WORD) & (idx + 1 < n)
  wrong = is_op & (((kind == PIPE) & (idx == 0)) | (idx == n - 1) | next_op)
  at = jnp.argmax(wrong)
  pipes, redirects = jnp.sum(is_op & (kind == PIPE)), jnp.sum(is_op & (kind != PIPE))
  redirect_at = jnp.argmax(is_op & (kind != PIPE))
  pipe_at = jnp.where(pipes > 0, jnp.argmax(is_op & (kind == PIPE)), n)
  errors = jnp.stack([n > MAX_WORDS, jnp.any(wrong), pipes > 1, redirects > 1,
                      (redirects == 1) & (redirect_at != n - 2)])
  code = jnp.where(jnp.any(errors), jnp.argmax(errors), -1)
  token = jnp.where((kind[at] == PIPE) & (at == 0), PIPE,
                    jnp.where(at == n - 1, WORD, next_kind[at]))
  err = Stream.empty()
  err = err.text(f'bash: too many words (at most {MAX_WORDS})\n', code == 0)
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
