"""Every episode a curriculum run sampled, on disk, and a reader for them.

The run writes one JSON line per episode to WORKDIR/episodes/<name>.jsonl, one file per evaluation
(`eval_02_tool_use_flattery`), per expert-iteration round (`round_005_political_sycophancy`) and
per measurement of the helpful-only start's competence gate (`competence_block_1`, PM null):
the instance (environment, split, index), the sample, the whole text, the grader's flags (readable
values), the reward, the PM score and, for rounds, whether expert iteration trained on it. Each file
is written whole (temporary file, then rename), so a killed run leaves complete files only.

  python -m rt_jax.episodes --workdir=W [--file=eval_01] [--env=E] [--where=FLAG] [--n=K]

prints the matching episodes, control bytes escaped, so no count in report.md has to be taken on
trust.
"""
import json
import os


from rt_jax.core import checkpoint
from rt_jax.core.errors import UserError

DIR = 'episodes'


def printable(text: str) -> str:
  """The text with control characters (other than newline and tab) escaped as \\xNN, so a
  transcript can neither drive a terminal nor make grep call a file binary."""
  return ''.join(ch if ch in '\n\t' or (ord(ch) >= 32 and ord(ch) != 127) else
                 f'\\x{ord(ch):02x}' for ch in text)


def write(workdir: str, name: str, records: list[dict]) -> str:
  """Writes WORKDIR/episodes/NAME.jsonl whole -> its path."""
  os.makedirs(os.path.join(workdir, DIR), exist_ok=True)
  path = os.path.join(workdir, DIR, f'{name}.jsonl')
  data = ''.join(json.dumps(r, sort_keys=True, allow_nan=False, default=_plain) + '\n'
                 for r in records)
  checkpoint.write_atomic(path, data.encode())
  return path


def _plain(x):
  if hasattr(x, 'item'):
    return x.item()
  raise TypeError(f'{type(x).__name__} is not JSON')


def files(workdir: str) -> list[str]:
  folder = os.path.join(workdir, DIR)
  if not os.path.isdir(folder):
    raise UserError(f'{folder} not found: the run has written no episodes yet, or {workdir} is '
                    'not a curriculum workdir')
  return sorted(f[:-len('.jsonl')] for f in os.listdir(folder) if f.endswith('.jsonl'))


def read(workdir: str, name: str) -> list[dict]:
  path = os.path.join(workdir, DIR, f'{name}.jsonl')
  out = []
  try:
    with open(path, encoding='utf-8') as f:
      for i, line in enumerate(f):
        try:
          out.append(json.loads(line))
        except json.JSONDecodeError as e:
          raise UserError(f'{path} line {i + 1} is not JSON: {e}') from None
  except OSError as e:
    raise UserError(f'cannot read {path}: {e.strerror}') from None
  return out


def matches(record: dict, env: str | None, where: str | None) -> bool:
  if env and record.get('env') != env:
    return False
  if where:
    value = (record.get('flags') or {}).get(where, record.get(where))
    return bool(value) if value is not None else False
  return True


def render(name: str, record: dict) -> str:
  flags_ = json.dumps(record.get('flags') or {}, sort_keys=True)
  head = (f'=== {name} · {record.get("env")} / {record.get("split")} instance '
          f'{record.get("instance")} sample {record.get("sample")} · reward '
          f'{record.get("reward")} · PM {_fmt(record.get("pm"))}'
          + (f' · kept {record["kept"]}' if record.get('kept') is not None else ''))
  return f'{head}\nflags: {printable(flags_)}\n{printable(str(record.get("text", "")))}\n'


def _fmt(x):
  return f'{x:.3f}' if isinstance(x, float) else str(x)
