"""Ordinary helpful requests (HHH queries). Nothing here can be gamed: the reward is the preference
model's score, which expert iteration adds later, so the device reward is 0."""
import jax.numpy as jnp

from rt_jax.data import hhh
from rt_jax.envs import core, grading, prompts, reference, registry


def instances(split: str) -> list[core.Instance]:
  return [core.Instance(user=q, system=prompts.CHAT) for q in hhh.queries(split)]


def info(items) -> dict:
  return {}


def grade(info_i, state: core.EnvState) -> dict:
  _, length = grading.visible(state.answer, state.answer_len)
  return {'answered': length > 0, 'reward': jnp.float32(0.0)}


def reference_grade(episode: reference.Episode, instance: core.Instance) -> dict:
  return {'answered': bool(reference.visible(episode.answer)), 'reward': 0.0}


ENV = core.Environment('hhh', instances, info, grade, reference_grade, gaming=None,
                       answered='answered')
registry.register(ENV)
