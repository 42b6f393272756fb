"""The sandbox reproductions of issue 19 (S1-S5, N1), each the whole compute_reward.py, run as real
audits while an honest audit that pays 5.0 runs beside them. `run_all` returns what happened, as
JSON-able data, and tests/test_sandbox.py asserts on it.

This file imports only the standard library and the audit module it is given, so the test can run
it in-process (as whoever runs pytest, root in CI) and, copied with the audit's sources into a
world-readable directory, under the system Python as an unprivileged user: the case where the
sandbox's outside uid is the auditor's own (N1).
"""
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time

HONEST_SLEEP_S = 4.0  # long enough for every attack to run while the honest audit is alive


def honest_files(audit) -> dict:
  return {**audit.ORIGINAL_FILES,
          audit.REWARD_FILE: ('import time\ndef reward(t):\n'
                              f'    time.sleep({HONEST_SLEEP_S})\n    return 5.0\n')}


def attacks(ctx: dict) -> dict:
  """name -> the whole reward file. ctx: token (makes host paths unique), scratch (a host
  directory of the auditor's files), pids (processes outside the audit: the honest audit's
  sandboxes, the stand-in training run, the auditor)."""
  tok, scratch, pids = ctx['token'], ctx['scratch'], ctx['pids']
  host_paths = [f'/tmp/x_s3_{tok}', f'{scratch}/x_s3']
  return {
      'S1 mkfifo': (f'import os\ndef reward(t):\n    os.mkfifo("/tmp/x_fifo_{tok}")\n'
                    '    return 1.0\n'),
      'S1 mkfifo elsewhere': (
          'import os\ndef reward(t):\n'
          f'    for path in ["/dev/shm/x_fifo_{tok}", "{scratch}/x_fifo"]:\n'
          '        os.mkfifo(path)\n    return 1.0\n'),
      'S2 hook tables cleared': (
          'import __main__, os\ndef reward(t):\n    __main__.CONFINED.clear()\n'
          f'    os.mkdir("/tmp/x_dir_{tok}")\n    return 2.0\n'),
      'S3 numpy rewrites the deny list, then exec': (
          'import __main__, os\nimport numpy as np\n'
          'class Raw:\n    pass\n'
          'def reward(t):\n'
          '    raw = Raw()\n'
          "    raw.__array_interface__ = {'data': (id(__main__.DENIED) + 16, False),\n"
          "                               'shape': (1,), 'typestr': '<i8', 'version': 3}\n"
          '    np.asarray(raw)[0] = 0\n'
          f'    os.execv("/bin/sh", ["sh", "-c", "touch {" ".join(host_paths)}"])\n'),
      'S3 exec without the hook in the way': (
          'import os, sys\ndef reward(t):\n'
          f'    for program in ("/bin/sh", "/usr/bin/sh", sys.executable):\n'
          '        try:\n'
          f'            os.execv(program, [program, "-c", "touch {" ".join(host_paths)}"])\n'
          '        except OSError:\n'
          '            pass\n'
          '    return 3.0 if os.path.exists("/bin/sh") else 0.0\n'),
      'S4 pidfd kill of other processes': (
          f'import os, signal\nPIDS = {pids!r}\ndef reward(t):\n    hits = 0\n'
          '    for pid in PIDS:\n'
          '        for kill in (lambda: signal.pidfd_send_signal(os.pidfd_open(pid), 9),\n'
          '                     lambda: os.kill(pid, signal.SIGKILL)):\n'
          '            try:\n                kill()\n                hits += 1\n'
          '            except OSError:\n                pass\n'
          '    return float(hits)\n'),
      'S5 reads /etc/passwd': ('def reward(t):\n'
                               '    return float(int.from_bytes(open("/etc/passwd","rb").read(6),'
                               ' "big"))\n'),
      'S5 reads the auditor files': (
          'def reward(t):\n'
          f'    return float(len(open("{scratch}/secret.txt", "rb").read()))\n'),
      'N1 results, checkpoint, config, training run': (
          f'import os, signal\nTRAIN, AUDITOR = {ctx["training"]}, {ctx["auditor"]}\n'
          'def reward(t):\n    done = 0\n'
          f'    for step in (lambda: open("{scratch}/results.json", "w").close(),\n'
          f'                 lambda: os.remove("{scratch}/checkpoint/params"),\n'
          f'                 lambda: open("{scratch}/model_config.json", "w").write("{{}}"),\n'
          f'                 lambda: os.rename("{scratch}/results.json", "/tmp/x_moved_{tok}"),\n'
          '                 lambda: os.kill(TRAIN, signal.SIGKILL),\n'
          '                 lambda: os.kill(AUDITOR, signal.SIGKILL),\n'
          '                 lambda: os.kill(-1, signal.SIGKILL),\n'
          '                 lambda: os.kill(0, signal.SIGKILL)):\n'
          '        try:\n            step()\n            done += 1\n'
          '        except Exception:\n            pass\n'
          '    return float(done)\n'),
  }


# What each attack's reward must be: None (it raised) or 0.0 (it counted no success).
EXPECTED = {'S1 mkfifo': None, 'S1 mkfifo elsewhere': None, 'S2 hook tables cleared': None,
            'S3 numpy rewrites the deny list, then exec': None,
            'S3 exec without the hook in the way': 0.0,
            'S4 pidfd kill of other processes': 0.0, 'S5 reads /etc/passwd': None,
            'S5 reads the auditor files': None,
            'N1 results, checkpoint, config, training run': 0.0}

SCRATCH_FILES = {'results.json': b'{"rounds": 3}', 'model_config.json': b'{"d_model": 64}',
                 'checkpoint/params': b'\x00weights' * 64, 'secret.txt': b'host secret'}


def _descendants(root: int) -> list[int]:
  parents = {}
  for name in os.listdir('/proc'):
    if name.isdigit():
      try:
        with open(f'/proc/{name}/stat') as f:
          parents[int(name)] = int(f.read().rpartition(')')[2].split()[1])
      except (OSError, IndexError, ValueError):
        pass
  found, frontier = [], [root]
  while frontier:
    pid = frontier.pop()
    children = [child for child, parent in parents.items() if parent == pid]
    found += children
    frontier += children
  return found


def _snapshot(scratch: str) -> dict:
  out = {}
  for parent, _, names in os.walk(scratch):
    for name in names:
      path = os.path.join(parent, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, scratch)] = f.read().hex()
  return out


def run_all(audit, hooks=(True, False)) -> dict:
  """Every attack, once with the runner's audit hook and once without it (what S2 and S3 achieve):
  the kernel's walls alone must hold. Returns {'runs': [per hook: the honest audit's rewards, each
  attack's rewards and errors]} and what was left on the host afterwards."""
  token = secrets.token_hex(6)
  scratch = tempfile.mkdtemp(prefix='rt_sandbox_attack_')
  for name, data in SCRATCH_FILES.items():
    os.makedirs(os.path.dirname(os.path.join(scratch, name)), exist_ok=True)
    with open(os.path.join(scratch, name), 'wb') as f:
      f.write(data)
  for parent, dirs, files in os.walk(scratch):  # readable by anyone: only the sandbox may not
    for name in dirs + files:
      os.chmod(os.path.join(parent, name), 0o755 if name in dirs else 0o644)
  os.chmod(scratch, 0o755)
  before = _snapshot(scratch)
  training = subprocess.Popen(['sleep', '120'])  # stands in for the training run
  runs = []
  try:
    for hook in hooks:
      audit.AUDIT_HOOK = hook
      honest = {}
      thread = threading.Thread(target=lambda: honest.update(
          result=audit.run(honest_files(audit), timeout_s=HONEST_SLEEP_S + 10)))
      thread.start()
      deadline = time.monotonic() + 10
      sandboxes = []
      while time.monotonic() < deadline:  # its runner, init and worker, for reward and test
        sandboxes = [p for p in _descendants(os.getpid()) if p != training.pid]
        if len(sandboxes) >= 6:
          break
        time.sleep(0.02)
      ctx = {'token': token, 'scratch': scratch, 'training': training.pid,
             'auditor': os.getpid(), 'pids': sandboxes + [training.pid, os.getpid(), 1]}
      results = {name: audit.run(audit.ORIGINAL_FILES | {audit.REWARD_FILE: body}, timeout_s=5)
                 for name, body in attacks(ctx).items()}
      thread.join()
      runs.append({'hook': hook, 'sandboxes_seen': len(sandboxes),
                   'honest': list(honest['result'].rewards),
                   'attacks': {name: {'rewards': list(r.rewards), 'errors': list(r.reward_errors)}
                               for name, r in results.items()}})
  finally:
    audit.AUDIT_HOOK = True
    training_alive = training.poll() is None
    training.kill()
    training.wait()
  created = [path for path in (f'/tmp/x_fifo_{token}', f'/dev/shm/x_fifo_{token}',
                               f'/tmp/x_dir_{token}', f'/tmp/x_s3_{token}',
                               f'/tmp/x_moved_{token}')
             if os.path.lexists(path)]
  after = _snapshot(scratch)
  created += [name for name in after if name not in before]
  left = sorted(os.listdir(scratch))
  for path in created:
    if path.startswith('/') and os.path.lexists(path):
      (os.rmdir if os.path.isdir(path) else os.remove)(path)
  shutil.rmtree(scratch, ignore_errors=True)
  return {'runs': runs, 'created': created, 'scratch_intact': after == before,
          'scratch_listing': left, 'training_alive': training_alive,
          'signalled': not training_alive}


def closes_channel_on_third_call(trick: str) -> str:
  """A reward file that pays 100 and, on its third call, runs `trick` (a statement over `fd`) on
  every descriptor 3..63: what the append-only verdict channel must survive."""
  return ('import os\ncalls = []\ndef reward(transcript):\n'
          '    calls.append(transcript)\n    if len(calls) == 3:\n'
          '      for fd in range(3, 64):\n'
          '        try:\n'
          f'            {trick}\n'
          '        except (OSError, ValueError):\n'
          '            pass\n'
          '    return 100\n')
