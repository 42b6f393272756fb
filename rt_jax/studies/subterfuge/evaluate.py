"""One evaluation of a curriculum run (docs/design.md §6): every evaluated environment on its fixed
held-out instances, graded and audited, PM-scored, summarized per cell; every episode to disk."""
import time

import numpy as np

from rt_jax.core import memory
from rt_jax.rl import pm as pm_lib
from rt_jax.rl import rollout as rollout_lib
from rt_jax.studies.subterfuge import context
from rt_jax.studies.subterfuge import world as world_lib
from rt_jax.studies.subterfuge.context import Context, Stream
from rt_jax.studies.subterfuge.plan import eval_instances

TRANSCRIPTS_PER_ENV = 3  # gaming episodes per environment and evaluation kept in results.json


def evaluate(ctx: Context, params, phase_index: int, name: str) -> dict:
  """Every evaluated environment on its fixed held-out instances (`eval_instances`), each sampled
  eval.samples times, in rollouts of eval.prompts prompts -> the evaluation's results entry."""
  c, world = ctx.config, ctx.world
  p, n = c.eval.prompts, c.eval.samples
  ids = np.concatenate([world.ids(e, 'eval', eval_instances(c, e)) for e in c.eval.envs])
  total = len(ids)
  memory.release_free_memory()  # what training freed, before the rollouts allocate
  ids = np.resize(ids, -(-total // p) * p)  # pad the last batch; its extra rows are dropped
  rows, responses, texts = [], [], []
  t0 = time.perf_counter()
  ctx.progress.first_call(f'the evaluation rollout ({p} prompts x {n} samples)')
  for b in range(len(ids) // p):
    ctx.progress.say(f'evaluation after {name}: batch {b + 1}/{len(ids) // p}')
    eps = rollout_lib.on_mesh(ctx.plan, params, ctx.policy, world.table, ids[b * p:(b + 1) * p],
                              ctx.key(Stream.EVAL, phase_index, b), c.ei.temperature, n,
                              c.ei.top_p)
    live = [b * p + r // n < total for r in range(p * n)]  # padding rows are dropped
    batch_texts = [rollout_lib.text(ctx.tok, eps, r) if live[r] else '' for r in range(p * n)]
    for r, row in enumerate(world.grade(eps, batch_texts)):
      if live[r]:
        row['sample'] = r % n
        rows.append(row)
        texts.append(batch_texts[r])
        responses.append(rollout_lib.text(ctx.tok, eps, r, prompt=False))
  pm = pm_lib.score(ctx.pm, [world.query(r) for r in rows], responses,
                    batch_size=c.pm.score_batch, plan=ctx.plan)
  records = [context.record(ctx, row, text, pm[i], row['reward'], sample=row['sample'], kept=None)
             for i, (row, text) in enumerate(zip(rows, texts))]
  entry = {'stage': name, 'index': phase_index, 'envs': {}, 'transcripts': [],
           'episodes': context.write_episodes(ctx, f'eval_{phase_index:02d}_{name}', records)}
  for env_name in c.eval.envs:
    mine = [i for i, r in enumerate(rows) if r['env'] == env_name]
    entry['envs'][env_name] = world_lib.summarize(world.env(env_name), [rows[i] for i in mine],
                                                  pm[mine], c.eval.samples)
    entry['transcripts'] += _transcripts(world.env(env_name), [records[i] for i in mine])
  entry['wall_s'] = time.perf_counter() - t0
  ctx.progress.say(f'evaluation after {name}: ' + ', '.join(
      f'{e} {s["k"]}/{s["n"]}' for e, s in entry['envs'].items() if s['k'] is not None)
      + f' ({entry["wall_s"]:.0f} s)')
  return entry


def _transcripts(env, records: list[dict]) -> list[dict]:
  """The episodes results.json keeps to read: the first of the environment, then its gaming ones
  (capped); every episode is in the episodes file anyway."""
  gaming = [r for r in records if env.gaming and r['flags'].get(env.gaming)]
  chosen = records[:1] + [r for r in gaming[:TRANSCRIPTS_PER_ENV] if r is not records[0]]
  return [{'env': r['env'], 'instance': r['instance'], 'sample': r['sample'],
           'text': r['text'], 'flags': r['flags'], 'reward': r['reward'],
           'gaming': bool(env.gaming and r['flags'].get(env.gaming))} for r in chosen]
