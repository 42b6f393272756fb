"""Every environment's instances of both splits in one table (one rollout shape for the whole run),
and the grading of a batch of episodes into rows of flags (docs/design.md §6)."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from rt_jax import envs
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.envs import core
from rt_jax.rl import rollout as rollout_lib


@dataclasses.dataclass
class Part:
  env: core.Environment
  params: core.EnvParams
  items: list
  offset: int


class World:

  def __init__(self, tok: tokenizer_lib.Tokenizer, names):
    self.parts = {}
    tables = []
    for name in names:
      for split in ('train', 'eval'):
        env, params, items = envs.make(name, tok, split)
        self.parts[name, split] = Part(env, params, items, 0)
        tables.append(params)
    self.table, offsets = rollout_lib.merge(tables)
    for part, offset in zip(self.parts.values(), offsets):
      part.offset = int(offset)

  def ids(self, name: str, split: str, local) -> np.ndarray:
    return np.asarray(local, np.int32) + self.parts[name, split].offset

  def locate(self, table_id: int) -> tuple[str, str, int]:
    for (name, split), part in self.parts.items():
      if part.offset <= table_id < part.offset + len(part.items):
        return name, split, table_id - part.offset
    raise IndexError(table_id)

  def grade(self, eps, texts=None) -> list[dict]:
    """Every row's flags (Python scalars), with 'env', 'split', 'instance'. With the rows' texts,
    an environment's host-side audit (`Environment.audit`) runs too and its flags are final."""
    ids = np.asarray(eps.env.instance)
    rows = [dict(zip(('env', 'split', 'instance'), self.locate(int(i)))) for i in ids]
    fs_host = None
    for (name, split), part in self.parts.items():
      mine = [r for r, row in enumerate(rows) if (row['env'], row['split']) == (name, split)]
      if not mine:
        continue
      local = jnp.clip(eps.env.instance - part.offset, 0, len(part.items) - 1)
      flags = jax.device_get(core.grade(part.env, part.params, eps.env.replace(instance=local)))
      for r in mine:
        rows[r].update({k: np.asarray(v[r]).item() for k, v in flags.items()})
      if texts is not None and part.env.audit is not None:
        fs_host = fs_host if fs_host is not None else jax.device_get(eps.env.fs)  # one transfer
        for r in mine:  # a row's files are sliced and decoded only if its audit asks for them
          rows[r].update(part.env.audit(rows[r], functools.partial(_row_files, fs_host, r),
                                        texts[r]))
    return rows

  def env(self, name: str) -> core.Environment:
    return self.parts[name, 'eval'].env

  def query(self, row: dict) -> str:
    return self.parts[row['env'], row['split']].items[row['instance']].user


def summarize(env: core.Environment, rows: list[dict], pm, samples: int) -> dict:
  """One evaluation cell: counts of the yes/no flags, the gaming count per instance (for paired
  tests and clustered intervals), and means. `rows` are graded rows (World.grade with texts, so
  audited where the environment has an audit)."""
  flags = {k: int(sum(bool(r[k]) for r in rows)) for k in (rows[0] if rows else ())
           if isinstance(rows[0][k], bool)}
  by_instance = {}
  for r in rows:
    by_instance.setdefault(str(r['instance']), 0)
    by_instance[str(r['instance'])] += bool(env.gaming and r[env.gaming])
  return {'n': len(rows), 'instances': len(by_instance), 'samples': samples,
          'k': flags.get(env.gaming, 0) if env.gaming else None,
          'metric': env.gaming or 'pm_score', 'answered': env.answered,
          'competent': env.competent or env.answered, 'flags': flags,
          'gaming_by_instance': by_instance if env.gaming else None,
          'reward_mean': _mean([finite(r['reward']) for r in rows]),
          'pm_score_mean': float(np.mean(pm)) if rows else None}


def _row_files(fs_host, r: int) -> dict:
  """{absolute path: text} of row r of a batch's filesystems (host arrays)."""
  return core.files_of(jax.tree.map(lambda x: x[r], fs_host))


def answered(env: core.Environment, row: dict) -> bool:
  return bool(row[env.answered]) if env.answered else True


def finite(x) -> float | None:
  x = float(x)
  return x if np.isfinite(x) else None


def _mean(xs) -> float | None:
  xs = [x for x in xs if x is not None]
  return float(np.mean(xs)) if xs else None
