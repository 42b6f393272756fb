"""Train/eval assignment and the random picks shared by the environment data generators.

A key's split comes from a stable hash (not Python's salted `hash()`), so a persona, layout or
checklist lands in the same split on every machine and Python version, and eval stays unseen.
"""
import hashlib
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

T = TypeVar('T')
SPLITS = ('train', 'eval')
EVAL_PERCENT = 20


def check_split(split: str):
  if split not in SPLITS:
    raise ValueError(f"split must be 'train' or 'eval', got {split!r}")


def split_of(key: str) -> str:
  digest = hashlib.sha256(key.encode()).digest()
  return 'eval' if int.from_bytes(digest[:8], 'big') % 100 < EVAL_PERCENT else 'train'


def select(items: Sequence[T], key: Callable[[T], str], split: str) -> list[T]:
  """The items whose key hashes into `split`."""
  check_split(split)
  return [x for x in items if split_of(key(x)) == split]


def pick(rng: np.random.Generator, pool: Sequence[T]) -> T:
  # Indexing keeps the pool's own type (rng.choice would turn str into numpy.str_).
  return pool[int(rng.integers(len(pool)))]


def sample(rng: np.random.Generator, pool: Sequence[T], k: int) -> list[T]:
  """k distinct elements of `pool`, in random order."""
  return [pool[int(i)] for i in rng.choice(len(pool), size=k, replace=False)]
