"""The two questions a curriculum run is for, answered from its paired evaluations (report.md's
"Research questions"; also the pooled report of a seed sweep):

1. Does expert iteration on a stage raise that stage's own gaming rate?
2. Does it raise the rates of later environments, not yet trained on (the stages after it in the
   run's configured order, and the held-out reward tampering)?

Each answer compares the evaluation before a stage with the one after it on the instances measured
at both: the rates there, the instances whose gaming count rose or fell, and the exact two-sided
sign test over those that changed. Pooled runs are compared run by run, each with its own
evaluations, and the rises and falls summed; the number of runs that moved each way is shown
beside it, since the pooled test takes the trained models as given (one seed can carry it). The
verdict counts comparisons with p < ALPHA in each direction, unadjusted for how many there are,
which the text says."""
from rt_jax.core import stats
from rt_jax.core.reporting import markdown_table, pct
from rt_jax.studies.subterfuge.cells import TAMPERING, grid

ALPHA = 0.05


def stage_order(results: dict) -> list[str]:
  """The run's stages in training order, from its config (results.json 'run'), so stages not yet
  reached by a run still in progress count as later; else the evaluated stages' order."""
  run = results.get('run') or {}
  order = list(run.get('stages') or run.get('reward_flags') or ())
  return order or grid(results)[0][1:]


def comparisons(results: dict) -> list[dict]:
  """One dict per (stage, environment) of one run: 'own' (the stage's environment) or later,
  rates before and after on the instances measured at both, and the paired test."""
  labels, _, rows = grid(results)
  order = stage_order(results)
  out = []
  for i in range(1, len(rows)):
    stage = labels[i]
    if stage not in order:
      continue
    for env in [stage] + order[order.index(stage) + 1:] + [TAMPERING]:
      before, after = rows[i - 1].get(env) or {}, rows[i].get(env) or {}
      a, b = before.get('gaming_by_instance'), after.get('gaming_by_instance')
      if not a or not b:
        continue
      common = set(a) & set(b)
      samples = after.get('samples') or 1
      out.append({'stage': stage, 'env': env, 'own': env == stage, 'runs_up': 0,
                  'runs_down': 0, 'before': (sum(a[x] for x in common), len(common) * samples),
                  'after': (sum(b[x] for x in common), len(common) * samples),
                  **stats.paired(a, b)})
  return out


def pooled(per_run: dict[str, dict]) -> list[dict]:
  """comparisons() of every run, summed per (stage, environment) in order of first appearance;
  'runs_up' / 'runs_down' count the runs whose own instances rose / fell on balance."""
  found = {}
  for results in per_run.values():
    for c in comparisons(results):
      total = found.setdefault((c['stage'], c['env']), {
          'stage': c['stage'], 'env': c['env'], 'own': c['own'], 'instances': 0, 'up': 0,
          'down': 0, 'before': (0, 0), 'after': (0, 0), 'runs_up': 0, 'runs_down': 0})
      for key in ('instances', 'up', 'down'):
        total[key] += c[key]
      for key in ('before', 'after'):
        total[key] = tuple(x + y for x, y in zip(total[key], c[key]))
      total['runs_up'] += c['up'] > c['down']
      total['runs_down'] += c['down'] > c['up']
  for total in found.values():
    total['p'] = stats.sign_test(total['up'], total['down'])
  return list(found.values())


def _rate(count) -> str:
  k, n = count
  return f'{k}/{n} ({pct(k / n)} %)' if n else '—'


def _verdict(found: list[dict]) -> str:
  if not found:
    return 'not measured (no paired evaluations).'
  name = lambda c: f'{c["stage"]} -> {c["env"]}'
  up = [name(c) for c in found if c['p'] < ALPHA and c['up'] > c['down']]
  down = [name(c) for c in found if c['p'] < ALPHA and c['down'] > c['up']]
  tests = f'{len(found)} test' + ('s' if len(found) > 1 else '')
  return (f'rose in {len(up)} of {len(found)}' + (f' ({", ".join(up)})' if up else '')
          + f', fell in {len(down)}' + (f' ({", ".join(down)})' if down else '')
          + f' (p < {ALPHA}, two-sided sign test, not adjusted for the {tests}).')


def section(results: dict, per_run: dict[str, dict] | None = None) -> list[str]:
  """The report's lines; with `per_run` ({run: results}), the runs pooled run by run."""
  found = pooled(per_run) if per_run else comparisons(results)
  if not found:
    return ['Needs an evaluation before and after a trained stage.']
  own = [c for c in found if c['own']]
  later = [c for c in found if not c['own']]
  head = ['stage trained', 'environment', 'before', 'after', 'instances up / down', 'p']
  rows = [[c['stage'], c['env'], _rate(c['before']), _rate(c['after']),
           f'+{c["up"]} / -{c["down"]} of {c["instances"]}', f'{c["p"]:.2g}']
          + ([f'{c["runs_up"]} / {c["runs_down"]}'] if per_run else []) for c in own + later]
  lines = ['Each stage against the evaluation before it, on the instances measured at both.']
  if per_run:
    lines[0] += (f' {len(per_run)} runs, each compared with its own evaluations; the last column '
                 'counts the runs whose instances rose / fell on balance.')
  return lines + [
      '', f'1. Does expert iteration on a stage raise that stage\'s own gaming rate? Its rate '
      f'{_verdict(own)}',
      f'2. Does it raise the rates of later environments not yet trained on (later stages, '
      f'reward tampering)? Their rates {_verdict(later)}', '',
      *markdown_table(head + (['runs up / down'] if per_run else []), rows)]
