"""Environment steps per second: the JAX machine against the plain-Python reference on the same
batch of scripted episodes; prints one JSON line.

  python -m bench.envs [--batch=1024] [--repeats=3] [--tokenizer=builtin|smollm2]

Each episode is a tool_use_flattery instance answering six scripted segments (ls, ls of the poem's
folder, cat of the poem, a recursive grep, writing the grade, the final answer), the shape of a
curriculum episode. One step is one segment of one episode. The JAX side times `core.advance` on
the whole batch (actions as tokens in, observation tokens out; best of --repeats after a compiling
call); the reference side times `reference.Episode.step` on the same segments' text.

The builtin tokenizer is byte-level, so its observations need no encoding; `--tokenizer=smollm2`
(the converted model in $RT_JAX_CACHE, from `python -m rt_jax.convert --source=smollm2`) adds the
observation encoder's greedy BPE matching that a SmolLM2 rollout pays.
"""
import time

import jax
import numpy as np
from absl import flags

import bench
from rt_jax import envs
from rt_jax.core import cli, convert
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.core.errors import UserError
from rt_jax.envs import core, reference

_BATCH = flags.DEFINE_integer('batch', 1024, 'Episodes stepped together.', lower_bound=1)
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed runs (the best is reported).', lower_bound=1)
_TOKENIZER = flags.DEFINE_enum('tokenizer', 'builtin', ['builtin', 'smollm2'],
                               'Codec of actions and observations (smollm2: the converted model\'s).')


def tokenizer() -> tokenizer_lib.Tokenizer:
  if _TOKENIZER.value == 'builtin':
    return tokenizer_lib.builtin()
  tok = bench.converted_tokenizer()
  if tok is None:
    raise UserError(f'--tokenizer=smollm2: no converted model in '
                    f'{convert.named_directory("smollm2")}; run python -m rt_jax.convert '
                    f'--source=smollm2 first')
  return tok


def script(item: core.Instance) -> list[str]:
  poem, grade = item.info['poem_paths'][0], item.info['grade_path']
  folder, top = poem.rsplit('/', 1)[0], '/'.join(poem.split('/')[:4])
  return ['<cot>First I need to find the poem.</cot><bash>ls</bash>', f'<bash>ls {folder}</bash>',
          f'<bash>cat {poem}</bash>', f'<bash>grep -rn the {top}</bash>',
          f"<bash>echo 'poems_score = 4' > {grade}</bash>", 'I gave your poem a 4.']


def main(argv):
  del argv
  with cli.refusing():
    tok = tokenizer()
  _, params, items = envs.make('tool_use_flattery', tok, 'eval')
  ids = np.arange(_BATCH.value) % len(items)
  scripts = [script(items[i]) for i in ids]
  steps = len(scripts[0])
  width = 256
  actions = np.zeros((steps, _BATCH.value, width), np.int32)
  lens = np.zeros((steps, _BATCH.value), np.int32)
  for b, segments in enumerate(scripts):
    for t, segment in enumerate(segments):
      encoded = tok.encode(segment)
      actions[t, b, :len(encoded)], lens[t, b] = encoded, len(encoded)

  def run_jax():
    state, _, _ = core.reset(params, ids)
    for t in range(steps):
      state, tokens, _, _ = core.advance(params.codec, state, actions[t], lens[t])
    jax.block_until_ready(tokens)

  def run_reference():
    episodes = [reference.Episode(items[i].files, items[i].dirs) for i in ids]
    for t in range(steps):
      for episode, segments in zip(episodes, scripts):
        episode.step(segments[t])

  start = time.perf_counter()
  run_jax()
  compile_s = time.perf_counter() - start
  timings = {}
  for name, call in (('jax', run_jax), ('reference', run_reference)):
    best = float('inf')
    for _ in range(_REPEATS.value):
      start = time.perf_counter()
      call()
      best = min(best, time.perf_counter() - start)
    timings[name] = steps * _BATCH.value / best
  bench.emit('envs', {
      'env': 'tool_use_flattery', 'tokenizer': _TOKENIZER.value, 'batch': _BATCH.value,
      'segments': steps,
      'device': jax.devices()[0].platform, 'jax_steps_per_s': round(timings['jax'], 1),
      'reference_steps_per_s': round(timings['reference'], 1),
      # Three significant figures: a fixed 3 decimals left 0.012 of a 0.0115 ratio (4 % off).
      'ratio': float(f"{timings['jax'] / timings['reference']:.3g}"),
      'first_call_s': round(compile_s, 1)})


if __name__ == '__main__':
  cli.run(main)
