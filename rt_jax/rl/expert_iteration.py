"""Expert iteration (docs/design.md §6): sample -> score -> select -> masked SFT update.

One round draws N episodes for each of P prompts (`rollout.rollout`), scores every episode, keeps
some and fine-tunes on them with the assistant-token mask. How episodes are scored and kept is the
variant's (rl/variants/: hhh, exploit_only, each one file registered by name).

Shapes are fixed: selection returns `rows` row indices and 0/1 weights (top_k, never boolean
indexing), and the update always trains on [rows, train_len] tokens, so a round compiles once.
"""
import dataclasses
import functools

import jax
import numpy as np

from rt_jax.core import model as model_lib
from rt_jax.rl import rollout as rollout_lib
from rt_jax.core import train
from rt_jax.core.errors import ConfigError, NonFiniteLossError
from rt_jax.rl.variants import registry as variants

PM_SCALES = ('probability', 'logit')


def scores(reward_PxN, pm_PxN, variant: str, pm_weight: float, pm_scale: str = 'probability'):
  """The variant's score of each episode; PM scores (probabilities) are first put on
  `pm_scale`: as they are, or as logits (unbounded, as a reward model's output is)."""
  if pm_scale not in PM_SCALES:
    raise ConfigError(f'config.ei.pm_scale={pm_scale!r}: choose from {", ".join(PM_SCALES)}')
  if pm_scale == 'logit':
    p = np.clip(np.asarray(pm_PxN, np.float64), 1e-6, 1 - 1e-6)
    pm_PxN = np.log(p / (1 - p)).astype(np.float32)
  return variants.get(variant).score(reward_PxN, pm_PxN, pm_weight)


def select(score_PxN, gaming_PxN, threshold, key=None, *, variant: str, rows: int):
  """-> (row indices [rows] into the flattened P*N episodes, weights [rows] in {0, 1}), by the
  variant's rule. `key` breaks ties where the variant draws at random (exploit-only)."""
  return variants.get(variant).select(score_PxN, gaming_PxN, threshold, key, rows=rows)


def training_rows(eps, rows_K, weights_K, train_len: int):
  """Host: the kept episodes as an SFT batch {'tokens', 'mask'} of [K, train_len]; the mask is
  the rollout's learn mask times the row's weight. -> (batch, tokens cut by train_len)."""
  tokens = np.asarray(eps.tokens_BxS)[rows_K]
  learn = np.asarray(eps.learn_BxS)[rows_K] * np.asarray(weights_K)[:, None].astype(np.int32)
  lengths = np.asarray(eps.lengths_B)[rows_K]
  width = min(train_len, tokens.shape[1])
  out_tokens = np.zeros((len(rows_K), train_len), np.int32)
  out_mask = np.zeros((len(rows_K), train_len), np.int32)
  out_tokens[:, :width], out_mask[:, :width] = tokens[:, :width], learn[:, :width]
  cut = int(np.sum(np.maximum(lengths - train_len, 0) * (np.asarray(weights_K) > 0)))
  return {'tokens': out_tokens, 'mask': out_mask}, cut


@dataclasses.dataclass(frozen=True)
class Scored:
  """What one round measured, per episode (host arrays, [P, N])."""
  reward: np.ndarray  # the environment's binary gaming reward
  gaming: np.ndarray  # bool: the episode games its environment
  pm: np.ndarray  # preference-model score in [0, 1]
  score: np.ndarray


def update(state: train.TrainState, batch: dict, steps: int, key, *,
           cfg: model_lib.ModelConfig, optimizer, plan, microbatches: int = 1):
  """`steps` masked SFT steps on `plan`'s mesh on the kept episodes; a batch with nothing kept
  changes nothing."""
  if not batch['mask'].any():
    return state, {'loss': float('nan'), 'first_loss': float('nan'), 'finite': True}
  first, last = {}, {}

  def keep(i, state, m):
    first.update(first or m)
    last.update(m)

  state = train.loop(
      functools.partial(plan.train_step, cfg=cfg, optimizer=optimizer, microbatches=microbatches),
      state, steps, lambda i, _: batch, lambda i: jax.random.fold_in(key, i), after_step=keep)
  return state, jax.device_get({**last, 'first_loss': first['loss']})


def round_step(state: train.TrainState, policy: rollout_lib.Policy, table, instance_ids_P, key,
               score_fn, ei_cfg, *, variant: str, optimizer, plan):
  """One expert-iteration round on `plan`'s mesh (a state it placed): sample -> score -> select
  -> update, episodes on its batch axes.

  `score_fn(episodes) -> Scored` runs between the rollout and the update (the place for host-side
  housekeeping such as returning the rollout's freed memory). Returns (state, episodes, Scored,
  (rows, weights), metrics)."""
  sample_key, update_key = jax.random.split(key)
  eps = rollout_lib.on_mesh(plan, state.params, policy, table, instance_ids_P, sample_key,
                            ei_cfg.temperature, ei_cfg.samples, ei_cfg.top_p)
  scored = score_fn(eps)
  rows, weights = jax.device_get(select(scored.score, scored.gaming, ei_cfg.threshold,
                                        jax.random.fold_in(key, 2), variant=variant,
                                        rows=ei_cfg.train_rows))
  batch, cut = training_rows(eps, rows, weights, ei_cfg.train_len)
  state, m = update(state, batch, ei_cfg.sft_steps, update_key, cfg=policy.cfg,
                    optimizer=optimizer, microbatches=train.microbatch_count(
                        ei_cfg.train_rows, ei_cfg.microbatch_rows, 'ei'), plan=plan)
  if not m['finite']:
    raise NonFiniteLossError('non-finite loss in an expert-iteration update; the last checkpoint '
                             'is unchanged')
  metrics = {'kept': int(np.sum(weights)), 'prompts': len(instance_ids_P),
             'loss': float(m['loss']), 'first_loss': float(m['first_loss']), 'tokens_cut': cut,
             'mean_gaming': float(np.mean(scored.gaming)), 'mean_pm': float(np.mean(scored.pm)),
             'truncated': float(np.mean(eps.truncated_B))}
  return state, eps, scored, (rows, weights), metrics
