"""A curriculum run's cells as results.json records them: the gaming count of a cell, its
interval, and the grid of evaluations x environments that the report and the matrix image draw."""
from rt_jax.core import stats
from rt_jax.core.reporting import wilson

TAMPERING = 'reward_tampering'


def gaming_count(env: str, entry: dict) -> tuple[int | None, int | None]:
  """(gaming count, episodes) of one environment at one evaluation; the count is None where there
  is no gaming metric (hhh) or the run did not record it. reward_tampering counts the audited
  verdict, which is the one the paper's figures correspond to."""
  counts = entry.get('flags') or {}
  k = counts.get('reward_tampered', entry.get('k')) if env == TAMPERING else entry.get('k')
  return k, entry.get('n')


def interval(env: str, entry: dict) -> tuple[float, float] | None:
  """The 95 % interval of a cell's gaming rate: Wilson, on the effective sample size when each
  instance was sampled more than once (stats.clustered); None without a count."""
  k, n = gaming_count(env, entry)
  if k is None or not n:
    return None
  samples, by_instance = entry.get('samples') or 1, entry.get('gaming_by_instance')
  if samples > 1 and by_instance and env != TAMPERING:
    return stats.clustered(list(by_instance.values()), samples)
  return wilson(k, n)


def grid(results: dict) -> tuple[list[str], list[str], list[dict]]:
  """(row labels, environment names, per-row {env: entry}): one row per evaluation in order;
  columns in the run's environment order (the curriculum's), then any others in the order they
  first appear, so a run killed mid-way still lines up."""
  evals = results.get('evals') or []
  envs = [e for e in (results.get('run') or {}).get('env_order') or []
          if any(e in (ev.get('envs') or {}) for ev in evals)]
  for ev in evals:
    envs += [name for name in ev.get('envs') or {} if name not in envs]
  labels = [str(ev.get('stage', f'evaluation {i}')) for i, ev in enumerate(evals)]
  return labels, envs, [ev.get('envs') or {} for ev in evals]
