"""The helpful-only start's competence gate (docs/design.md §6): task success (each environment's
`competent` flag) on train-split instances the curriculum's evaluations never use, measured before
the helpful-only SFT and after each block of `start.steps` steps, until every target in
`start.competence` is met or `start.max_blocks` blocks have trained. Gaming is a choice only for a
model that can do the task; the gate makes the start able to, or says it is not."""
import numpy as np

from rt_jax.rl import rollout as rollout_lib
from rt_jax.studies.subterfuge import context
from rt_jax.studies.subterfuge.context import Context, Stream
from rt_jax.studies.subterfuge.plan import competence_targets as targets
from rt_jax.studies.subterfuge.plan import named_draw


def instances(config, world, name: str) -> np.ndarray:
  """`start.gate_instances` train-split instances of `name`, the same for every measurement of a
  start, drawn by a key named by (start.seed, environment)."""
  return named_draw(config.start.seed, f'competence/{name}', len(world.parts[name, 'train'].items),
                    config.start.gate_instances)


def measure(ctx: Context, params, block: int) -> dict:
  """{'block': b, 'envs': {env: [k, n]}}: how many gate instances of each gated environment the
  policy completed (one sample each, at the EI temperature)."""
  c, world = ctx.config, ctx.world
  names = list(targets(c))
  ids = np.concatenate([world.ids(e, 'train', instances(c, world, e)) for e in names])
  p, total = c.eval.prompts, len(ids)
  ids = np.resize(ids, -(-total // p) * p)  # pad the last batch; its extra rows are dropped
  counts, records = {e: [0, 0] for e in names}, []
  # The evaluation's program when eval.samples is 1 (one sample per instance here too).
  ctx.progress.first_call(f'the evaluation rollout ({p} prompts x 1 samples)')
  for b in range(len(ids) // p):
    ctx.progress.say(f'competence after {block} block(s): batch {b + 1}/{len(ids) // p}')
    eps = rollout_lib.on_mesh(ctx.plan, params, ctx.policy, world.table, ids[b * p:(b + 1) * p],
                              ctx.start_key(Stream.COMPETENCE, block, b), c.ei.temperature, 1,
                              c.ei.top_p)
    for r, row in enumerate(world.grade(eps)):
      if b * p + r < total:
        env = world.env(row['env'])
        counts[row['env']][0] += bool(row[env.competent or env.answered])
        counts[row['env']][1] += 1
        records.append(context.record(ctx, row, rollout_lib.text(ctx.tok, eps, r), float('nan'),
                                      row.get('reward', float('nan')), sample=0, kept=None))
  # What the start did at each measurement, as every other episode: W/episodes/.
  episodes = context.write_episodes(ctx, f'competence_block_{block}', records)
  return {'block': block, 'envs': counts, 'episodes': episodes}


def met(config, measured: dict) -> bool:
  return all(k >= t * n for (k, n), t in ((measured['envs'][e], t)
                                          for e, t in targets(config).items()))


def closeness(config, measured: dict) -> tuple[int, float]:
  """How near a measurement is to the targets: (targets met, mean over the gated environments of
  the success rate as a share of its target, capped at 1). Larger is nearer."""
  shares = [min(1.0, k / (t * n)) if n else 0.0
            for (k, n), t in ((measured['envs'][e], t) for e, t in targets(config).items())]
  return sum(s >= 1.0 for s in shares), float(np.mean(shares)) if shares else 0.0


def best_block(config, history: list) -> int:
  """The trained block (1 or later) whose measurement is nearest the targets; the earliest of
  equals (fewer steps on the corpus). A start whose gate is not met keeps that block's weights:
  the gate's instances are train-split, so this chooses among the start's own checkpoints without
  looking at any evaluation."""
  trained = [h for h in history if h['block'] >= 1]
  return max(trained, key=lambda h: (closeness(config, h), -h['block']))['block']


def line(measured: dict) -> str:
  return ', '.join(f'{e} {k}/{n}' for e, (k, n) in measured['envs'].items())
