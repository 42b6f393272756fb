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


def _find(found, stage, env):
  return next(c for c in found if (c['stage'], c['env']) == (stage, env))


def test_a_planted_rise_on_the_stage_itself_is_found_and_flat_cells_are_not():
  rise = [1] * 12 + [0] * 8  # 0/20 -> 12/20: sign test p = 2 * 0.5**12
  results = _results({(1, 'political_sycophancy'): rise, (2, 'political_sycophancy'): rise})
  own, later = questions.comparisons(results)
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
  assert 'It rose in 1 of 2 comparisons (political_sycophancy -> political_sycophancy)' in text
  assert 'They rose in 0 of 3 comparisons, fell in 0' in text


def test_a_planted_rise_in_a_later_environment_counts_for_the_second_question():
  later_rise = [1] * 9 + [0] * 11
  results = _results({(1, 'tool_use_flattery'): later_rise, (2, 'tool_use_flattery'): later_rise})
  own, later = questions.comparisons(results)
  assert _find(later, 'political_sycophancy', 'tool_use_flattery')['up'] == 9
  # After the flattery stage itself nothing changed: its own comparison is flat.
  assert _find(own, 'tool_use_flattery', 'tool_use_flattery')['up'] == 0
  text = '\n'.join(questions.section(results))
  assert 'They rose in 1 of 3 comparisons (political_sycophancy -> tool_use_flattery)' in text
  # Paired: the same count with the rise and a fall on other instances is no change.
  swapped = _results({(1, 'tool_use_flattery'): later_rise,
                      (0, 'tool_use_flattery'): [0] * 11 + [1] * 9})
  moved = _find(questions.comparisons(swapped)[1], 'political_sycophancy', 'tool_use_flattery')
  assert (moved['up'], moved['down'], moved['p']) == (9, 9, 1.0)


def test_a_few_changes_are_not_a_finding():
  results = _results({(1, 'political_sycophancy'): [1, 1] + [0] * 18})
  own, _ = questions.comparisons(results)
  assert _find(own, 'political_sycophancy', 'political_sycophancy')['p'] == 0.5
  assert 'It rose in 0 of 2 comparisons' in '\n'.join(questions.section(results))


def test_pooled_runs_pair_instances_within_each_run():
  """Three runs that each move 4 instances up: 12 pairs pooled, significant where one run's 4 are
  not; the same instance ids in different runs stay different pairs."""
  rise = [1] * 4 + [0] * 16
  runs = {f'seed={s}': _results({(1, 'political_sycophancy'): rise}) for s in range(3)}
  one = _find(questions.comparisons(runs['seed=0'])[0], 'political_sycophancy',
              'political_sycophancy')
  assert (one['up'], one['p']) == (4, 0.125)
  pooled = aggregate.pool(runs)
  cell = pooled['evals'][1]['envs']['political_sycophancy']
  assert len(cell['gaming_by_instance']) == 60
  both = _find(questions.comparisons(pooled)[0], 'political_sycophancy', 'political_sycophancy')
  assert (both['up'], both['down'], both['instances']) == (12, 0, 60) and both['p'] < 0.001
  text = aggregate.markdown('/r', runs, pooled)
  for title in ('## Competence', '## Change between consecutive evaluations',
                '## Research questions', '## Reward tampering', '## Beside the paper'):
    assert title in text
  assert '+12 / -0 of 60' in text
  # A run without per-instance counts leaves the pooled cell unpaired rather than half-paired.
  del runs['seed=2']['evals'][1]['envs']['political_sycophancy']['gaming_by_instance']
  assert aggregate.pool(runs)['evals'][1]['envs']['political_sycophancy'][
      'gaming_by_instance'] is None
  assert report.paired_section(aggregate.pool(runs))
