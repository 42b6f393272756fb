"""Damaged checkpoints and model directories, and temporaries left by killed processes.

Each damage test plants one kind of damage and checks that it is caught, and checks the same
directory undamaged reports nothing, so a check that stopped looking would fail here."""
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import pytest

from conftest import REPO, error_lines, run_module
from rt_jax.core import checkpoint
from rt_jax.core import model as model_lib
from rt_jax.core import staging
from rt_jax.core import tokenizer
from rt_jax.core.errors import CheckpointError, UserError

TOK = tokenizer.builtin()
# Small enough to save in milliseconds, large enough that its biggest data file exceeds 4 KB.
CFG = dataclasses.replace(model_lib.preset('tiny'), d_model=64, n_layers=1, n_heads=2,
                          n_kv_heads=1, head_dim=32, mlp_dim=128)
STEPS = (1, 2, 3)


def params_at(step: int):
  return model_lib.init_params(CFG, jax.random.key(step))


def opt_state_at(step: int):
  return {'count': np.full((), step, np.int32), 'mu': np.full((8, 8), step, np.float32)}


def abstract_opt_state():
  return jax.eval_shape(lambda: opt_state_at(0))


def assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope='module')
def saved_run(tmp_path_factory):
  """A workdir with model files and checkpoints 1, 2, 3 (copy it before damaging it)."""
  directory = str(tmp_path_factory.mktemp('run') / 'run')
  checkpoint.write_model_files(directory, CFG, TOK)
  mngr = checkpoint.Manager(directory, max_to_keep=None)
  try:
    for step in STEPS:
      mngr.save(step, params_at(step), opt_state_at(step), {'step': step})
  finally:
    mngr.close()
  return directory


@pytest.fixture
def run_dir(saved_run, tmp_path):
  directory = str(tmp_path / 'run')
  shutil.copytree(saved_run, directory)
  return directory


def largest_file(directory: str) -> str:
  files = [os.path.join(root, name) for root, _, names in os.walk(directory) for name in names]
  return max(files, key=os.path.getsize)


def damage(path: str, how: str):
  """flip_4k / flip_64: that many bytes inverted in the middle of the file; truncate: its second
  half cut off."""
  with open(path, 'rb') as f:
    data = bytearray(f.read())
  if how == 'truncate':
    data = data[:len(data) // 2]
  else:
    n = {'flip_4k': 4096, 'flip_64': 64}[how]
    assert len(data) > n, f'{path} is too small to flip {n} bytes'
    at = (len(data) - n) // 2
    data[at:at + n] = bytes(b ^ 0xFF for b in data[at:at + n])
  with open(path, 'wb') as f:
    f.write(bytes(data))


def params_file(directory: str, step: int) -> str:
  return largest_file(os.path.join(directory, 'checkpoints', str(step), 'params'))


def console_lines(capsys) -> list[str]:
  return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


# Checksums are written with each step.


def test_every_file_of_a_step_has_its_checksum(run_dir):
  step_dir = os.path.join(run_dir, 'checkpoints', '3')
  with open(os.path.join(step_dir, checkpoint.CHECKSUMS)) as f:
    record = json.load(f)
  files = {os.path.relpath(os.path.join(root, name), step_dir)
           for root, _, names in os.walk(step_dir) for name in names}
  assert set(record['files']) == files - {checkpoint.CHECKSUMS, '_CHECKPOINT_METADATA',
                                          'commit_success.txt'}
  assert any(name.startswith('params/') for name in record['files'])
  assert any(name.startswith('opt_state/') for name in record['files'])


def test_checksums_arrive_with_the_step(tmp_path):
  """Written by Orbax's hook before the rename that completes the step, not by wait() or
  close() afterwards: a kill right after a step is complete leaves no step without checksums."""
  mngr = checkpoint.Manager(str(tmp_path))
  try:
    mngr.save(1, {'w': np.ones((4, 4), np.float32)}, None, {'step': 1})
    mngr._mngr.wait_until_finished()  # Orbax's wait alone, without Manager.wait's own step
    assert checkpoint.has_checksums(str(tmp_path / 'checkpoints' / '1'))
  finally:
    mngr.close()


# Resume falls back from a corrupt latest step.


@pytest.mark.parametrize('how', ['flip_4k', 'flip_64', 'truncate'])
def test_latest_intact_step_falls_back_from_a_damaged_latest_step(run_dir, how, capsys):
  damage(params_file(run_dir, 3), how)
  mngr = checkpoint.Manager(run_dir, max_to_keep=None)
  try:
    capsys.readouterr()
    assert mngr.latest_intact_step() == 2
    (line,) = console_lines(capsys)
    assert 'checkpoint 3 ' in line and 'using step 2' in line and 'corrupt' in line
    assert mngr.latest_step() == 2  # set aside, so a resumed run can save step 3 again
    params, opt_state, meta = mngr.restore(2, model_lib.abstract_params(CFG),
                                           abstract_opt_state())
    assert_trees_equal(params, params_at(2))
    assert meta == {'step': 2}
    mngr.save(3, params_at(30), opt_state_at(30), {'step': 3})
    mngr.wait()
    assert mngr.latest_intact_step() == 3 and not console_lines(capsys)
  finally:
    mngr.close()
  assert os.listdir(os.path.join(run_dir, checkpoint.SET_ASIDE))[0].startswith('3.')


def test_an_intact_latest_step_is_used_and_nothing_is_said(run_dir, capsys):
  mngr = checkpoint.Manager(run_dir, max_to_keep=None)
  try:
    capsys.readouterr()
    assert mngr.latest_intact_step() == 3
    step, params, opt_state, meta = mngr.restore_latest_intact(model_lib.abstract_params(CFG),
                                                               abstract_opt_state())
  finally:
    mngr.close()
  assert step == 3 and meta == {'step': 3}
  assert_trees_equal(params, params_at(3))
  assert_trees_equal(opt_state, opt_state_at(3))
  assert not console_lines(capsys)
  assert not os.path.exists(os.path.join(run_dir, checkpoint.SET_ASIDE))


@pytest.mark.parametrize('how', ['flip_4k', 'truncate'])
def test_restore_latest_intact_skips_every_damaged_step(run_dir, how, capsys):
  damage(params_file(run_dir, 3), how)
  opt_state_file = largest_file(os.path.join(run_dir, 'checkpoints', '2', 'opt_state'))
  damage(opt_state_file, 'flip_64' if how == 'flip_4k' else how)  # a small file
  mngr = checkpoint.Manager(run_dir, max_to_keep=None)
  try:
    capsys.readouterr()
    step, params, _, meta = mngr.restore_latest_intact(model_lib.abstract_params(CFG),
                                                       abstract_opt_state())
  finally:
    mngr.close()
  assert step == 1 and meta == {'step': 1}
  assert_trees_equal(params, params_at(1))
  (line,) = console_lines(capsys)
  assert 'checkpoints 3, 2 ' in line and 'using step 1' in line


def test_a_step_without_checksums_that_orbax_cannot_read_is_skipped(run_dir, capsys):
  """A step saved before checksums were recorded is read unverified (and said so); if Orbax
  cannot read it, it counts as corrupt."""
  step_dir = os.path.join(run_dir, 'checkpoints', '3')
  os.remove(os.path.join(step_dir, checkpoint.CHECKSUMS))
  mngr = checkpoint.Manager(run_dir, max_to_keep=None)
  try:
    capsys.readouterr()
    assert mngr.latest_intact_step() == 3  # nothing to compare: taken as it is
    _, _, meta = mngr.restore(3, model_lib.abstract_params(CFG), abstract_opt_state())
    assert meta == {'step': 3}
    assert 'no checksums' in console_lines(capsys)[0]
    for root, _, names in os.walk(os.path.join(step_dir, 'params')):
      for name in names:
        with open(os.path.join(root, name), 'wb') as f:
          f.write(b'')
    step, _, _, _ = mngr.restore_latest_intact(model_lib.abstract_params(CFG),
                                               abstract_opt_state())
    assert step == 2
    lines = console_lines(capsys)
    assert len(lines) == 1 and 'checkpoint 3 ' in lines[0] and 'using step 2' in lines[0]
  finally:
    mngr.close()


def test_no_intact_step_is_one_error_line_naming_the_directory(run_dir):
  for step in STEPS:
    damage(params_file(run_dir, step), 'flip_64')
  mngr = checkpoint.Manager(run_dir, max_to_keep=None)
  try:
    for call in (mngr.latest_intact_step,
                 lambda: mngr.restore_latest_intact(model_lib.abstract_params(CFG))):
      with pytest.raises(CheckpointError, match='no intact checkpoint') as e:
        call()
      message = str(e.value)
      assert '\n' not in message and os.path.join(run_dir, 'checkpoints') in message
      assert all(f'step {step}:' in message for step in STEPS)
    assert mngr.all_steps() == list(STEPS)  # nothing moved: nothing better to use
  finally:
    mngr.close()


def test_restoring_a_named_damaged_step_is_refused(run_dir):
  damage(params_file(run_dir, 2), 'flip_64')
  mngr = checkpoint.Manager(run_dir, read_only=True)
  try:
    with pytest.raises(checkpoint.CorruptCheckpointError, match='checkpoints/2 is corrupt'):
      mngr.restore(2, model_lib.abstract_params(CFG))
    mngr.restore(3, model_lib.abstract_params(CFG))  # the other steps are unaffected
  finally:
    mngr.close()


def test_a_damaged_checksum_record_is_corruption(run_dir):
  with open(os.path.join(run_dir, 'checkpoints', '3', checkpoint.CHECKSUMS), 'r+b') as f:
    f.write(b'\x00\x01')
  mngr = checkpoint.Manager(run_dir, max_to_keep=None)
  try:
    assert mngr.latest_intact_step() == 2
  finally:
    mngr.close()


# load_model (rt_jax.sample, bench, init_from) refuses a corrupt directory.


@pytest.mark.parametrize('how', ['flip_4k', 'flip_64', 'truncate'])
def test_load_model_refuses_damaged_weights(run_dir, how):
  checkpoint.load_model(run_dir)  # undamaged: loads
  damage(params_file(run_dir, 3), how)
  with pytest.raises(checkpoint.CorruptCheckpointError, match=run_dir) as e:
    checkpoint.load_model(run_dir)
  assert isinstance(e.value, UserError) and '\n' not in str(e.value)
  assert checkpoint.load_model(run_dir, step=2)[2] is not None  # an intact step can be named


@pytest.fixture
def whole_dir(tmp_path):
  """A model directory as rt_jax.convert writes one: written whole, with checksums of its model
  files beside those of its step."""
  out = str(tmp_path / 'model')
  with staging.directory_written_whole(out, replace=False) as tmp:
    mngr = checkpoint.Manager(tmp, this_process_only=True)
    try:
      mngr.save(0, params_at(0), None, {'step': 0})
    finally:
      mngr.close()
    checkpoint.write_model_files(tmp, CFG, TOK)
  return out


def test_a_directory_written_whole_checks_its_model_files(whole_dir):
  with open(os.path.join(whole_dir, checkpoint.CHECKSUMS)) as f:
    assert set(json.load(f)['files']) == {'model_config.json', 'tokenizer.json'}
  checkpoint.load_model(whole_dir)
  path = os.path.join(whole_dir, 'tokenizer.json')
  with open(path) as f:
    text = f.read()
  with open(path, 'w') as f:
    f.write(text.replace('builtin', 'builtim'))
  with pytest.raises(checkpoint.CorruptCheckpointError, match='tokenizer.json'):
    checkpoint.load_model(whole_dir)


def test_sample_cli_refuses_flipped_weights_with_one_line(whole_dir):
  args = (f'--checkpoint={whole_dir}', '--prompt=hi', '--max_new_tokens=2')
  proc = run_module('rt_jax.sample', *args)
  assert proc.returncode == 0, proc.stderr[-2000:]
  damage(params_file(whole_dir, 0), 'flip_64')
  proc = run_module('rt_jax.sample', *args)
  assert proc.returncode == 1
  (line,) = error_lines(proc)
  assert 'corrupt' in line and whole_dir in line
  assert 'Traceback' not in proc.stderr and not proc.stdout.strip()


# Temporaries of killed processes.

_WRITER = """
import sys, time
from rt_jax.core import staging
with staging.directory_written_whole(sys.argv[1], replace=True) as tmp:
  open(tmp + '/half', 'w').close()
  print(tmp, flush=True)
  time.sleep(600)
"""


def start_writer(target: str) -> tuple[subprocess.Popen, str]:
  proc = subprocess.Popen([sys.executable, '-c', _WRITER, target], cwd=REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          env={**os.environ, 'PYTHONPATH': REPO})
  return proc, proc.stdout.readline().strip()


def test_a_killed_writers_temporary_goes_and_a_live_ones_stays(tmp_path):
  killed, killed_tmp = start_writer(str(tmp_path / 'pm'))
  live, live_tmp = start_writer(str(tmp_path / 'other'))
  try:
    assert os.path.isdir(killed_tmp) and os.path.isdir(live_tmp)
    assert staging.remove_stale_temporaries(str(tmp_path), audit_homes=False) == []
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert os.path.isdir(killed_tmp)  # a kill leaves it ...
    removed = staging.remove_stale_temporaries(str(tmp_path), audit_homes=False)
    assert removed == [killed_tmp]  # ... and the next run removes it
    assert not os.path.exists(killed_tmp) and os.path.isdir(live_tmp)
  finally:
    for proc in (killed, live):
      proc.kill()
      proc.wait()


def test_directory_written_whole_removes_killed_siblings(tmp_path):
  name = f'.pm.tmp-{staging._host_tag()}'
  reused = tmp_path / f'{name}.{os.getpid()}.1-abcd1234'  # this pid, another start: reused
  unmarked_old, unmarked_new = tmp_path / '.pm.tmp-x1y2z3w4', tmp_path / '.cache.tmp-q1w2e3r4'
  mine = tmp_path / f'.pm.tmp-{staging._owner_tag()}-abcd1234'  # this live process's
  unrelated = tmp_path / '.pm.tmp-notmine'  # not a name mkdtemp makes
  for path in (reused, unmarked_old, unmarked_new, mine, unrelated):
    path.mkdir()
  old = time.time() - 2 * 3600
  os.utime(unmarked_old, (old, old))
  with staging.directory_written_whole(str(tmp_path / 'pm'), replace=False) as tmp:
    assert not reused.exists() and not unmarked_old.exists()
    assert unmarked_new.exists() and mine.exists() and unrelated.exists()
    open(os.path.join(tmp, 'done'), 'w').close()
  assert (tmp_path / 'pm' / 'done').exists()


def test_a_killed_replace_is_put_back(tmp_path):
  """Killed between moving the old directory aside and moving the new one in: the old one is
  complete and nothing stands in its place, so it is restored rather than deleted."""
  aside = tmp_path / f'.pm.old-{staging._host_tag()}.{_a_gone_pid()}.1-abcd1234'
  (aside / 'pm').mkdir(parents=True)
  (aside / 'pm' / 'pm.json').write_text('{}')
  staging.remove_stale_temporaries(str(tmp_path), audit_homes=False)
  assert (tmp_path / 'pm' / 'pm.json').read_text() == '{}' and not aside.exists()


def test_audit_homes_of_gone_processes_are_removed(tmp_path, monkeypatch):
  monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
  gone = _a_gone_pid()
  old = time.time() - 600
  homes = {
      'gone_old': f'rt_audit_{gone}_abcd1234',  # removed
      'gone_fresh': f'rt_audit_{gone}_efgh5678',  # kept: may be another pid namespace's, running
      'live_old': f'rt_audit_{os.getpid()}_ijkl9012',  # kept: its auditor runs
      'unmarked_old': 'rt_audit_mnop3456',  # older code, older than an hour: removed
      'test_fixture': 'rt_audit_test_qrstuvwx',  # not an audit home: kept
  }
  for key, name in homes.items():
    path = tmp_path / name
    (path / 'rl_environment').mkdir(parents=True)
    os.chmod(path / 'rl_environment', 0o555)  # as an audit leaves it
    os.chmod(path, 0o555)
    if key != 'gone_fresh':
      then = old - 3600 if key == 'unmarked_old' else old
      os.utime(path, (then, then))
  removed = staging.remove_stale_temporaries(str(tmp_path / 'workdir'))
  assert sorted(removed) == sorted(str(tmp_path / homes[k]) for k in ('gone_old', 'unmarked_old'))
  assert sorted(os.listdir(tmp_path)) == sorted(
      homes[k] for k in ('gone_fresh', 'live_old', 'test_fixture'))
  for name in os.listdir(tmp_path):
    os.chmod(tmp_path / name, 0o700)
    os.chmod(tmp_path / name / 'rl_environment', 0o700)


def _a_gone_pid() -> int:
  proc = subprocess.Popen(['true'])
  proc.wait()
  return proc.pid
