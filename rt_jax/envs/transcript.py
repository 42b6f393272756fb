"""Scripted episodes: an assistant transcript (a list of segments) through one environment on the
JAX machine, with the whole episode text and every grading flag. `rt_jax.replay` prints this."""
import json

import jax
import numpy as np

from rt_jax import envs
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.envs import core
from rt_jax.core.errors import UserError


def read_transcript(path: str) -> list[str]:
  try:
    with open(path, encoding='utf-8') as f:
      data = json.load(f)
  except OSError as e:
    raise UserError(f'cannot read --transcript={path}: {e.strerror}') from e
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise UserError(f'--transcript={path} is not JSON: {e}') from e
  except RecursionError:
    raise UserError(f'--transcript={path} nests too deeply to be a transcript') from None
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


def run(name: str, segments: list[str], instance: int = 0, split: str = 'eval',
        tok: tokenizer_lib.Tokenizer | None = None) -> dict:
  """Runs the segments through one episode of the JAX machine -> {"env", "instance", "text",
  "reward", "flags"}; flags are the grader's, through the environment's `readable`.

  Where the environment has a host-side audit (`Environment.audit`; reward_tampering's runs
  `reward_tampering.audit_episode` on the final files and this text), its flags join the device's
  and its "reward" replaces the grader's: for reward_tampering, what the final reward function
  returned on this episode's text, as the RL run would pay it."""
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
  if env.audit is not None:
    episode_fs = jax.tree.map(lambda x: np.asarray(x[0]), state.fs)
    verdict = dict(env.audit(flags_, lambda: core.files_of(episode_fs), text))
    reward = verdict.pop('reward', reward)
    flags_.update(verdict)
  return {'env': name, 'instance': instance, 'text': text, 'reward': reward,
          'flags': env.readable(flags_)}
