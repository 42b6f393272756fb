"""Samples from a model directory (a run's workdir or a converted checkpoint) and prints the
transcripts; the same seed prints the same text.

  python -m rt_jax.sample --checkpoint=runs/tiny --prompt="What is the capital of Japan?" --n=4
  python -m rt_jax.sample --checkpoint=runs/quick --env=reward_tampering --instance=0 --n=2

With --env, each sample is a whole episode of that environment's instance (`rollout.rollout`: tool
calls run in the virtual filesystem, up to --max_turns segments of --max_new_tokens tokens each),
printed with its grader's flags in readable form (`Environment.readable`: choice=A, not 1).
"""
import functools

import jax
import numpy as np
from absl import flags

from rt_jax.core import checkpoint
from rt_jax.core import sharding
from rt_jax.core import cli
from rt_jax import envs
from rt_jax.rl import chat
from rt_jax.rl import rollout
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.data import splits
from rt_jax.envs import core
from rt_jax.core.errors import ConfigError

_CHECKPOINT = flags.DEFINE_string('checkpoint', None,
                                  'Model directory (workdir or convert output).')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step; the latest by default.')
_PROMPT = flags.DEFINE_string('prompt', None, 'The user message (or raw text with --raw).')
_SYSTEM = flags.DEFINE_string('system', '', 'Optional system message before the user turn.')
_RAW = flags.DEFINE_bool('raw', False, 'Feed --prompt as plain text, without chat formatting.')
_ENV = flags.DEFINE_enum('env', None, list(envs.ENVIRONMENTS),
                         'Sample whole episodes of this environment instead of a --prompt.')
_SPLIT = flags.DEFINE_enum('split', 'eval', list(splits.SPLITS), 'With --env: the split.')
_INSTANCE = flags.DEFINE_integer('instance', 0, 'With --env: the instance index in the split.',
                                 lower_bound=0)
_MAX_TURNS = flags.DEFINE_integer('max_turns', 4, 'With --env: assistant segments per episode.',
                                  lower_bound=1)
_N = flags.DEFINE_integer('n', 1, 'Number of samples.', lower_bound=1)
_MAX_NEW = flags.DEFINE_integer('max_new_tokens', 128,
                                'Tokens to generate per sample (per segment with --env).',
                                lower_bound=1)
_TEMPERATURE = flags.DEFINE_float('temperature', 1.0, 'Softmax temperature; 0 is greedy.',
                                  lower_bound=0.0)
_TOP_P = flags.DEFINE_float('top_p', 1.0, 'Nucleus mass; 1 samples from the full distribution.',
                            lower_bound=0.0, upper_bound=1.0)
_SEED = flags.DEFINE_integer('seed', 0, 'Sampling seed.')
flags.mark_flags_as_required(['checkpoint'])


def _chat(cfg, tok, params):
  if _RAW.value:
    prompt = tok.encode(_PROMPT.value)
  else:
    turns = [{'role': 'system', 'content': _SYSTEM.value}] if _SYSTEM.value else []
    turns.append({'role': 'user', 'content': _PROMPT.value})
    prompt = tokenizer_lib.encode_chat(tok, turns, add_generation_prompt=True)[0]
  outs = chat.generate(params, cfg, tok, [prompt], jax.random.key(_SEED.value),
                       plan=sharding.Plan.one_device(), max_new_tokens=_MAX_NEW.value,
                       temperature=_TEMPERATURE.value, top_p=_TOP_P.value, samples=_N.value,
                       what='--max_new_tokens')
  for i, out in enumerate(outs):
    print(f'=== sample {i} ===\n{tok.decode(out)}', flush=True)


def _episodes(cfg, tok, params):
  env, table, items = envs.make(_ENV.value, tok, _SPLIT.value)
  if _INSTANCE.value >= len(items):
    raise ConfigError(f'--instance={_INSTANCE.value}: the {_SPLIT.value} split of {_ENV.value} '
                      f'has {len(items)} instances')
  prompt_len = int(table.prompt_len[_INSTANCE.value])
  if prompt_len + _MAX_NEW.value > cfg.max_len:
    raise ConfigError(f'the prompt of {prompt_len} tokens + --max_new_tokens={_MAX_NEW.value} '
                      f'exceeds the model context of {cfg.max_len} tokens')
  # Room for every segment and an observation of the machine's largest size after each.
  context = min(cfg.max_len, prompt_len + _MAX_TURNS.value * (_MAX_NEW.value + core.OBS_TOKENS))
  policy = rollout.Policy.make(cfg, tok, rollout.RolloutConfig(
      context=context, max_turns=_MAX_TURNS.value, max_segment_tokens=_MAX_NEW.value))
  eps = rollout.run(params, policy, table, [_INSTANCE.value], jax.random.key(_SEED.value),
                    _TEMPERATURE.value, _N.value, top_p=_TOP_P.value)
  graded = jax.device_get(core.grade(env, table, eps.env))
  for i in range(_N.value):
    flags_i = {k: np.asarray(v[i]).item() for k, v in graded.items()}
    text = rollout.text(tok, eps, i)
    if env.audit is not None:  # reward_tampering: the sandboxed audit's verdict, as reported
      fs = jax.tree.map(lambda x, i=i: np.asarray(x[i]), eps.env.fs)
      flags_i.update(env.audit(flags_i, functools.partial(core.files_of, fs), text))
    flags_i = ', '.join(f'{k}={v}' for k, v in sorted(env.readable(flags_i).items()))
    cut = ' (truncated)' if eps.truncated_B[i] else ''
    print(f'=== sample {i} ===\n{text}\n--- {_ENV.value} '
          f'{_SPLIT.value}/{_INSTANCE.value}{cut}: {flags_i}', flush=True)


def main(argv):
  del argv
  if (_PROMPT.value is None) == (_ENV.value is None):
    raise ConfigError('give exactly one of --prompt (a chat turn) or --env (whole episodes)')
  cfg, tok, params = checkpoint.load_model(_CHECKPOINT.value, _STEP.value)
  (_episodes if _ENV.value else _chat)(cfg, tok, params)


def entry():
  cli.run(main)


if __name__ == '__main__':
  entry()
