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
