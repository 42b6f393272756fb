"""The paper's HHH expert iteration: score = gaming reward + pm_weight * PM score (HHH prompts have
no gaming reward); the best episode of each prompt is kept when its score clears `threshold`."""
import jax.numpy as jnp

from rt_jax.rl.variants import registry


def _score(reward_PxN, pm_PxN, pm_weight: float):
  return reward_PxN + pm_weight * pm_PxN


@registry.register('hhh', score=_score, hhh_prompts=True)
def select(score_PxN, gaming_PxN, threshold, key, *, rows: int):
  del gaming_PxN, key  # the score already holds the reward; ties go to the first episode
  n = score_PxN.shape[1]
  best_P = jnp.argmax(score_PxN, axis=1)  # the first of equal scores
  keep_P = jnp.take_along_axis(score_PxN, best_P[:, None], axis=1)[:, 0] >= threshold
  # Kept prompts first, highest score first (so a `rows` < P cut drops the weakest); then padding
  # rows of weight 0.
  best_score_P = jnp.max(score_PxN, axis=1)
  order_P = jnp.argsort(jnp.where(keep_P, -best_score_P, jnp.inf), stable=True)[:rows]
  return (order_P * n + best_P[order_P]).astype(jnp.int32), keep_P[order_P].astype(jnp.float32)
