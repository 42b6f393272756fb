"""The gated helpful-only start, resumable block by block (docs/design.md §7): after each block
of `start.steps` SFT steps and its competence measurement, the run writes into W/start_blocks/

  latest/  the state (parameters, SFT optimizer moments, step) and what the loop carries: the
           gate's history, the logged losses, which block is kept so far and the start's hash;
  best/    the parameters of the block kept so far, written when that block changes.

A run killed mid-start resumes after the last finished block and ends with the numbers of an
uninterrupted one: batches, keys and gate draws depend only on the step and block indices. latest
is written first; after a kill between the two writes the kept block is latest's own, and best
is written again with the next block. Blocks that are another start's (the hash differs) or do
not restore are removed and the start trains from its first step. The directory is removed once
the start's unit checkpoint is on disk."""
import contextlib
import dataclasses
import os
import shutil

import jax

from rt_jax.core import checkpoint as checkpoint_lib
from rt_jax.core.errors import CheckpointError
from rt_jax.studies.subterfuge import start_cache

DIR = 'start_blocks'


@dataclasses.dataclass
class Resumed:
  state: object  # the TrainState after `block`
  block: int
  history: list
  losses: list
  best: tuple | None  # (block, parameters) of the kept block, as the loop holds it


def digest(ctx, corpus) -> str:
  """What saved blocks must match: the start's settings, model, tokenizer, gate and corpus; not
  the initial weights (a workdir refuses another seed or init_from), the cache setting or the mesh,
  which a resumed run may change."""
  return start_cache.start_hash(ctx.config, ctx.cfg, ctx.tok, corpus, '', where=False)


@contextlib.contextmanager
def _opened(workdir: str):
  """(latest, best) managers, both closed on the way out whatever the first close raises."""
  with contextlib.ExitStack() as stack:
    managers = []
    for name in ('latest', 'best'):
      managers.append(checkpoint_lib.Manager(os.path.join(workdir, DIR, name), max_to_keep=1))
      stack.callback(managers[-1].close)
    yield managers


def save(ctx, key: str, block: int, state, history: list, losses: list, best):
  """Records the loop after `block` (a checkpoint per block; the previous one is replaced)."""
  with _opened(ctx.workdir) as (latest, kept):
    latest.save(block, state.params, state.opt_state,
                {'hash': key, 'block': block, 'step': int(jax.device_get(state.step)),
                 'history': history, 'losses': losses, 'best': best[0] if best else None})
    latest.wait()  # on disk before the next step donates the buffers
    if best and kept.latest_step() != best[0]:  # new, or its save was cut short by a kill
      kept.save(best[0], best[1], None, {'hash': key, 'block': best[0]})
      kept.wait()
  ctx.progress.say(f'helpful_only: block {block} saved in {os.path.join(ctx.workdir, DIR)}')


def restore(ctx, key: str) -> Resumed | None:
  """The loop after its last saved block, or None: nothing saved, or blocks that are another
  start's or do not restore (said in one line and removed; the start trains from its first step)."""
  where = os.path.join(ctx.workdir, DIR)
  if not os.path.isdir(os.path.join(where, 'latest', 'checkpoints')):
    drop(ctx.workdir)  # a best/ alone (a removal cut short) is of no use
    return None
  try:
    resumed = _read(ctx, key)
  except CheckpointError as e:
    ctx.progress.say(f'helpful_only: the blocks in {where} do not restore ({e}); training from '
                     'the first step')
    resumed = None
  if resumed is None:
    drop(ctx.workdir)  # else their higher block numbers would outrank this start's saves
    return None
  ctx.progress.say(f'helpful_only: resumed after block {resumed.block} from {where}')
  return resumed


def _read(ctx, key: str):
  """Resumed, or None when there is no step or the blocks are another start's."""
  with _opened(ctx.workdir) as (latest, kept):
    step = latest.latest_intact_step()
    if step is None:
      return None
    target = ctx.plan.abstract_state(ctx.cfg, ctx.sft_optimizer)
    params, opt_state, meta = latest.restore(step, target.params, target.opt_state)
    if meta['hash'] != key:
      ctx.progress.say(f'helpful_only: the blocks in {os.path.join(ctx.workdir, DIR)} are of '
                       'another start (config or corpus changed); training from the first step')
      return None
    best = None
    if meta['best'] == meta['block']:
      best = meta['block'], jax.tree.map(lambda x: x.copy(), params)
    elif meta['best'] is not None:
      best = meta['best'], kept.restore(meta['best'], target.params)[0]
    return Resumed(ctx.plan.train_state(meta['step'], params, opt_state), meta['block'],
                   meta['history'], meta['losses'], best)


def drop(workdir: str):
  """Removes the blocks once the start's unit checkpoint holds the start (process 0 only)."""
  if jax.process_index() == 0:
    shutil.rmtree(os.path.join(workdir, DIR), ignore_errors=True)
