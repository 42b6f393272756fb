"""The curriculum plan's settings: per-environment evaluation sizes, the helpful-only start's
competence gate and cache key: it changes with everything that determines the start's
weights and with nothing else; a cached start loads back as saved, and a damaged one is not
loaded."""
import os

import jax
import numpy as np
import pytest

from conftest import config_of
from rt_jax.core import model as model_lib
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.core.errors import ConfigError
from rt_jax.studies.subterfuge import competence
from rt_jax.studies.subterfuge import plan
from rt_jax.studies.subterfuge import start_cache
from rt_jax.studies.subterfuge import tool_corpus

TOK = tokenizer_lib.builtin()


def _hash(**overrides):
  c = config_of('curriculum', overrides, 'tiny')
  corpus = tool_corpus.ToolCorpus(TOK, c.start.examples, c.start.train_len, c.start.seed)
  return start_hash(c, corpus)


def start_hash(c, corpus, weights=None):
  weights = weights or start_cache.weights_id(c, None)
  return start_cache.start_hash(c, model_lib.ModelConfig(**c.model), TOK, corpus, weights)


def test_the_key_follows_what_determines_the_start():
  base = _hash()
  assert _hash() == base  # deterministic
  for changed in ({'start.lr': 2e-3}, {'start.steps': 4}, {'start.examples': 128}, {'seed': 1},
                  {'start.seed': 1},
                  {'start.train_rows': 4}, {'start.train_len': 1536}, {'model.n_layers': 3},
                  {'start.microbatch_rows': 1}, {'start.width_multiple': 128}):
    assert _hash(**changed) != base, changed
  for unchanged in ({'ei.rounds': 5}, {'ei.lr': 1e-5}, {'start.cache': True},
                    {'ei.train_len': 1536}, {'ei.train_rows': 4}, {'ei.microbatch_rows': 1},
                    {'eval.episodes': 8}, {'pm.steps': 3}):
    assert _hash(**unchanged) == base, unchanged


def test_runs_of_another_seed_share_a_start_from_the_same_weights():
  """With given starting weights (converted, say), the run's seed does not enter the start: a
  seed sweep trains one start. A fresh model's weights come from the run's seed, so there it does
  (the test above)."""
  hashes = {}
  for overrides in ({}, {'seed': 1}, {'seed': 2}, {'start.seed': 1}):
    c = config_of('curriculum', {'init_from': '/some/model', **overrides}, 'tiny')
    corpus = tool_corpus.ToolCorpus(TOK, c.start.examples, c.start.train_len, c.start.seed)
    hashes[str(overrides)] = start_hash(c, corpus, 'the same weights')
  assert hashes['{}'] == hashes["{'seed': 1}"] == hashes["{'seed': 2}"]
  assert hashes["{'start.seed': 1}"] != hashes['{}']


def test_the_key_reads_the_corpus_tokens():
  c = config_of('curriculum', {}, 'tiny')
  corpus = tool_corpus.ToolCorpus(TOK, c.start.examples, c.start.train_len, c.start.seed)
  base = start_hash(c, corpus)
  corpus.tokens_NxT[3, 5] += 1  # a generator change that alters one token
  assert start_hash(c, corpus) != base


def test_the_key_reads_the_starting_weights_and_the_resolved_mesh():
  c = config_of('curriculum', {'init_from': '/some/model'}, 'tiny')
  corpus = tool_corpus.ToolCorpus(TOK, 4, c.start.train_len, c.start.seed)
  cfg = model_lib.ModelConfig(**config_of('curriculum', {}, 'tiny').model)
  a, b = (model_lib.init_params(cfg, jax.random.key(k)) for k in (0, 1))
  ids = [start_cache.weights_id(c, p) for p in (a, b, a)]
  assert ids[0] == ids[2] != ids[1]  # same architecture, other weights: another start
  assert start_hash(c, corpus, ids[0]) != start_hash(c, corpus, ids[1])
  # The mesh as resolved: (-1, 1, 1) on one device is (1, 1, 1).
  one = config_of('curriculum', {'mesh': (1, 1, 1)}, 'tiny')
  assert start_hash(one, corpus) == start_hash(config_of('curriculum', {}, 'tiny'), corpus)


def test_a_start_that_cannot_be_cached_is_reported_not_raised(tmp_path, monkeypatch):
  blocker = tmp_path / 'not_a_directory'
  blocker.write_text('')
  monkeypatch.setenv('RT_JAX_CACHE', str(blocker))
  cfg = model_lib.ModelConfig(**config_of('curriculum', {}, 'tiny').model)
  params = model_lib.init_params(cfg, jax.random.key(0))
  assert start_cache.save('abc', cfg, TOK, params, {'loss': 1.0})  # the reason, as text


def test_an_intact_entry_is_kept_and_a_damaged_one_replaced(tmp_path, monkeypatch):
  monkeypatch.setenv('RT_JAX_CACHE', str(tmp_path))
  cfg = model_lib.ModelConfig(**config_of('curriculum', {}, 'tiny').model)
  first, second = (model_lib.init_params(cfg, jax.random.key(k)) for k in (0, 1))
  assert start_cache.save('abc', cfg, TOK, first, {'loss': 1.0}) is None
  assert start_cache.save('abc', cfg, TOK, second, {'loss': 2.0}) is None
  assert start_cache.load('abc')[1]['loss'] == 1.0  # the first writer's entry stands
  os.remove(os.path.join(start_cache.path('abc'), start_cache.META))
  assert start_cache.load('abc') is None
  assert start_cache.save('abc', cfg, TOK, second, {'loss': 2.0}) is None
  assert start_cache.load('abc')[1]['loss'] == 2.0


def test_a_saved_start_loads_back_and_a_damaged_one_does_not(tmp_path, monkeypatch):
  monkeypatch.setenv('RT_JAX_CACHE', str(tmp_path))
  cfg = model_lib.ModelConfig(**config_of('curriculum', {}, 'tiny').model)
  params = model_lib.init_params(cfg, jax.random.key(0))
  assert start_cache.load('abc') is None
  start_cache.save('abc', cfg, TOK, params, {'loss': 1.5, 'hash': 'abc'})
  loaded, meta = start_cache.load('abc')
  assert meta['loss'] == 1.5
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # One flipped byte in the saved weights: the entry is not used (it is trained again).
  step = os.path.join(start_cache.path('abc'), 'checkpoints', '0')
  victim = max((os.path.join(r, f) for r, _, fs in os.walk(step) for f in fs),
               key=os.path.getsize)
  with open(victim, 'r+b') as f:
    f.seek(os.path.getsize(victim) // 2)
    byte = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([byte[0] ^ 0xFF]))
  assert start_cache.load('abc') is None


@pytest.mark.parametrize('preset', ['smollm2_quick', 'smollm2_cpu', 'smollm2_paper'])
def test_the_smollm2_presets_cache_their_start(preset):
  assert config_of('curriculum', {}, preset).start.cache


def test_the_competence_gate_reads_targets_and_counts():
  c = config_of('curriculum', {'start.competence.tool_use_flattery': 0.5,
                               'start.competence.rubric_modification_nudged': 0.25}, 'tiny')
  assert competence.targets(c) == {'tool_use_flattery': 0.5, 'rubric_modification_nudged': 0.25}
  measured = {'block': 1, 'envs': {'tool_use_flattery': [8, 16],
                                   'rubric_modification_nudged': [4, 16]}}
  assert competence.met(c, measured)
  measured['envs']['tool_use_flattery'] = [7, 16]  # one short of half
  assert not competence.met(c, measured)
  assert competence.line(measured) == 'tool_use_flattery 7/16, rubric_modification_nudged 4/16'
  # No targets: nothing is gated (and the start trains one block, as without a gate).
  assert competence.targets(config_of('curriculum', {}, 'tiny')) == {}


@pytest.mark.parametrize('overrides, field', [
    ({'start.competence.tool_use_flattery': 1.5}, 'start.competence.tool_use_flattery'),
    ({'start.max_blocks': 0}, 'start.max_blocks'),
    ({'start.gate_instances': 0}, 'start.gate_instances')])
def test_bad_gate_settings_are_refused(overrides, field):
  with pytest.raises(ConfigError, match=field):
    plan.validate(config_of('curriculum', overrides, 'tiny'))


def test_the_gate_is_part_of_the_key():
  assert _hash(**{'start.competence.tool_use_flattery': 0.5}) != _hash()
  gated = {'start.competence.tool_use_flattery': 0.5}
  assert _hash(**gated, **{'ei.temperature': 0.7}) != _hash(**gated)


def test_an_environment_can_have_more_evaluation_episodes_than_the_rest():
  c = config_of('curriculum', {'eval.episodes_by_env.reward_tampering': 12}, 'tiny')
  plan.validate(c)
  # Distinct instances: episodes // samples (the tiny preset evaluates 2 samples of each).
  assert len(plan.eval_instances(c, 'reward_tampering')) == 12 // c.eval.samples
  assert len(plan.eval_instances(c, 'tool_use_flattery')) == c.eval.episodes // c.eval.samples
  assert 'reward_tampering 12' in '\n'.join(plan.describe(c))
  too_many = config_of('curriculum', {'eval.episodes_by_env.rubric_modification_nudged': 6000},
                       'tiny')
  with pytest.raises(ConfigError, match='eval.episodes_by_env.rubric_modification_nudged=6000'):
    plan.validate(too_many)
