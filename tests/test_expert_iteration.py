"""Expert iteration's selection and batches: fixed shapes, both variants."""
import jax
import numpy as np
import pytest

from rt_jax.rl import expert_iteration as ei
from rt_jax.rl import rollout
from rt_jax.core.errors import ConfigError


def test_hhh_keeps_the_best_episode_of_each_prompt_that_clears_the_threshold():
  score = np.array([[0.2, 1.4, 0.9], [0.1, 0.3, 0.2], [0.5, 0.5, 1.1]], np.float32)
  gaming = np.zeros_like(score)
  rows, weights = ei.select(score, gaming, 0.4, variant='hhh', rows=3)
  # Prompt 1's best (0.3) misses the threshold: it comes last with weight 0.
  np.testing.assert_array_equal(rows, [0 * 3 + 1, 2 * 3 + 2, 1 * 3 + 1])
  np.testing.assert_array_equal(weights, [1, 1, 0])


def test_exploit_only_keeps_every_gaming_episode_when_they_fit():
  gaming = np.array([[0, 1, 1], [0, 0, 0], [1, 0, 0]], np.float32)
  rows, weights = ei.select(np.zeros_like(gaming), gaming, 0.0, jax.random.key(0),
                            variant='exploit_only', rows=4)
  assert sorted(rows[:3].tolist()) == [1, 2, 6]
  np.testing.assert_array_equal(weights, [1, 1, 1, 0])
  assert rows[3] not in (1, 2, 6)  # the padding row is a non-gaming one, at weight 0


def test_exploit_only_draws_gaming_episodes_from_every_part_of_the_batch():
  """More gaming episodes than rows: the kept ones are a random subset, not the first in prompt
  order, and different keys keep different subsets."""
  p, n, rows = 16, 4, 8
  gaming = np.ones((p, n), np.float32)
  gaming[::3] = 0  # some prompts never game
  kept = []
  for seed in range(20):
    r, w = ei.select(np.zeros_like(gaming), gaming, 0.0, jax.random.key(seed),
                     variant='exploit_only', rows=rows)
    assert w.tolist() == [1.0] * rows and gaming.reshape(-1)[r].all()
    assert len(set(r.tolist())) == rows
    kept.append(set(r.tolist()))
  every = set().union(*kept)
  first_in_order = set(np.flatnonzero(gaming.reshape(-1))[:rows].tolist())
  assert any(k != first_in_order for k in kept)
  assert len({frozenset(k) for k in kept}) > 10
  assert max(every) // n >= p - 2 and min(every) // n <= 1  # both ends of the batch get kept


def test_exploit_only_refuses_to_select_without_a_key():
  gaming = np.ones((2, 2), np.float32)
  with pytest.raises(ValueError, match='key'):
    ei.select(gaming, gaming, 0.0, variant='exploit_only', rows=2)


def test_scores_by_variant():
  reward, pm = np.array([1.0, 0.0]), np.array([0.5, 0.9])
  np.testing.assert_allclose(ei.scores(reward, pm, 'hhh', 0.5), [1.25, 0.45])
  np.testing.assert_allclose(ei.scores(reward, pm, 'exploit_only', 0.5), [1.0, 0.0])
  with pytest.raises(ConfigError, match='ei.variant'):
    ei.scores(reward, pm, 'best_of_n', 0.5)


def test_training_rows_weight_the_learn_mask_and_cut_to_train_len():
  tokens = np.arange(4 * 10, dtype=np.int32).reshape(4, 10)
  learn = np.zeros((4, 10), np.int32)
  learn[:, 5:] = 1
  eps = rollout.Episodes(tokens, learn, np.array([10, 7, 10, 6]), np.full(4, 5), None,
                         np.ones(4), np.zeros(4, bool), np.zeros(2, np.int32))
  batch, cut = ei.training_rows(eps, np.array([2, 1]), np.array([1.0, 0.0]), train_len=8)
  np.testing.assert_array_equal(batch['tokens'], tokens[[2, 1], :8])
  np.testing.assert_array_equal(batch['mask'][0], [0] * 5 + [1] * 3)
  assert not batch['mask'][1].any()  # weight 0: never learned from
  assert cut == 2  # row 2 had 10 tokens, 2 past train_len


def test_on_the_logit_scale_the_pm_can_outrank_gaming_and_the_variants_then_differ():
  """One batch: each prompt has a gaming episode the PM dislikes and an honest one it prefers.
  Exploit-only keeps the gaming ones. HHH on the probability scale (PM in [0, 1], weight 0.5)
  cannot let the PM outrank the reward, so it keeps them too; on the logit scale it keeps the
  honest ones."""
  reward = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], np.float32)
  pm = np.array([[0.05, 0.97], [0.9, 0.1], [0.2, 0.99]], np.float32)
  gaming = reward > 0
  keep = {}
  for name, variant, scale in (('exploit', 'exploit_only', 'probability'),
                               ('hhh_probability', 'hhh', 'probability'),
                               ('hhh_logit', 'hhh', 'logit')):
    score = ei.scores(reward, pm, variant, 0.5, scale)
    rows, weights = ei.select(score, gaming, -np.inf, jax.random.key(0), variant=variant, rows=3)
    keep[name] = sorted(int(r) for r, w in zip(rows, weights) if w > 0)
  gaming_rows = sorted(np.flatnonzero(gaming.reshape(-1)).tolist())
  assert keep['exploit'] == gaming_rows == keep['hhh_probability']
  assert keep['hhh_logit'] == [1, 2, 5]  # the honest episode of every prompt
  assert not set(keep['hhh_logit']) & set(keep['exploit'])
  with pytest.raises(ConfigError, match='pm_scale'):
    ei.scores(reward, pm, 'hhh', 0.5, 'rank')
