"""A one-turn chat as an environment: the instance is a prompt (token ids, whatever turns it
holds), the episode is one answer, and nothing is graded. Every sampler in the project is a
rollout of it (rl/chat.py), so decoding has one implementation, the rollout's.

Its table is a `core.EnvParams` whose instances all start on one empty filesystem that is never
touched (a rollout with `tools=False` does not step the machine) and that has no codec."""
from collections.abc import Sequence

import jax
import numpy as np

from rt_jax.core import sampling
from rt_jax.envs import core


def table(prompts: Sequence[Sequence[int]], pad_id: int, width: int = 0) -> core.EnvParams:
  """The prompts, right-padded to a power-of-two width (sampling.pad_prompts) or to `width` if
  that is more, so that prompt sets of one bucket and count share a compiled rollout."""
  prompt, prompt_len = sampling.pad_prompts(prompts, pad_id)
  prompt = np.pad(prompt, ((0, 0), (0, max(width - prompt.shape[1], 0))), constant_values=pad_id)
  fs = jax.tree.map(lambda x: np.asarray(x)[None], core.filesystem({}))
  return core.EnvParams(prompt=prompt, prompt_len=prompt_len, fs=fs,
                        fs_index=np.zeros(len(prompts), np.int32), info={}, codec=None)
