"""A run's workdir: one run at a time, and a resume held to the plan the run started with.

  W/.lock     flock(2)ed by the run using W; holds "PID HOST" of that run. The kernel drops the lock
              when its process dies however it dies, so a killed run leaves no stale lock, and the
              file itself is never deleted (deleting it would let a second run lock a new file
              while the first still holds the old one).
  W/run.json  the run plan, written by the first run (atomically): the resolved config, the git
              SHA of the code, package versions, devices; `history` has one entry per run. A
              rerun whose config differs in a key that changes results is refused before any
              compute, naming the keys; a changed SHA, package or device is a warning, recorded.

Checkpoints hold the state, results.json the measurements; both assume the numbers before and
after a resume come from the same run plan. The jobs' own resume checks (the seed and batch size
in a checkpoint) see only what they saved; the plan sees every key.
"""
import errno
import fcntl
import importlib.metadata
import json
import math
import os
import socket
import subprocess
import sys
import time

import jax

from rt_jax.core.errors import ConfigError, UserError

LOCK = '.lock'
PLAN = 'run.json'
FORMAT = 1

# Config keys (and sections, by prefix) that a resumed run may change: none of them changes a
# number in results.json, a checkpoint or a measurement. `mesh` and `rules` place the same
# computation on other devices (resuming on another mesh is supported and tested to give the
# same matrix); the rest are labels, logging and checkpoint cadence (keys derive from (seed,
# step), so where a run checkpoints does not change what it computes), disk use, the MFU
# denominator, and whether XLA compiles ahead in a background thread.
ALLOWED_CHANGES = frozenset({
    'command', 'name', 'mesh', 'rules', 'compile_ahead', 'keep_checkpoints', 'log_every',
    'checkpoint_every', 'checkpoint_every_rounds', 'peak_flops', 'start.cache'})
PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpy', 'ml-collections',
            'tiktoken')


class BusyError(UserError):
  """Another live process holds the workdir's lock."""


def check_path(workdir: str):
  """--workdir names a directory, or nothing yet (the run creates it)."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f'--workdir={workdir} is a file, not a directory')
  parent = os.path.dirname(os.path.abspath(workdir))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise ConfigError(f'--workdir={workdir}: {parent} is a file, not a directory')


# ---------------------------------------------------------------------------------------------
# The lock.

class Lock:
  """The flock on W/.lock, held until `release` or the process's end."""

  def __init__(self, fd: int | None):
    self.fd = fd

  def release(self):
    if self.fd is not None:
      os.close(self.fd)  # closing the only descriptor drops the flock
      self.fd = None


def _holder(fd: int) -> str:
  """'pid PID on HOST' from the lock file. A holder writes its line right after locking, so an
  empty file is a holder between the two steps: read again for a moment."""
  for _ in range(20):
    fields = os.pread(fd, 512, 0).decode(errors='replace').split()
    if len(fields) >= 2:
      return f'pid {fields[0]} on {fields[1]}'
    time.sleep(0.05)
  return 'another process'


def acquire(workdir: str) -> Lock:
  """Locks W/.lock (created if missing) and writes 'PID HOST' into it; a BusyError naming the
  holder when another live process has it. Filesystems without flock (some network mounts) run
  unlocked, with a warning."""
  path = os.path.join(workdir, LOCK)
  fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
      holder = _holder(fd)
      os.close(fd)
      raise BusyError(f'{workdir} is in use by {holder} (one run per workdir: wait for that run '
                      f'to end, or use another workdir)') from e
    os.close(fd)
    print(f'warning: cannot lock {path} ({e.strerror}); nothing stops a second run on '
          f'{workdir}', file=sys.stderr, flush=True)
    return Lock(None)
  os.ftruncate(fd, 0)
  os.pwrite(fd, f'{os.getpid()} {socket.gethostname()}\n'.encode(), 0)
  return Lock(fd)


# ---------------------------------------------------------------------------------------------
# The run plan.

def json_safe(value):
  """A config value as JSON: tuples as lists, non-finite floats as strings ('nan', 'inf'), any
  other object as its repr, so the plan round-trips through run.json unchanged."""
  if isinstance(value, dict):
    return {str(k): json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v) for v in value]
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  return repr(value)


def git_sha() -> str | None:
  """HEAD of the git checkout rt_jax runs from; None for an installed package or no git."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  if not os.path.exists(os.path.join(root, '.git')):
    return None
  try:
    out = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=root, capture_output=True,
                         text=True, timeout=10, check=True)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip() or None


def environment() -> dict:
  """What a run's numbers depend on besides its config: code, packages, devices."""
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  devices = jax.devices()
  return {'git_sha': git_sha(), 'packages': versions,
          'devices': {'platform': devices[0].platform, 'count': len(devices),
                      'kind': devices[0].device_kind, 'processes': jax.process_count()}}


def _flat(tree: dict, prefix: str = '') -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict) and value:
      out.update(_flat(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def _allowed(key: str) -> bool:
  return any(key == a or key.startswith(a + '.') for a in ALLOWED_CHANGES)


def _show(value) -> str:
  """A JSON value as a user writes it in --config.KEY=VALUE (tuples, True, 'text')."""
  def tupled(v):
    return tuple(tupled(x) for x in v) if isinstance(v, list) else v
  return repr(tupled(value))


def compare(old: dict, new: dict) -> tuple[dict, dict, list]:
  """Two resolved configs -> ({key: (old, new)} that change results, {key: (old, new)} allowed to
  change, [keys in only one of them])."""
  a, b = _flat(old), _flat(new)
  refused, allowed = {}, {}
  for key in sorted(a.keys() & b.keys()):
    if a[key] != b[key]:
      (allowed if _allowed(key) else refused)[key] = (a[key], b[key])
  return refused, allowed, sorted(a.keys() ^ b.keys())


def _read(workdir: str) -> dict | None:
  path = os.path.join(workdir, PLAN)
  if not os.path.isfile(path):
    return None
  try:
    with open(path, encoding='utf-8') as f:
      plan = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f'{path} is unreadable ({e}); move it aside to start a new plan') from e
  if not isinstance(plan, dict) or not isinstance(plan.get('config'), dict):
    raise ConfigError(f'{path} holds no run plan (no "config" object); move it aside to start '
                      f'a new plan')
  if not isinstance(plan.get('history'), list):
    plan['history'] = []
  return plan


def _binding(workdir: str) -> bool:
  """Whether the workdir holds anything a run computed: a run that stopped before writing any
  output (a missing init_from, say) binds no later run to its config."""
  return any(name not in (PLAN, LOCK) and not name.startswith(PLAN + '.tmp')
             for name in os.listdir(workdir))


def _refusal(workdir: str, refused: dict) -> str:
  shown = list(refused.items())[:6]
  was = ', '.join(f'{k}={_show(old)}' for k, (old, _) in shown)
  now = ', '.join(f'{k}={_show(new)}' for k, (_, new) in shown)
  more = f' (and {len(refused) - len(shown)} more keys)' if len(refused) > len(shown) else ''
  return (f'{workdir} was run with {was}; this run has {now}{more} (use a new workdir, or the '
          f'same config)')


def check_plan(workdir: str, config: dict):
  """Refuses (ConfigError) a run of `config` (resolved, JSON-safe) on a workdir whose run plan
  differs in a key that changes results. Reads only."""
  plan = _read(workdir) if os.path.isdir(workdir) else None
  if plan is None or not _binding(workdir):
    return
  refused, _, _ = compare(plan['config'], config)
  if refused:
    raise ConfigError(_refusal(workdir, refused))


def _warnings(workdir: str, last: dict, env: dict, only_one_side: list) -> list[str]:
  out = []
  if last.get('git_sha') != env['git_sha']:
    out.append(f'{workdir} was last run at git SHA {last.get("git_sha")}; this run\'s code is '
               f'{env["git_sha"]}')
  before, now = last.get('packages') or {}, env['packages']
  for name in sorted(before.keys() | now.keys()):
    if before.get(name) != now.get(name):
      out.append(f'{workdir} was last run with {name} {before.get(name)}; this run has '
                 f'{name} {now.get(name)}')
  if last.get('devices') != env['devices']:
    out.append(f'{workdir} was last run on {last.get("devices")}; this run is on '
               f'{env["devices"]}')
  if only_one_side:
    out.append(f'config keys {", ".join(only_one_side)} are in only one of {workdir}\'s plan and '
               f'this run\'s config (the code changed its config fields)')
  return out


def record(workdir: str, config: dict, env: dict, argv: list[str], *,
           write: bool = True) -> list[str]:
  """Checks the plan again (under the lock: another run may have written it since
  `check_plan`), then writes run.json: the plan if it is new (or bound no output yet), plus a
  history entry for this run. -> warning lines for the console: what changed since the last run
  that does not refuse it. Only process 0 writes (`write`)."""
  check_plan(workdir, config)
  plan = _read(workdir)
  entry = {'started': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), 'pid': os.getpid(),
           'host': socket.gethostname(), 'argv': list(argv), **env}
  warnings = []
  if plan is None or (not _binding(workdir) and compare(plan['config'], config)[0]):
    plan = {'format': FORMAT, 'config': config, 'created': entry['started'], **env,
            'history': plan['history'] if plan else []}
  else:
    _, allowed, one_side = compare(plan['config'], config)
    history = plan['history']
    last = history[-1] if history and isinstance(history[-1], dict) else plan
    warnings = _warnings(workdir, last, env, one_side)
    if allowed:
      entry['changed'] = {k: list(v) for k, v in allowed.items()}
  entry['warnings'] = warnings
  plan['history'].append(entry)
  if write:
    from rt_jax.core import checkpoint  # pylint: disable=import-outside-toplevel -- Orbax: ~0.5 s
    checkpoint.write_json_atomic(os.path.join(workdir, PLAN), plan)
  return warnings
