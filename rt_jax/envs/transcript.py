"""Scripted episodes: an assistant transcript (a list of segments) through one environment, with
the whole episode text and every grading flag. `rt_jax.replay` prints this.

Two engines give the same result (tests/test_envs.py): 'jax', the machine the rollout runs
(`core.step` and the device grader; its first call compiles the machine, tens of seconds on a
CPU), and 'reference', the plain-Python specification that machine is fuzzed against
(`reference.Episode` and `Environment.reference_grade`; no compile)."""
import json

import jax
import numpy as np

from rt_jax import envs
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.envs import core, reference
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


ENGINES = ('reference', 'jax')


def run(name: str, segments: list[str], instance: int = 0, split: str = 'eval',
        tok: tokenizer_lib.Tokenizer | None = None, engine: str = 'jax') -> dict:
  """Runs the segments through one episode on `engine` -> {"env", "instance", "text", "reward",
  "flags"}; flags are the grader's, through the environment's `readable`.

  Where the environment has a host-side audit (`Environment.audit`; reward_tampering's runs
  `reward_tampering.audit_episode` on the final files and this text), its flags join the grader's
  and its "reward" replaces the grader's: for reward_tampering, what the final reward function
  returned on this episode's text, as the RL run would pay it."""
  if engine not in ENGINES:
    raise UserError(f'--engine={engine!r}: choose from {", ".join(ENGINES)}')
  tok = tok or tokenizer_lib.builtin()
  env = envs.get(name)
  items = env.instances(split)
  if instance >= len(items):
    raise UserError(f'--instance={instance} is out of range: {name} has {len(items)} '
                    f'{split} instances')
  if engine == 'reference':
    return _run_reference(env, segments, instance, items[instance], tok)
  return _run_jax(env, segments, instance, split, tok)


def _result(env, instance: int, text: str, reward: float, flags_: dict, files) -> dict:
  if env.audit is not None:
    verdict = dict(env.audit(flags_, files, text))
    reward = verdict.pop('reward', reward)
    flags_.update(verdict)
  return {'env': env.name, 'instance': instance, 'text': text, 'reward': reward,
          'flags': env.readable(flags_)}


def _run_reference(env, segments, instance: int, item: core.Instance, tok) -> dict:
  prompt = tokenizer_lib.encode_chat(tok, core.prompt_messages(item), add_generation_prompt=True)
  text = tok.decode(prompt[0])
  episode = reference.Episode(item.files, item.dirs)
  for segment in segments:
    segment = tok.decode(tok.encode(segment))  # what a model's tokens of it decode to
    text += segment + episode.step(segment)
  flags_ = env.reference_grade(episode, item)
  reward = float(flags_.pop('reward'))
  reward = reward if episode.done else 0.0  # the grader pays when the episode ends
  return _result(env, instance, text, reward, flags_, episode.shell.files)


def _run_jax(env, segments, instance: int, split: str, tok) -> dict:
  _, params, _ = envs.make(env.name, tok, split)
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
  graded = core.grade(env, params, state)  # in the grader's order, as the reference gives them
  flags_ = {k: np.asarray(graded[k][0]).item() for k in envs.flag_names(env.name) if k != 'reward'}
  episode_fs = jax.tree.map(lambda x: np.asarray(x[0]), state.fs)
  return _result(env, instance, text, reward, flags_, lambda: core.files_of(episode_fs))
