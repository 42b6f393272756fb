"""Multi-process runs (docs/design.md §7): two processes on this machine, CPU devices, a localhost
coordinator, joined by rt_jax.core.sharding.initialize_distributed. Each runs the same tiny
expert-iteration round (tests/sharded_round.py) on one mesh over both processes' devices; only
process 0 writes TensorBoard."""
import glob
import json
import os
import sys

import pytest

from conftest import CURRICULUM_RUN, curriculum_matrix, run_together
from rt_jax.core import sharding

HERE = os.path.dirname(os.path.abspath(__file__))


def run_processes(spec: dict, workdirs, timeout: float = 900) -> list[dict]:
  """One tests/sharded_round.py worker per workdir; -> their JSON lines."""
  outs = run_together([[sys.executable, os.path.join(HERE, 'sharded_round.py'),
                        json.dumps(dict(spec, workdir=str(workdir)))] for workdir in workdirs],
                      timeout)
  return [json.loads(out.strip().splitlines()[-1]) for out in outs]


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


@pytest.mark.slow
def test_two_processes_get_process_0s_preference_model_without_a_shared_directory(tmp_path):
  """Process 0 trains and writes the run's PM; process 1 (its workdir on another 'disk') gets the
  same weights by broadcast, trained or, on a second start, loaded. A process reads such a
  directory alone, without the other taking part."""
  workdirs = [tmp_path / 'p0', tmp_path / 'p1']
  spec = {'devices': 1, 'meshes': [None], 'job': 'pm'}
  for start in ('trained', 'loaded'):
    first, second = (out['results'][0] for out in run_processes(spec, workdirs, timeout=300))
    assert first['digests'] == second['digests'], start
    assert first['seq_len'] == second['seq_len'] == 48
    assert 0 <= first['heldout_accuracy'] <= 1 and second['heldout_accuracy'] is None
    assert second['read_alone']
    assert (workdirs[0] / 'pm' / 'pm.json').is_file() and not (workdirs[1] / 'pm').exists()


@pytest.mark.slow  # two processes compiling on 2 cores: ~5 min
def test_two_processes_run_the_whole_curriculum_as_one_device_does(curriculum_workdir, tmp_path):
  """`rt_jax.main` as a two-process run (one CPU device each, a (2, 1, 1) mesh over both) in one
  shared workdir: PM, helpful-only start, expert iteration, evaluations and report; the matrix
  equals the one-device run's."""
  workdir = tmp_path / 'w'
  command = [sys.executable, '-m', 'rt_jax.main', '--config=configs/curriculum.py:tiny',
             f'--workdir={workdir}', *CURRICULUM_RUN]
  run_together([command, command], timeout=1500)
  assert curriculum_matrix(workdir) == curriculum_matrix(curriculum_workdir)
  assert (workdir / 'report.md').is_file() and (workdir / 'pm' / 'pm.json').is_file()
  # No temporaries left (.lock is the workdir lock, kept on purpose: a lock file is never deleted).
  assert not [p for p in os.listdir(workdir) if p.startswith('.') and p != '.lock']


def test_incomplete_distributed_environment_is_a_config_error(monkeypatch):
  monkeypatch.setenv(sharding.ENV_COORDINATOR, '127.0.0.1:1')
  monkeypatch.delenv(sharding.ENV_PROCESS_ID, raising=False)
  with pytest.raises(sharding.ConfigError, match='RT_JAX_PROCESS_ID'):
    sharding.initialize_distributed()
