"""The command-line syntax of the reference shell in plain Python: lexing, the one pipe and
redirect, and GNU-style short options. Part of the specification in `reference.py` (docs/design.md
§5), whose docstring lists where the syntax deliberately differs from bash.
"""
from rt_jax.envs import limits

BAD_CHARS = ';&<()`'  # syntax errors outside quotes


class ShellError(Exception):
  """A syntax or command error: its text (without the final newline) is the command's stderr."""


def lex(line: str) -> list[tuple[str, str]]:
  """Words and operators: [('word', text) | ('op', '|' | '>' | '>>')]."""
  tokens, word, i = [], None, 0
  bad = next((c for c, q in _unquoted(line) if q and c in BAD_CHARS), None)
  if bad is not None:
    raise ShellError(f"bash: syntax error near unexpected token `{bad}'")
  while i < len(line):
    c = line[i]
    if c in ' \t\n':
      if word is not None:
        tokens.append(('word', word))
        word = None
      i += 1
    elif c == "'":
      j = line.find("'", i + 1)
      if j < 0:
        raise ShellError("bash: unexpected EOF while looking for matching `''")
      word, i = (word or '') + line[i + 1:j], j + 1
    elif c == '"':
      j, text = i + 1, ''
      while j < len(line) and line[j] != '"':
        if line[j] == '\\' and j + 1 < len(line) and line[j + 1] in '"\\':
          j += 1
        text += line[j]
        j += 1
      if j >= len(line):
        raise ShellError('bash: unexpected EOF while looking for matching `"\'')
      word, i = (word or '') + text, j + 1
    elif c == '\\':
      word = (word or '') + (line[i + 1] if i + 1 < len(line) else '\\')
      i += 2
    elif c in '|>':
      if word is not None:
        tokens.append(('word', word))
        word = None
      op = '>>' if line.startswith('>>', i) else c
      tokens.append(('op', op))
      i += len(op)
    else:
      word = (word or '') + c
      i += 1
  if word is not None:
    tokens.append(('word', word))
  return tokens


def _unquoted(line: str):
  """(char, is_unquoted) for every character; an unterminated quote quotes the rest."""
  quote, escaped = None, False
  for c in line:
    if escaped:
      yield c, False
      escaped = False
    elif quote == "'":
      quote = None if c == "'" else quote
      yield c, False
    elif quote == '"':
      if c == '\\':
        escaped = True
      quote = None if c == '"' else quote
      yield c, False
    else:
      escaped = c == '\\'
      quote = c if c in '\'"' else None
      yield c, not (escaped or quote)


def parse(tokens):
  """-> (command words, piped command words or None, redirect op or None, redirect target)."""
  if len(tokens) > limits.MAX_WORDS:
    raise ShellError(f'bash: too many words (at most {limits.MAX_WORDS})')
  kinds = [t[0] for t in tokens]
  for i, (kind, text) in enumerate(tokens):
    if kind != 'op':
      continue
    if text == '|' and i == 0:
      raise ShellError("bash: syntax error near unexpected token `|'")
    if i == len(tokens) - 1:
      raise ShellError("bash: syntax error near unexpected token `newline'")
    if kinds[i + 1] == 'op':
      raise ShellError(f"bash: syntax error near unexpected token `{tokens[i + 1][1]}'")
  ops = [(i, t) for i, (k, t) in enumerate(tokens) if k == 'op']
  if sum(t == '|' for _, t in ops) > 1:
    raise ShellError('bash: only one | is supported')
  redirects = [(i, t) for i, t in ops if t != '|']
  if len(redirects) > 1:
    raise ShellError('bash: only one > or >> is supported')
  redirect, target = None, None
  if redirects:
    i, redirect = redirects[0]
    if i != len(tokens) - 2:
      raise ShellError('bash: > and >> are only supported at the end of the command line')
    target, tokens = tokens[-1][1], tokens[:-2]
  words = [t for k, t in tokens if k == 'word']
  pipe = next((i for i, (k, _) in enumerate(tokens) if k == 'op'), None)
  if pipe is None:
    return words, None, redirect, target
  return [t for _, t in tokens[:pipe]], [t for _, t in tokens[pipe + 1:]], redirect, target


def options(cmd: str, args: list[str], allowed: str, valued: str = ''):
  """GNU-style short options anywhere in args -> (letters, {letter: value}, operands)."""
  letters, values, operands, i = '', {}, [], 0
  while i < len(args):
    arg = args[i]
    if arg.startswith('--'):
      raise ShellError(f"{cmd}: unrecognized option '{arg}'\nTry '{cmd} --help' for more "
                       'information.')
    if arg.startswith('-') and len(arg) > 1:
      if arg[1] in valued:
        if len(arg) == 2 and i + 1 == len(args):
          raise ShellError(f"{cmd}: option requires an argument -- '{arg[1]}'\n"
                           f"Try '{cmd} --help' for more information.")
        values[arg[1]] = arg[2:] if len(arg) > 2 else args[i + 1]
        i += 1 if len(arg) > 2 else 2
        continue
      for c in arg[1:]:
        if c not in allowed:
          raise ShellError(f"{cmd}: invalid option -- '{c}'\nTry '{cmd} --help' for more "
                           'information.')
      letters += arg[1:]
    else:
      operands.append(arg)
    i += 1
  return letters, values, operands

