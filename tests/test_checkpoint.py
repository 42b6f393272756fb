import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import REPO
from rt_jax.core import checkpoint
from rt_jax.core import model as model_lib
from rt_jax.core import staging
from rt_jax.core import tokenizer
from rt_jax.core.errors import CheckpointError

TOK = tokenizer.builtin()
# Orbax (0.12.x) writes step N into 'N.orbax-checkpoint-tmp' (items inside as
# 'ITEM.orbax-checkpoint-tmp') and renames it to 'N' when the save is complete.
TMP_SUFFIX = '.orbax-checkpoint-tmp'


def assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert np.shape(x) == np.shape(y)
    assert np.asarray(x).dtype == np.asarray(y).dtype
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope='module')
def cfg():
  return model_lib.preset('tiny')


@pytest.fixture(scope='module')
def params(cfg):
  return model_lib.init_params(cfg, jax.random.key(0))


@pytest.fixture(scope='module')
def optimizer():
  return optax.adamw(1e-3)


@pytest.fixture(scope='module')
def opt_state(params, optimizer):
  # One update so that the moments and the step count are not their initial values.
  state = optimizer.init(params)
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.1), params)
  _, state = optimizer.update(grads, state, params)
  return state


@pytest.fixture(scope='module')
def saved_dir(tmp_path_factory, cfg, params, opt_state):
  """A model directory with model files and one checkpoint at step 3 (do not modify)."""
  directory = str(tmp_path_factory.mktemp('saved') / 'run')
  checkpoint.write_model_files(directory, cfg, TOK)
  mngr = checkpoint.Manager(directory)
  try:
    mngr.save(3, params, opt_state, {'step': 3, 'data_position': 24, 'rng': [0, 42]})
  finally:
    mngr.close()
  return directory


def copy_of(saved_dir, tmp_path):
  dst = str(tmp_path / 'copy')
  shutil.copytree(saved_dir, dst)
  return dst


# Model files.


def test_model_files_round_trip(tmp_path, cfg):
  directory = str(tmp_path / 'model')
  checkpoint.write_model_files(directory, cfg, TOK)
  with open(os.path.join(directory, 'model_config.json')) as f:
    assert json.load(f) == dataclasses.asdict(cfg)
  got_cfg, tok = checkpoint.read_model_files(directory)
  assert got_cfg == cfg
  assert tok.spec == TOK.spec and tok.vocab_size == 259
  # Writing the same model again (a resumed run) is fine.
  checkpoint.write_model_files(directory, cfg, TOK)


def test_model_files_round_trip_non_default_fields(tmp_path, cfg):
  other = dataclasses.replace(cfg, rope_base=5e5, tie_embeddings=False, qkv_bias=True,
                              dtype='bfloat16', norm_eps=1e-6)
  directory = str(tmp_path / 'model')
  checkpoint.write_model_files(directory, other, TOK)
  assert checkpoint.read_model_files(directory)[0] == other


def test_model_files_mismatch(tmp_path, cfg):
  directory = str(tmp_path / 'model')
  checkpoint.write_model_files(directory, cfg, TOK)
  path = os.path.join(directory, 'model_config.json')
  with open(path, 'rb') as f:
    before = f.read()
  changed = dataclasses.replace(cfg, d_model=128)
  with pytest.raises(CheckpointError, match='d_model') as info:
    checkpoint.write_model_files(directory, changed, TOK)
  assert 'n_layers' not in str(info.value)
  with open(path, 'rb') as f:
    assert f.read() == before
  with pytest.raises(CheckpointError, match='tokenizer'):
    checkpoint.write_model_files(directory, cfg,
                                 dataclasses.replace(TOK, spec={'kind': 'other'}))
  assert checkpoint.read_model_files(directory)[0] == cfg


# Manager.


def test_manager_round_trip(tmp_path, params, opt_state, optimizer):
  directory = str(tmp_path / 'run')
  meta = {'step': 7, 'data_position': 56, 'rng': [1, 2], 'note': 'x'}
  mngr = checkpoint.Manager(directory)
  try:
    assert mngr.latest_step() is None
    mngr.save(7, params, opt_state, meta)
    assert mngr.latest_step() == 7
  finally:
    mngr.close()

  abstract_params = jax.eval_shape(lambda: params)
  abstract_opt = jax.eval_shape(optimizer.init, params)
  mngr = checkpoint.Manager(directory, read_only=True)
  try:
    assert mngr.latest_step() == 7
    got_params, got_opt, got_meta = mngr.restore(7, abstract_params, abstract_opt)
    assert_trees_equal(got_params, params)
    assert_trees_equal(got_opt, opt_state)
    assert got_meta == meta
    # Without an abstract optimizer state, only params and meta come back.
    got_params2, got_opt2, got_meta2 = mngr.restore(7, abstract_params)
    assert got_opt2 is None
    assert_trees_equal(got_params2, params)
    assert got_meta2 == meta
  finally:
    mngr.close()


def test_manager_latest_step_after_several_saves(tmp_path, params, opt_state):
  directory = str(tmp_path / 'run')
  small = {'w': jnp.arange(4.0)}
  mngr = checkpoint.Manager(directory, max_to_keep=2)
  try:
    for step in (1, 5, 9):
      mngr.save(step, {'w': small['w'] * step}, {'count': jnp.int32(step)}, {'step': step})
    assert mngr.latest_step() == 9
  finally:
    mngr.close()
  assert sorted(os.listdir(os.path.join(directory, 'checkpoints'))) == ['5', '9']
  mngr = checkpoint.Manager(directory, read_only=True)
  try:
    got, _, meta = mngr.restore(5, jax.eval_shape(lambda: small))
    np.testing.assert_array_equal(got['w'], np.arange(4.0) * 5)
    assert meta == {'step': 5}
  finally:
    mngr.close()


def test_read_only_manager_on_missing_checkpoints(tmp_path):
  with pytest.raises(CheckpointError, match=str(tmp_path)):
    checkpoint.Manager(str(tmp_path), read_only=True)
  assert not os.path.exists(tmp_path / 'checkpoints')


# load_model.


def test_load_model(saved_dir, cfg, params):
  got_cfg, tok, got_params = checkpoint.load_model(saved_dir)
  assert got_cfg == cfg
  assert tok.spec == TOK.spec and tok.encode('hi') == [104, 105]
  assert_trees_equal(got_params, params)
  # Explicit step.
  assert_trees_equal(checkpoint.load_model(saved_dir, step=3)[2], params)


def test_load_model_missing_dir(tmp_path):
  missing = str(tmp_path / 'nope')
  with pytest.raises(CheckpointError, match=missing):
    checkpoint.load_model(missing)


def test_load_model_without_model_config(tmp_path):
  directory = tmp_path / 'empty'
  directory.mkdir()
  with pytest.raises(CheckpointError, match=str(directory)):
    checkpoint.load_model(str(directory))


def test_load_model_without_checkpoints(tmp_path, cfg):
  directory = str(tmp_path / 'model')
  checkpoint.write_model_files(directory, cfg, TOK)
  with pytest.raises(CheckpointError, match=directory):
    checkpoint.load_model(directory)
  # An empty checkpoints directory is no better.
  os.makedirs(os.path.join(directory, 'checkpoints'))
  with pytest.raises(CheckpointError, match=directory):
    checkpoint.load_model(directory)


def test_load_model_missing_step(saved_dir):
  with pytest.raises(CheckpointError, match=saved_dir):
    checkpoint.load_model(saved_dir, step=4)


@pytest.mark.parametrize('damage', ['garbage', 'truncate'])
def test_load_model_corrupted_params(saved_dir, tmp_path, damage):
  directory = copy_of(saved_dir, tmp_path)
  params_dir = os.path.join(directory, 'checkpoints', '3', 'params')
  n = 0
  for root, _, files in os.walk(params_dir):
    for name in files:
      with open(os.path.join(root, name), 'wb') as f:
        f.write(b'\xff\x00not a checkpoint\x13\x37' * 5 if damage == 'garbage' else b'')
      n += 1
  assert n > 3
  with pytest.raises(CheckpointError, match=directory) as e:
    checkpoint.load_model(directory)
  assert '\n' not in str(e.value)  # one `error:` line, not Orbax's whole report


def test_load_model_config_does_not_match_params(saved_dir, tmp_path):
  directory = copy_of(saved_dir, tmp_path)
  path = os.path.join(directory, 'model_config.json')
  with open(path) as f:
    fields = json.load(f)
  fields['n_layers'] = 2
  with open(path, 'w') as f:
    json.dump(fields, f)
  with pytest.raises(CheckpointError, match=directory):
    checkpoint.load_model(directory)


def test_load_model_invalid_model_config(saved_dir, tmp_path):
  directory = copy_of(saved_dir, tmp_path)
  path = os.path.join(directory, 'model_config.json')
  with open(path, 'w') as f:
    f.write('{"vocab_size": 3')
  with pytest.raises(CheckpointError, match=directory):
    checkpoint.load_model(directory)
  with open(path, 'w') as f:
    json.dump({'vocab_size': 3, 'unknown_field': 1}, f)
  with pytest.raises(CheckpointError, match=directory):
    checkpoint.load_model(directory)


@pytest.mark.parametrize('spec', [{'kind': 'no-such-kind'}, ['builtin']])
def test_load_model_invalid_tokenizer_json(saved_dir, tmp_path, spec):
  # CheckpointError's contract: a model directory that is unreadable. A bad tokenizer.json
  # must be reported like a bad model_config.json, naming the place.
  directory = copy_of(saved_dir, tmp_path)
  with open(os.path.join(directory, 'tokenizer.json'), 'w') as f:
    json.dump(spec, f)
  with pytest.raises(CheckpointError, match=directory):
    checkpoint.load_model(directory)


def test_uncommitted_save_is_ignored(saved_dir, tmp_path, params):
  directory = copy_of(saved_dir, tmp_path)
  ckpts = os.path.join(directory, 'checkpoints')
  # What a save of step 4 killed before its final rename leaves behind.
  tmp = os.path.join(ckpts, '4' + TMP_SUFFIX)
  shutil.copytree(os.path.join(ckpts, '3'), tmp)
  for item in ('params', 'opt_state', 'meta'):
    os.rename(os.path.join(tmp, item), os.path.join(tmp, item + TMP_SUFFIX))
  for root, _, files in os.walk(tmp):
    for name in files:
      if name == 'commit_success.txt':
        os.remove(os.path.join(root, name))

  reader = checkpoint.Manager(directory, read_only=True)
  try:
    assert reader.latest_step() == 3
  finally:
    reader.close()
  assert os.path.isdir(tmp)  # readers never delete anything
  _, _, got = checkpoint.load_model(directory)
  assert_trees_equal(got, params)
  writer = checkpoint.Manager(directory)
  try:
    assert writer.latest_step() == 3
  finally:
    writer.close()


def test_uncommitted_first_save_means_no_checkpoint(tmp_path, cfg):
  directory = str(tmp_path / 'run')
  checkpoint.write_model_files(directory, cfg, TOK)
  os.makedirs(os.path.join(directory, 'checkpoints', '1' + TMP_SUFFIX, 'params' + TMP_SUFFIX))
  with pytest.raises(CheckpointError, match='no complete checkpoint'):
    checkpoint.load_model(directory)


def test_restore_rejects_shapes_other_than_asked(saved_dir, params, opt_state):
  """Wrong shapes are a CheckpointError: Orbax itself refuses them for jax arrays, and Manager
  checks the numpy-saved trees that Orbax restores as saved."""
  wider = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[:-1] + (x.shape[-1] + 1,), x.dtype),
                       params)
  mngr = checkpoint.Manager(saved_dir, read_only=True)
  try:
    with pytest.raises(CheckpointError, match='shape'):
      mngr.restore(3, wider)
    restored, _, _ = mngr.restore(3, jax.eval_shape(lambda: params))
    assert_trees_equal(restored, params)
  finally:
    mngr.close()


def test_numpy_saved_tree_with_other_shapes_is_refused(tmp_path):
  mngr = checkpoint.Manager(str(tmp_path))
  mngr.save(1, {'w': np.ones((3, 4), np.float32)}, {'count': np.zeros(2)}, {'step': 1})
  mngr.close()
  mngr = checkpoint.Manager(str(tmp_path), read_only=True)
  try:
    with pytest.raises(CheckpointError, match='shapes do not match'):
      mngr.restore(1, {'w': jax.ShapeDtypeStruct((5, 4), jnp.float32)})
  finally:
    mngr.close()


def test_directory_written_whole_or_not_at_all(tmp_path):
  target = tmp_path / 'model'
  with pytest.raises(KeyboardInterrupt):  # killed mid-way: nothing left, not even the temporary
    with staging.directory_written_whole(str(target), replace=False) as tmp:
      (pathlib.Path(tmp) / 'half').write_text('x')
      raise KeyboardInterrupt
  assert os.listdir(tmp_path) == []
  target.mkdir()  # an empty directory is taken over
  with staging.directory_written_whole(str(target), replace=False) as tmp:
    (pathlib.Path(tmp) / 'mine').write_text('first')
  # Another writer that finishes second keeps the first one's directory and is told so.
  with pytest.raises(CheckpointError, match='another process'):
    with staging.directory_written_whole(str(target), replace=False) as tmp:
      (pathlib.Path(tmp) / 'mine').write_text('second')
  assert (target / 'mine').read_text() == 'first' and os.listdir(tmp_path) == ['model']
  with staging.directory_written_whole(str(target), replace=True) as tmp:
    (pathlib.Path(tmp) / 'mine').write_text('third')
  assert (target / 'mine').read_text() == 'third' and os.listdir(tmp_path) == ['model']


def test_a_process_other_than_0_reads_but_never_writes_alone(saved_dir, params, tmp_path,
                                                             monkeypatch):
  monkeypatch.setattr(jax, 'process_index', lambda: 1)
  with pytest.raises(CheckpointError, match='process 1 cannot write'):
    checkpoint.Manager(str(tmp_path), this_process_only=True)
  assert not (tmp_path / 'checkpoints').exists()
  mngr = checkpoint.Manager(saved_dir, read_only=True, this_process_only=True)
  try:
    restored, _, _ = mngr.restore(3, jax.eval_shape(lambda: params))
  finally:
    mngr.close()
  assert_trees_equal(restored, params)


def _make_unwritable(path) -> bool:
  """Makes directory `path` refuse new entries, as a full or read-only disk would: mode 0o555 for
  a user, the immutable attribute for root (whom modes do not stop). False where neither works."""
  if os.geteuid() != 0:
    os.chmod(path, 0o555)
    return True
  return subprocess.run(['chattr', '+i', str(path)], capture_output=True).returncode == 0 \
      if shutil.which('chattr') else False


def _make_writable(path):
  if os.geteuid() == 0:
    subprocess.run(['chattr', '-i', str(path)], capture_output=True)
  else:
    os.chmod(path, 0o755)


def test_an_unwritable_checkpoint_directory_is_refused_when_the_manager_opens(tmp_path):
  target = tmp_path / 'run' / 'checkpoints'
  target.mkdir(parents=True)
  if not _make_unwritable(target):
    pytest.skip('cannot make a directory unwritable here (root without chattr)')
  try:
    with pytest.raises(CheckpointError, match='checkpoints is not writable'):
      checkpoint.Manager(str(tmp_path / 'run'))
    checkpoint.Manager(str(tmp_path / 'run'), read_only=True).close()  # reading needs no writes
  finally:
    _make_writable(target)
  checkpoint.Manager(str(tmp_path / 'run')).close()  # and writable again, it opens
  assert os.listdir(target) == []  # the probe left nothing behind


_SAVE_INTO_UNWRITABLE = '''
import sys
sys.path[:0] = [{repo!r}, {tests!r}]
import jax.numpy as jnp
from rt_jax.core import checkpoint, cli
from test_checkpoint import _make_unwritable

def main(argv):
  mngr = checkpoint.Manager({directory!r})
  try:
    assert _make_unwritable({directory!r} + '/checkpoints')
    mngr.save(1, {{'w': jnp.ones(3)}}, None, {{'step': 1}})
    mngr.wait()
  finally:
    mngr.close()

cli.run(main)
'''


def test_a_save_that_cannot_write_is_one_error_and_the_process_exits(tmp_path):
  """The directory becomes unwritable after the manager opened: the save's failure in Orbax's
  background thread surfaces as one `error:` line naming the place, and the process exits
  (Orbax's waiting thread had kept the interpreter from ever exiting)."""
  probe = tmp_path / 'probe'
  probe.mkdir()
  if not _make_unwritable(probe):
    pytest.skip('cannot make a directory unwritable here (root without chattr)')
  _make_writable(probe)
  directory = str(tmp_path / 'run')
  script = tmp_path / 'save.py'
  script.write_text(_SAVE_INTO_UNWRITABLE.format(
      repo=REPO, tests=os.path.dirname(os.path.abspath(__file__)), directory=directory))
  try:
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
  finally:
    _make_writable(os.path.join(directory, 'checkpoints'))
  errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
  assert proc.returncode == 1, proc.stderr
  assert len(errors) == 1 and 'saving a checkpoint in' in errors[0], proc.stderr
  assert directory in errors[0]


def test_orbax_wait_warning_is_dropped_and_other_warnings_are_not(caplog):
  from absl import logging as absl_logging
  with caplog.at_level('WARNING'):
    absl_logging.warning('Waiting for previous save to complete took 5.6 seconds. If this number '
                         'is high, consider checkpointing less frequently.')
    absl_logging.warning('another warning')
  assert [r.getMessage() for r in caplog.records] == ['another warning']
