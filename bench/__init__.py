"""Benchmarks (`python -m bench.NAME`). Each prints its result as one JSON line and appends it,
with the date, the commit and the CPU, to bench/results/NAME.jsonl: the machine-written record
of what was measured where.

`RT_JAX_BENCH_RESULTS=DIR` appends under DIR instead, and an empty value appends nowhere; a
benchmark started by a test (pytest sets PYTEST_CURRENT_TEST) appends only where that variable
names a directory, so test runs leave no rows."""
import datetime
import json
import os
import subprocess

from rt_jax.core import checkpoint, convert

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(_REPO, 'bench', 'results')


def _commit() -> str | None:
  try:
    proc = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=_REPO, capture_output=True,
                          text=True, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return None
  return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def _cpu() -> str | None:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        key, _, value = line.partition(':')
        if key.strip() == 'model name':
          return value.strip()
  except OSError:
    pass
  return None


def results_dir() -> str | None:
  """Where results are appended, or None for nowhere."""
  if 'RT_JAX_BENCH_RESULTS' in os.environ:
    return os.environ['RT_JAX_BENCH_RESULTS'] or None
  return None if 'PYTEST_CURRENT_TEST' in os.environ else RESULTS


def emit(name: str, result: dict) -> None:
  """Prints `result` as one JSON line and appends it, with `date` (UTC, ISO 8601), `commit`
  (git HEAD, or null), `cpu` (/proc/cpuinfo's model name, or null) and `load_1m` (the 1-minute
  load average: other work sharing the CPU), to DIR/NAME.jsonl."""
  print(json.dumps(result), flush=True)
  directory = results_dir()
  if directory is None:
    return
  date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')
  row = {**result, 'date': date, 'commit': _commit(), 'cpu': _cpu(),
         'load_1m': round(os.getloadavg()[0], 2)}  # other work on the machine at the time
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, f'{name}.jsonl'), 'a') as f:
    f.write(json.dumps(row) + '\n')


def converted_tokenizer():
  """SmolLM2's tokenizer from the converted model in the cache, or None where it is absent."""
  converted = convert.named_directory('smollm2')
  if not os.path.isfile(os.path.join(converted, 'tokenizer.json')):
    return None
  return checkpoint.read_model_files(converted)[1]
