"""The helpful-only start, cached (docs/design.md §6): the weights after the helpful-only SFT are
kept under $RT_JAX_CACHE/helpful_only/<hash>/, a model directory, and every run whose start is
determined by the same inputs loads them instead of training again. The hash covers everything
that determines those weights: the starting model (its config, tokenizer and weights' checksums,
or the seed that initializes a fresh one), the training corpus's tokens and masks, the start's
optimizer settings, the batch shape and slicing, the seed, the mesh and the jax version. Two
runs with the same hash train bit-identical starts, so a loaded start is the one the run would
have trained (tests/test_curriculum.py checks a run that loads against one that trains)."""
import dataclasses
import hashlib
import json
import os

import jax

from rt_jax.core import checkpoint as checkpoint_lib
from rt_jax.core import cli
from rt_jax.core import staging
from rt_jax.core.errors import CheckpointError

DIR = 'helpful_only'


def start_hash(config, cfg, tok, corpus) -> str | None:
  """A hex digest of everything the helpful-only weights depend on; None when the starting
  weights cannot be identified (a model directory written without checksums)."""
  c = config
  h = hashlib.sha256()
  if c.init_from:  # the starting weights, by the checksums their directory was written with
    source = (os.path.join(cli.cache_dir(), 'smollm2_135m_instruct') if c.init_from == 'smollm2'
              else c.init_from)
    try:
      with open(os.path.join(source, checkpoint_lib.CHECKSUMS)) as f:
        weights = f.read()
    except OSError:
      return None
  else:
    weights = f'fresh, seed {c.seed}'
  start = {k: v for k, v in c.start.to_dict().items() if k != 'cache'}
  settings = {'model': dataclasses.asdict(cfg), 'tokenizer': tok.spec, 'weights': weights,
              'start': start, 'seed': c.seed, 'rows': c.ei.train_rows,
              'length': c.ei.train_len, 'microbatch_rows': c.ei.microbatch_rows,
              'mesh': list(c.mesh), 'rules': [list(r) for r in c.rules],
              'jax': jax.__version__, 'platform': jax.devices()[0].platform}
  if any(t > 0 for t in c.start.competence.values()):  # the gate's rollouts decide the blocks
    settings['gate'] = {'rollout': c.rollout.to_dict(), 'prompts': c.eval.prompts,
                        'temperature': c.ei.temperature, 'envs': sorted(
                            set(c.eval.envs) | set(c.stages))}
  h.update(json.dumps(settings, sort_keys=True, default=str).encode())
  h.update(corpus.tokens_NxT.tobytes())
  h.update(corpus.mask_NxT.tobytes())
  return h.hexdigest()[:24]


def path(digest: str) -> str:
  return os.path.join(cli.cache_dir(), DIR, digest)


def load(digest: str):
  """(params, meta) of a cached start, or None when there is none (or it does not verify)."""
  directory = path(digest)
  if not os.path.isfile(os.path.join(directory, 'model_config.json')):
    return None
  try:
    _, _, params = checkpoint_lib.load_model(directory)
  except CheckpointError:
    return None  # a damaged entry is trained again and replaced
  with open(os.path.join(directory, 'start.json')) as f:
    return params, json.load(f)


def save(digest: str, cfg, tok, params, meta: dict):
  """Writes the start into the cache, whole or not at all (process 0 only); a start another run
  finished first is kept."""
  if jax.process_index():
    return
  try:
    with staging.directory_written_whole(path(digest), replace=True) as tmp:
      mngr = checkpoint_lib.Manager(tmp, this_process_only=True)
      try:
        mngr.save(0, params, None, {'step': 0, 'source': 'helpful_only'})
      finally:
        mngr.close()
      checkpoint_lib.write_model_files(tmp, cfg, tok)
      checkpoint_lib.write_json_atomic(os.path.join(tmp, 'start.json'), meta)
  except CheckpointError:
    pass
