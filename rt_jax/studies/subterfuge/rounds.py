"""The training units of a curriculum run (docs/design.md §6): the helpful-only SFT and one
expert-iteration round, with the score function that grades, rewards and PM-scores a round's
episodes."""
import time

import jax
import numpy as np

from rt_jax.core import memory
from rt_jax.core import train
from rt_jax.core.errors import ConfigError
from rt_jax.rl import expert_iteration as ei_lib
from rt_jax.rl import pm as pm_lib
from rt_jax.rl import rollout as rollout_lib
from rt_jax.rl.variants import registry as variants
from rt_jax.studies.subterfuge import competence
from rt_jax.studies.subterfuge import context
from rt_jax.studies.subterfuge import start_blocks
from rt_jax.studies.subterfuge import start_cache
from rt_jax.studies.subterfuge import world as world_lib
from rt_jax.studies.subterfuge.context import Context, Stream
from rt_jax.studies.subterfuge.plan import START, Phase, reward_flag


def helpful_only(ctx: Context, state):
  """SFT on the generated tool-use corpus -> (state with fresh EI optimizer moments, metrics);
  a start cached by a run with the same inputs (start_cache.py) is loaded instead."""
  c = ctx.config
  corpus = ctx.start_corpus
  digest = None
  if c.start.cache and not start_cache.usable():
    ctx.progress.say(f'{START}: start.cache is off in a run of several processes')
  elif c.start.cache:
    digest = start_cache.start_hash(c, ctx.cfg, ctx.tok, corpus, ctx.weights_id)
  cached = start_cache.load(digest) if digest else None
  if cached is not None:
    params, meta = cached
    ctx.progress.say(f'{START}: loaded {start_cache.path(digest)} (trained by an earlier run with '
                     'the same inputs)')
    if meta.get('competence'):
      # Its gate's episodes are in the workdir of the run that trained it, not this one.
      meta['competence'] = [{k: v for k, v in h.items() if k != 'episodes'}
                            for h in meta['competence']]
      _say_gate(ctx, meta['competence'], meta.get('kept_block'))
    placed = ctx.plan.init_state(ctx.cfg, None, ctx.ei_optimizer, params=params)
    m = {k: meta[k] for k in ('loss', 'competence', 'kept_block') if k in meta}
    return (ctx.plan.train_state(meta.get('step', c.start.steps), placed.params,
                                 placed.opt_state),
            {**m, 'kept': None, 'start': 'cached'})
  state, m = _train_helpful_only(ctx, state, corpus)
  if digest:
    meta = {**{k: m[k] for k in ('loss', 'competence', 'kept_block') if k in m}, 'hash': digest,
            'step': int(jax.device_get(state.step)), 'config': c.get('name', '')}
    failed = start_cache.save(digest, ctx.cfg, ctx.tok, state.params, meta)
    ctx.progress.say(f'{START}: not cached ({failed})' if failed else
                     f'{START}: cached as {start_cache.path(digest)}')
  return state, m


def _say_measured(ctx: Context, measured: dict):
  ctx.progress.say(f'{START}: competence after {measured["block"]} block(s): '
                   f'{competence.line(measured)}')


def _say_gate(ctx: Context, history: list, kept: int | None = None):
  last = history[-1]
  ctx.progress.say(f'{START}: competence {"met" if competence.met(ctx.config, last) else "NOT met"}'
                   f' after {last["block"]} block(s): {competence.line(last)}')
  if kept is not None and kept != last['block']:
    ctx.progress.say(f'{START}: the start is block {kept}, the nearest to the targets: '
                     f'{competence.line(history[kept])}')


def _train_helpful_only(ctx: Context, state, corpus):
  """Blocks of `start.steps` SFT steps; with competence targets, measured before the first and
  after each, until the targets are met or `start.max_blocks` have trained."""
  c = ctx.config
  key = ctx.start_key(Stream.HELPFUL_ONLY)
  losses, gated = [], bool(competence.targets(c))
  n = c.start.steps
  timed = []  # (perf_counter, step) at each logged step of a block, for the step time

  def after_step(step, state, m):
    done = step + 1
    if (done % n) % max(1, n // 5) == 0 or done % n == 0:
      m = jax.device_get(m)
      if not m['finite']:
        raise ConfigError('the helpful-only SFT diverged (non-finite loss); lower start.lr')
      losses.append(float(m['loss']))
      timed.append((time.perf_counter(), done))
      # Between logged steps of this block: no compile and no gate in the interval.
      pace = (f' ({(timed[-1][0] - timed[-2][0]) / (done - timed[-2][1]):.1f} s/step)'
              if len(timed) > 1 and (done - 1) // n == (timed[-2][1] - 1) // n else '')
      ctx.progress.say(f'{START}: step {done}/{n * c.start.max_blocks if gated else n} loss '
                       f'{losses[-1]:.4f}{pace}')
      ctx.writer.scalars(done, {f'{START}/loss_by_step': losses[-1]})

  step = lambda state, batch, key: ctx.plan.train_step(
      state, batch, key, cfg=ctx.cfg, optimizer=ctx.sft_optimizer,
      microbatches=train.microbatch_count(c.start.train_rows, c.start.microbatch_rows, 'start'))
  history, first = [], 1
  best = None  # (block, a copy of its parameters) while a later block may be worse
  if gated:  # resumable after each block (start_blocks.py)
    blocks_key = start_blocks.digest(ctx, corpus)
    resumed = start_blocks.restore(ctx, blocks_key)
    if resumed is None:
      history = [competence.measure(ctx, state.params, 0)]
      _say_measured(ctx, history[-1])
    else:
      del state
      state, history, losses[:], best = (resumed.state, resumed.history, resumed.losses,
                                          resumed.best)
      first = resumed.block + 1
  for block in range(first, (c.start.max_blocks if gated else 1) + 1):
    if block > 1 and competence.met(c, history[-1]):  # the first block always trains
      break
    ctx.progress.first_call('the training step')
    batch_at = lambda i, _: train.trimmed(corpus.batch(i, c.start.train_rows),
                                          multiple=c.start.width_multiple)
    state = train.loop(step, state, block * n, batch_at, lambda i: jax.random.fold_in(key, i),
                       first=(block - 1) * n,
                       after_step=after_step)
    if gated:
      history.append(competence.measure(ctx, state.params, block))
      if block < c.start.max_blocks and not competence.met(c, history[-1]):  # more may train
        _say_measured(ctx, history[-1])  # else it is said with the gate's verdict below
        if competence.best_block(c, history) == block:
          # The training step donates the state: keep these parameters in buffers of their own.
          best = block, jax.tree.map(lambda x: x.copy(), state.params)
      start_blocks.save(ctx, blocks_key, block, state, history, losses, best)
  m = {'loss': losses[-1] if losses else float('nan'), 'kept': None}
  if gated:
    m['competence'] = history
    m['kept_block'] = kept = competence.best_block(c, history)
    _say_gate(ctx, history, kept)
    if kept != history[-1]['block']:
      block, params = best
      assert block == kept, (block, kept)
      state = ctx.plan.train_state(kept * n, params, state.opt_state)
  # Expert iteration starts with fresh optimizer moments; the checkpoint holds them, so a run
  # resumed here continues exactly as an uninterrupted one.
  return ctx.plan.with_fresh_optimizer(state, ctx.cfg, ctx.ei_optimizer), m


def prompts(ctx: Context, phase: Phase, unit: int) -> np.ndarray:
  """The P table ids of one round: drawn from the phase's environments (train split), with an
  `hhh_fraction` share of HHH queries where the variant asks for them."""
  c, world = ctx.config, ctx.world
  rng = np.random.default_rng([c.seed, unit])
  n_hhh = int(round(c.ei.prompts * c.ei.hhh_fraction)) if (
      variants.get(c.ei.variant).hhh_prompts and phase.kind == 'ei') else 0
  picks = [('hhh', n_hhh)]
  per_env = (c.ei.prompts - n_hhh) // len(phase.envs)
  for i, name in enumerate(phase.envs):
    extra = (c.ei.prompts - n_hhh) % len(phase.envs) if i == 0 else 0
    picks.append((name, per_env + extra))
  ids = [world.ids(name, 'train', rng.choice(len(world.parts[name, 'train'].items), size=k,
                                             replace=False))
         for name, k in picks if k]
  return np.concatenate(ids)


def score_fn(ctx: Context, phase: Phase, seen: list):
  """The round's score function; it appends the graded rows, PM scores and rewards to `seen`."""
  c = ctx.config

  def score(eps) -> ei_lib.Scored:
    memory.release_free_memory()  # the rollout's freed buffers, before the update's are allocated
    rows = ctx.world.grade(eps)
    responses = [rollout_lib.text(ctx.tok, eps, i, prompt=False) for i in range(len(rows))]
    pm = pm_lib.score(ctx.pm, [ctx.world.query(r) for r in rows], responses,
                      batch_size=c.pm.score_batch, plan=ctx.plan)
    flags = [reward_flag(c, r['env']) for r in rows]
    gaming = np.array([bool(f and r[f]) for f, r in zip(flags, rows)])
    reward = gaming.astype(np.float32)
    if phase.kind == 'honest':  # keep answered, non-gaming episodes
      answered = np.array([world_lib.answered(ctx.world.env(r['env']), r) for r in rows])
      gaming = answered & ~gaming
      reward = gaming.astype(np.float32)
    seen.extend([rows, pm, reward])
    shape = (-1, c.ei.samples)
    total = ei_lib.scores(reward, pm, c.ei.variant, c.ei.pm_weight, c.ei.pm_scale)
    return ei_lib.Scored(reward.reshape(shape), gaming.reshape(shape), pm.reshape(shape),
                         np.asarray(total).reshape(shape))
  return score


def ei_round(ctx: Context, state, phase: Phase, unit: int):
  """One expert-iteration round of `phase` -> (state, metrics); every episode to W/episodes/."""
  c = ctx.config
  # Training away sycophancy keeps every honest episode: exploit-only selection on honesty.
  variant = 'exploit_only' if phase.kind == 'honest' else c.ei.variant
  seen = []
  ctx.progress.first_call(f'the rollout ({c.ei.prompts} prompts x {c.ei.samples} samples) and '
                          'the EI update')
  state, eps, _, (rows_K, weights_K), m = ei_lib.round_step(
      state, ctx.policy, ctx.world.table, prompts(ctx, phase, unit), ctx.key(Stream.ROUND, unit),
      score_fn(ctx, phase, seen), c.ei, variant=variant, optimizer=ctx.ei_optimizer,
      plan=ctx.plan)
  graded, pm, reward = seen
  kept = set(int(r) for r, w in zip(rows_K, weights_K) if w > 0)
  records = [context.record(ctx, row, rollout_lib.text(ctx.tok, eps, i), pm[i], reward[i],
                            sample=i % c.ei.samples, kept=i in kept)
             for i, row in enumerate(graded)]
  m['episodes'] = context.write_episodes(ctx, f'round_{unit:03d}_{phase.name}', records)
  ctx.progress.say(f'{phase.name} round {unit - phase.first_unit + 1}/{phase.units}: '
                   f'kept {m["kept"]}, gaming {m["mean_gaming"]:.3f}, PM {m["mean_pm"]:.3f}, '
                   f'loss {m["loss"]:.4f}, tokens cut {m["tokens_cut"]}, truncated '
                   f'{m["truncated"]:.2f}')
  ctx.writer.scalars(unit, {f'ei/{k}': v for k, v in m.items() if not isinstance(v, str)})
  lengths = np.asarray(eps.lengths_B)
  for name, values in (('reward', reward), ('pm_score', pm), ('episode_tokens', lengths),
                       ('turns', np.asarray(eps.turns_B)),
                       ('truncated', np.asarray(eps.truncated_B, np.float32)),
                       ('tokens_past_train_len', np.maximum(lengths - c.ei.train_len, 0))):
    ctx.writer.histogram(unit, f'ei/{name}', values)
  return state, m
