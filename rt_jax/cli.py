"""What every `python -m rt_jax.X` entry point shares: absl flag parsing, and bad input reported
as one `error: ...` line with a non-zero exit instead of a usage dump or a traceback."""
import os
import sys

import jax
from absl import app
from absl import flags
from absl import logging

from rt_jax import memory
from rt_jax.errors import UserError


def _fail(message: str, code: int):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


def _parse_flags(argv):
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
  second run of the same shapes skips XLA's compile, which for the rollout program is ~40 s.
  Every program is kept, however quick: JAX's default skips those under 1 s, and a tiny
  curriculum run compiled ~290 of them (ops run eagerly on the host path), ~20 s in all."""
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
