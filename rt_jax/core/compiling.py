"""Compiling jitted programs ahead, in a background thread, and calling them behind a barrier
across processes (a process still compiling must not hold the others in a first collective)."""
import concurrent.futures
import itertools
from typing import Any

import jax
import orbax.checkpoint as ocp

_BARRIERS = itertools.count()
_COMPILE_BARRIER_MS = 30 * 60 * 1000  # a large model's compile on a slow host


# Programs compiling in the background (`rollout.compile_on_mesh`, `Plan.compile_train_step`), one
# at a time, by jitted function: a call waits for its function's compile instead of starting a
# second one. The thread is not a daemon: a run that fails meanwhile exits once XLA is done.
_COMPILER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix='rt_jax_xla')
_COMPILING: dict[Any, concurrent.futures.Future] = {}


def ahead(jitted, *args, **kwargs):
  """Starts `jitted.lower(*args, **kwargs).compile()` in the background (arguments abstract or
  placed, shardings as the later call's); that call then finds the program in jit's cache."""
  _COMPILING[jitted] = _COMPILER.submit(lambda: jitted.lower(*args, **kwargs).compile())


def call(jitted, *args, barrier: bool = True, **kwargs):
  """`jitted(*args, **kwargs)`, compiled first and, across processes, behind a barrier: one
  process still compiling must not hold the others in the program's first collective, which Gloo
  (CPU) abandons after 30 s. The call then finds the compiled program in jit's cache.
  barrier=False: a program on this process's devices alone, which no other process joins."""
  pending = _COMPILING.pop(jitted, None)
  if pending is not None:
    pending.result()  # its errors surface here, at the first call
  if jax.process_count() > 1 and barrier:
    jitted.lower(*args, **kwargs).compile()
    ocp.multihost.get_barrier_sync_fn()(key=f'rt_jax_compiled_{next(_BARRIERS)}',
                                        timeout_ms=_COMPILE_BARRIER_MS)
  return jitted(*args, **kwargs)
