"""Directories staged whole: filled in a temporary, then renamed into place; and removal of the
temporaries that killed writers leave behind.

`directory_written_whole` fills a temporary sibling and renames it into place, so a reader sees
the previous directory or none, never half of one (converted models, the preference model).
A temporary's name says which process made it (host, pid, and the pid's start time, which a
reused pid does not share), so a later run can remove the ones whose process is gone without
touching a concurrent writer's.
"""
import contextlib
import hashlib
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from typing import Optional

from rt_jax.core import checkpoint
from rt_jax.core.errors import CheckpointError

_STALE_UNMARKED_S = 3600  # no owner in the name (older code): removed by age
_STALE_FOREIGN_S = 6 * 3600  # another host's (a shared disk): its pids cannot be looked up here
_AUDIT_GRACE_S = 120  # an audit's home outlives its sandbox by far less than this
_AUDIT_OLDEST_S = 24 * 3600
# tempfile.mkdtemp's names end in 8 characters of [a-z0-9_].
_WHOLE_TMP = re.compile(r'^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?:(?P<host>[0-9a-f]{8})\.'
                        r'(?P<pid>\d+)\.(?P<start>\d+)-)?[a-z0-9_]{8}$')
_AUDIT_TMP = re.compile(r'^rt_audit_(?:(?P<pid>\d+)_)?[a-z0-9_]{8}$')


def _process_start(pid: int) -> Optional[int]:
  """The pid's start time in clock ticks since boot (Linux), 0 where /proc does not say, None if
  no such process."""
  try:
    with open(f'/proc/{pid}/stat', 'rb') as f:
      return int(f.read().rsplit(b')', 1)[1].split()[19])
  except FileNotFoundError:
    return None
  except (OSError, IndexError, ValueError):
    pass
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return None
  except PermissionError:
    pass
  return 0


def _host_tag() -> str:
  return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _owner_tag() -> str:
  """host.pid.start of this process, for the names of its temporaries."""
  return f'{_host_tag()}.{os.getpid()}.{_process_start(os.getpid()) or 0}'


def _alive(pid: int, start: int) -> bool:
  now = _process_start(pid)
  return now is not None and (not start or not now or now == start)


def _age_s(path: str) -> float:
  return time.time() - os.lstat(path).st_mtime


def _remove_tree(path: str):
  """Removes a tree this user owns, making its directories writable first (an audit's home is
  left read-only)."""
  with contextlib.suppress(OSError):
    for root, dirs, _ in os.walk(path):
      os.chmod(root, 0o700)
      for name in dirs:
        sub = os.path.join(root, name)
        if stat.S_ISDIR(os.lstat(sub).st_mode):
          os.chmod(sub, 0o700)
  shutil.rmtree(path, ignore_errors=True)


def _listdir(path: str) -> list[str]:
  try:
    return os.listdir(path)
  except OSError:  # gone, or not ours to read: nothing to clean there
    return []


def _stale_whole_temporaries(parent: str) -> list[str]:
  """Paths of `directory_written_whole` temporaries in `parent` whose writer is gone. A `.old-`
  one whose directory is missing (killed between its two renames) is first put back in place."""
  removed = []
  for entry in _listdir(parent):
    match = _WHOLE_TMP.match(entry)
    path = os.path.join(parent, entry)
    if not match or not os.path.isdir(path) or os.path.islink(path):
      continue
    try:
      if match['pid'] is None:
        stale = _age_s(path) > _STALE_UNMARKED_S
      elif match['host'] != _host_tag():
        stale = _age_s(path) > _STALE_FOREIGN_S
      else:
        stale = not _alive(int(match['pid']), int(match['start']))
    except OSError:  # removed meanwhile
      continue
    if not stale:
      continue
    kept, target = os.path.join(path, match['name']), os.path.join(parent, match['name'])
    if match['kind'] == 'old' and os.path.isdir(kept) and not os.path.exists(target):
      with contextlib.suppress(OSError):
        os.replace(kept, target)
    _remove_tree(path)
    removed.append(path)
  return removed


def _stale_audit_homes() -> list[str]:
  """`rt_audit_PID_*` directories (rt_jax.envs.audit) of this user in the temp directory whose
  process is gone. The pid has no start time beside it, and a process in another pid namespace
  may share /tmp, so a home must also be older than any audit runs; unmarked ones (older code)
  and ones whose pid was reused go by age alone."""
  removed = []
  root = tempfile.gettempdir()
  for entry in _listdir(root):
    match = _AUDIT_TMP.match(entry)
    if not match:
      continue
    path = os.path.join(root, entry)
    try:
      st = os.lstat(path)
      if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        continue
      age = time.time() - st.st_mtime
    except OSError:
      continue
    if match['pid'] is None:
      stale = age > _STALE_UNMARKED_S
    else:
      stale = age > _AUDIT_OLDEST_S or (age > _AUDIT_GRACE_S and
                                         _process_start(int(match['pid'])) is None)
    if stale:
      _remove_tree(path)
      removed.append(path)
  return removed


def remove_stale_temporaries(directory: str, *, audit_homes: bool = True) -> list[str]:
  """Removes what killed processes left behind and returns the paths: temporaries of
  `directory_written_whole` directly in `directory` (a workdir's `.pm.tmp-*`, a cache's
  `.smollm2_135m_instruct.tmp-*`) and, with audit_homes, the reward audits' `rt_audit_*` homes
  in the temp directory. A live writer's temporaries (on this host, or on another host recently)
  are left alone. Orbax removes its own step temporaries when a run opens its checkpoints."""
  removed = _stale_whole_temporaries(os.path.abspath(directory))
  if audit_homes:
    removed += _stale_audit_homes()
  return removed


@contextlib.contextmanager
def directory_written_whole(directory: str, *, replace: bool):
  """Yields a temporary sibling of `directory` to fill; on a clean exit its files outside
  checkpoints/ get checksums (rt_checksums.json; the steps have their own) and it is renamed into
  place, so a reader (or a writer killed mid-way) sees the previous directory or none, never half
  of one. replace=False: if another writer finished `directory` first, it is kept and this raises
  CheckpointError (an empty `directory` is replaced). The temporary's name carries this process's
  host and pid, and the temporaries of killed writers of any directory beside it are removed
  first."""
  directory = os.path.abspath(directory)
  parent, name = os.path.split(directory)
  os.makedirs(parent, exist_ok=True)
  _stale_whole_temporaries(parent)
  owner = _owner_tag()
  tmp = tempfile.mkdtemp(dir=parent, prefix=f'.{name}.tmp-{owner}-')
  try:
    yield tmp
    checkpoint.write_checksums(tmp, skip=('checkpoints',))
    if replace and os.path.exists(directory):
      old = tempfile.mkdtemp(dir=parent, prefix=f'.{name}.old-{owner}-')
      os.replace(directory, os.path.join(old, name))
      os.replace(tmp, directory)
      shutil.rmtree(old)
    else:
      try:
        os.replace(tmp, directory)
      except OSError as e:  # ENOTEMPTY: someone else's complete directory is there
        raise CheckpointError(f'{directory} was written by another process meanwhile') from e
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp)

