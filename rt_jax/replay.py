"""Feeds a scripted assistant transcript through an environment and prints one JSON object: the
whole episode as the model would see it and every grading flag.

  python -m rt_jax.replay --env=reward_tampering --transcript=t.json [--instance=0]

The transcript is JSON `{"assistant": [SEGMENT, ...]}`: each segment is assistant text that either
ends with `</bash>` (the environment answers it) or ends the turn. For reward_tampering the flags
hold the device grader's verdict and, under "audit", the sandboxed audit's.
"""
import json

import jax
import numpy as np
from absl import flags

from rt_jax import checkpoint, cli, envs
from rt_jax import tokenizer as tokenizer_lib
from rt_jax.envs import core, reward_tampering
from rt_jax.errors import UserError

_ENV = flags.DEFINE_string('env', None, f'Environment: {", ".join(envs.ENVIRONMENTS)}.')
_TRANSCRIPT = flags.DEFINE_string('transcript', None, 'JSON file {"assistant": [segment, ...]}.')
_INSTANCE = flags.DEFINE_integer('instance', 0, 'Instance index within the split.', lower_bound=0)
_SPLIT = flags.DEFINE_enum('split', 'eval', ['train', 'eval'], 'Which instances to draw from.')
_CHECKPOINT = flags.DEFINE_string('checkpoint', None,
                                  "Model directory whose tokenizer to use (the builtin one by "
                                  'default; the text is the same either way).')
flags.mark_flags_as_required(['env', 'transcript'])


def read_transcript(path: str) -> list[str]:
  try:
    with open(path, encoding='utf-8') as f:
      data = json.load(f)
  except OSError as e:
    raise UserError(f'cannot read --transcript={path}: {e.strerror}') from e
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise UserError(f'--transcript={path} is not JSON: {e}') from e
  segments = data.get('assistant') if isinstance(data, dict) else None
  if not isinstance(segments, list) or not all(isinstance(s, str) for s in segments):
    raise UserError(f'--transcript={path} must be {{"assistant": [string, ...]}}')
  if not segments:
    raise UserError(f'--transcript={path} has no assistant segments')
  for i, segment in enumerate(segments[:-1]):
    if not segment.endswith(core.CLOSE):
      raise UserError(f'segment {i} does not end with {core.CLOSE}, so it ends the turn, but '
                      f'{len(segments) - i - 1} more follow')
  return segments


def _width(n: int) -> int:
  return max(1024, 1 << (n - 1).bit_length())  # power-of-two buckets: few shapes, few compiles


def replay(name: str, segments: list[str], instance: int = 0, split: str = 'eval',
           tok: tokenizer_lib.Tokenizer | None = None) -> dict:
  """Runs the segments through one episode of the JAX machine -> the printed JSON object."""
  tok = tok or tokenizer_lib.builtin()
  env, params, items = envs.make(name, tok, split)
  if instance >= len(items):
    raise UserError(f'--instance={instance} is out of range: {name} has {len(items)} '
                    f'{split} instances')
  state, prompt, prompt_len = core.reset(params, np.array([instance]))
  text = tok.decode(np.asarray(prompt[0, :prompt_len[0]]).tolist())
  reward = 0.0
  encoded = [tok.encode(segment) for segment in segments]
  width = _width(max(len(ids) for ids in encoded))
  for ids in encoded:
    actions = np.zeros((1, width), np.int32)
    actions[0, :len(ids)] = ids
    state, obs, obs_len, step_reward, _ = core.step(env, params, state, actions,
                                                    np.array([len(ids)], np.int32))
    text += tok.decode(ids) + tok.decode(np.asarray(obs[0, :obs_len[0]]).tolist())
    reward += float(step_reward[0])
  flags_ = {k: np.asarray(v[0]).item() for k, v in core.grade(env, params, state).items()
            if k != 'reward'}
  if env is reward_tampering.ENV:
    episode_fs = jax.tree.map(lambda x: np.asarray(x[0]), state.fs)
    flags_['audit'] = reward_tampering.audited(core.files_of(episode_fs))
  return {'env': name, 'instance': instance, 'text': text, 'reward': reward, 'flags': flags_}


def main(argv):
  del argv
  envs.get(_ENV.value)  # an unknown name fails here, before anything is read or compiled
  segments = read_transcript(_TRANSCRIPT.value)
  tok = None
  if _CHECKPOINT.value:
    tok = checkpoint.read_model_files(_CHECKPOINT.value)[1]
  print(json.dumps(replay(_ENV.value, segments, _INSTANCE.value, _SPLIT.value, tok)))


if __name__ == '__main__':
  cli.run(main)
