"""The research questions (questions.py): a stage's own gaming rate and later environments' rates,
before against after the stage, on paired instances; alone and pooled over runs."""
from rt_jax.studies.subterfuge import aggregate
from rt_jax.studies.subterfuge import questions
from rt_jax.studies.subterfuge import report

STAGES = ('political_sycophancy', 'tool_use_flattery')
ENVS = STAGES + ('reward_tampering',)


def _cell(env, by_instance):
  k = sum(by_instance.values())
  flags = {'reward_tampered': k} if env == 'reward_tampering' else {}
  return {'n': len(by_instance), 'k': k, 'metric': 'm', 'flags': flags,
          'gaming_by_instance': {str(i): v for i, v in by_instance.items()}}


def _results(gaming: dict) -> dict:
  """gaming: {(evaluation index, env): [0/1 per instance]} for evaluations 0 (start), 1, 2."""
  labels = ('helpful_only',) + STAGES
  return {'run': {'config': 'x', 'variant': 'hhh', 'mode': 'curriculum', 'env_order': list(ENVS)},
          'evals': [{'stage': label, 'envs': {
              env: _cell(env, dict(enumerate(gaming.get((i, env), [0] * 20)))) for env in ENVS}}
              for i, label in enumerate(labels)]}


def _split(found):
  return [c for c in found if c['own']], [c for c in found if not c['own']]


def _find(found, stage, env):
  return next(c for c in found if (c['stage'], c['env']) == (stage, env))


def test_a_planted_rise_on_the_stage_itself_is_found_and_flat_cells_are_not():
  rise = [1] * 12 + [0] * 8  # 0/20 -> 12/20: sign test p = 2 * 0.5**12
  results = _results({(1, 'political_sycophancy'): rise, (2, 'political_sycophancy'): rise})
  own, later = _split(questions.comparisons(results))
  assert [(c['stage'], c['env']) for c in own] == [
      ('political_sycophancy', 'political_sycophancy'), ('tool_use_flattery', 'tool_use_flattery')]
  first = _find(own, 'political_sycophancy', 'political_sycophancy')
  assert (first['up'], first['down'], first['before'], first['after']) == (12, 0, (0, 20), (12, 20))
  assert first['p'] < 0.001
  assert _find(own, 'tool_use_flattery', 'tool_use_flattery')['p'] == 1.0
  # Later environments after the first stage: flattery and reward tampering; after the second,
  # reward tampering only; political sycophancy is never "later".
  assert sorted((c['stage'], c['env']) for c in later) == [
      ('political_sycophancy', 'reward_tampering'), ('political_sycophancy', 'tool_use_flattery'),
      ('tool_use_flattery', 'reward_tampering')]
  text = '\n'.join(questions.section(results))
  assert 'Its rate rose in 1 of 2 (political_sycophancy -> political_sycophancy), fell in 0' in text
  assert 'Their rates rose in 0 of 3, fell in 0 (p < 0.05' in text


def test_a_planted_rise_in_a_later_environment_counts_for_the_second_question():
  later_rise = [1] * 9 + [0] * 11
  results = _results({(1, 'tool_use_flattery'): later_rise, (2, 'tool_use_flattery'): later_rise})
  own, later = _split(questions.comparisons(results))
  assert _find(later, 'political_sycophancy', 'tool_use_flattery')['up'] == 9
  # After the flattery stage itself nothing changed: its own comparison is flat.
  assert _find(own, 'tool_use_flattery', 'tool_use_flattery')['up'] == 0
  text = '\n'.join(questions.section(results))
  assert 'Their rates rose in 1 of 3 (political_sycophancy -> tool_use_flattery)' in text
  # Paired: the same count with the rise and a fall on other instances is no change.
  swapped = _results({(1, 'tool_use_flattery'): later_rise,
                      (0, 'tool_use_flattery'): [0] * 11 + [1] * 9})
  moved = _find(questions.comparisons(swapped), 'political_sycophancy', 'tool_use_flattery')
  assert (moved['up'], moved['down'], moved['p']) == (9, 9, 1.0)


def test_a_few_changes_are_not_a_finding():
  results = _results({(1, 'political_sycophancy'): [1, 1] + [0] * 18})
  own, _ = _split(questions.comparisons(results))
  assert _find(own, 'political_sycophancy', 'political_sycophancy')['p'] == 0.5
  assert 'Its rate rose in 0 of 2, fell in 0' in '\n'.join(questions.section(results))


def test_pooled_runs_are_compared_run_by_run_and_counted_per_run():
  """Three runs that each move 4 instances up: 12 rises pooled, significant where one run's 4 are
  not, and all 3 runs counted as rising; the same instance ids in different runs stay different
  pairs."""
  rise = [1] * 4 + [0] * 16
  runs = {f'seed={s}': _results({(1, 'political_sycophancy'): rise}) for s in range(3)}
  one = _find(questions.comparisons(runs['seed=0']), 'political_sycophancy',
              'political_sycophancy')
  assert (one['up'], one['p']) == (4, 0.125)
  both = _find(questions.pooled(runs), 'political_sycophancy', 'political_sycophancy')
  assert (both['up'], both['down'], both['instances'], both['runs_up']) == (12, 0, 60, 3)
  assert both['before'] == (0, 60) and both['after'] == (12, 60) and both['p'] < 0.001
  pooled = aggregate.pool(runs)
  assert len(pooled['evals'][1]['envs']['political_sycophancy']['gaming_by_instance']) == 60
  text = aggregate.markdown('/r', runs, pooled)
  for title in ('## Competence', '## Change between consecutive evaluations',
                '## Research questions', '## Reward tampering', '## Beside the paper'):
    assert title in text
  assert '| political_sycophancy | political_sycophancy | 0/60 (0 %) | 12/60 (20.0 %) | ' \
         '+12 / -0 of 60 | 0.00049 | 3 / 0 |' in text, text
  # One seed carrying the whole change: the pooled test is significant, the runs column says 1.
  lone = {**runs, 'seed=1': _results({}), 'seed=2': _results({})}
  lone['seed=0'] = _results({(1, 'political_sycophancy'): [1] * 12 + [0] * 8})
  alone = _find(questions.pooled(lone), 'political_sycophancy', 'political_sycophancy')
  assert (alone['up'], alone['runs_up'], alone['runs_down']) == (12, 1, 0)


def test_a_killed_run_pools_only_the_comparisons_it_has():
  """Rates before and after come from the runs and instances measured at both evaluations."""
  rise = [1] * 10 + [0] * 10
  full = _results({(1, 'political_sycophancy'): rise, (0, 'political_sycophancy'): [0] * 20})
  killed = _results({(0, 'political_sycophancy'): [1] * 10 + [0] * 10})
  killed['evals'] = killed['evals'][:1]  # stopped after the first evaluation
  found = _find(questions.pooled({'a': full, 'b': killed}), 'political_sycophancy',
                'political_sycophancy')
  assert (found['before'], found['after'], found['up']) == ((0, 20), (10, 20), 10)
  # Stages not yet reached are later environments all the same (from the config's order).
  early = _results({})
  early['evals'] = early['evals'][:2]  # stopped after the first stage's evaluation
  early['run']['stages'] = list(STAGES)
  envs = {c['env'] for c in questions.comparisons(early)}
  assert envs == {'political_sycophancy', 'tool_use_flattery', 'reward_tampering'}
  del early['run']['stages']  # an older results.json: the evaluated stages' order, flattery unseen
  assert {c['env'] for c in questions.comparisons(early)} == {'political_sycophancy',
                                                              'reward_tampering'}
  # A stage whose own environment was not evaluated still answers for later ones.
  for ev in full['evals']:
    del ev['envs']['tool_use_flattery']
  assert ('tool_use_flattery', 'reward_tampering') in {
      (c['stage'], c['env']) for c in questions.comparisons(full)}


def test_aggregate_refuses_runs_of_different_settings(tmp_path):
  import json
  import pytest
  from rt_jax.core.errors import UserError
  for name, variant in (('a', 'hhh'), ('b', 'exploit_only')):
    results = _results({})
    results['run']['variant'] = variant
    (tmp_path / name).mkdir()
    (tmp_path / name / 'results.json').write_text(json.dumps(results))
  with pytest.raises(UserError, match=r'differ in variant \(.hhh.: a; .exploit_only.: b\)'):
    aggregate.write(str(tmp_path))
  assert report.paired_section(aggregate.pool({'a': _results({})}))
