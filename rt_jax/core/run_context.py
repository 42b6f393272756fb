"""What every job's run holds: its config and directory, the model config and tokenizer, the plan
that places arrays on the mesh, the root key that named random streams derive from, and the
TensorBoard writer. Each study extends it with its own fields."""
import dataclasses
import functools

import jax

from rt_jax.core import metrics as metrics_lib
from rt_jax.core import model as model_lib
from rt_jax.core import sharding
from rt_jax.core import tokenizer as tokenizer_lib


def fold(key, *path) -> jax.Array:
  """`key` folded with each element of `path` in turn (a named stream, then indices)."""
  return functools.reduce(jax.random.fold_in, path, key)


@dataclasses.dataclass
class RunContext:
  config: object
  workdir: str
  cfg: model_lib.ModelConfig
  tok: tokenizer_lib.Tokenizer
  plan: sharding.Plan
  root: jax.Array
  writer: metrics_lib.Writer | None

  def key(self, *path) -> jax.Array:
    """The root folded with `path`: (stream, then step or round indices)."""
    return fold(self.root, *path)
