"""TensorBoard event files (scalars, text, images, hparams) under WORKDIR/tb, and progress lines
on the console; process 0 writes both, every other process stays silent."""
import os
import sys
import time

import jax
import numpy as np
from tensorboardX import SummaryWriter


def console(message: str):
  if jax.process_index() == 0:
    print(f'[{time.strftime("%H:%M:%S")}] {message}', file=sys.stderr, flush=True)


class Writer:

  def __init__(self, logdir: str, purge_step: int | None = None):
    # purge_step hides events a killed run logged past its last checkpoint, so a resumed run's
    # curves have no doubled segment.
    # tensorboardX names the event file by the second and host and opens it with 'wb', so a
    # second writer on the same directory within that second (a resumed run, a sweep adding
    # hparams) would truncate the first one's file; the suffix keeps every writer's file apart.
    self._writer = (SummaryWriter(logdir, purge_step=purge_step,
                                  filename_suffix=f'.{os.getpid()}.{time.time_ns()}')
                    if jax.process_index() == 0 else None)

  def scalars(self, step: int, values: dict):
    if self._writer:
      for name, value in values.items():
        self._writer.add_scalar(name, float(value), step)

  def text(self, step: int, tag: str, text: str):
    if self._writer:
      # TensorBoard renders text as markdown; a code fence keeps transcripts verbatim.
      self._writer.add_text(tag, f'```\n{text}\n```', step)

  def histogram(self, step: int, tag: str, values):
    values = np.asarray(values, np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if self._writer and values.size:
      self._writer.add_histogram(tag, values, step)

  def image(self, step: int, tag: str, image_HxWxC: np.ndarray):
    if self._writer:
      self._writer.add_image(tag, image_HxWxC, step, dataformats='HWC')

  def hparams(self, hparams: dict, metrics: dict):
    if self._writer:
      # tensorboardX writes these through a second writer; a sub-run directory keeps its event
      # file from colliding with the main one (file names carry only the second and host).
      self._writer.add_hparams(hparams, metrics, name='hparams')

  def flush(self):
    if self._writer:
      self._writer.flush()

  def close(self):
    if self._writer:
      self._writer.close()


def clock(seconds: float) -> str:
  seconds = int(round(seconds))
  h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
  return f'{h}:{m:02d}:{s:02d}' if h else f'{m}:{s:02d}'


class Progress:
  """A long job's overall position and ETA. Work comes in units (each of a kind: an SFT unit and
  an EI round take different times) and evaluations; the ETA sums, over what is left, the mean time
  this process measured for that kind of work."""

  def __init__(self, unit_kinds: list[str], evals: int, units_done: int = 0, evals_done: int = 0):
    self.unit_kinds = list(unit_kinds)
    self.total = {'unit': len(unit_kinds), 'eval': evals}
    self.done = {'unit': units_done, 'eval': evals_done}
    self.spent = {}  # kind of work -> seconds of each piece measured
    self.started = time.perf_counter()
    self._first_calls = set()

  def finished(self, kind: str, seconds: float):
    """kind: 'eval' or the kind of the unit that finished."""
    self.done['eval' if kind == 'eval' else 'unit'] += 1
    self.spent.setdefault(kind, []).append(seconds)

  def eta(self) -> float | None:
    """Seconds left, or None until every kind of work still to come has been timed once."""
    left = self.unit_kinds[self.done['unit']:] + ['eval'] * (self.total['eval'] - self.done['eval'])
    if any(kind not in self.spent for kind in left):
      return None
    return float(sum(np.mean(self.spent[kind]) for kind in left))

  def tag(self) -> str:
    eta = self.eta()
    return (f'[unit {self.done["unit"]}/{self.total["unit"]} · eval {self.done["eval"]}/'
            f'{self.total["eval"]} · {clock(time.perf_counter() - self.started)} · ETA '
            f'{clock(eta) if eta is not None else "after the first of each"}]')

  def say(self, message: str):
    console(f'{self.tag()} {message}')

  def first_call(self, program: str):
    """Says 'compiling' before the first call of a jitted program in this process (XLA compiles
    it then, or loads it from the persistent cache)."""
    if program not in self._first_calls:
      self._first_calls.add(program)
      self.say(f'compiling {program} (first call; a program in the XLA cache loads faster)…')
