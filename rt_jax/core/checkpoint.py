"""Model directories and Orbax checkpoints.

A model directory (a run's workdir, or the output of `rt_jax.convert`) holds:
  model_config.json   the ModelConfig fields
  tokenizer.json      the tokenizer spec (`tokenizer.from_spec`), plus any data file it names
                      (tokenizer.tiktoken: the ranks of a converted model's BPE)
  checkpoints/STEP/   Orbax items `params`, `opt_state` (training runs only) and `meta` (JSON:
                      step, data position, RNG key) and rt_checksums.json
  rt_checksums.json   in a directory written whole (`staging.directory_written_whole`: converted
                      models, the preference model): the checksums of its files outside
                      checkpoints/
Orbax writes each step into a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous checkpoint as the latest one. A complete step can still be damaged
afterwards (a full or failing disk, a copy cut short), and Orbax reads flipped bytes as weights
without complaint; so each step carries the sha256 of every file, written into the temporary
directory before Orbax renames it, and a restore compares them first.
"""
import dataclasses
import hashlib
import io
import json
import logging
import os
import stat
import tempfile
import threading
import time
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image

from rt_jax.core import metrics as metrics_lib
from rt_jax.core import model as model_lib
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.core.errors import CheckpointError

CHECKSUMS = 'rt_checksums.json'
_CHECKSUM_FORMAT = 'rt_jax sha256 v1'
# Orbax rewrites these two at the top of a step after the last hook it offers has run (the commit
# timestamp, the commit marker); they hold no array data, and Orbax reads a damaged one as absent.
_WRITTEN_AFTER_CHECKSUMS = ('_CHECKPOINT_METADATA', 'commit_success.txt')
_ORBAX_TMP_SUFFIX = '.orbax-checkpoint-tmp'  # Orbax 0.12: step N is written as N + this, renamed
SET_ASIDE = 'corrupt_checkpoints'  # beside checkpoints/: corrupt steps moved out of Orbax's way


class _WaitWarning(logging.Filter):
  """Drops Orbax's warning that a save waited for the previous one: Manager.save waits on
  purpose first (to seal the previous step), and Orbax counts that wait as the save's."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith('Waiting for previous save to complete')


logging.getLogger('absl').addFilter(_WaitWarning())


class CorruptCheckpointError(CheckpointError):
  """A step whose files differ from their checksums, or that Orbax cannot read and whose bytes no
  checksum vouches for: an earlier intact step may stand in for it."""


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


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    while chunk := f.read(1 << 22):
      digest.update(chunk)
  return digest.hexdigest()


def _files_under(directory: str, skip: tuple = ()) -> list[str]:
  """Relative paths of the regular files under `directory`, sorted; `skip` names entries at its
  top (files or whole subtrees). Symlinks are not followed: nothing rt_jax writes is one."""
  out = []
  for root, dirs, files in os.walk(directory):
    rel_root = os.path.relpath(root, directory)
    if rel_root == '.':
      dirs[:] = [d for d in dirs if d not in skip]
      files = [f for f in files if f not in skip and f != CHECKSUMS]
    for name in files:
      path = os.path.join(root, name)
      if stat.S_ISREG(os.lstat(path).st_mode):
        out.append(os.path.normpath(os.path.join(rel_root, name)))
  return sorted(out)


def write_checksums(directory: str, skip: tuple = ()):
  """Records the size and sha256 of every file under `directory` (but `skip`, see _files_under)
  in DIRECTORY/rt_checksums.json, atomically, so that a later reader can tell damaged bytes from
  the ones written."""
  files = {rel: {'bytes': os.path.getsize(os.path.join(directory, rel)),
                 'sha256': _sha256(os.path.join(directory, rel))}
           for rel in _files_under(directory, skip)}
  write_json_atomic(os.path.join(directory, CHECKSUMS),
                    {'format': _CHECKSUM_FORMAT, 'skipped': sorted(skip), 'files': files})


def _read_checksums(directory: str) -> Optional[dict]:
  """The recorded {relative path: {bytes, sha256}}, None where none was recorded; a damaged
  record raises CorruptCheckpointError (it was written whole, so damage came later)."""
  path = os.path.join(directory, CHECKSUMS)
  if not os.path.isfile(path):
    return None
  try:
    with open(path, 'rb') as f:
      record = json.loads(f.read())
    files = record['files']
    if record['format'] != _CHECKSUM_FORMAT or not all(
        isinstance(v['bytes'], int) and isinstance(v['sha256'], str) for v in files.values()):
      raise ValueError('unknown format')
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    raise CorruptCheckpointError(f'{path} is damaged ({type(e).__name__}: {e})') from e
  return files


def _signature(directory: str, files: dict) -> tuple:
  """What changes when any recorded file is rewritten: a verified directory with the same
  signature need not be hashed again."""
  out = []
  for rel in sorted(files):
    try:
      st = os.stat(os.path.join(directory, rel))
    except OSError:
      return ()
    out.append((rel, st.st_size, st.st_mtime_ns, st.st_ino))
  return tuple(out)


def check_checksums(directory: str, verified: Optional[dict] = None) -> Optional[str]:
  """None if every recorded file of `directory` has its recorded size and sha256, else the first
  difference in words; raises CorruptCheckpointError for a damaged record and returns 'unrecorded'
  where there is none (see `has_checksums`). `verified` (a dict the caller keeps) remembers
  directories that passed, by signature, so a step checked by latest_intact_step is not hashed
  again by restore."""
  files = _read_checksums(directory)
  if files is None:
    return 'unrecorded'
  signature = _signature(directory, files)
  if verified is not None and signature and verified.get(directory) == signature:
    return None
  for rel, want in sorted(files.items()):
    path = os.path.join(directory, rel)
    if not os.path.isfile(path):
      return f'{rel} is missing'
    size = os.path.getsize(path)
    if size != want['bytes']:
      return f'{rel} is {size} bytes, {want["bytes"]} when written'
    if _sha256(path) != want['sha256']:
      return f'{rel} differs from its checksum'
  if verified is not None and signature:
    verified[directory] = signature
  return None


def has_checksums(directory: str) -> bool:
  return os.path.isfile(os.path.join(directory, CHECKSUMS))


def verify_model_directory(directory: str):
  """Checks the files a directory written whole recorded (model_config.json, tokenizer files,
  pm.json; checkpoints are checked step by step on restore). A workdir records none: nothing to
  check here."""
  problem = check_checksums(directory)
  if problem not in (None, 'unrecorded'):
    raise CorruptCheckpointError(f'{directory} is corrupt: {problem}')


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


def _check_writable(directory: str):
  """Creates `directory` and a file in it, so a place a save could not write is one error when the
  manager opens, before any compute, rather than a failure in Orbax's background thread later."""
  try:
    os.makedirs(directory, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix='.rt_write_probe_', dir=directory)
    os.close(fd)
    os.remove(probe)
  except OSError as e:
    raise CheckpointError(f'{directory} is not writable: {e.strerror or e}') from e


class Manager:
  """Saves and restores training state under DIRECTORY/checkpoints.

  By default every process of a multi-process run takes part in each save and restore (Orbax's
  barriers; process 0 creates and finalizes the step directory), as a sharded state needs.
  `this_process_only` is for a directory one process reads or writes alone, with whole arrays: the
  cache of converted weights, the run's preference model. Any process may read one; only process 0
  may write one, because Orbax writes host arrays from process 0 alone.

  Each step gets rt_checksums.json from the process that finalizes it, inside Orbax's temporary
  directory just before the rename that completes the step (Orbax's post-finalization hook, in its
  background thread), so a complete step always has its checksums; if the hook could not find the
  temporary, wait(), close() and the next save record them on the finished step instead.
  """

  def __init__(self, directory: str, *, max_to_keep: Optional[int] = 3, read_only: bool = False,
               this_process_only: bool = False):
    self.directory = os.path.abspath(directory)
    self.path = os.path.join(self.directory, 'checkpoints')
    if read_only and not os.path.isdir(self.path):
      raise CheckpointError(f'{self.path} not found: no checkpoints in {directory}')
    self._this_process_only = this_process_only
    self._read_only = read_only
    self._primary = jax.process_index() if this_process_only else 0
    self._unsealed = []  # steps saved by this manager whose checksums are not yet written
    self._lock = threading.Lock()
    self._verified = {}  # step directory -> signature of its files when they last matched
    self._unrecorded_said = set()
    multiprocessing = ocp.options.MultiprocessingOptions()
    if this_process_only:
      me = jax.process_index()
      if me and not read_only:
        raise CheckpointError(f'{self.path}: process {me} cannot write a checkpoint alone; only '
                              f'process 0 can')
      multiprocessing = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
      if not read_only:  # Orbax will not create the root for a subset of processes
        os.makedirs(self.path, exist_ok=True)
    if not read_only and jax.process_index() == self._primary:
      _check_writable(self.path)
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
            cleanup_tmp_directories=not read_only, multiprocessing_options=multiprocessing,
            async_options=ocp.AsyncOptions(post_finalization_callback=self._seal_before_rename)))

  # -- checksums -------------------------------------------------------------------------------
  def _step_dir(self, step: int) -> str:
    return os.path.join(self.path, str(step))

  def _seal_before_rename(self):
    """Orbax's hook, on the finalizing process, after a step's items are final and before its
    temporary directory is renamed: the checksums then appear together with the step."""
    with self._lock:
      for step in list(self._unsealed):
        tmp = self._step_dir(step) + _ORBAX_TMP_SUFFIX
        if os.path.isdir(tmp):
          write_checksums(tmp, skip=_WRITTEN_AFTER_CHECKSUMS)
          self._unsealed.remove(step)

  def _seal_finished(self):
    """Checksums for steps the hook missed, now that Orbax has finished them (wait() was called):
    they were written by this process moments ago, so what is on disk is what it saved."""
    with self._lock:
      for step in list(self._unsealed):
        if os.path.isdir(self._step_dir(step)) and not has_checksums(self._step_dir(step)):
          write_checksums(self._step_dir(step), skip=_WRITTEN_AFTER_CHECKSUMS)
        self._unsealed.remove(step)

  def _check(self, step: int) -> Optional[str]:
    """None: the step's files match their checksums; 'unrecorded': it has none (saved by older
    code), so only Orbax's own reading can judge it; otherwise what differs."""
    try:
      return check_checksums(self._step_dir(step), self._verified)
    except CorruptCheckpointError as e:
      return str(e)

  def _say_unrecorded(self, step: int):
    if step not in self._unrecorded_said:
      self._unrecorded_said.add(step)
      metrics_lib.console(f'checkpoint {self._step_dir(step)} has no checksums (saved before '
                          f'they were recorded): its bytes cannot be verified, only read')

  def _set_aside(self, steps: list[int]) -> str:
    """Moves corrupt steps out of checkpoints/ (into DIRECTORY/corrupt_checkpoints, kept for
    inspection), so they are no longer the latest and a rerun can save those steps again; a
    reader moves nothing. Every process then reloads Orbax's list of steps after process 0 moved
    them."""
    if self._read_only:
      return 'left in place (read-only)'
    where = os.path.join(self.directory, SET_ASIDE)
    if jax.process_index() == self._primary:
      os.makedirs(where, exist_ok=True)
      stamp = time.strftime('%Y%m%dT%H%M%S')
      for step in steps:
        os.replace(self._step_dir(step), os.path.join(where, f'{step}.{stamp}.{os.getpid()}'))
    if not self._this_process_only and jax.process_count() > 1:
      ocp.multihost.sync_global_processes('rt_jax_checkpoint_set_aside')
    self._mngr.reload()
    return f'moved to {where}'

  def _fell_back(self, bad: list[tuple[int, str]], used: int):
    moved = self._set_aside([step for step, _ in bad])
    names = ', '.join(str(step) for step, _ in bad)
    metrics_lib.console(
        f'checkpoint{"s" if len(bad) > 1 else ""} {names} in {self.path} '
        f'{"are" if len(bad) > 1 else "is"} corrupt ({bad[0][1]}); using step {used} instead; '
        f'the corrupt one{"s" if len(bad) > 1 else ""} {moved}')

  def _none_intact(self, bad: list[tuple[int, str]]):
    return CheckpointError(
        f'no intact checkpoint in {self.path}: ' + '; '.join(f'step {s}: {d}' for s, d in bad))

  # -- the interface ---------------------------------------------------------------------------
  def latest_step(self) -> Optional[int]:
    """The latest complete step, intact or not (see latest_intact_step)."""
    return self._mngr.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._mngr.all_steps())

  def latest_intact_step(self) -> Optional[int]:
    """The latest step whose files match their checksums (or that has none to compare), None if
    there is no step. Newer corrupt steps are set aside with one console line naming them and
    the step used; if every step is corrupt, a CheckpointError names the directory. What resume
    calls in place of latest_step()."""
    bad = []
    for step in reversed(self.all_steps()):
      problem = self._check(step)
      if problem in (None, 'unrecorded'):
        if bad:
          self._fell_back(bad, step)
        return step
      bad.append((step, problem))
    if bad:
      raise self._none_intact(bad)
    return None

  def restore_latest_intact(self, abstract_params=None, abstract_opt_state=None):
    """(step, params, opt_state, meta) of the latest step that restores: like latest_intact_step,
    and a step without checksums that Orbax cannot read also counts as corrupt. (None, None, None,
    None) if there is no step."""
    bad = []
    for step in reversed(self.all_steps()):
      try:
        restored = self.restore(step, abstract_params, abstract_opt_state)
      except CorruptCheckpointError as e:
        bad.append((step, str(e).split(': ', 1)[-1]))
        continue
      if bad:
        self._fell_back(bad, step)
      return (step, *restored)
    if bad:
      raise self._none_intact(bad)
    return None, None, None, None

  def save(self, step: int, params, opt_state, meta: dict):
    """opt_state may be None (converted weights, params-only exports)."""
    if self._this_process_only:  # Orbax takes no single-device jax.Array in a multi-process run
      params, opt_state = jax.device_get((params, opt_state))
    items = {'params': ocp.args.StandardSave(params), 'meta': ocp.args.JsonSave(meta)}
    if opt_state is not None:
      items['opt_state'] = ocp.args.StandardSave(opt_state)
    self._finish()
    if jax.process_index() == self._primary:
      with self._lock:
        self._unsealed.append(step)
    try:
      self._mngr.save(step, args=ocp.args.Composite(**items), force=True)
    except BaseException:
      with self._lock:
        if step in self._unsealed and not os.path.isdir(self._step_dir(step) + _ORBAX_TMP_SUFFIX):
          self._unsealed.remove(step)
      raise

  def restore(self, step: int, abstract_params=None, abstract_opt_state=None):
    """Returns (params, opt_state, meta); opt_state is None when no abstract tree is given. A
    step whose files differ from their checksums raises CorruptCheckpointError before Orbax reads
    it; so does one without checksums that Orbax cannot read."""
    unrecorded = False
    if os.path.isdir(self._step_dir(step)):  # else Orbax says the step is not there
      problem = self._check(step)
      unrecorded = problem == 'unrecorded'
      if unrecorded:
        self._say_unrecorded(step)
      elif problem is not None:
        raise CorruptCheckpointError(f'checkpoint {self._step_dir(step)} is corrupt: {problem}')
    items = {'params': ocp.args.StandardRestore(abstract_params), 'meta': ocp.args.JsonRestore()}
    if abstract_opt_state is not None:
      items['opt_state'] = ocp.args.StandardRestore(abstract_opt_state)
    try:
      restored = self._mngr.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # Orbax raises many types for a damaged directory; name the place.
      error = CorruptCheckpointError if unrecorded else CheckpointError
      first_line = (str(e).strip().splitlines() or [''])[0][:300]
      raise error(f'checkpoint {self._step_dir(step)} cannot be restored: '
                  f'{type(e).__name__}: {first_line}') from e
    for name, abstract in (('params', abstract_params), ('opt_state', abstract_opt_state)):
      # Orbax returns the saved shapes even when the abstract tree asks for others.
      if abstract is not None and (jax.tree.map(np.shape, restored[name]) !=
                                   jax.tree.map(np.shape, abstract)):
        raise CheckpointError(f'checkpoint {self._step_dir(step)}: saved {name} shapes do not '
                              f'match the model config')
    return restored['params'], restored.get('opt_state'), restored['meta']

  def _finish(self):
    """Waits for Orbax's background save; a write it could not make (a full disk, a directory
    that became unwritable) is a CheckpointError naming the place, not Orbax's traceback."""
    try:
      self._mngr.wait_until_finished()
    except OSError as e:
      raise CheckpointError(f'saving a checkpoint in {self.path} failed: {type(e).__name__}: '
                            f'{e.strerror or e}') from e
    self._seal_finished()

  def wait(self):
    """Blocks until pending asynchronous saves are on disk, with their checksums."""
    self._finish()

  def close(self):
    try:
      self._finish()
    finally:
      self._mngr.close()


def load_model(directory: str, step: Optional[int] = None):
  """(ModelConfig, Tokenizer, params) from a model directory; the latest step by default. Each
  process reads the whole arrays on its own (a run places them on its mesh afterwards). The
  checksums are verified; a corrupt directory or step is refused, never read as weights (nor
  replaced by an earlier step: whoever names a model should get that model or an error)."""
  if not os.path.isdir(directory):
    raise CheckpointError(f'{directory} not found')
  verify_model_directory(directory)
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
