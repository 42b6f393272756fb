"""What every `python -m rt_jax.X` entry point shares: absl flag parsing, and bad input reported
as one `error: ...` line with a non-zero exit instead of a usage dump or a traceback.

Exit codes: 2 for input refused before any compute starts (flags, a config file that does not
load, a value `validate` rejects, a busy or mismatched workdir: `refusing`), 1 for a UserError met
while working (a checkpoint that cannot be restored, a non-finite loss)."""
import contextlib
import importlib.machinery
import importlib.util
import os
import sys
import threading

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_dict
from ml_collections.config_flags import config_flags

from rt_jax.core import memory
from rt_jax.core.errors import UserError


def _fail(message: str, code: int):
  # One line whatever the message holds: scripts and tests read the first `error:` line.
  one_line = ' '.join(part.strip() for part in str(message).splitlines() if part.strip())
  print(f'error: {one_line}', file=sys.stderr)
  if any(t.is_alive() and not t.daemon for t in threading.enumerate()
         if t is not threading.main_thread()):
    # A library thread left waiting by the failure (Orbax's background save after a write error)
    # would keep the interpreter from exiting; the caller's `finally` blocks have already run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access
  sys.exit(code)


@contextlib.contextmanager
def refusing(kinds=(UserError,)):
  """Inside: a UserError of `kinds` is input refused before compute, so it exits 2 like a bad
  flag (outside, a UserError exits 1)."""
  try:
    yield
  except kinds as e:
    _fail(str(e), 2)


def _flag_value(argv, name: str):
  """The last value argv gives flag `name` (--name=V, -name=V or --name V), or None."""
  value = None
  for i, arg in enumerate(argv[1:], 1):
    for prefix in (f'--{name}', f'-{name}'):
      if arg.startswith(prefix + '='):
        value = arg[len(prefix) + 1:]
      elif arg == prefix and i + 1 < len(argv):
        value = argv[i + 1]
  return value


def load_config_file(spec: str) -> config_dict.ConfigDict:
  """configs/NAME.py[:ARG] as config_flags loads it (the module's get_config(ARG)), every failure
  a UserError of one line: config_flags lets a SyntaxError or an exception raised on import
  escape as a traceback, reports a KeyError from get_config as an unknown override key, and
  accepts any return value."""
  path, _, arg = spec.partition(':')
  args = (arg,) if ':' in spec else ()
  where = f'--config={spec}'
  if not os.path.isfile(path):
    raise UserError(f'{where}: {path or "(empty path)"} not found')
  try:
    loader = importlib.machinery.SourceFileLoader('rt_jax_config_check', path)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
  except SyntaxError as e:
    raise UserError(f'{where}: {path} line {e.lineno}: {e.msg}') from e
  except Exception as e:  # pylint: disable=broad-except -- whatever the file raises on import
    raise UserError(f'{where}: importing {path} raised {type(e).__name__}: {e}') from e
  if not callable(getattr(module, 'get_config', None)):
    raise UserError(f'{where}: {path} defines no get_config()')
  try:
    config = module.get_config(*args)
  except ValueError as e:  # a config's own message (an unknown preset) says enough
    raise UserError(f'{where}: {e}') from e
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'{where}: get_config({", ".join(map(repr, args))}) raised '
                    f'{type(e).__name__}: {e}') from e
  if not isinstance(config, config_dict.ConfigDict):
    raise UserError(f'{where}: get_config() returned a {type(config).__name__}, not an '
                    f'ml_collections.ConfigDict')
  return config


def _check_config_files(argv):
  """Loads every config-file flag's file once before absl does, so a broken file is one line."""
  for name in flags.FLAGS:
    if not isinstance(flags.FLAGS[name].parser, config_flags.ConfigFileFlagParser):
      continue
    spec = _flag_value(argv, name)
    if spec is not None:
      try:
        load_config_file(spec)
      except UserError as e:
        _fail(str(e), 2)


def _parse_flags(argv):
  _check_config_files(argv)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).splitlines()[0], 2)
  except (AttributeError, KeyError) as e:
    # ml_collections: an override names a key the (locked) config does not have.
    detail = e
    while isinstance(detail, BaseException):  # AttributeError(KeyError('...')) -> the message
      detail = detail.args[0] if detail.args else ''
    lines = str(detail).splitlines() or ['']
    key = lines[0].strip('\'"')
    culprit = next((a.split('=')[0] for a in argv[1:]
                    if a.split('=')[0].endswith(f'.{key}')), key)
    hint = f' ({lines[-1].strip()})' if len(lines) > 1 else ''
    _fail(f'unknown config key: {culprit}{hint}', 2)


def cache_dir() -> str:
  """Where rt_jax keeps downloads and compiled programs: $RT_JAX_CACHE or ~/.cache/rt_jax."""
  return os.environ.get('RT_JAX_CACHE') or os.path.join(os.path.expanduser('~'), '.cache',
                                                         'rt_jax')


def enable_compilation_cache():
  """Keeps compiled programs on disk (`$RT_JAX_CACHE/xla`, or JAX_COMPILATION_CACHE_DIR), so a
  second run of the same shapes skips XLA's compile, which for the rollout program is most of a
  short run. Every program is kept, however quick: JAX's default skips those under 1 s, and a
  run compiles hundreds of small ones (ops run eagerly on the host path) that add up."""
  if not os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    jax.config.update('jax_compilation_cache_dir', os.path.join(cache_dir(), 'xla'))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)


def run(main):
  def guarded(argv):
    if len(argv) > 1:
      _fail(f'unexpected positional arguments: {" ".join(argv[1:])}', 2)
    # Orbax and JAX log every save at INFO; progress comes from metrics.console instead.
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)
    enable_compilation_cache()
    memory.map_large_buffers()
    try:
      main(argv)
    except UserError as e:
      _fail(str(e), 1)
  app.run(guarded, flags_parser=_parse_flags)
