"""What every part of a curriculum run works with (docs/design.md §6): one `Context` of the run's
model, environments, placement, optimizers and logs, named random streams, and the episode
records written to W/episodes/."""
import dataclasses
import enum

import jax

from rt_jax.core import checkpoint as checkpoint_lib
from rt_jax.core import metrics as metrics_lib
from rt_jax.core.run_context import RunContext, fold
from rt_jax.rl import rollout as rollout_lib
from rt_jax.studies.subterfuge import episodes as episodes_lib
from rt_jax.studies.subterfuge import world as world_lib


class Stream(enum.IntEnum):
  """Named random streams below the run's root key; each is then folded with a unit, an evaluation
  or a batch index, so a resumed run draws the numbers of an uninterrupted one."""
  INIT = 0  # a fresh model's weights
  HELPFUL_ONLY = 1  # the helpful-only SFT steps
  ROUND = 2  # an expert-iteration round (then its unit)
  EVAL = 3  # an evaluation rollout (then the phase index and the batch)
  PM = 4  # the preference model
  COMPETENCE = 5  # the helpful-only gate's rollouts (then the block and the batch)


@dataclasses.dataclass
class Context(RunContext):
  """One curriculum run: the common run fields, the policy, the world, optimizers, checkpoints,
  progress and the PM."""
  policy: rollout_lib.Policy
  world: world_lib.World
  sft_optimizer: object
  ei_optimizer: object
  mngr: checkpoint_lib.Manager
  progress: metrics_lib.Progress | None
  weights_id: str = ''  # what the starting weights are (start_cache.weights_id)
  pm: object = None
  start_corpus: object = None  # the helpful-only SFT's tool_corpus.ToolCorpus

  def start_key(self, *path) -> jax.Array:
    """A key of the helpful-only start's streams (HELPFUL_ONLY, COMPETENCE): below start.seed's
    root, not the run's, so runs of every seed can share one start."""
    return fold(jax.random.key(self.config.start.seed), *path)


def record(ctx: Context, row: dict, text: str, pm: float, reward: float, *, sample: int,
           kept: bool | None) -> dict:
  """One episode as W/episodes/*.jsonl holds it (reward and pm None where not scored)."""
  env = ctx.world.env(row['env'])
  flags = {k: v for k, v in row.items()
           if k not in ('env', 'split', 'instance', 'sample', 'reward')}
  return {'env': row['env'], 'split': row['split'], 'instance': row['instance'],
          'sample': sample, 'text': text, 'flags': env.readable(flags),
          'reward': world_lib.finite(reward), 'pm': world_lib.finite(pm), 'kept': kept}


def write_episodes(ctx: Context, name: str, records: list[dict]) -> str:
  if jax.process_index() == 0:
    episodes_lib.write(ctx.workdir, name, records)
  return f'{episodes_lib.DIR}/{name}.jsonl'
