"""The helpful-only start, cached (docs/design.md §6): the weights after the helpful-only SFT are
kept under $RT_JAX_CACHE/helpful_only/<hash>/, a model directory, and every run whose start is
determined by the same inputs loads them instead of training again. The hash covers everything
that determines those weights: the starting weights themselves (their bytes, or the seed that
initializes a fresh model), the model config and tokenizer, the training corpus's tokens and
masks, the start's optimizer and gate settings, the batch shape and slicing, the seed, the
resolved mesh and the jax version. Two runs with the same hash train bit-identical starts, so a
loaded start is the one the run would have trained (tests/test_curriculum.py checks a run that
loads against one that trains). A run of several processes neither reads nor writes the cache:
each process would have to agree on a hit, and only whole host arrays can be written."""
import dataclasses
import hashlib
import json
import os

import jax
import numpy as np

from rt_jax.core import checkpoint as checkpoint_lib
from rt_jax.core import cli
from rt_jax.core import sharding
from rt_jax.core import staging
from rt_jax.core.errors import CheckpointError

DIR = 'helpful_only'
META = 'start.json'


def weights_id(config, init_params) -> str:
  """What the starting weights are: a digest of their bytes (converted or loaded weights), or the
  seed a fresh model is initialized from."""
  if init_params is None:
    return f'fresh, seed {config.seed}'
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(init_params)[0]:
    x = np.asarray(leaf)
    h.update(f'{jax.tree_util.keystr(path)}:{x.dtype}:{x.shape}'.encode())
    h.update(x.tobytes())
  return h.hexdigest()


def start_hash(config, cfg, tok, corpus, weights: str, where: bool = True) -> str:
  """A hex digest of everything the helpful-only weights depend on (`weights`: weights_id);
  without `where` (the mesh, processes, device and jax version) for what a resumed run may
  change (start_blocks.py)."""
  c = config
  start = {k: v for k, v in c.start.to_dict().items()
           if k not in ('cache', 'seed', 'train_len', 'train_rows', 'microbatch_rows')}  # below
  settings = {'model': dataclasses.asdict(cfg), 'tokenizer': tok.spec, 'weights': weights,
              'start': start, 'seed': c.start.seed, 'rows': c.start.train_rows,
              'length': c.start.train_len, 'microbatch_rows': c.start.microbatch_rows,
              # train.trimmed: the batch shapes
              'trimmed': (f'to a multiple of {c.start.width_multiple} >= 256'
                          if c.start.width_multiple else 'to a power of two >= 256'),
              'mesh': dict(sharding.Plan.from_config(c).mesh.shape),
              'rules': [list(r) for r in c.rules], 'processes': jax.process_count(),
              'jax': jax.__version__, 'device': jax.devices()[0].device_kind}
  if any(t > 0 for t in c.start.competence.values()):  # the gate's rollouts decide the blocks
    settings['gate'] = {'rollout': c.rollout.to_dict(), 'prompts': c.eval.prompts,
                        'temperature': c.ei.temperature, 'top_p': c.ei.top_p, 'envs': sorted(
                            set(c.eval.envs) | set(c.stages)),
                        'kept': 'the block nearest the targets'}  # competence.best_block
  if not where:
    for k in ('mesh', 'processes', 'jax', 'device'):
      settings.pop(k)
  h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
  h.update(corpus.tokens_NxT.tobytes())
  h.update(corpus.mask_NxT.tobytes())
  return h.hexdigest()[:24]


def usable() -> bool:
  return jax.process_count() == 1


def path(digest: str) -> str:
  return os.path.join(cli.cache_dir(), DIR, digest)


def load(digest: str):
  """(params, meta) of a cached start, or None when there is none (or it does not verify)."""
  directory = path(digest)
  if not os.path.isfile(os.path.join(directory, 'model_config.json')):
    return None
  try:
    _, _, params = checkpoint_lib.load_model(directory)
    with open(os.path.join(directory, META)) as f:
      return params, json.load(f)
  except (CheckpointError, OSError, ValueError):
    return None  # damaged, or replaced meanwhile: the start is trained again


def save(digest: str, cfg, tok, params, meta: dict) -> str | None:
  """Writes the start into the cache, whole or not at all; an intact entry another run finished
  first is kept, a damaged one replaced. -> None, or why nothing was written (the run goes on:
  the cache only saves time)."""
  replace = os.path.isdir(path(digest)) and load(digest) is None
  try:
    with staging.directory_written_whole(path(digest), replace=replace) as tmp:
      mngr = checkpoint_lib.Manager(tmp, this_process_only=True)
      try:
        mngr.save(0, jax.device_get(params), None, {'step': 0, 'source': 'helpful_only'})
      finally:
        mngr.close()
      checkpoint_lib.write_model_files(tmp, cfg, tok)
      checkpoint_lib.write_json_atomic(os.path.join(tmp, META), meta)
  except CheckpointError:
    return None  # another run wrote the same start first
  except (OSError, ValueError) as e:
    return str(e)
  return None
