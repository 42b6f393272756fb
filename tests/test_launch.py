"""launch/tpu_vm.sh as a user runs it, with --dry_run: no gcloud, no network, no TPU.

A fake `gcloud` first on PATH records its arguments and fails loudly, so a dry run that would call
gcloud is caught. The remote scripts the dry run prints (the `--command=` of each ssh) are run on a
fake worker (a temp HOME with a stub tmux, hostname and .venv/bin/python) to check that the
nested quoting delivers the right argv to `python -m rt_jax.main` and one log file per host.
"""
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, concurrently, error_lines

SCRIPT = os.path.join(REPO, 'launch', 'tpu_vm.sh')
URL = 'https://example.com/someone/rt_jax.git'
CONFIG = 'configs/curriculum.py:smollm2_quick'
PAPER = 'configs/curriculum.py:smollm2_paper'  # its batches split over a 16-chip slice
V4 = ('--name=rt-v4', '--zone=us-central2-b', '--accelerator_type=v4-8', f'--repo={URL}',
      '--ref=0123abc', f'--config={CONFIG}', '--workdir=runs/quick')
V5E = ('--name=rt-v5e', '--zone=us-west4-a', '--accelerator_type=v5litepod-16', f'--repo={URL}',
       '--ref=main', f'--config={PAPER}', '--workdir=runs/paper')
# A value that needs every level of quoting: single and double quotes, $, backslash, backquotes.
NASTY = '--config.name=it\'s a "test" $HOME \\ `id`'


def _write_exe(path, text):
  with open(path, 'w') as f:
    f.write(text)
  os.chmod(path, 0o755)


@pytest.fixture
def gcloud(tmp_path):
  """A fake gcloud first on PATH: records each call's argv as one shlex-joined line."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  calls = tmp_path / 'gcloud_calls'
  join = 'import shlex, sys; print(shlex.join(sys.argv[1:]))'
  _write_exe(bin_dir / 'gcloud', f"""#!/bin/sh
{shlex.quote(sys.executable)} -c {shlex.quote(join)} gcloud "$@" >> {shlex.quote(str(calls))}
if [ -n "${{FAKE_GCLOUD_RC:-}}" ]; then exit "$FAKE_GCLOUD_RC"; fi
echo "FAKE GCLOUD CALLED: a dry run must not call gcloud" >&2
exit 97
""")
  # The local config check (a JAX import per call) has its own tests, which turn it back on.
  env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
             RT_JAX_LOCAL_PYTHON='/nonexistent/python')
  env.pop('FAKE_GCLOUD_RC', None)

  class Fake:
    def __init__(self):
      self.env = env

    def calls(self):
      return calls.read_text().splitlines() if calls.exists() else []

  return Fake()


def launch(gcloud, *args, script=SCRIPT, env=None, cwd=REPO):
  return subprocess.run([script, *args], cwd=cwd, env=env or gcloud.env, capture_output=True,
                        text=True, timeout=180, check=False)


def commands(proc):
  """The printed commands, each as the argv a shell would give it."""
  lines = proc.stdout.splitlines()
  assert all(line.startswith('+ ') for line in lines), proc.stdout
  return [shlex.split(line[2:]) for line in lines]


def remote_script(argv):
  [command] = [a[len('--command='):] for a in argv if a.startswith('--command=')]
  return command


def step(argv):
  """Which step a printed command is."""
  if argv[0] == 'mkdir':
    return 'mkdir'
  assert argv[:4] == ['gcloud', 'compute', 'tpus', 'tpu-vm'], argv
  verb = argv[4]
  if verb == 'ssh':
    script = remote_script(argv)
    if 'git clone' in script:
      return 'setup'
    if 'tmux new-session' in script:
      return 'run'
    if 'tmux has-session' in script:
      return 'wait'
    return 'tensorboard'
  return {'scp': 'copy_back'}.get(verb, verb)


def test_all_single_host_v4_prints_every_step_in_order(gcloud):
  proc = launch(gcloud, 'all', *V4, '--dry_run')
  assert proc.returncode == 0, proc.stderr
  assert gcloud.calls() == []
  cmds = commands(proc)
  assert [step(c) for c in cmds] == ['create', 'setup', 'run', 'wait', 'mkdir', 'copy_back',
                                     'delete']
  create, setup, run, wait, mkdir, copy_back, delete = cmds
  assert create == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'create', 'rt-v4',
                    '--zone=us-central2-b', '--accelerator-type=v4-8',
                    '--version=tpu-ubuntu2204-base']
  for c in (setup, run, wait):
    assert c[5:8] == ['rt-v4', '--zone=us-central2-b', '--worker=all'], c
  setup_script = remote_script(setup)
  assert f'git clone -q {URL} rt_jax' in setup_script
  assert 'ref=0123abc' in setup_script
  assert 'python3.11 -m venv .venv' in setup_script
  assert '-m pip install -q -r requirements.txt "jax[tpu]' in setup_script
  assert '-f https://storage.googleapis.com/jax-releases/libtpu_releases.html' in setup_script
  assert (f'.venv/bin/python -m rt_jax.main --config={CONFIG} --workdir=runs/quick'
          in remote_script(run))
  assert mkdir == ['mkdir', '-p', 'runs/rt-v4']
  assert copy_back == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'scp', '--recurse', '--worker=0',
                       '--zone=us-central2-b', 'rt-v4:rt_jax/runs/quick', 'runs/rt-v4']
  assert delete == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'delete', 'rt-v4',
                    '--zone=us-central2-b', '--quiet']


def test_every_printed_remote_script_is_valid_shell(gcloud):
  proc = launch(gcloud, 'all', *V4, NASTY, '--dry_run')
  assert proc.returncode == 0, proc.stderr
  scripts = [remote_script(c) for c in commands(proc) if c[4:5] == ['ssh']]
  assert len(scripts) == 3
  for script in scripts:
    assert '\n' not in script
    for shell in ('bash', 'sh'):
      check = subprocess.run([shell, '-n', '-c', script], capture_output=True, text=True,
                             check=False)
      assert check.returncode == 0, (shell, script, check.stderr)


@pytest.fixture
def worker(tmp_path):
  """A fake TPU worker: HOME with ~/rt_jax/.venv/bin/python printing RT_JAX_COORDINATOR and its
  argv, stub tmux that runs
  the session's command at once, and a hostname chosen per call."""
  home = tmp_path / 'home'
  venv_bin = home / 'rt_jax' / '.venv' / 'bin'
  venv_bin.mkdir(parents=True)
  _write_exe(venv_bin / 'python', '#!/bin/sh\nprintf "RT_JAX_COORDINATOR=%s\\n" '
             '"$RT_JAX_COORDINATOR"\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
  stubs = tmp_path / 'worker_bin'
  stubs.mkdir()
  _write_exe(stubs / 'tmux', """#!/bin/sh
case $1 in
  has-session) exit 1 ;;
  new-session) for last; do :; done; exec sh -c "$last" ;;
esac
exit 3
""")

  def run_on(hostname, script, shell='bash'):
    _write_exe(stubs / 'hostname', f'#!/bin/sh\necho {hostname}\n')
    env = dict(os.environ, HOME=str(home), PATH=f'{stubs}{os.pathsep}{os.environ["PATH"]}')
    proc = subprocess.run([shell, '-c', script], env=env, capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout

  run_on.checkout = home / 'rt_jax'
  return run_on


def test_multi_host_v5e_runs_on_every_worker_with_a_log_per_host(gcloud, worker):
  proc = launch(gcloud, 'all', *V5E, '--dry_run')
  assert proc.returncode == 0, proc.stderr
  assert gcloud.calls() == []
  cmds = {step(c): c for c in commands(proc)}
  assert '--accelerator-type=v5litepod-16' in cmds['create']
  assert '--version=v2-alpha-tpuv5-lite' in cmds['create']
  for name in ('setup', 'run', 'wait'):
    assert '--worker=all' in cmds[name], name
  run = remote_script(cmds['run'])
  assert '>> runs/paper/logs/host_$(hostname).log 2>&1' in run
  # The same command on two workers of the slice: one process each, each with its own log.
  for host, shell in (('t1v-n-0-w-0', 'bash'), ('t1v-n-0-w-1', 'sh')):
    assert f'{host}: started' in worker(host, run, shell)
  logs = sorted(os.listdir(worker.checkout / 'runs' / 'paper' / 'logs'))
  assert logs == ['host_t1v-n-0-w-0.log', 'host_t1v-n-0-w-1.log']
  for log in logs:
    lines = (worker.checkout / 'runs' / 'paper' / 'logs' / log).read_text().splitlines()
    assert lines == ['RT_JAX_COORDINATOR=auto', '-m', 'rt_jax.main', f'--config={PAPER}',
                     '--workdir=runs/paper', 'rt_jax.main exited with status 0']
  # wait ends when the session has, and shows each host's log tail.
  assert 'exited with status 0' in worker('t1v-n-0-w-1', remote_script(cmds['wait']))


def test_config_overrides_reach_rt_jax_main_unchanged(gcloud, worker):
  proc = launch(gcloud, 'run', *V5E, '--config.ei.variant=exploit_only', NASTY, '--dry_run')
  assert proc.returncode == 0, proc.stderr
  [run] = commands(proc)
  assert step(run) == 'run' and '--worker=all' in run
  assert (f'.venv/bin/python -m rt_jax.main --config={PAPER} --workdir=runs/paper '
          '--config.ei.variant=exploit_only ') in remote_script(run)
  worker('w-0', remote_script(run))
  log = worker.checkout / 'runs' / 'paper' / 'logs' / 'host_w-0.log'
  assert log.read_text().splitlines() == [
      'RT_JAX_COORDINATOR=auto', '-m', 'rt_jax.main', f'--config={PAPER}', '--workdir=runs/paper',
      '--config.ei.variant=exploit_only', NASTY, 'rt_jax.main exited with status 0']


def test_spot_and_project_are_passed_through(gcloud):
  proc = launch(gcloud, 'all', *V4, '--spot', '--project=my-project', '--dry_run')
  assert proc.returncode == 0, proc.stderr
  cmds = commands(proc)
  assert '--spot' in cmds[0]
  for c in cmds:
    if c[0] == 'gcloud':
      assert '--project=my-project' in c, c
  assert sum('--spot' in c for c in cmds) == 1


def test_tensorboard_forwards_the_port_from_worker_0(gcloud):
  proc = launch(gcloud, 'tensorboard', '--name=rt-v4', '--zone=us-central2-b',
                '--workdir=runs/quick', '--dry_run')
  assert proc.returncode == 0, proc.stderr
  [tb] = commands(proc)
  assert tb[4:8] == ['ssh', 'rt-v4', '--zone=us-central2-b', '--worker=0']
  assert tb[-4:] == ['--', '-t', '-L', '6006:localhost:6006']
  assert '.venv/bin/tensorboard --logdir=runs/quick/tb --host=localhost --port=6006' in (
      remote_script(tb))


def test_repo_and_ref_default_to_the_local_checkout(gcloud, tmp_path):
  checkout = tmp_path / 'checkout'
  (checkout / 'launch').mkdir(parents=True)
  script = str(checkout / 'launch' / 'tpu_vm.sh')
  shutil.copy2(SCRIPT, script)
  git = ['git', '-C', str(checkout), '-c', 'user.name=t', '-c', 'user.email=t@example.com',
         '-c', 'commit.gpgsign=false']
  for args in (['init', '-q'], ['add', '-A'], ['commit', '-q', '-m', 'x'],
               ['remote', 'add', 'origin', URL]):
    subprocess.run(git + args, check=True, capture_output=True)
  head = subprocess.run(git + ['rev-parse', 'HEAD'], check=True, capture_output=True,
                        text=True).stdout.strip()
  proc = launch(gcloud, 'setup', '--name=rt-v4', '--zone=us-central2-b', '--dry_run',
                script=script, cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  [setup] = commands(proc)
  assert f'git clone -q {URL} rt_jax' in remote_script(setup)
  assert f'ref={head};' in remote_script(setup)
  assert 'warning:' in proc.stderr  # the commit is on no remote-tracking branch: not pushed

  subprocess.run(git + ['remote', 'remove', 'origin'], check=True)
  proc = launch(gcloud, 'setup', '--name=rt-v4', '--zone=us-central2-b', '--dry_run',
                script=script, cwd=tmp_path)
  assert proc.returncode == 2
  assert error_lines(proc) == proc.stderr.splitlines() and len(error_lines(proc)) == 1
  assert '--repo' in proc.stderr and proc.stdout == ''


@pytest.mark.parametrize('args, message', [
    (('all', '--zone=us-central2-b', '--accelerator_type=v4-8', f'--repo={URL}', '--ref=x',
      f'--config={CONFIG}', '--workdir=runs/q'), 'needs --name'),
    (('launch', '--name=rt-v4', '--zone=us-central2-b'), 'unknown subcommand launch'),
    (('all', *V4, '--acelerator_type=v4-8'), 'unknown flag --acelerator_type=v4-8'),
    (('--name=rt-v4', '--zone=us-central2-b'), 'no subcommand'),
    (('create', '--name=rt-v4', '--zone=us-central2-b'), 'needs --accelerator_type'),
    (('create', '--name=rt-v4', '--accelerator_type=v4-8'), 'needs --zone'),
    (('run', '--name=rt-v4', '--zone=us-central2-b', '--workdir=runs/q'), 'needs --config'),
    (('create', '--name', 'rt-v4', '--zone=us-central2-b'), '--name needs a value'),
    (('create', '--name=RT_v4', '--zone=us-central2-b', '--accelerator_type=v4-8'), '--name=RT_v4'),
    (('create', '--name=rt-v4', '--zone=us-central2-b', '--accelerator_type=v4'), 'not a TPU type'),
    (('run', *V4[:2], f'--config={CONFIG}', '--workdir=~/runs/q'), "--workdir='~/runs/q'"),
    (('delete', 'create', '--name=rt-v4', '--zone=us-central2-b'), 'unexpected argument create'),
    (('all', *V4, '--spot=yes'), '--spot takes no value'),
])
def test_bad_input_is_one_error_line_and_exit_2_before_any_command(gcloud, args, message):
  proc = launch(gcloud, *args, '--dry_run')
  assert proc.returncode == 2, (proc.stdout, proc.stderr)
  assert proc.stderr.splitlines() == error_lines(proc) and len(error_lines(proc)) == 1
  assert message in proc.stderr
  assert proc.stdout == '' and gcloud.calls() == []
  # Without --dry_run too: nothing reaches gcloud.
  proc = launch(gcloud, *args)
  assert proc.returncode == 2 and gcloud.calls() == []


def test_help_lists_the_subcommands(gcloud):
  proc = launch(gcloud, '--help')
  assert proc.returncode == 0
  assert proc.stdout.startswith('launch/tpu_vm.sh: ')
  for name in ('create', 'setup', 'run', 'tensorboard', 'copy_back', 'delete', 'all', '--dry_run'):
    assert f'  {name} ' in proc.stdout, name
  assert 'gcloud compute tpus tpu-vm versions list' in proc.stdout


def test_without_dry_run_the_printed_commands_are_the_ones_run(gcloud, tmp_path):
  env = dict(gcloud.env, FAKE_GCLOUD_RC='0')
  local = tmp_path / 'back here'
  proc = launch(gcloud, 'copy_back', '--name=rt-v4', '--zone=us-central2-b',
                '--workdir=/abs/run', f'--local_dir={local}', env=env)
  assert proc.returncode == 0, proc.stderr
  printed = [c for c in commands(proc) if c[0] == 'gcloud']
  assert [shlex.split(call) for call in gcloud.calls()] == printed
  assert printed[0][-2:] == ['rt-v4:/abs/run', str(local)]
  assert local.is_dir()


def test_all_stops_at_a_failed_step_and_says_how_to_delete(gcloud):
  env = dict(gcloud.env, FAKE_GCLOUD_RC='5')
  proc = launch(gcloud, 'all', *V4, '--project=p', env=env)
  assert proc.returncode == 5
  assert len(gcloud.calls()) == 1 and step(shlex.split(gcloud.calls()[0])) == 'create'
  last = proc.stderr.splitlines()[-1]
  assert last.startswith('error: create failed (exit 5); the TPU VM rt-v4 may still be up')
  assert last.endswith('delete --name=rt-v4 --zone=us-central2-b --project=p')


def test_a_config_typo_fails_before_any_gcloud_command(gcloud):
  """run and all check the config with this checkout's rt_jax first, on the slice's device count:
  a misspelled key or preset, or batches that do not split over 16 chips, stop at once."""
  cases = (((*V4, '--config.ei.promts=8'), 'ei.promts'),
           ((*V4[:5], '--config=configs/curriculum.py:tinyy', '--workdir=runs/q'),
            "unknown preset 'tinyy'"),
           ((*V5E[:5], f'--config={CONFIG}', '--workdir=runs/q'),
            'do not split over the 16 devices'))
  procs = concurrently(lambda args: launch(gcloud, 'all', *args, '--dry_run', env={
      **gcloud.env, 'RT_JAX_LOCAL_PYTHON': sys.executable}), [args for args, _ in cases])
  for (_, named), proc in zip(cases, procs):
    assert proc.returncode == 2, proc.stderr
    assert len(error_lines(proc)) == 1 and named in error_lines(proc)[0], proc.stderr
    assert proc.stdout == '' and gcloud.calls() == []


def test_queued_creates_and_deletes_through_a_queued_resource(gcloud):
  proc = launch(gcloud, 'all', *V5E, '--queued', '--spot', '--dry_run',
                env={**gcloud.env, 'RT_JAX_LOCAL_PYTHON': sys.executable})
  assert proc.returncode == 0, proc.stderr
  assert 'not checked' not in proc.stderr  # the paper preset passed the check on 16 devices
  cmds = commands(proc)
  assert cmds[0] == ['gcloud', 'compute', 'tpus', 'queued-resources', 'create', 'rt-v5e',
                     '--zone=us-west4-a', '--accelerator-type=v5litepod-16', '--node-id=rt-v5e',
                     '--runtime-version=v2-alpha-tpuv5-lite', '--spot']
  assert cmds[1][:6] == ['gcloud', 'compute', 'tpus', 'queued-resources', 'describe', 'rt-v5e']
  assert 'ACTIVE)' in cmds[1]
  assert cmds[-1] == ['gcloud', 'compute', 'tpus', 'queued-resources', 'delete', 'rt-v5e',
                      '--zone=us-west4-a', '--quiet', '--force']
  assert gcloud.calls() == []
