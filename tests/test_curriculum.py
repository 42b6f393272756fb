"""The curriculum job as a user runs it: `python -m rt_jax.main --config=configs/curriculum.py:...`.

The end-to-end runs are `slow` (each is a minute or two on 2 cores); CI runs them in its second
step."""
import signal
import subprocess
import sys

import pytest

from conftest import (CURRICULUM_RUN, REPO, concurrently, cpu_devices_env, curriculum_matrix,
                      error_lines, run_curriculum)


def _kill_after_first_round(workdir, *overrides: str, env=None):
  """Starts the cut-down tiny curriculum and SIGKILLs it right after the first round of its first
  stage (mid-stage: the stage has two rounds)."""
  cmd = [sys.executable, '-m', 'rt_jax.main', '--config=configs/curriculum.py:tiny',
         f'--workdir={workdir}', *CURRICULUM_RUN, *overrides]
  proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True, env=env)
  try:
    for line in proc.stderr:
      if 'political_sycophancy round 1/2' in line:
        proc.send_signal(signal.SIGKILL)
        break
  finally:
    proc.wait(timeout=60)
  assert proc.returncode == -signal.SIGKILL


BAD_VALUES = [
    ('--config.ei.variant=best_of_n', 'ei.variant'),
    ("--config.stages=('reward_tampering',)", 'held-out'),
    ("--config.stages=('poetry',)", 'unknown environment'),
    ('--config.eval.episodes=3', 'multiple of'),
    ('--config.mode=train', 'config.mode'),
    ('--config.ei.microbatch_rows=3', 'microbatch_rows'),
    ('--config.mesh=(2,1,1)', 'config.mesh=(2, 1, 1) does not cover the 1 devices'),
]


def test_bad_values_fail_in_one_line_before_compute(tmp_path):
  procs = concurrently(lambda case: run_curriculum(tmp_path / str(case[0]), case[1][0],
                                                   timeout=120), list(enumerate(BAD_VALUES)))
  for i, ((override, message), proc) in enumerate(zip(BAD_VALUES, procs)):
    assert proc.returncode == 1, (override, proc.stderr)
    lines = error_lines(proc)
    assert len(lines) == 1 and message in lines[0], (override, proc.stderr)
    assert not (tmp_path / str(i) / 'checkpoints').exists(), override


@pytest.mark.slow
def test_run_writes_report_matrix_checkpoints_and_tensorboard(curriculum_workdir):
  w = curriculum_workdir
  for name in ('report.md', 'matrix.png', 'results.json', 'model_config.json', 'pm/pm.json'):
    assert (w / name).is_file(), name
  stages = [stage for stage, _ in curriculum_matrix(w)]
  assert stages == ['helpful_only', 'political_sycophancy', 'tool_use_flattery']
  assert sorted(p.name for p in (w / 'checkpoints').iterdir())[-1] == '5'  # 1 SFT + 2 x 2 rounds
  report = (w / 'report.md').read_text()
  assert 'held-out pairwise accuracy' in report.lower() and '45/32,768' in report
  # The report names the command that made it, overrides included.
  assert f'--workdir={w} --config.model.d_model=64' in report
  assert list((w / 'tb').glob('events.out.tfevents.*'))


@pytest.mark.slow
def test_killed_mid_stage_then_resumed_matches_uninterrupted(curriculum_workdir, tmp_path):
  """The resumed half also compiles nothing ahead: compiling early must change no number."""
  w = tmp_path / 'killed'
  _kill_after_first_round(w)
  resumed = run_curriculum(w, '--config.compile_ahead=False', timeout=900)
  assert resumed.returncode == 0, resumed.stderr
  assert 'resumed' in resumed.stderr
  assert curriculum_matrix(w) == curriculum_matrix(curriculum_workdir)


@pytest.mark.slow  # 8 simulated devices on 2 cores, two meshes to compile for: ~15 min cold
def test_run_on_a_mesh_matches_one_device_and_resumes_on_another_mesh(curriculum_workdir,
                                                                       tmp_path):
  """The same run on 8 simulated CPU devices: started on a (2, 2, 2) mesh (data, fsdp and tensor
  all split), killed mid-stage, resumed on (4, 1, 2) (no fsdp: the weights whole along embed)
  from the checkpoint the (2, 2, 2) mesh saved. The helpful-only evaluation comes from the first
  mesh, the rest from the second; the matrix equals the one-device run's. (4 prompts per round:
  the batch axes can hold at most 4 devices.)"""
  w, env = tmp_path / 'sharded', cpu_devices_env(8)
  _kill_after_first_round(w, '--config.mesh=(2,2,2)', env=env)
  resumed = run_curriculum(w, '--config.mesh=(4,1,2)', env=env, timeout=1800)
  assert resumed.returncode == 0, resumed.stderr
  assert 'resumed' in resumed.stderr
  assert curriculum_matrix(w) == curriculum_matrix(curriculum_workdir)


@pytest.mark.slow
def test_baseline_and_interventions_run_from_flags(tmp_path):
  base = run_curriculum(tmp_path / 'base', '--config.mode=baseline', timeout=900)
  assert base.returncode == 0, base.stderr
  assert [s for s, _ in curriculum_matrix(tmp_path / 'base')] == ['helpful_only']
  variant = run_curriculum(tmp_path / 'exploit', '--config.ei.variant=exploit_only',
                           '--config.ei.rounds=1', '--config.train_away.enabled=True',
                           timeout=900)
  assert variant.returncode == 0, variant.stderr
  assert [s for s, _ in curriculum_matrix(tmp_path / 'exploit')] == [
      'helpful_only', 'political_sycophancy', 'tool_use_flattery', 'train_away_sycophancy']
