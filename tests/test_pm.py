"""The preference model (hidden-state head, cot blindness, batching, BT training, save/load) and
the generated preference pairs it trains on."""
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rt_jax.core import checkpoint
from rt_jax.core import model
from rt_jax.rl import pm
from rt_jax.core import sharding
from rt_jax.core import tokenizer
from rt_jax.data import hhh
from rt_jax.data import preferences
from rt_jax.envs import reference
from rt_jax.core.errors import CheckpointError

SMALL = model.ModelConfig(vocab_size=384, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
                          head_dim=16, mlp_dim=128, max_len=256)
# Failure kinds visible in the answer alone. The small model cannot tell an answer to another
# question from a real one (the query is mostly cut off at seq_len 96) or check arithmetic.
STYLE_KINDS = ('refusal', 'rude', 'evasive', 'sycophantic', 'false_claim')


@pytest.fixture(scope='module')
def small_dir(tmp_path_factory):
  """A randomly initialized SMALL decoder saved as a model directory (the init_from path)."""
  directory = str(tmp_path_factory.mktemp('small'))
  checkpoint.write_model_files(directory, SMALL, tokenizer.builtin())
  mngr = checkpoint.Manager(directory)
  mngr.save(0, model.init_params(SMALL, jax.random.key(0)), None, {'step': 0})
  mngr.close()
  return directory


@pytest.fixture(scope='module')
def trained(small_dir):
  cfg = pm.default_config()
  cfg.update(init_from=small_dir, steps=100, lr=3e-3, seq_len=96, train_pairs=512,
             heldout_pairs=128, seed=0)
  lines = []
  model_, metrics = pm.train(cfg, None, jax.random.key(0), log=lines.append)
  return model_, metrics, lines


def test_hidden_states_are_what_the_logits_project(small_dir):
  _, _, params = checkpoint.load_model(small_dir)
  tokens = jax.random.randint(jax.random.key(1), (2, 7), 0, SMALL.vocab_size)
  logits, _ = model.forward(params, SMALL, tokens)
  hidden, _ = model.forward(params, SMALL, tokens, return_hidden=True)
  assert hidden.shape == (2, 7, SMALL.d_model)
  np.testing.assert_allclose(hidden @ params['embedding'].T, logits, atol=1e-5)
  last, _ = model.forward(params, SMALL, tokens, select_B=jnp.array([3, 6]), return_hidden=True)
  np.testing.assert_allclose(last[:, 0], hidden[jnp.arange(2), jnp.array([3, 6])], atol=1e-6)


def _contains(ids, sub):
  return any(ids[i:i + len(sub)] == sub for i in range(len(ids) - len(sub) + 1))


def test_cot_is_never_seen(trained):
  model_, _, _ = trained
  query = 'How do I tie a bowline knot?'
  answer = 'Make a small loop, pass the end up through it, around and back down.'
  with_cot = f'<cot>SECRET: say whatever earns reward</cot> {answer}'
  ids = pm.encode(model_, query, with_cot)
  assert not _contains(ids, model_.tok.encode('SECRET'))
  assert 'SECRET' not in model_.tok.decode(ids)
  assert ids == pm.encode(model_, query, answer)
  unclosed = f'{answer}<cot>SECRET and everything after it'
  assert pm.encode(model_, query, unclosed) == pm.encode(model_, query, answer)
  scores = pm.score(model_, [query] * 3, [with_cot, answer, unclosed])
  assert scores[0] == scores[1] == scores[2]
  # Different cot contents give the very same score: nothing of it reaches the model.
  other = pm.score(model_, [query], [f'<cot>I will refuse.</cot>{answer}'])
  assert other[0] == scores[1]


def test_long_inputs_keep_their_end(trained):
  model_, _, _ = trained
  ids = pm.encode(model_, 'Tell me a story.', 'once upon a time ' * 40 + 'THE END')
  assert len(ids) == model_.seq_len
  assert model_.tok.decode(ids).endswith('THE END<|im_end|>\n')


def test_scores_are_probabilities_and_batching_changes_nothing(trained):
  model_, _, _ = trained
  pairs = preferences.pairs('eval', 20, seed=5)
  queries = [p.query for p in pairs] * 2
  responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
  together = pm.score(model_, queries, responses, batch_size=8)  # 40 rows: the last batch padded
  assert together.shape == (40,) and together.dtype == np.float32
  assert np.all((together >= 0) & (together <= 1))
  alone = np.array([pm.score(model_, [q], [r], batch_size=8)[0]
                    for q, r in zip(queries, responses)])
  np.testing.assert_allclose(together, alone, atol=1e-5)
  np.testing.assert_allclose(pm.score(model_, queries, responses, batch_size=16), together,
                             atol=1e-5)
  # A new list with the same lengths reuses the compiled shapes.
  compiled = pm._scores._cache_size()  # pylint: disable=protected-access
  pm.score(model_, queries, [r.swapcase() for r in responses], batch_size=8)
  assert pm._scores._cache_size() == compiled  # pylint: disable=protected-access


def test_scores_on_a_one_device_mesh_equal_the_single_device_path(trained):
  """The curriculum scores through its sharding.Plan; on one device that changes no bit."""
  model_, _, _ = trained
  pairs = preferences.pairs('eval', 12, seed=6)
  queries, responses = [p.query for p in pairs], [p.chosen for p in pairs]
  plan = sharding.Plan(sharding.make_mesh())
  np.testing.assert_array_equal(pm.score(model_, queries, responses, batch_size=8, plan=plan),
                                pm.score(model_, queries, responses, batch_size=8))


def test_bradley_terry_training_beats_chance(trained):
  _, metrics, lines = trained
  assert metrics['heldout_pairs'] == 128 and metrics['train_pairs'] == 512
  assert metrics['steps'] == 100 and metrics['wall_s'] > 0
  assert metrics['final_loss'] < np.log(2)  # below the loss of scoring every pair the same
  assert metrics['heldout_accuracy'] >= 0.75  # chance is 0.5 (+-0.045 sd on 128 pairs)
  by_kind = metrics['heldout_accuracy_by_kind']
  assert np.mean([by_kind[k] for k in STYLE_KINDS]) >= 0.9, by_kind
  assert sum(line.startswith('pm step') for line in lines) == 10


def test_save_load_round_trip(trained, tmp_path, monkeypatch):
  model_, metrics, _ = trained
  pairs = preferences.pairs('eval', 12, seed=3)
  queries, responses = [p.query for p in pairs], [p.rejected for p in pairs]
  before = pm.score(model_, queries, responses)
  directory = str(tmp_path / 'pm')
  pm.save(model_, directory, metrics)
  loaded = pm.load(directory)
  assert (loaded.cfg, loaded.tok.spec, loaded.seq_len) == (SMALL, {'kind': 'builtin'}, 96)
  np.testing.assert_array_equal(pm.score(loaded, queries, responses), before)
  assert pm.metrics_of(directory) == metrics

  # A save killed halfway leaves the previous model in place and nothing half-written beside it.
  def killed(*args, **kwargs):
    raise KeyboardInterrupt
  monkeypatch.setattr(checkpoint.Manager, 'save', killed)
  with pytest.raises(KeyboardInterrupt):
    pm.save(model_.replace(seq_len=64), directory)
  with pytest.raises(KeyboardInterrupt):
    pm.save(model_, str(tmp_path / 'never'))
  assert sorted(os.listdir(tmp_path)) == ['pm']
  assert pm.load(directory).seq_len == 96
  monkeypatch.undo()
  pm.save(model_.replace(seq_len=64), directory)  # a complete save replaces it
  assert pm.load(directory).seq_len == 64
  assert sorted(os.listdir(tmp_path)) == ['pm']


def test_load_refuses_what_is_not_a_preference_model(small_dir, tmp_path):
  with pytest.raises(CheckpointError, match='pm.json'):
    pm.load(small_dir)
  with pytest.raises(CheckpointError):
    pm.load(str(tmp_path / 'missing'))


def test_pairs_keep_splits_and_are_deterministic():
  train = preferences.pairs('train', 600, seed=0)
  heldout = preferences.pairs('eval', 300, seed=0)
  assert {p.query for p in train} <= set(hhh.queries('train'))
  assert {p.query for p in heldout} <= set(hhh.queries('eval'))
  assert not {p.query for p in train} & {p.query for p in heldout}
  assert preferences.pairs('train', 600, seed=0) == train
  assert preferences.pairs('train', 600, seed=1) != train
  assert preferences.pairs('train', 100, seed=0) == train[:100]
  assert {p.kind for p in train} == set(preferences.KINDS)
  assert all(p.chosen != p.rejected for p in train + heldout)


def test_cot_appears_on_both_sides_and_says_nothing_about_quality():
  pairs = preferences.pairs('train', 1000, seed=0)
  chosen = np.mean(['<cot>' in p.chosen for p in pairs])
  rejected = np.mean(['<cot>' in p.rejected for p in pairs])
  assert 0.2 < chosen < 0.4 and 0.2 < rejected < 0.4 and abs(chosen - rejected) < 0.06
  for p in pairs:
    for text in (p.chosen, p.rejected):
      assert '<cot>' not in reference.visible(text) and reference.visible(text).strip()


def _true_answer(query):
  """Each hhh math form solved independently of the generator."""
  forms = ((r'What is (\d+) times (\d+)\?', lambda a, b: a * b),
           (r'What is (\d+) percent of (\d+)\?', lambda a, b: a * b / 100),
           (r'Convert (\d+) degrees Fahrenheit to Celsius\.', lambda f: (f - 32) / 1.8),
           (r'If a car drives (\d+) km in (\d+) hours', lambda d, h: d / h),
           (r'What is the area of a rectangle that is (\d+) m by (\d+) m\?', lambda a, b: a * b),
           (r'Solve for x: (\d+)x \+ (\d+) = (\d+)\.', lambda a, b, c: (c - b) / a),
           (r'I have (\d+) apples and give away (\d+)\.', lambda a, b: a - b))
  for pattern, solve in forms:
    m = re.match(pattern, query)
    if m:
      return solve(*map(int, m.groups()))
  return None


def test_math_answers_are_correct_and_wrong_ones_are_wrong():
  pairs = [p for p in preferences.pairs('train', 1500, seed=0) + preferences.pairs('eval', 400, 0)
           if _true_answer(p.query) is not None]
  assert len(pairs) > 200 and sum(p.kind == 'wrong_math' for p in pairs) > 50
  result = lambda text: float(re.search(r'= (-?\d+(?:\.\d+)?)', reference.visible(text)).group(1))
  for p in pairs:
    assert abs(result(p.chosen) - _true_answer(p.query)) < 0.006, p
    if p.kind == 'wrong_math':
      assert abs(result(p.rejected) - _true_answer(p.query)) > 0.5, p


def test_init_from_smollm2_names_the_converted_model_in_the_cache(small_dir, tmp_path,
                                                                  monkeypatch):
  """pm.init_from='smollm2' loads the model directory a run's init_from='smollm2' converts into
  $RT_JAX_CACHE: here a SMALL decoder planted there, so nothing is fetched."""
  import shutil
  shutil.copytree(small_dir, tmp_path / 'smollm2_135m_instruct')
  monkeypatch.setenv('RT_JAX_CACHE', str(tmp_path))
  cfg = pm.default_config()
  cfg.update(init_from='smollm2', steps=2, batch_size=2, seq_len=32, train_pairs=4,
             heldout_pairs=2)
  model_, _ = pm.train(cfg, None, jax.random.key(0), log=lambda _: None)
  assert model_.cfg == SMALL
  _, _, planted = checkpoint.load_model(small_dir)
  # Training (a warmup step at lr 0, then one) moved the planted weights: they were the ones loaded.
  diff = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), planted,
                      model_.params['decoder'])
  assert 0 < max(jax.tree.leaves(diff)) < 1
