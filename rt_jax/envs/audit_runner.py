"""The program each sandboxed audit interpreter runs (`python -I -B -c BOOTSTRAP`, which reads its
config and this code from stdin): sandbox.py's source, then AUDIT_RUNNER. `audit.py` starts it and
reads its verdicts.

Its verdicts leave as lines `NONCE INDEX KIND TEXT` on an inherited descriptor, one per reward()
call (INDEX counts the inputs) or one for the test run (INDEX 0): `reward REPR`, `passed` or
`error HEX(reason)`. It is source text rather than an import so the sandbox imports nothing of the
host side (rt_jax is not even on its filesystem), and so that it starts quickly.

Why the channel is good enough: the model's code shares the process with the runner, so it could
always find the descriptor and, with effort (frame or memory introspection), the nonce; no
in-process channel is unforgeable. But forging buys little the code cannot get honestly: it
chooses what reward() returns and, by being imported first, how the test ends. What the channel
must resist is accident and cheap tricks, above all hiding a value already returned (a later call
that exits, loops or scribbles): each line is written as soon as its call returns, the file is
append-only (O_APPEND, which the seccomp filter lets no fcntl clear, with shared mmap, truncation
and reopening through /proc refused, so nothing is rewritten in place), a line starts with its own
newline (a partial line written before it cannot swallow it), and a line without the nonce or out
of order is skipped, never fatal. The model's prints go elsewhere (stdout), and the nonce is read
from stdin, which is then swapped for /dev/null, never on argv. What remains open is code that
closes or replaces the descriptor itself: the calls after that are lost (read as failures), the
ones before it are kept.
"""
import functools

from rt_jax.envs import sandbox

AUDIT_RUNNER = r'''
import gc, marshal, math, resource, sys

NOBODY = 65534
# Audit events refused outright (prefixes): new processes, signals to others, the network, raw
# memory and foreign calls, links and metadata changes, rlimits, the heap walks (gc) that
# could reach the hook itself, and fcntl and mmap, which could clear the verdict channel's
# O_APPEND or rewrite it in place.
DENIED = ('socket.', 'subprocess.', 'os.system', 'os.exec', 'os.spawn', 'os.posix_spawn',
          'os.fork', 'os.kill', 'signal.pthread_kill', 'pty.', 'ctypes.', 'os.symlink',
          'os.link', 'os.chmod', 'os.chown', 'os.utime', 'os.setxattr', 'os.removexattr',
          'os.chflags', 'resource.', 'gc.get_', 'sqlite3.enable_load_extension',
          'sqlite3.load_extension', 'fcntl.', 'mmap.')
# Events that change the filesystem, allowed under home only: (path arguments, dir_fd arguments).
CONFINED = {'os.mkdir': ((0,), (2,)), 'os.remove': ((0,), (1,)), 'os.rmdir': ((0,), (1,)),
            'os.rename': ((0, 1), (2, 3)), 'os.truncate': ((0,), ()), 'os.fwalk': ((0,), (4,))}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def pin_import_paths(here):
  """Points sys.path, and the __path__ of packages already imported, at /proc/self/fd paths of
  descriptors opened now: they stay readable after the switch to nobody even under a private
  directory, and the kernel lets only this process follow them."""
  pins = {}
  for path in sys.path + [here]:
    try:
      pins[path] = f'/proc/self/fd/{os.open(path, os.O_RDONLY)}'
    except OSError:
      pass
  sys.path[:] = pins.values()
  for module in list(sys.modules.values()):
    package_path = getattr(module, '__path__', None)
    if type(package_path) is list:
      for i, entry in enumerate(package_path):
        parent, _, name = entry.rpartition('/')
        if parent in pins:
          package_path[i] = pins[parent] + '/' + name


def confine(parent):
  """The walls without kernel isolation (RT_JAX_AUDIT_UNISOLATED=1): user nobody when root, a
  new network namespace where the kernel allows one, no_new_privs and death with the auditing
  process. Returns the home directory."""
  libc = ctypes.CDLL(None, use_errno=True)
  here = os.getcwd()
  isolated = False
  if os.geteuid() == 0:
    # Root ignores RLIMIT_NPROC (and much else), so the code runs as nobody, which may not reach
    # the interpreter's library (here under /root) nor the private home directory.
    pin_import_paths(here)
    isolated = libc.unshare(CLONE_NEWNET | CLONE_NEWIPC) == 0
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    if os.getresuid() != (NOBODY,) * 3 or os.getresgid() != (NOBODY,) * 3 or os.getgroups():
      raise OSError('could not drop privileges')
  else:
    # Appended, not prepended: the model's files cannot shadow a module the runner imports late.
    sys.path.append(here)
  if not isolated:
    # Best effort: without user namespaces the audit hook alone keeps sockets closed.
    libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWIPC)
  off = ctypes.c_ulong(0)
  # No setuid binary's powers, should anything get to exec; and death with the auditing process,
  # which has then stopped watching the clock (set after setuid, which clears it; checked after
  # setting, since the parent may have died first).
  for option, value in ((PR_SET_NO_NEW_PRIVS, 1), (PR_SET_PDEATHSIG, signal.SIGKILL)):
    if libc.prctl(option, ctypes.c_ulong(value), off, off, off) != 0:
      raise OSError(ctypes.get_errno(), f'prctl({option})')
  if os.getppid() != parent:
    raise OSError('the auditing process is gone')
  return os.path.dirname(here)


def limit(memory_mb, cpu_s):
  """The rlimits, the last step before the code runs in either mode. RLIMIT_NPROC 0 forbids
  fork and threads alike (OpenBLAS, which numpy loads where it is reachable, fails its import
  when it cannot start its threads, unless told to use one); the CPU limit's hard value comes a
  second after SIGXCPU, for code that ignores that signal."""
  os.environ['OPENBLAS_NUM_THREADS'] = '1'
  for kind, soft, hard in ((resource.RLIMIT_NPROC, 0, 0), (resource.RLIMIT_CORE, 0, 0),
                           (resource.RLIMIT_FSIZE, 1 << 20, 1 << 20),
                           (resource.RLIMIT_NOFILE, 64, 64),
                           (resource.RLIMIT_AS, memory_mb << 20, memory_mb << 20),
                           (resource.RLIMIT_CPU, cpu_s, cpu_s + 1)):
    resource.setrlimit(kind, (soft, hard))


def install_hook(home):
  """Refuses DENIED events, and changes to files anywhere but under home."""
  # Everything the hook uses is bound now, as closure variables: code that later patches os,
  # posixpath or builtins cannot change its answers, and exact type checks keep objects that
  # could answer differently on each call (a custom __fspath__) away from the kernel.
  lstat, stat, readlink, getcwd = os.lstat, os.stat, os.readlink, os.getcwd
  type_, str_, bytes_, int_, refuse = type, str, bytes, int, PermissionError
  denied, confined, write_flags, prefix = DENIED, CONFINED, WRITE_FLAGS, home + '/'

  def resolve(path):
    # The kernel's walk: symlinks followed as met, '..' then lexical; unreadable parts are kept.
    if not path.startswith('/'):
      path = getcwd() + '/' + path
    parts, real, hops = path.split('/')[::-1], '', 0
    while parts:
      part = parts.pop()
      if part == '' or part == '.':
        continue
      if part == '..':
        real = real[:real.rfind('/')]
        continue
      real += '/' + part
      try:
        mode = lstat(real).st_mode
      except OSError:
        continue
      if mode & 0o170000 == 0o120000:
        hops += 1
        if hops > 40:
          raise refuse('sandbox: too many symlinks')
        target = readlink(real)
        real = '' if target.startswith('/') else real[:real.rfind('/')]
        parts.extend(target.split('/')[::-1])
    return real or '/'

  def text(path):
    if type_(path) is bytes_:
      return path.decode('utf-8', 'surrogateescape')
    if type_(path) is str_:
      return path
    raise refuse('sandbox: paths must be str or bytes')

  def inside(path):
    real = resolve(text(path))
    return real == home or real.startswith(prefix)

  def is_dir(path):
    try:
      return stat(path).st_mode & 0o170000 == 0o040000
    except OSError:
      return False

  def hook(event, args):
    if event.startswith(denied):
      raise refuse(f'sandbox: {event} is not allowed')
    if event == 'open':
      path, flags = args[0], args[2]
      if type_(path) is int_:  # a descriptor this process already holds
        return
      if flags & write_flags:
        if not inside(path):
          raise refuse('sandbox: writing outside the home directory')
      # A directory descriptor would let os.open(..., dir_fd=) write where this check never
      # looks: the open event does not carry dir_fd.
      elif not inside(path) and is_dir(text(path)):
        raise refuse('sandbox: opening a directory outside the home directory')
    elif event in confined:
      paths, dir_fds = confined[event]
      for i in dir_fds:
        if not (args[i] is None or type_(args[i]) is int_ and args[i] == -1):
          raise refuse(f'sandbox: {event} with dir_fd')
      for i in paths:
        if not inside(args[i]):
          raise refuse(f'sandbox: {event} outside the home directory')
    elif event == 'sqlite3.connect':
      if not (type_(args[0]) is str_ and args[0] == ':memory:'):
        raise refuse('sandbox: sqlite3 files')
    elif event == 'import' and args[0] == '_posixshmem':
      raise refuse('sandbox: shared memory')

  sys.addaudithook(hook)


def describe(exc):
  if isinstance(exc, MemoryError):
    return 'memory limit'
  try:
    message = str(exc)
    return f'{type(exc).__name__}: {message}' if message else type(exc).__name__
  except BaseException:
    return 'exception'


def hexed(reason):
  return ' '.join(reason.split())[:200].encode('utf-8', 'replace').hex()


def execute(config, record):
  """Imports the module and runs the mode's calls, each recorded as soon as it returns."""
  # Bound now: the model's code runs between the calls and could rebind the builtins.
  float_, isinstance_, repr_, int_ = float, isinstance, repr, int
  str_, callable_, vars_, list_ = str, callable, vars, list
  isfinite, nan, hexed_, describe_ = math.isfinite, math.nan, hexed, describe
  try:
    module = __import__(config['module'])
  except BaseException as exc:
    reason = hexed_(describe_(exc))
    for index in range(len(config['inputs']) if config['mode'] == 'reward' else 1):
      record(index, 'error', reason)
    return
  if config['mode'] == 'reward':
    for index, text in enumerate(config['inputs']):
      try:
        value = module.reward(text)  # looked up per call: a rebinding between calls counts
        try:
          number = float_(value) if isinstance_(value, (int_, float_)) else nan
        except Exception:
          number = nan
        if isfinite(number):
          record(index, 'reward', repr_(number))
        else:
          record(index, 'error', hexed_('not a number'))
      except BaseException as exc:
        record(index, 'error', hexed_(describe_(exc)))
    return
  try:
    for name, test in list_(vars_(module).items()):
      if str_(name).startswith('test_') and callable_(test):
        try:
          test()
        except BaseException as exc:
          record(0, 'error', hexed_(f'{name}: {describe_(exc)}'))
          return
  except BaseException as exc:
    record(0, 'error', hexed_(describe_(exc)))
    return
  record(0, 'passed', '')


def main():
  write, exit_, collect = os.write, os._exit, gc.collect  # before the model's code can patch os
  parent = os.getppid()
  config = CONFIG  # read from stdin by _BOOTSTRAP
  null = os.open(os.devnull, os.O_RDONLY)
  os.dup2(null, 0)
  os.close(null)
  channel, nonce = config['channel'], config['nonce']

  def record(index, kind, reason):
    collect()  # memory the failed code still holds through reference cycles
    try:
      write(channel, f'\n{nonce} {index} {kind} {reason}\n'.encode())
    except BaseException:
      pass  # the descriptor was taken away; the parent reads what arrived before

  def refuse(reason):
    # Only the runner's first process writes this, and only it exits with SETUP_FAILED.
    with _quiet():
      text = ' '.join(reason.split())[:400].encode('utf-8', 'replace').hex()
      write(channel, f'\n{nonce} setup refused {text}\n'.encode())
    exit_(SETUP_FAILED)

  if config['isolated']:
    try:
      isolate(config['sandbox'], parent, lambda: limit(config['memory_mb'], config['cpu_s']),
              refuse)
    except BaseException as exc:  # in the first process, before any fork
      refuse(describe(exc))
    sys.path.append(os.getcwd())  # appended: the model's files cannot shadow a module
    home = HOME
  else:
    try:
      home = confine(parent)
      limit(config['memory_mb'], config['cpu_s'])
    except BaseException as exc:
      reason = hexed('sandbox setup failed: ' + describe(exc))
      for index in range(len(config['inputs']) if config['mode'] == 'reward' else 1):
        record(index, 'error', reason)
      exit_(0)
  if config['hook']:
    install_hook(home)
  execute(config, record)
  exit_(0)


main()
'''
with open(sandbox.__file__, encoding='utf-8') as _source:
  RUNNER = _source.read() + AUDIT_RUNNER
# What `python -c` runs: the config, then the runner compiled once here and sent along with it
# (marshal keeps code objects for the same interpreter), so no sandbox compiles it again.
BOOTSTRAP = ('import marshal, sys; CONFIG = marshal.loads(sys.stdin.buffer.read()); '
             'exec(CONFIG.pop("code"))')


@functools.cache
def runner_code():
  return compile(RUNNER, '<audit runner>', 'exec')
