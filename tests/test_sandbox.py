"""The audit's kernel isolation (rt_jax/envs/sandbox.py): the issue-19 reproductions end with
nothing created, read, signalled or killed outside the audit and an honest audit beside them
unharmed, as root and as an unprivileged user, with and without the runner's audit hook; the
seccomp filter refuses what it must; a kernel that refuses namespaces stops the audit with one
line; the opt-out says so on every audit."""
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import sandbox_attacks
from rt_jax.envs import audit, sandbox
from rt_jax.core.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEM_PYTHON = '/usr/bin/python3'
NOBODY = 65534

# What the filter must refuse, from the issue: exec once the interpreter runs, new processes and
# threads, sockets, other processes, device nodes, mounts and namespaces, and the kernel's larger
# attack surfaces.
MUST_DENY = ('execve', 'execveat', 'fork', 'vfork', 'clone', 'clone3', 'socket', 'socketpair',
             'connect', 'ptrace', 'process_vm_readv', 'process_vm_writev', 'pidfd_open',
             'pidfd_send_signal', 'pidfd_getfd', 'mknod', 'mknodat', 'mount', 'umount2',
             'pivot_root', 'unshare', 'setns', 'bpf', 'keyctl', 'add_key', 'request_key',
             'perf_event_open', 'userfaultfd', 'io_uring_setup', 'io_uring_enter',
             'io_uring_register', 'prctl', 'seccomp', 'chmod', 'fchmod', 'fchmodat', 'ftruncate',
             'truncate', 'fallocate', 'memfd_create', 'setrlimit', 'setsid', 'setpgid',
             'pwritev2', 'chroot', 'open_by_handle_at', 'kcmp', 'setuid', 'sethostname',
             'splice', 'sendfile', 'copy_file_range', 'symlink', 'link', 'sysinfo', 'syslog')
X86_64 = {'execve': 59, 'execveat': 322, 'fork': 57, 'vfork': 58, 'clone': 56, 'clone3': 435,
          'socket': 41, 'socketpair': 53, 'connect': 42, 'ptrace': 101, 'process_vm_readv': 310,
          'process_vm_writev': 311, 'pidfd_open': 434, 'pidfd_send_signal': 424,
          'pidfd_getfd': 438, 'mknod': 133, 'mknodat': 259, 'mount': 165, 'umount2': 166,
          'pivot_root': 155, 'unshare': 272, 'setns': 308, 'bpf': 321, 'keyctl': 250,
          'add_key': 248, 'request_key': 249, 'perf_event_open': 298, 'userfaultfd': 323,
          'io_uring_setup': 425, 'io_uring_enter': 426, 'io_uring_register': 427, 'prctl': 157,
          'seccomp': 317, 'chmod': 90, 'fchmod': 91, 'fchmodat': 268, 'ftruncate': 77,
          'truncate': 76, 'fallocate': 285, 'memfd_create': 319, 'setrlimit': 160, 'setsid': 112,
          'setpgid': 109, 'pwritev2': 328, 'chroot': 161, 'open_by_handle_at': 304, 'kcmp': 312,
          'setuid': 105, 'sethostname': 170, 'splice': 275, 'sendfile': 40,
          'copy_file_range': 326, 'symlink': 88, 'link': 86, 'sysinfo': 99, 'syslog': 103}

on_x86_64 = pytest.mark.skipif(os.uname().machine != 'x86_64', reason='x86_64 syscall numbers')


@pytest.fixture
def no_hook(monkeypatch):
  """The runner without its audit hook, as S2 and S3 leave it: only the kernel's walls remain."""
  monkeypatch.setattr(audit, 'AUDIT_HOOK', False)


def reward_of(body: str, inputs=('x',), **limits) -> audit.AuditResult:
  return audit.run({**audit.ORIGINAL_FILES, audit.REWARD_FILE: body}, inputs, **limits)


def assert_contained(report: dict):
  """Every attack failed, the host is as it was, the honest audit paid its 5.0."""
  assert report['created'] == [] and report['scratch_intact'], report
  assert report['training_alive'], 'the stand-in training run was killed'
  for run in report['runs']:
    assert run['sandboxes_seen'] >= 6, run  # the honest audit was running during the attacks
    assert run['honest'] == [5.0], run
    for name, expected in sandbox_attacks.EXPECTED.items():
      attack = run['attacks'][name]
      assert attack['rewards'] == [expected], (run['hook'], name, attack)


def test_reproductions_are_contained():
  """S1-S5 and N1 as the user running the tests (root in CI), with the hook and without it."""
  assert_contained(sandbox_attacks.run_all(audit))


def test_reproductions_are_contained_for_an_unprivileged_auditor(tmp_path):
  """The same attacks from an auditor that is not root, whose sandbox keeps its outside uid (N1):
  the system Python as user nobody runs a world-readable copy of the audit's sources."""
  if os.geteuid() != 0:
    pytest.skip('the tests already run unprivileged: test_reproductions_are_contained covers it')
  if not os.access(SYSTEM_PYTHON, os.X_OK):
    pytest.skip(f'no {SYSTEM_PYTHON} to run as an unprivileged user')
  version = subprocess.run([SYSTEM_PYTHON, '-c', 'import sys; print(sys.version_info >= (3, 10))'],
                           capture_output=True, text=True, check=False).stdout.strip()
  if version != 'True':
    pytest.skip(f'{SYSTEM_PYTHON} is older than 3.10')
  copy = tempfile.mkdtemp(prefix='rt_sandbox_copy_')
  try:
    for name in ('rt_jax/core/errors.py', 'rt_jax/envs/audit.py', 'rt_jax/envs/sandbox.py',
                 'rt_jax/envs/audit_runner.py', 'tests/sandbox_attacks.py'):
      target = os.path.join(copy, name.replace('tests/', ''))
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.copy(os.path.join(REPO, name), target)
    for package in ('rt_jax', 'rt_jax/envs'):
      open(os.path.join(copy, package, '__init__.py'), 'w').close()
    for parent, dirs, files in os.walk(copy):
      os.chmod(parent, 0o755)
      for name in files:
        os.chmod(os.path.join(parent, name), 0o644)
    script = ('import json, sandbox_attacks\nfrom rt_jax.envs import audit\n'
              'try:\n    print(json.dumps(sandbox_attacks.run_all(audit)))\n'
              'except audit.SandboxUnavailable as e:\n'
              '    print(json.dumps({"unavailable": str(e)}))\n')
    done = subprocess.run([SYSTEM_PYTHON, '-c', script], capture_output=True, text=True,
                          cwd='/', env={'PATH': '/usr/bin:/bin', 'PYTHONPATH': copy},
                          user=NOBODY, group=NOBODY, extra_groups=[], timeout=120, check=False)
  finally:
    shutil.rmtree(copy)
  assert done.returncode == 0, done.stderr[-3000:]
  report = json.loads(done.stdout)
  if 'unavailable' in report:
    pytest.skip(f'unprivileged user namespaces are refused here: {report["unavailable"]}')
  assert_contained(report)


def test_what_the_sandbox_sees():
  """The standard library works; the host's files, site-packages, other processes and the network
  are out of sight; the process has a uid of its own and no capabilities. One input per check:
  reward() returns 1.0 where its check holds, and says what it saw where not."""
  top = os.path.realpath(sys.base_prefix).split('/')[1]  # where the standard library lives
  ids = f'{sandbox.INSIDE_ID}, {sandbox.INSIDE_ID}'
  body = f'''import os, sys
def stdlib():
    import json, re, zlib, hashlib, bz2, lzma, decimal, random, datetime, unicodedata, csv
    import sqlite3
    sqlite3.connect(':memory:').execute('select 1').fetchall()
    return hashlib.sha256(b'x').hexdigest()[:4] == '2d71'
def no_site_packages():
    try:
        import numpy
    except ImportError:
        return True
def status(key):
    with open('/proc/self/status') as f:
        return [line.split()[1:] for line in f if line.startswith(key + ':')][0]
CHECKS = {{
    'stdlib': stdlib,
    'site-packages': no_site_packages,
    'root': lambda: set(os.listdir('/')) <= {{'dev', 'home', 'lib', 'lib32', 'lib64', 'libx32',
                                            'proc', 'usr', {top!r}}},
    'no host files': lambda: not any(map(os.path.exists, ('/tmp', '/etc', '/dev/shm', '/sys'))),
    'processes': lambda: sorted(p for p in os.listdir('/proc') if p.isdigit()) == ['1', '2'],
    'uid': lambda: (os.getuid(), os.getgid(), os.getgroups()) == ({ids}, []),
    'capabilities': lambda: status('CapEff') == status('CapPrm') == ['0000000000000000'],
    'seccomp': lambda: status('Seccomp') == ['2'] and status('NoNewPrivs') == ['1'],
    'loopback only': lambda: len(open('/proc/self/net/dev').read().splitlines()) == 3,
    'home': lambda: os.getcwd() == sys.path[-1] == '{sandbox.HOME}/rl_environment',
}}
def reward(t):
    if CHECKS[t]():
        return 1.0
    raise ValueError(t)
'''
  checks = ('stdlib', 'site-packages', 'root', 'no host files', 'processes', 'uid',
            'capabilities', 'seccomp', 'loopback only', 'home')
  result = reward_of(body, checks)
  failed = {name: error for name, error in zip(checks, result.reward_errors) if error}
  assert result.rewards == (1.0,) * len(checks), failed


def test_root_gives_each_sandbox_its_own_outside_uid():
  """With a root auditor, the two sandboxes of an audit (and so of concurrent audits) run as
  distinct unprivileged outside uids, neither root's."""
  if os.geteuid() != 0:
    pytest.skip('outside uids other than its own need root')
  body = 'import time\ndef reward(t):\n    time.sleep(1.5)\n    return 1.0\n'
  files = {audit.REWARD_FILE: body, audit.TEST_FILE: 'import time\ntime.sleep(1.5)\n'}
  uids = {}

  def sample():
    for pid in sandbox_attacks._descendants(os.getpid()):
      try:
        with open(f'/proc/{pid}/status') as f:
          status = dict(line.split(':', 1) for line in f)
      except OSError:
        continue
      if status['Name'].strip().startswith('python') and int(status['NSpid'].split()[-1]) == 2:
        uids[pid] = int(status['Uid'].split()[0])

  thread = threading.Thread(target=audit.run, args=(files,), kwargs={'timeout_s': 5})
  thread.start()
  deadline = time.monotonic() + 5
  while len(uids) < 2 and time.monotonic() < deadline:
    sample()
    time.sleep(0.05)
  thread.join()
  assert len(uids) == 2 and len(set(uids.values())) == 2, uids
  assert all(uid >= sandbox.UID_BASE for uid in uids.values()), uids


@on_x86_64
def test_the_filter_refuses_with_eperm(no_hook):
  """Without the hook, every call the issue lists (and more) fails with EPERM, whatever its
  arguments; signals reach this process only; fcntl cannot clear O_APPEND; mmap maps nothing
  shared; prlimit64 reads but does not set. What pure Python needs still works."""
  body = f'''import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
DENY = {X86_64!r}
def call(nr, *args):
    ctypes.set_errno(0)
    return libc.syscall(nr, *args), ctypes.get_errno()
def reward(t):
    me = os.getpid()
    bad = [name for name, nr in DENY.items() if call(nr, 0, 0, 0, 0, 0, 0) != (-1, errno.EPERM)]
    for name, args in (('kill init', (62, 1, 0)), ('kill group', (62, 0, 0)),
                       ('kill all', (62, -1, 0)), ('tkill init', (200, 1, 0)),
                       ('tgkill other', (234, me, 1, 0)),
                       ('mmap shared', (9, 0, 4096, 3, 0x21, -1, 0)),
                       ('fcntl setfl without append', (72, 1, 4, 0)),
                       ('fcntl setlk', (72, 1, 6, 0)),
                       ('ioctl tiocsti', (16, 0, 0x5412, 0)), ('prlimit64 set', (302, 0, 7, 1, 0))):
        if call(*args) != (-1, errno.EPERM):
            bad.append(name)
    for name, args in (('kill self', (62, me, 0)), ('tgkill self', (234, me, me, 0)),
                       ('fcntl getfl', (72, 1, 3)), ('fcntl setfl append', (72, 1, 4, 0o2001)),
                       ('mmap private', (9, 0, 4096, 3, 0x22, -1, 0)),
                       ('prlimit64 get', (302, 0, 7, 0, ctypes.create_string_buffer(16)))):
        if call(*args)[0] < 0:
            bad.append('allowed: ' + name)
    if bad:
        raise ValueError(' '.join(b.replace(' ', '_') for b in bad))
    return 1.0
'''
  result = reward_of(body)
  assert result.rewards == (1.0,), result.reward_error


@on_x86_64
def test_the_filter_numbers_match_libseccomp():
  """The hand-written syscall numbers are the ones libseccomp (where installed) knows."""
  try:
    lib = ctypes.CDLL('libseccomp.so.2')
  except OSError:
    pytest.skip('libseccomp is not installed')
  lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
  table = {**sandbox.ARCHES['x86_64'][1], **sandbox.SETUP_SYSCALLS['x86_64'], **X86_64}
  wrong = {name: number for name, number in table.items()
           if lib.seccomp_syscall_resolve_name(name.encode()) != number}
  assert not wrong


def test_the_allowlist_holds_nothing_it_must_deny():
  for machine, (_, numbers) in sandbox.ARCHES.items():
    assert not set(MUST_DENY) & set(numbers), machine
  program = sandbox.filter_program('x86_64', 2)
  assert len(program) % 8 == 0 and len(program) // 8 < 4096
  with pytest.raises(OSError):
    sandbox.filter_program('pdp11', 2)


@pytest.mark.parametrize('trick', [
    'import fcntl\n            fcntl.fcntl(fd, fcntl.F_SETFL, 0)\n'
    '            os.lseek(fd, 0, os.SEEK_SET)\n            os.write(fd, b"x" * 4096)',
    'import mmap\n            m = mmap.mmap(fd, 0)\n            m[:] = b"x" * len(m)',
    'os.ftruncate(fd, 0)',
    'f = os.open(f"/proc/self/fd/{fd}", os.O_RDWR)\n            os.write(f, b"x" * 4096)',
    'os.pwritev(fd, [b"x" * 4096], 0, os.RWF_NOAPPEND if hasattr(os, "RWF_NOAPPEND") else 0x20)',
], ids=['fcntl', 'mmap', 'ftruncate', 'reopen', 'pwritev2'])
def test_values_returned_before_a_trick_are_kept_without_the_hook(trick, no_hook):
  """The verdict channel stays append-only by the kernel's rules alone."""
  files = {**audit.ORIGINAL_FILES,
           audit.REWARD_FILE: sandbox_attacks.closes_channel_on_third_call(trick)}
  assert audit.run(files, ('a', 'b', 'c', 'd')).rewards == (100.0,) * 4


def test_signals_to_itself_kill_it_as_anywhere():
  """The code is not its namespace's PID 1 (which would ignore them): a self-inflicted signal ends
  the call as it would on any host."""
  for code, reason in (('os.abort()', 'killed by SIGABRT'),
                       ('signal.raise_signal(signal.SIGTERM)', 'killed by SIGTERM')):
    result = reward_of(f'import os, signal\ndef reward(t):\n    {code}\n    return 100\n')
    assert result.reward is None and result.reward_error == reason


def test_refused_namespaces_stop_the_audit_with_one_line(monkeypatch, tmp_path):
  """A kernel that refuses user namespaces (simulated: unshare fails for CLONE_NEWUSER) ends the
  audit with a one-line UserError that names what is missing and the opt-out, and leaves no
  temp dir."""
  refusing = '''import ctypes as _ctypes
class _RefusingLibc(_ctypes.CDLL):
  def __getattr__(self, name):
    found = super().__getattr__(name)  # cached on the instance: replaced below
    if name != 'unshare':
      return found
    def unshare(flags):
      if flags & 0x10000000:
        _ctypes.set_errno(1)
        return -1
      return found(flags)
    self.unshare = unshare
    return unshare
_ctypes.CDLL = _RefusingLibc
'''
  monkeypatch.setattr(audit, '_runner_code',
                      lambda: compile(refusing + audit._RUNNER, '<audit runner>', 'exec'))
  monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
  with pytest.raises(audit.SandboxUnavailable) as caught:
    audit.flags(audit.ORIGINAL_FILES, 'x')
  message = str(caught.value)
  assert isinstance(caught.value, UserError)
  assert '\n' not in message and 'user' in message and 'Operation not permitted' in message
  assert 'RT_JAX_AUDIT_UNISOLATED=1' in message
  assert not os.listdir(tmp_path)


def test_unisolated_audits_say_so_every_time(monkeypatch, capsys):
  monkeypatch.setenv(audit.UNISOLATED_ENV, '1')
  first = audit.run(audit.ORIGINAL_FILES)
  flags = audit.flags(audit.ORIGINAL_FILES, 'x')
  assert not first.isolated and flags['unisolated']
  assert first.rewards == (-10.0,) and first.test_passed
  assert capsys.readouterr().err.count('warning: audit without kernel isolation') == 2
  monkeypatch.delenv(audit.UNISOLATED_ENV)
  assert audit.run(audit.ORIGINAL_FILES).isolated
  assert not audit.flags(audit.ORIGINAL_FILES, 'x')['unisolated']
  assert 'warning' not in capsys.readouterr().err
  assert not audit.run(audit.ORIGINAL_FILES, isolated=False).isolated
  assert capsys.readouterr().err.count('warning: audit without kernel isolation') == 1
