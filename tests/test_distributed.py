"""Multi-process runs (DESIGN.md §7): two processes on this machine, CPU devices, a localhost
coordinator, joined by rt_jax.sharding.initialize_distributed. Each runs the same tiny
expert-iteration round (tests/sharded_round.py) on one mesh over both processes' devices; only
process 0 writes TensorBoard."""
import glob
import json
import os
import socket
import subprocess
import sys

import pytest

from rt_jax import sharding

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def run_processes(spec: dict, workdirs, timeout: float = 900) -> list[dict]:
  """Starts one worker per workdir with the RT_JAX_* variables; -> their JSON lines."""
  env = dict(os.environ, **{sharding.ENV_COORDINATOR: f'127.0.0.1:{_free_port()}',
                            sharding.ENV_NUM_PROCESSES: str(len(workdirs))})
  procs = [subprocess.Popen(
      [sys.executable, os.path.join(HERE, 'sharded_round.py'),
       json.dumps(dict(spec, workdir=str(workdir)))],
      env=dict(env, **{sharding.ENV_PROCESS_ID: str(i)}), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for i, workdir in enumerate(workdirs)]
  outs = []
  try:
    for proc in procs:
      stdout, stderr = proc.communicate(timeout=timeout)
      assert proc.returncode == 0, stderr[-3000:]
      outs.append(json.loads(stdout.strip().splitlines()[-1]))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  return outs


@pytest.mark.slow
def test_two_processes_complete_an_ei_round_and_only_process_0_writes(tmp_path):
  workdirs = [tmp_path / 'p0', tmp_path / 'p1']
  outs = run_processes({'devices': 2, 'meshes': [[-1, 1, 1]], 'job': 'round'}, workdirs)
  assert [o['process'] for o in outs] == [0, 1]
  assert all(o['devices'] == 4 for o in outs)  # one mesh over both processes' devices
  first, second = (o['results'][0] for o in outs)
  assert first['kept'] > 0
  for field in ('rows', 'weights', 'lengths', 'tokens_sum', 'loss'):
    assert first[field] == second[field], field  # every process sees the whole round
  assert glob.glob(str(workdirs[0] / 'tb' / 'events.out.tfevents.*'))
  assert not os.path.exists(workdirs[1] / 'tb')


@pytest.mark.slow
def test_two_processes_place_one_mesh(tmp_path):
  """Cheap: the mesh spans both processes and each holds its own shards."""
  outs = run_processes({'devices': 2, 'meshes': [[2, 1, 2]], 'job': 'params'},
                       [tmp_path / 'p0', tmp_path / 'p1'], timeout=300)
  for out in outs:
    result = out['results'][0]
    assert out['devices'] == 4 and result['specs'] == result['rules']
    assert result['shard_shapes']["['embedding']"] == [192, 256]


@pytest.mark.slow
def test_two_processes_save_one_sharded_checkpoint_that_restores_on_other_meshes(tmp_path):
  """Both processes write their shards into one checkpoint directory (on a (1, 2, 2) mesh the
  fsdp axis spans the processes, so neither holds every parameter whole); both read it back on
  two other meshes, bit for bit."""
  both = [tmp_path, tmp_path]
  saved = run_processes({'devices': 2, 'meshes': [[1, 2, 2]], 'job': 'save'}, both, timeout=300)
  first, second = (out['results'][0] for out in saved)
  assert not first['holds_every_parameter'] and not second['holds_every_parameter']
  assert first['digests'] == second['digests']
  restored = run_processes({'devices': 2, 'meshes': [[4, 1, 1], [2, 1, 2]], 'job': 'restore'},
                           both, timeout=300)
  for out in restored:
    for result in out['results']:
      assert result['digests'] == first['digests']
      assert result['specs'] == result['rules']  # in the target mesh's shardings


def test_incomplete_distributed_environment_is_a_config_error(monkeypatch):
  monkeypatch.setenv(sharding.ENV_COORDINATOR, '127.0.0.1:1')
  monkeypatch.delenv(sharding.ENV_PROCESS_ID, raising=False)
  with pytest.raises(sharding.ConfigError, match='RT_JAX_PROCESS_ID'):
    sharding.initialize_distributed()
