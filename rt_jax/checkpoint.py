"""Model directories and Orbax checkpoints.

A model directory (a run's workdir, or the output of `rt_jax.convert`) holds:
  model_config.json   the ModelConfig fields
  tokenizer.json      the tokenizer spec (`tokenizer.from_spec`), plus any data file it names
                      (tokenizer.tiktoken: the ranks of a converted model's BPE)
  checkpoints/STEP/   Orbax items `params`, `opt_state` (training runs only) and `meta` (JSON:
                      step, data position, RNG key)
Orbax writes each step into a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous checkpoint as the latest one.
"""
import contextlib
import dataclasses
import io
import json
import os
import shutil
import tempfile
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image

from rt_jax import model as model_lib
from rt_jax import tokenizer as tokenizer_lib
from rt_jax.errors import CheckpointError


def write_atomic(path: str, data: bytes):
  """A reader (or a run killed mid-write) sees the old file or the new one, never half of one."""
  tmp = f'{path}.tmp{os.getpid()}'
  try:
    with open(tmp, 'wb') as f:
      f.write(data)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_png_atomic(path: str, image_HxWxC: np.ndarray):
  png = io.BytesIO()
  Image.fromarray(image_HxWxC).save(png, format='PNG')
  write_atomic(path, png.getvalue())


def write_json_atomic(path: str, obj: Any):
  write_atomic(path, json.dumps(obj, indent=2, sort_keys=True).encode())


def _read_json(path: str) -> Any:
  if not os.path.isfile(path):
    raise CheckpointError(f'{path} not found: not a model directory written by rt_jax')
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise CheckpointError(f'{path} is unreadable: {e}') from e


@contextlib.contextmanager
def directory_written_whole(directory: str, *, replace: bool):
  """Yields a temporary sibling of `directory` to fill; on a clean exit it is renamed into place,
  so a reader (or a writer killed mid-way) sees the previous directory or none, never half of one.
  replace=False: if another writer finished `directory` first, it is kept and this raises
  CheckpointError (an empty `directory` is replaced)."""
  directory = os.path.abspath(directory)
  parent, name = os.path.split(directory)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=f'.{name}.tmp-')
  try:
    yield tmp
    if replace and os.path.exists(directory):
      old = tempfile.mkdtemp(dir=parent, prefix=f'.{name}.old-')
      os.replace(directory, os.path.join(old, name))
      os.replace(tmp, directory)
      shutil.rmtree(old)
    else:
      try:
        os.replace(tmp, directory)
      except OSError as e:  # ENOTEMPTY: someone else's complete directory is there
        raise CheckpointError(f'{directory} was written by another process meanwhile') from e
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp)


def write_model_files(directory: str, cfg: model_lib.ModelConfig, tok: tokenizer_lib.Tokenizer):
  """Writes the model files, or checks that the ones already there (a resumed run) agree."""
  if os.path.isfile(os.path.join(directory, 'model_config.json')):
    old_cfg, old_tok = read_model_files(directory)
    changed = [f'model.{k}: {v} -> {getattr(cfg, k)}'
               for k, v in dataclasses.asdict(old_cfg).items() if v != getattr(cfg, k)]
    if old_tok.spec != tok.spec:
      changed.append(f'tokenizer: {old_tok.spec} -> {tok.spec}')
    if changed:
      raise CheckpointError(f'{directory} holds a different model ({"; ".join(changed)}); use a '
                            f'new workdir')
    return
  os.makedirs(directory, exist_ok=True)
  tok.write_files(directory)
  write_json_atomic(os.path.join(directory, 'tokenizer.json'), tok.spec)
  write_json_atomic(os.path.join(directory, 'model_config.json'), dataclasses.asdict(cfg))


def read_model_files(directory: str):
  fields = _read_json(os.path.join(directory, 'model_config.json'))
  try:
    cfg = model_lib.ModelConfig(**fields)
  except (TypeError, ValueError) as e:
    raise CheckpointError(f'{directory}/model_config.json is not a valid model config: {e}') from e
  spec = _read_json(os.path.join(directory, 'tokenizer.json'))
  try:
    tok = tokenizer_lib.from_spec(spec, directory)
  except (AttributeError, TypeError, ValueError) as e:
    raise CheckpointError(f'{directory}/tokenizer.json is not a valid tokenizer spec: {e}') from e
  return cfg, tok


class Manager:
  """Saves and restores training state under DIRECTORY/checkpoints.

  By default every process of a multi-process run takes part in each save and restore (Orbax's
  barriers; process 0 creates and finalizes the step directory), as a sharded state needs.
  `this_process_only` is for a directory one process reads or writes alone, with whole arrays: the
  cache of converted weights, the run's preference model. Any process may read one; only process 0
  may write one, because Orbax writes host arrays from process 0 alone.
  """

  def __init__(self, directory: str, *, max_to_keep: Optional[int] = 3, read_only: bool = False,
               this_process_only: bool = False):
    self.path = os.path.join(os.path.abspath(directory), 'checkpoints')
    if read_only and not os.path.isdir(self.path):
      raise CheckpointError(f'{self.path} not found: no checkpoints in {directory}')
    self._this_process_only = this_process_only
    multiprocessing = ocp.options.MultiprocessingOptions()
    if this_process_only:
      me = jax.process_index()
      if me and not read_only:
        raise CheckpointError(f'{self.path}: process {me} cannot write a checkpoint alone; only '
                              f'process 0 can')
      multiprocessing = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
      if not read_only:  # Orbax will not create the root for a subset of processes
        os.makedirs(self.path, exist_ok=True)
    self._mngr = ocp.CheckpointManager(
        self.path,
        # The handlers need the options too: each decides on its own which process writes.
        item_handlers={
            'params': ocp.StandardCheckpointHandler(multiprocessing_options=multiprocessing),
            'opt_state': ocp.StandardCheckpointHandler(multiprocessing_options=multiprocessing),
            'meta': ocp.JsonCheckpointHandler(multiprocessing_options=multiprocessing)},
        # Readers pass create=False rather than Orbax's read_only, which warns on every open.
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=not (read_only or this_process_only),
            cleanup_tmp_directories=not read_only, multiprocessing_options=multiprocessing))

  def latest_step(self) -> Optional[int]:
    return self._mngr.latest_step()

  def save(self, step: int, params, opt_state, meta: dict):
    """opt_state may be None (converted weights, params-only exports)."""
    if self._this_process_only:  # Orbax takes no single-device jax.Array in a multi-process run
      params, opt_state = jax.device_get((params, opt_state))
    items = {'params': ocp.args.StandardSave(params), 'meta': ocp.args.JsonSave(meta)}
    if opt_state is not None:
      items['opt_state'] = ocp.args.StandardSave(opt_state)
    self._mngr.save(step, args=ocp.args.Composite(**items), force=True)

  def restore(self, step: int, abstract_params=None, abstract_opt_state=None):
    """Returns (params, opt_state, meta); opt_state is None when no abstract tree is given."""
    items = {'params': ocp.args.StandardRestore(abstract_params), 'meta': ocp.args.JsonRestore()}
    if abstract_opt_state is not None:
      items['opt_state'] = ocp.args.StandardRestore(abstract_opt_state)
    try:
      restored = self._mngr.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # Orbax raises many types for a damaged directory; name the place.
      raise CheckpointError(f'checkpoint {self.path}/{step} cannot be restored: '
                            f'{type(e).__name__}: {e}') from e
    for name, abstract in (('params', abstract_params), ('opt_state', abstract_opt_state)):
      # Orbax returns the saved shapes even when the abstract tree asks for others.
      if abstract is not None and (jax.tree.map(np.shape, restored[name]) !=
                                   jax.tree.map(np.shape, abstract)):
        raise CheckpointError(f'checkpoint {self.path}/{step}: saved {name} shapes do not match '
                              f'the model config')
    return restored['params'], restored.get('opt_state'), restored['meta']

  def wait(self):
    """Blocks until pending asynchronous saves are on disk."""
    self._mngr.wait_until_finished()

  def close(self):
    self._mngr.wait_until_finished()
    self._mngr.close()


def load_model(directory: str, step: Optional[int] = None):
  """(ModelConfig, Tokenizer, params) from a model directory; the latest step by default. Each
  process reads the whole arrays on its own (a run places them on its mesh afterwards)."""
  if not os.path.isdir(directory):
    raise CheckpointError(f'{directory} not found')
  cfg, tok = read_model_files(directory)
  mngr = Manager(directory, read_only=True, this_process_only=True)
  try:
    step = mngr.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f'{mngr.path} holds no complete checkpoint')
    params, _, _ = mngr.restore(step, model_lib.abstract_params(cfg))
  finally:
    mngr.close()
  return cfg, tok, params
