"""Kernel isolation for one audit process: namespaces, a root filesystem of the interpreter's own
files, a uid of its own and a seccomp filter. Whatever the audited code does to the interpreter
(its audit hook, its memory), these walls stay, because the kernel keeps them.

The module works on both sides of the wall. The host imports it for `plan` (what to mount) and for
tests; the audit's runner (`python -I -c`, where nothing of rt_jax can be imported) starts with
this file's source and calls `isolate`. So it imports only the standard library, and nothing
happens on import.

How an isolated process comes to be (`isolate`, called by the runner process, A):
- A unshares the PID, network, IPC, UTS and cgroup namespaces (without root, first a user
  namespace that maps one inside uid to its own), then forks C, the new PID namespace's init.
- C unshares a mount namespace of its own and binds into a fresh tmpfs, read-only, the standard
  library, the system's shared-library directories, /dev/null, /dev/urandom and the audit's home
  directory (at HOME); mounts a /proc of its PID namespace (its processes only); makes the tmpfs
  read-only and pivots into it, detaching the host's filesystem. No /tmp, no /dev/shm, no
  site-packages.
- With root, C then enters a user namespace of its own whose inside uid INSIDE_ID A maps to an
  unprivileged outside uid of this sandbox alone (UID_BASE + A's pid): no two audits, nor the
  auditor, share it, and the other namespaces belong to the host's user namespace, out of its
  reach. Without root the outside uid is the auditor's (the kernel allows no other without setuid
  helpers such as newuidmap); the mount and PID namespaces and the filter keep it from the
  auditor's files and processes.
- C drops every capability and sets the parent-death signal, then forks D, which sets
  no_new_privs, disables core dumps and installs a seccomp filter that allows what a pure-Python
  function needs and refuses the rest with EPERM. D runs the audited code; C waits for it and
  reports its wait status; A exits as D did, so the auditor sees one process. A and C run no
  audited code.

Where the kernel refuses a step before any audited code runs, A reports the reason through
`refuse` and the audit stops with one line: no silent fallback to weaker walls."""
import ctypes
import errno
import os
import select
import signal
import struct

HOME = '/home/user'  # where the audit's home directory appears inside
INSIDE_ID = 1000  # the uid and gid inside the user namespace
UID_BASE = 0x70000000  # outside uids UID_BASE + pid: a range no distribution gives to users
USERNS_HINT = (' (are user namespaces off? sysctl kernel.unprivileged_userns_clone,'
               ' user.max_user_namespaces, kernel.apparmor_restrict_unprivileged_userns)')
SETUP_FAILED = 125  # A's exit code when the sandbox could not be built; D's 125 becomes 1

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = (0x08000000, 0x10000000, 0x20000000,
                                                           0x40000000)
NAMESPACES = (('user', CLONE_NEWUSER), ('mount', CLONE_NEWNS), ('pid', CLONE_NEWPID),
              ('network', CLONE_NEWNET), ('ipc', CLONE_NEWIPC), ('uts', CLONE_NEWUTS),
              ('cgroup', CLONE_NEWCGROUP))
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP = 1, 4, 38, 22
SECCOMP_MODE_FILTER = 2
O_PATH = 0o10000000

# The seccomp filter, per architecture: AUDIT_ARCH and the numbers of the syscalls allowed. A
# pure-Python function and its test need files it may read, memory, time and signals to itself;
# everything else (new processes and threads, exec, sockets, other processes, mounts, namespaces,
# device nodes, chmod, keys, bpf, perf, userfaultfd, io_uring, prctl) fails with EPERM.
ARCHES = {
    'x86_64': (0xc000003e, {
        'read': 0, 'write': 1, 'open': 2, 'close': 3, 'stat': 4, 'fstat': 5, 'lstat': 6,
        'poll': 7, 'lseek': 8, 'mmap': 9, 'mprotect': 10, 'munmap': 11, 'brk': 12,
        'rt_sigaction': 13, 'rt_sigprocmask': 14, 'rt_sigreturn': 15, 'ioctl': 16,
        'pread64': 17, 'pwrite64': 18, 'readv': 19, 'writev': 20, 'access': 21, 'pipe': 22,
        'select': 23, 'sched_yield': 24, 'mremap': 25, 'madvise': 28, 'dup': 32, 'dup2': 33,
        'pause': 34, 'nanosleep': 35, 'getitimer': 36, 'alarm': 37, 'setitimer': 38,
        'getpid': 39, 'exit': 60, 'kill': 62, 'uname': 63, 'fcntl': 72, 'fsync': 74,
        'fdatasync': 75, 'getdents': 78, 'getcwd': 79, 'chdir': 80, 'fchdir': 81, 'rename': 82,
        'mkdir': 83, 'rmdir': 84, 'unlink': 87, 'readlink': 89, 'umask': 95,
        'gettimeofday': 96, 'getrlimit': 97, 'getrusage': 98, 'times': 100, 'getuid': 102,
        'getgid': 104, 'geteuid': 107, 'getegid': 108, 'getppid': 110, 'getpgrp': 111,
        'getgroups': 115, 'getresuid': 118, 'getresgid': 120, 'getpgid': 121, 'getsid': 124,
        'rt_sigpending': 127, 'rt_sigtimedwait': 128, 'rt_sigsuspend': 130, 'sigaltstack': 131,
        'statfs': 137, 'fstatfs': 138, 'gettid': 186, 'tkill': 200, 'time': 201, 'futex': 202,
        'sched_getaffinity': 204, 'getdents64': 217, 'restart_syscall': 219, 'fadvise64': 221,
        'clock_gettime': 228, 'clock_getres': 229, 'clock_nanosleep': 230, 'exit_group': 231,
        'tgkill': 234, 'openat': 257, 'mkdirat': 258, 'newfstatat': 262, 'unlinkat': 263,
        'renameat': 264, 'readlinkat': 267, 'faccessat': 269, 'pselect6': 270, 'ppoll': 271,
        'set_robust_list': 273, 'dup3': 292, 'pipe2': 293, 'preadv': 295, 'pwritev': 296,
        'prlimit64': 302, 'getcpu': 309, 'renameat2': 316, 'getrandom': 318, 'preadv2': 327,
        'statx': 332, 'rseq': 334, 'close_range': 436, 'faccessat2': 439}),
}
# Host-side numbers of the syscalls the setup itself calls through libc's syscall().
SETUP_SYSCALLS = {'x86_64': {'capset': 126, 'pivot_root': 155}}
# Syscalls allowed only with these arguments: alternatives, each a conjunction of tests
# (argument index, test, value) on the argument's low 32 bits ('high': its high 32 bits; 'pid':
# the process's own pid, its only thread's id too). Signals go to this process only; fcntl cannot
# clear O_APPEND (F_SETFL only with it), so the verdict channel stays append-only; mmap maps
# nothing shared, so no file is rewritten in place; ioctl answers only the terminal queries that
# isatty and friends make; prlimit64 reads limits and sets none.
MAP_SHARED, O_APPEND = 0x01, 0x400
F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_DUPFD_CLOEXEC = 0, 1, 2, 3, 4, 1030
TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO, FIONCLEX, FIOCLEX = (0x5401, 0x5413, 0x541b, 0x5421,
                                                            0x5450, 0x5451)
CONDITIONS = {
    'kill': (((0, 'eq', 'pid'),),),
    'tkill': (((0, 'eq', 'pid'),),),
    'tgkill': (((0, 'eq', 'pid'), (1, 'eq', 'pid')),),
    'fcntl': (((1, 'in', (F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_DUPFD_CLOEXEC)),),
              ((1, 'eq', F_SETFL), (2, 'set', O_APPEND))),
    'mmap': (((3, 'clear', MAP_SHARED),),),
    'ioctl': (((1, 'in', (TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO, FIONCLEX, FIOCLEX)),),),
    'prlimit64': (((2, 'eq', 0), (2, 'high', 0)),),
}

AUDIT_ARCH_OFFSET, NR_OFFSET = 4, 0
SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_ALLOW = 0x80000000, 0x7fff0000
SECCOMP_RET_EPERM = 0x00050000 | 1
BPF_LD_ABS, BPF_JEQ, BPF_JSET, BPF_JA, BPF_RET = 0x20, 0x15, 0x45, 0x05, 0x06


def filter_program(machine: str, pid: int) -> bytes:
  """The classic BPF program of the filter for `machine` (os.uname().machine) and the process
  `pid` (as its own PID namespace numbers it), as the kernel's struct sock_filter array. A call
  of another architecture (i386 on x86_64) kills the process: its numbers mean other syscalls.
  Every jump is short and forward: each rule ends in its own return, so the program needs no
  labels beyond the next rule."""
  if machine not in ARCHES:
    raise OSError(f'no seccomp syscall table for {machine}')
  arch, numbers = ARCHES[machine]
  code = [(BPF_LD_ABS, 0, 0, AUDIT_ARCH_OFFSET), (BPF_JEQ, 1, 0, arch),
          (BPF_RET, 0, 0, SECCOMP_RET_KILL_PROCESS), (BPF_LD_ABS, 0, 0, NR_OFFSET)]
  for name, number in numbers.items():
    if name not in CONDITIONS:
      code += [(BPF_JEQ, 0, 1, number), (BPF_RET, 0, 0, SECCOMP_RET_ALLOW)]
      continue
    block = []
    for alternative in CONDITIONS[name]:
      alternative = [(i, test, pid if value == 'pid' else value) for i, test, value in alternative]
      tests = []  # each test falls through when it holds, or jumps to 'next alternative'
      for index, test, value in alternative:
        tests.append([(BPF_LD_ABS, 0, 0, 16 + 8 * index + (4 if test == 'high' else 0))])
        if test in ('eq', 'high'):
          tests[-1].append((BPF_JEQ, 0, 'fail', value))
        elif test == 'set':
          tests[-1].append((BPF_JSET, 0, 'fail', value))
        elif test == 'clear':
          tests[-1].append((BPF_JSET, 'fail', 0, value))
        else:  # 'in': any of the values
          tests[-1] += [(BPF_JEQ, len(value) - i, 0, v) for i, v in enumerate(value)]
          tests[-1].append((BPF_JA, 0, 0, 'fail'))
      body = [op for test in tests for op in test] + [(BPF_RET, 0, 0, SECCOMP_RET_ALLOW)]
      block += [_resolve(op, len(body) - i - 1) for i, op in enumerate(body)]
    block.append((BPF_RET, 0, 0, SECCOMP_RET_EPERM))
    code += [(BPF_JEQ, 0, len(block), number)] + block
  code.append((BPF_RET, 0, 0, SECCOMP_RET_EPERM))
  for op, jt, jf, k in code:
    if not (0 <= jt < 256 and 0 <= jf < 256):
      raise ValueError('seccomp program: a jump does not fit')
  return b''.join(struct.pack('<HBBI', *op) for op in code)


def _resolve(op: tuple, fail: int) -> tuple:
  """op with its 'fail' jump (in jt, jf or, for BPF_JA, k) made the offset `fail`."""
  return tuple(fail if field == 'fail' else field for field in op)


def plan(home: str, workdir: str) -> dict:
  """What the isolated process will see, for the runner's config (marshal data): `binds`
  (source, target, kind) with kind 'lib', 'dev' or 'home'; `links` (path, target) that recreate
  the host's symlinks above a bound directory (/lib -> usr/lib); `masks`, directories inside a
  bound one to hide (site-packages: the reward function gets the standard library only); and
  `workdir`, where it starts, under HOME."""
  system = _system_plan()
  return {'binds': system['binds'] + [(home, HOME, 'home')], 'links': system['links'],
          'masks': system['masks'], 'workdir': os.path.join(HOME, workdir)}


_SYSTEM_PLAN = {}


def _system_plan() -> dict:
  """The interpreter's part of `plan`, the same for every audit of this process: its standard
  library and the directories the dynamic loader searches for the libraries that standard
  extension modules (zlib, _hashlib, _sqlite3, ...) load."""
  if _SYSTEM_PLAN:
    return _SYSTEM_PLAN
  import sys
  import sysconfig
  links = {}
  # The base interpreter's, not a virtual environment's: its lib/python3.X holds site-packages.
  base = {'base': sys.base_prefix, 'platbase': sys.base_exec_prefix,
          'installed_base': sys.base_prefix, 'installed_platbase': sys.base_exec_prefix}
  dirs = {_mirror(sysconfig.get_path(key, vars=base), links) for key in ('stdlib', 'platstdlib')}
  multiarch = getattr(sys.implementation, '_multiarch', '')
  for path in ([f'/lib/{multiarch}', f'/usr/lib/{multiarch}'] if multiarch else []) + [
      '/lib64', '/usr/lib64']:
    if os.path.isdir(path):
      dirs.add(_mirror(path, links))
  dirs = sorted(d for d in dirs if os.path.isdir(d))
  # A directory inside another bound one comes with it; so does a link inside one.
  dirs = [d for d in dirs if not any(d.startswith(other + '/') for other in dirs)]
  inside = lambda path: any(path == d or path.startswith(d + '/') for d in dirs)
  masks = [os.path.join(d, name) for d in dirs for name in ('site-packages', 'dist-packages')
           if os.path.isdir(os.path.join(d, name)) and os.path.exists(os.path.join(d, 'os.py'))]
  devices = [path for path in ('/dev/null', '/dev/urandom') if os.path.exists(path)]
  _SYSTEM_PLAN.update(
      binds=[(d, d, 'lib') for d in dirs] + [(path, path, 'dev') for path in devices],
      links=sorted((path, target) for path, target in links.items() if not inside(path)),
      masks=masks)
  return _SYSTEM_PLAN


def _mirror(path: str, links: dict) -> str:
  """path with every symlink on the way resolved; the links met go into `links`."""
  real = '/'
  for part in os.path.abspath(path).strip('/').split('/'):
    candidate = os.path.join(real, part)
    hops = 0
    while os.path.islink(candidate) and hops < 40:
      target = os.readlink(candidate)
      links[candidate] = target
      candidate = os.path.normpath(os.path.join(os.path.dirname(candidate), target))
      hops += 1
    real = candidate
  return real


class Refused(OSError):
  """A step of the isolation that the kernel refused."""


def isolate(plan: dict, parent: int, prepare, refuse) -> None:
  """Called by the runner process (A) with `plan`'s config. Returns in D only, isolated: cwd at
  plan['workdir'], sys.path cut to what exists inside, prepare() (the runner's last steps under
  the old rules, its rlimits) run, the seccomp filter on. A never returns: it exits as D did.
  refuse(reason) reports a refused step (the audit must not run) and exits; parent is the
  auditing process, whose death kills A, and so C and D.

  C, the namespace's first process (its init), builds the root filesystem and the user namespace,
  then forks D, which runs the code: as PID 1, C would ignore the signals it sends itself (abort,
  raise_signal), where the audited code should die as it would anywhere else."""
  libc = ctypes.CDLL(None, use_errno=True)
  libc.mount.argtypes = (ctypes.c_char_p,) * 3 + (ctypes.c_ulong, ctypes.c_char_p)
  root = os.geteuid() == 0
  machine = os.uname().machine
  if machine not in ARCHES:
    refuse(f'no seccomp syscall table for this machine ({machine}); known: {", ".join(ARCHES)}')
  if root:
    os.setgroups([])
  # The mount namespace is C's alone (C unshares it): pivot_root moves every process of a mount
  # namespace, and A must keep the host's /proc to map C's ids.
  flags = 0
  for name, flag in NAMESPACES:
    flags |= 0 if root and name == 'user' or name == 'mount' else flag
  if libc.unshare(flags) != 0:
    refuse(_refused_namespaces(libc, flags, ctypes.get_errno()))
  _prctl(libc, PR_SET_PDEATHSIG, signal.SIGKILL)
  if os.getppid() != parent:
    os._exit(1)
  if not root:
    _map_ids('self', os.getuid(), os.getgid())
  report_r, report_w = os.pipe()
  control_r, control_w = os.pipe()
  child = os.fork()
  if child == 0:
    os.close(report_r)
    os.close(control_w)
    try:
      _enter(libc, plan, root, machine, report_w, control_r)
      _init(report_w)  # returns in D only
      _finish(libc, plan, machine, prepare)
    except BaseException as exc:
      reason = _describe(exc)
      if not root and isinstance(exc, OSError) and exc.errno in (errno.EPERM, errno.EACCES):
        reason += USERNS_HINT  # a user namespace without its powers (AppArmor, say)
      with _quiet():
        _tell(report_w, b'E', reason.encode('utf-8', 'replace')[:400])
      os._exit(SETUP_FAILED)
    _tell(report_w, b'R')
    os.close(report_w)
    return
  os.close(report_w)
  os.close(control_r)
  _supervise(libc, child, root, report_r, control_w, refuse)


def _tell(fd: int, kind: bytes, payload: bytes = b''):
  """One message on the report pipe: its kind, its length, its payload."""
  os.write(fd, kind + struct.pack('<I', len(payload)) + payload)


def _supervise(libc, child: int, root: bool, report: int, control: int, refuse):
  """A's part once C is forked: maps C's ids where only root can, tells C to go on, and exits as
  D did. The report pipe carries M (map me), R (D runs the code), S (D's wait status, from C) or
  E (the reason setup failed)."""
  if not root:
    os.write(control, b'D')
  error, ready, status, buffer = '', False, None, b''
  while chunk := os.read(report, 4096):
    buffer += chunk
    while len(buffer) >= 5 and len(buffer) >= 5 + struct.unpack('<I', buffer[1:5])[0]:
      kind, size = buffer[:1], struct.unpack('<I', buffer[1:5])[0]
      payload, buffer = buffer[5:5 + size], buffer[5 + size:]
      if kind == b'M' and root:
        outside = UID_BASE + os.getpid()  # unique among the live processes, so among audits
        try:
          _map_ids(str(child), outside, outside)
          os.write(control, b'D')
        except OSError as exc:
          error = f'mapping uid {outside} into the user namespace: {_describe(exc)}'
          os.close(control)  # C reads EOF and stops
      elif kind == b'R':
        ready = True
      elif kind == b'S':
        status = int(payload)
      elif kind == b'E' and not error:  # the first reason; what follows from it adds nothing
        error = payload.decode('utf-8', 'replace')
  _, init_status = os.waitpid(child, 0)
  if not ready:
    refuse(error or f'the sandbox process ended during setup (wait status {init_status})')
  status = init_status if status is None else status
  if os.WIFSIGNALED(status):
    number = os.WTERMSIG(status)
    _prctl(libc, PR_SET_DUMPABLE, 0)  # no core dump, whatever the core_pattern
    with _quiet():
      signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)
    os._exit(128 + number)
  code = os.WEXITSTATUS(status)
  os._exit(1 if code == SETUP_FAILED else code)


def _enter(libc, plan: dict, root: bool, machine: str, report: int, control: int):
  """C's part: the root filesystem, the user namespace and uid, no capabilities."""
  if libc.unshare(CLONE_NEWNS) != 0:
    raise _error('unshare(CLONE_NEWNS), the mount namespace')
  sources = [(os.open(source, O_PATH | os.O_CLOEXEC), target, kind)
             for source, target, kind in plan['binds']]
  new = '/tmp'  # any directory: the tmpfs mounted on it becomes the root
  _mount(libc, None, '/', None, MS_REC | MS_PRIVATE)
  _mount(libc, 'tmpfs', new, 'tmpfs', MS_NOSUID | MS_NODEV, 'size=64k,nr_inodes=512,mode=755')
  for path, target in plan['links']:
    os.makedirs(new + os.path.dirname(path), exist_ok=True)
    os.symlink(target, new + path)
  for fd, target, kind in sources:
    path = new + target
    if kind == 'dev':
      os.makedirs(os.path.dirname(path), exist_ok=True)
      os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
    else:
      os.makedirs(path, exist_ok=True)
    _mount(libc, f'/proc/self/fd/{fd}', path, None, MS_BIND | MS_REC)
    # Read-only, except the home directory of a root auditor: its files belong to a uid that is
    # unmapped inside, so they are read-only to the sandbox by their modes, and writes fail with
    # EACCES as in the episode's own filesystem rather than EROFS. Flags the kernel locked on the
    # source (nosuid, nodev, noexec) must be kept.
    locked = os.statvfs(path).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
    extra = MS_NOSUID | (0 if kind == 'dev' else MS_NODEV) | (0 if kind == 'lib' else MS_NOEXEC)
    readonly = 0 if kind == 'home' and root else MS_RDONLY
    _mount(libc, None, path, None, MS_REMOUNT | MS_BIND | readonly | locked | extra)
    os.close(fd)
  for path in plan['masks']:
    _mount(libc, 'tmpfs', new + path, 'tmpfs', MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
           'size=4k,mode=555')
  # /proc of the new PID namespace, showing its processes only where the kernel knows
  # subset=pid; mounted while the host's /proc is still in view, as the kernel requires inside a
  # user namespace. Without one the sandbox goes on without /proc.
  os.mkdir(new + '/proc')
  for options in ('subset=pid', None):
    try:
      _mount(libc, 'proc', new + '/proc', 'proc', MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
             options)
      break
    except OSError:
      continue
  if libc.sethostname(b'sandbox', 7) != 0:
    raise _error('sethostname')
  _mount(libc, None, new, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
  os.chdir(new)
  if libc.syscall(SETUP_SYSCALLS[machine]['pivot_root'], b'.', b'.') != 0:
    raise _error('pivot_root')
  if libc.umount2(b'.', MNT_DETACH) != 0:
    raise _error('detaching the host filesystem')
  os.chdir('/')
  if root:
    # Root's namespaces are the init user namespace's, beyond this one's reach; the uid this
    # process takes now is A's to map, to an outside uid no one else has.
    if libc.unshare(CLONE_NEWUSER) != 0:
      raise _error('unshare(CLONE_NEWUSER), the user namespace', USERNS_HINT)
    _tell(report, b'M')
  if os.read(control, 1) != b'D':
    raise Refused('the auditing process is gone, or could not map the ids')
  if root:
    os.setresgid(INSIDE_ID, INSIDE_ID, INSIDE_ID)
    os.setresuid(INSIDE_ID, INSIDE_ID, INSIDE_ID)
  _drop_capabilities(libc, machine)
  # Not dumpable: D, of the same uid, may then neither open C's /proc/1/fd nor its memory.
  _prctl(libc, PR_SET_DUMPABLE, 0)
  # Set after the uid change, which clears it; then A must still be there, or it died first.
  _prctl(libc, PR_SET_PDEATHSIG, signal.SIGKILL)
  poller = select.poll()
  poller.register(control, select.POLLIN)
  if poller.poll(0):
    raise Refused('the auditing process is gone')
  os.close(control)


def _init(report: int):
  """Forks D and returns in it. C stays as the namespace's init: it waits for D, sends A D's
  wait status and exits (and the kernel then kills whatever else is left in the namespace)."""
  worker = os.fork()
  if worker == 0:
    return
  while True:
    pid, status = os.waitpid(-1, 0)
    if pid == worker:
      break
  with _quiet():
    _tell(report, b'S', str(status).encode())
  os._exit(0)


def _finish(libc, plan: dict, machine: str, prepare):
  """D's part: where it starts, the runner's rlimits, no core dumps, no new privileges, the
  filter."""
  os.chdir(plan['workdir'])
  import sys
  sys.path[:] = [path for path in sys.path if os.path.isdir(path)]
  sys.path_importer_cache.clear()
  prepare()
  _prctl(libc, PR_SET_DUMPABLE, 0)  # no core dumps, whatever the core_pattern, as in C
  _prctl(libc, PR_SET_NO_NEW_PRIVS, 1)
  program = filter_program(machine, os.getpid())
  buffer = ctypes.create_string_buffer(program, len(program))

  class Program(ctypes.Structure):
    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]

  fprog = Program(len(program) // 8, ctypes.addressof(buffer))
  _prctl(libc, PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))


def _map_ids(pid: str, uid: int, gid: int):
  """One inside id, INSIDE_ID, to one outside id; setgroups off, as unprivileged maps need."""
  for name, text in (('setgroups', 'deny'), ('uid_map', f'{INSIDE_ID} {uid} 1\n'),
                     ('gid_map', f'{INSIDE_ID} {gid} 1\n')):
    fd = os.open(f'/proc/{pid}/{name}', os.O_WRONLY)
    try:
      os.write(fd, text.encode())
    finally:
      os.close(fd)


def _drop_capabilities(libc, machine: str):
  header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
  data = (ctypes.c_uint32 * 6)()
  if libc.syscall(SETUP_SYSCALLS[machine]['capset'], header, data) != 0:
    raise _error('capset')


def _prctl(libc, option: int, value: int, arg3: int = 0):
  zero = ctypes.c_ulong(0)
  if libc.prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(arg3), zero, zero) != 0:
    raise _error(f'prctl({option})')


def _mount(libc, source, target: str, fstype, flags: int, data=None):
  encode = lambda text: None if text is None else text.encode()
  if libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)) != 0:
    raise _error(f'mount {fstype or "bind" if source else "remount"} on {target}')


def _error(step: str, hint: str = '') -> Refused:
  number = ctypes.get_errno()
  return Refused(number, f'{step}: {os.strerror(number)}{hint}')


def _refused_namespaces(libc, flags: int, number: int) -> str:
  """Which namespaces the kernel refuses, one by one (the user namespace first: it grants the
  rest to an unprivileged process); the process exits after this, so entering them is harmless."""
  missing = []
  for name, flag in NAMESPACES:
    if flags & flag and libc.unshare(flag) != 0:
      missing.append(name)
      if name == 'user':
        break  # the others need it
  text = (f'the kernel refused {", ".join(missing) or "the combination of the"} namespaces '
          f'({os.strerror(number)})')
  return text + (USERNS_HINT if 'user' in missing else '')


def _describe(exc: BaseException) -> str:
  if isinstance(exc, Refused):
    return exc.strerror or str(exc)
  return f'{type(exc).__name__}: {exc}'


class _quiet:
  """Suppresses OSError and ValueError: best-effort steps on the way out."""

  def __enter__(self):
    return self

  def __exit__(self, kind, value, traceback):
    return kind is not None and issubclass(kind, (OSError, ValueError))
