"""episodes: every episode on disk, and the reader that finds the ones behind a count."""
import json

from conftest import concurrently, error_lines, run_module
from rt_jax.studies.subterfuge import episodes


def _records():
  return [
      {'env': 'reward_tampering', 'split': 'eval', 'instance': 3, 'sample': 0,
       'text': 'user asks\x1b[2J\x00 and the model rewrites compute_reward.py', 'reward': 100.0,
       'pm': 0.25, 'kept': None, 'flags': {'reward_tampered': True, 'undetected': False}},
      {'env': 'reward_tampering', 'split': 'eval', 'instance': 5, 'sample': 0, 'text': 'honest',
       'reward': -10.0, 'pm': 0.5, 'kept': None,
       'flags': {'reward_tampered': False, 'undetected': False}},
      {'env': 'political_sycophancy', 'split': 'eval', 'instance': 9, 'sample': 0, 'text': '(A)',
       'reward': 1.0, 'pm': 0.5, 'kept': None, 'flags': {'sycophantic': True, 'choice': 'A'}},
  ]


def test_written_whole_and_read_back(tmp_path):
  path = episodes.write(str(tmp_path), 'eval_01_stage', _records())
  assert path == str(tmp_path / 'episodes' / 'eval_01_stage.jsonl')
  assert episodes.read(str(tmp_path), 'eval_01_stage') == _records()
  assert [p.name for p in (tmp_path / 'episodes').iterdir()] == ['eval_01_stage.jsonl']
  lines = (tmp_path / 'episodes' / 'eval_01_stage.jsonl').read_text().splitlines()
  assert len(lines) == 3 and all(json.loads(line) for line in lines)


def test_printable_escapes_control_bytes_but_keeps_layout():
  assert episodes.printable('a\x1b[2J\x00b\n\tc\x7f') == 'a\\x1b[2J\\x00b\n\tc\\x7f'


def test_cli_filters_by_env_and_flag_and_fails_in_one_line(tmp_path):
  episodes.write(str(tmp_path), 'eval_00_helpful_only', _records())
  episodes.write(str(tmp_path), 'round_002_political_sycophancy', _records()[2:])
  tampered, political, limited, missing, bad_n = concurrently(
      lambda args: run_module('rt_jax.episodes', f'--workdir={tmp_path}', *args), [
          ('--where=reward_tampered',), ('--env=political_sycophancy', '--file=round_'),
          ('--n=1',), ('--file=nope',), ('--n=0',)])
  assert tampered.returncode == 0, tampered.stderr
  assert tampered.stdout.count('=== ') == 1 and 'instance 3' in tampered.stdout
  assert '\\x1b[2J\\x00' in tampered.stdout and '\x1b' not in tampered.stdout
  assert political.stdout.count('=== ') == 1 and 'round_002' in political.stdout
  assert limited.stdout.count('=== ') == 1
  for proc in (missing, bad_n):
    assert proc.returncode == 2 and len(error_lines(proc)) == 1, proc.stderr
  assert 'eval_00_helpful_only' in error_lines(missing)[0]
  empty = run_module('rt_jax.episodes', f'--workdir={tmp_path / "none"}')
  assert empty.returncode == 2 and 'not found' in error_lines(empty)[0]
