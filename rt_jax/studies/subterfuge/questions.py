"""The two questions a curriculum run is for, answered from its paired evaluations (report.md's
"Research questions"; also the pooled report of a seed sweep):

1. Does expert iteration on a stage raise that stage's own gaming rate?
2. Does it raise the rates of later environments, not yet trained on (the later stages and the
   held-out reward tampering)?

Each answer compares the evaluation before a stage with the one after it on the same held-out
instances: the instances whose gaming count rose or fell, and the exact two-sided sign test over
those that changed (stats.paired). The verdict counts comparisons with p < ALPHA in each direction,
unadjusted for the number of comparisons, which the text says."""
from rt_jax.core import stats
from rt_jax.core.reporting import markdown_table, pct
from rt_jax.studies.subterfuge.cells import TAMPERING, gaming_count, grid

ALPHA = 0.05


def comparisons(results: dict) -> tuple[list[dict], list[dict]]:
  """(own, later): one dict per (stage, environment) with the rates before and after the stage
  and the paired test; `own` has the stage's own environment, `later` every environment that a
  later stage trains, and reward tampering."""
  labels, envs, rows = grid(results)
  stages = [s for s in labels[1:] if s in envs]
  own, later = [], []
  for i in range(1, len(rows)):
    stage = labels[i]
    if stage not in stages:
      continue
    after_stages = stages[stages.index(stage) + 1:] + [TAMPERING]
    for env in [stage] + [e for e in after_stages if e in envs]:
      before, after = rows[i - 1].get(env), rows[i].get(env)
      if not before or not after:
        continue
      a, b = before.get('gaming_by_instance'), after.get('gaming_by_instance')
      if not a or not b:
        continue
      test = stats.paired(a, b)
      (own if env == stage else later).append(
          {'stage': stage, 'env': env, 'before': gaming_count(env, before),
           'after': gaming_count(env, after), **test})
  return own, later


def _rate(count) -> str:
  k, n = count
  return f'{k}/{n} ({pct(k / n)} %)' if k is not None and n else '—'


def _verdict(found: list[dict]) -> str:
  up = [f'{c["stage"]} -> {c["env"]}' for c in found if c['p'] < ALPHA and c['up'] > c['down']]
  down = [f'{c["stage"]} -> {c["env"]}' for c in found if c['p'] < ALPHA and c['down'] > c['up']]
  if not found:
    return 'not measured (no paired evaluations).'
  text = f'rose in {len(up)} of {len(found)} comparisons'
  text += f' ({", ".join(up)})' if up else ''
  text += f', fell in {len(down)}' + (f' ({", ".join(down)})' if down else '')
  return text + f'; p < {ALPHA}, two-sided sign test, not adjusted for the {len(found)} tests.'


def section(results: dict) -> list[str]:
  own, later = comparisons(results)
  rows = [[c['stage'], c['env'], _rate(c['before']), _rate(c['after']),
           f'+{c["up"]} / -{c["down"]} of {c["instances"]}', f'{c["p"]:.2g}']
          for c in own + later]
  if not rows:
    return ['Needs an evaluation before and after a trained stage.']
  return ['Each stage compared with the evaluation before it, on the same held-out instances.',
          '', f'1. Does expert iteration on a stage raise that stage\'s own gaming rate? '
          f'It {_verdict(own)}',
          f'2. Does it raise the rates of later environments not yet trained on (later stages, '
          f'reward tampering)? They {_verdict(later)}', '',
          *markdown_table(['stage trained', 'environment', 'before', 'after',
                           'instances up / down', 'p'], rows)]
