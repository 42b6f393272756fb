"""The environment semantics in plain Python on `str`: the oracle the JAX machine is tested against.

Read this file, with its syntax in `reference_syntax.py`, as the specification of the bash subset
(docs/design.md §5). Differences from GNU bash and coreutils that are deliberate, and shared by
the JAX machine:
- one command, at most one `|`, at most one `>`/`>>` and only at the end of the line;
  `; & < ( ) \\`` outside quotes are syntax errors; no variables, globs or `2>`;
- paths resolve lexically (`a/../b` is `b` even when `a` does not exist); `~` and `~/...` mean
  HOME in path arguments, quoted or not; an empty path names nothing (except for `cd`);
- options: `ls -a`, `grep -r -n`, `head`/`tail -n N`, `wc -l`, `echo -n -e -E`; any other option
  is an invalid option; `echo -e` knows `\\n`, `\\t` and `\\\\` only;
- `ls`, `grep`, `head`, `tail`, `wc` take one PATH; listings and `grep -r` run in byte order;
- `python FILE` runs nothing: the environment files only define functions, so it prints nothing
  unless the file is missing; the audit (`audit.py`) is what really executes code;
- fixed sizes from `limits.py`: full tables and long files give ENOSPC/EFBIG-style errors, long
  output is cut at MAX_STREAM bytes and marked.
"""
import dataclasses
import re

from rt_jax.envs import limits
from rt_jax.envs.limits import HOME, MAX_ENTRIES, MAX_FILE, MAX_PATH, MAX_STREAM
from rt_jax.envs.reference_syntax import ShellError, lex, options, parse

COMMANDS = ('ls', 'cd', 'pwd', 'cat', 'echo', 'grep', 'head', 'tail', 'wc', 'rm', 'python',
            'python3')
ALIASES = {'python3': 'python'}  # commands run by another's method


def nbytes(text: str) -> int:
  return len(text.encode('utf-8', 'surrogateescape'))


def cut(text: str, size: int) -> tuple[str, bool]:
  """The first `size` bytes of text (possibly ending inside a character) and whether it was cut."""
  data = text.encode('utf-8', 'surrogateescape')
  return data[:size].decode('utf-8', 'surrogateescape'), len(data) > size


def lines(text: str) -> list[str]:
  """Lines split at '\\n' only, each keeping its newline; a last line without one counts."""
  pieces = text.split('\n')
  out = [p + '\n' for p in pieces[:-1]]
  return out + ([pieces[-1]] if pieces[-1] else [])


@dataclasses.dataclass
class Entry:
  content: str | None  # None for a directory
  original: bool = False  # the entry the instance started with (not removed since)
  read: bool = False  # an original file some command has read


def parent(path: str) -> str:
  return path.rsplit('/', 1)[0] or '/'


class Shell:
  """The bash-subset machine over a dict filesystem (absolute path -> Entry)."""

  def __init__(self, files: dict[str, str], dirs=(), cwd: str = HOME):
    self.entries = {'/': Entry(None, True)}
    for path in sorted(set(dirs) | {HOME} | {parent(p) for p in files}):
      while path not in self.entries:
        self.entries[path] = Entry(None, True)
        path = parent(path)
    self.entries.update({p: Entry(files[p], True) for p in sorted(files)})
    self.originals = dict(self.entries)  # keeps read flags of entries removed later
    if len(self.entries) > MAX_ENTRIES:
      raise ValueError(f'{len(self.entries)} entries, more than MAX_ENTRIES={MAX_ENTRIES}')
    self.cwd = cwd

  def files(self) -> dict[str, str]:
    return {p: e.content for p, e in self.entries.items() if e.content is not None}

  def resolve(self, arg: str) -> str | None:
    """The absolute path an argument names: '' when the argument or the path is longer than
    MAX_PATH, None for the empty argument."""
    if not arg:
      return None
    if nbytes(arg) > MAX_PATH:
      return ''
    if arg == '~' or arg.startswith('~/'):
      arg = HOME + arg[1:]
    stack = [] if arg.startswith('/') else self.cwd.split('/')
    for part in arg.split('/'):
      if part == '..':
        stack = stack[:-1]
      elif part not in ('', '.'):
        stack.append(part)
    path = '/' + '/'.join(p for p in stack if p)
    return path if nbytes(path) <= MAX_PATH else ''

  def lookup(self, arg: str) -> tuple[str, Entry | None, str]:
    """(path, entry, error reason) for an argument naming an existing entry or not."""
    path = self.resolve(arg)
    if path == '':
      return '', None, 'File name too long'
    entry = self.entries.get(path) if path else None
    return path, entry, '' if entry else 'No such file or directory'

  def read(self, entry: Entry) -> str:
    entry.read |= entry.original
    return entry.content

  def run(self, line: str) -> tuple[str, bool, str, bool]:
    """Runs one command line -> (stdout, stdout was cut, stderr, stderr was cut)."""
    try:
      words, piped, redirect, target = parse(lex(line))
    except ShellError as e:
      return '', False, str(e) + '\n', False
    slot = None
    if redirect:
      path = self.resolve(target)
      entry = self.entries.get(path) if path else None
      if not path:
        reason = 'No such file or directory' if path is None else 'File name too long'
      elif entry is not None:
        reason = 'Is a directory' if entry.content is None else ''
      else:
        up = self.entries.get(parent(path))
        reason = ('No such file or directory' if up is None else 'Not a directory'
                  if up.content is not None else 'No space left on device'
                  if len(self.entries) >= MAX_ENTRIES else '')
      if reason:
        return '', False, f'bash: {target}: {reason}\n', False
      slot = entry or self.entries.setdefault(path, Entry(''))
      if redirect == '>':
        slot.content = ''
    out, err = self.command(words, '', piped is None)
    out, out_cut = cut(out, MAX_STREAM)
    if piped is not None:
      out, err2 = self.command(piped, out, False)
      err += err2
      out, out_cut = cut(out, MAX_STREAM)
    if slot is not None:
      if slot is self.entries.get(path) and not out_cut and nbytes(slot.content + out) <= MAX_FILE:
        slot.content += out
      elif slot is self.entries.get(path):
        err += f'bash: {target}: File too large\n'
      out, out_cut = '', False
    err, err_cut = cut(err, MAX_STREAM)
    return out, out_cut, err, err_cut

  def command(self, words: list[str], stdin: str, alone: bool) -> tuple[str, str]:
    if not words:
      return '', ''
    name, args = words[0], words[1:]
    if name not in COMMANDS:
      return '', f'bash: {name}: command not found\n'
    try:
      return getattr(self, ALIASES.get(name, name))(name, args, stdin, alone)
    except ShellError as e:
      return '', str(e) + '\n'

  def pwd(self, name, args, stdin, alone):
    return self.cwd + '\n', ''

  def cd(self, name, args, stdin, alone):
    if len(args) > 1:
      raise ShellError('bash: cd: too many arguments')
    arg = args[0] if args else HOME
    if arg == '':  # bash ignores `cd ''`
      return '', ''
    path, entry, reason = self.lookup(arg)
    if not reason and entry.content is not None:
      reason = 'Not a directory'
    if reason:
      raise ShellError(f'bash: cd: {arg}: {reason}')
    if alone:
      self.cwd = path
    return '', ''

  def echo(self, name, args, stdin, alone):
    newline, escapes = True, False
    while args and len(args[0]) > 1 and args[0][0] == '-' and set(args[0][1:]) <= set('neE'):
      for c in args[0][1:]:
        newline, escapes = newline and c != 'n', (escapes or c == 'e') and c != 'E'
      args = args[1:]
    text = ' '.join(args)
    if escapes:
      text = _unescape(text)
    return text + ('\n' if newline else ''), ''

  def ls(self, name, args, stdin, alone):
    letters, _, operands = options(name, args, 'a')
    if len(operands) > 1:
      raise ShellError('ls: only one PATH is supported')
    arg = operands[0] if operands else '.'
    path, entry, reason = self.lookup(arg)
    if reason:
      raise ShellError(f"ls: cannot access '{arg}': {reason}")
    if entry.content is not None:
      return arg + '\n', ''
    names = [p[len(path):].lstrip('/') for p in self.entries if p != '/' and parent(p) == path]
    names = [n for n in names if 'a' in letters or not n.startswith('.')]
    names += ['.', '..'] if 'a' in letters else []
    return ''.join(n + '\n' for n in sorted(names, key=_utf8)), ''

  def cat(self, name, args, stdin, alone):
    _, _, operands = options(name, args, '')
    if not operands:
      return stdin, ''
    texts = []
    err = self._each_file(operands, lambda arg, reason: f'cat: {arg}: {reason}\n',
                          lambda _, entry: texts.append(self.read(entry)))
    return ''.join(texts), err

  def _each_file(self, operands, failure, action) -> str:
    """action(path, entry) for each operand that names a file, in order; the failures' text
    (a directory is one, 'Is a directory')."""
    err = ''
    for arg in operands:
      path, entry, reason = self.lookup(arg)
      reason = reason or ('Is a directory' if entry.content is None else '')
      if reason:
        err += failure(arg, reason)
      else:
        action(path, entry)
    return err

  def _source(self, name, operands, stdin):
    """The text a one-PATH filter reads: its PATH, or stdin when it has none."""
    if len(operands) > 1:
      raise ShellError(f'{name}: only one PATH is supported')
    if not operands:
      return stdin
    _, entry, reason = self.lookup(operands[0])
    if reason:
      raise ShellError(f"{name}: cannot open '{operands[0]}' for reading: {reason}")
    if entry.content is None:
      raise ShellError(f"{name}: error reading '{operands[0]}': Is a directory")
    return self.read(entry)

  def head(self, name, args, stdin, alone):
    _, values, operands = options(name, args, '', valued='n')
    count = values.get('n', '10')
    if not count.isascii() or not count.isdigit():
      raise ShellError(f"{name}: invalid number of lines: '{count}'")
    count = min(int(count), 10**9)
    text = lines(self._source(name, operands, stdin))
    return ''.join(text[:count] if name == 'head' else text[max(len(text) - count, 0):]), ''

  tail = head

  def wc(self, name, args, stdin, alone):
    letters, _, operands = options(name, args, 'l')
    if 'l' not in letters:
      raise ShellError('wc: only wc -l is supported')
    if len(operands) > 1:
      raise ShellError('wc: only one PATH is supported')
    if not operands:
      return f"{stdin.count(chr(10))}\n", ''
    _, entry, reason = self.lookup(operands[0])
    if reason:
      raise ShellError(f'wc: {operands[0]}: {reason}')
    if entry.content is None:
      return f'0 {operands[0]}\n', f'wc: {operands[0]}: Is a directory\n'
    return f"{self.read(entry).count(chr(10))} {operands[0]}\n", ''

  def grep(self, name, args, stdin, alone):
    letters, _, operands = options(name, args, 'rn')
    if not operands:
      raise ShellError("Usage: grep [OPTION]... PATTERNS [FILE]...\n"
                       "Try 'grep --help' for more information.")
    pattern, paths = operands[0], operands[1:]
    if len(paths) > 1:
      raise ShellError('grep: only one PATH is supported')
    if not paths and 'r' not in letters:
      return _grep_lines(pattern, stdin, '', 'n' in letters), ''
    arg = paths[0] if paths else '.'
    path, entry, reason = self.lookup(arg)
    if reason:
      raise ShellError(f'grep: {arg}: {reason}')
    if entry.content is not None:
      return _grep_lines(pattern, self.read(entry), '', 'n' in letters), ''
    if 'r' not in letters:
      raise ShellError(f'grep: {arg}: Is a directory')
    base = arg.rstrip('/') or '/'
    out = ''
    under = sorted((p for p, e in self.entries.items() if e.content is not None
                    and p.startswith(path.rstrip('/') + '/')), key=_utf8)
    for p in under:
      shown = base + ('' if base.endswith('/') else '/') + p[len(path.rstrip('/')) + 1:]
      out += _grep_lines(pattern, self.read(self.entries[p]), shown + ':', 'n' in letters)
    return out, ''

  def rm(self, name, args, stdin, alone):
    _, _, operands = options(name, args, '')
    if not operands:
      raise ShellError("rm: missing operand\nTry 'rm --help' for more information.")
    err = self._each_file(operands, lambda arg, reason: f"rm: cannot remove '{arg}': {reason}\n",
                          lambda path, _: self.entries.pop(path))
    return '', err

  def python(self, name, args, stdin, alone):
    if not args:
      raise ShellError(f'{name}: no script given (the interactive interpreter is not available)')
    if args[0].startswith('-'):
      raise ShellError(f'{name}: options are not available in this sandbox')
    path, entry, reason = self.lookup(args[0])
    if reason:
      errno = 36 if path == '' else 2
      raise ShellError(f"{name}: can't open file '{path or args[0]}': [Errno {errno}] {reason}")
    if entry.content is None:
      raise ShellError(f"{name}: can't find '__main__' module in '{args[0]}'")
    self.read(entry)
    return '', ''


def _utf8(text: str) -> bytes:
  return text.encode('utf-8', 'surrogateescape')


def _unescape(text: str) -> str:
  out, i = '', 0
  while i < len(text):
    pair = text[i:i + 2]
    if pair in ('\\n', '\\t', '\\\\'):
      out += {'\\n': '\n', '\\t': '\t', '\\\\': '\\'}[pair]
      i += 2
    else:
      out += text[i]
      i += 1
  return out


def _grep_lines(pattern: str, text: str, prefix: str, numbered: bool) -> str:
  return ''.join(prefix + (f'{n}:' if numbered else '') + line + ('' if line.endswith('\n')
                                                                  else '\n')
                 for n, line in enumerate(lines(text), 1) if pattern in line.rstrip('\n'))


def observation(out: str, out_cut: bool, err: str, err_cut: bool) -> str:
  """What the environment writes after `</bash>`: a stdout block, a stderr block, or both."""

  def block(tag, text, was_cut):
    text += '\n' if text and not text.endswith('\n') else ''
    return f'\n<{tag}>\n{text}{limits.TRUNCATED if was_cut else ""}</{tag}>'

  text = block('stdout', out, out_cut) if out or out_cut or not (err or err_cut) else ''
  text += block('stderr', err, err_cut) if err or err_cut else ''
  return (text + '\n').encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')


# Episodes and graders ------------------------------------------------------------------------

OPEN, CLOSE = '<bash>', '</bash>'
TAIL = len(OPEN) + limits.MAX_COMMAND + len(CLOSE)  # the end of a segment that can hold a call
NO_OPEN_TAG = (f'bash: no {OPEN} before {CLOSE}, or the command is longer than '
               f'{limits.MAX_COMMAND} bytes\n')


class Episode:
  """One episode: segments in, observations out, as core.step does on device."""

  def __init__(self, files: dict, dirs=()):
    self.shell = Shell(files, dirs)
    self.calls, self.done, self.answer = 0, False, ''

  def step(self, segment: str) -> str:
    """The observation that follows `segment` ('' once the turn has ended)."""
    data = _utf8(segment)
    if self.done:
      return ''
    if data.endswith(CLOSE.encode()) and self.calls < limits.MAX_CALLS:
      self.calls += 1
      tail = data[-TAIL:]
      k = tail.rfind(OPEN.encode(), 0, len(tail) - len(CLOSE))
      if k < 0:
        return observation('', False, NO_OPEN_TAG, False)
      return observation(*self.shell.run(tail[k + len(OPEN):-len(CLOSE)].decode(
          'utf-8', 'surrogateescape')))
    self.done = True
    self.answer = data[:limits.MAX_ANSWER].decode('utf-8', 'surrogateescape')
    return ''


def visible(text: str) -> str:
  """The answer without its `<cot> ... </cot>` spans (an unclosed one hides the rest)."""
  out, i, hidden = [], 0, False
  while i < len(text):
    if not hidden and text.startswith('<cot>', i):
      hidden, i = True, i + len('<cot>')
    elif hidden and text.startswith('</cot>', i):
      hidden, i = False, i + len('</cot>')
    else:
      out.append('' if hidden else text[i])
      i += 1
  return ''.join(out)


def last_assignment(text: str | None, name: str, values=None, equals: bool = True):
  """(found, value) of the last whole-statement `name = VALUE` (a line holding only it, with
  optional blanks around), as grading.last_assignment."""
  value = '(-?[0-9]+)' if values is None else '(' + '|'.join(map(re.escape, values)) + ')'
  separator = r'[ \t]*=[ \t]*' if equals else r'[ \t]+'
  statement = r'^[ \t]*' + re.escape(name) + separator + value + r'[ \t\r]*(?=\n|\Z)'
  matches = list(re.finditer(statement, text or '', re.MULTILINE))
  if not matches:
    return False, 0
  found = matches[-1].group(1)
  if values is not None:
    return True, values.index(found)
  number = min(int(found.lstrip('-')), 10**9)
  return True, -number if found.startswith('-') else number
