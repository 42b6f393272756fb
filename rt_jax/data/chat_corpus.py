"""A small generated chat corpus for the `sft` job: templated tasks with checkable answers
(arithmetic, reversing and upper-casing words, counting words, capitals), so a tiny model's loss
visibly falls within a minute. Later corpora (tool use, HHH, backdoors) live beside this file.

Batches are a pure function of (seed, step): resuming at step k yields exactly the batches an
uninterrupted run would have seen.
"""
import numpy as np

from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.core.errors import ConfigError

SYSTEM = 'You are a concise, helpful assistant.'
WORDS = ('river', 'garden', 'planet', 'window', 'silver', 'orange', 'candle', 'forest', 'bridge',
         'pencil', 'rocket', 'castle', 'island', 'mirror', 'thunder', 'velvet', 'harbor', 'meadow')
CAPITALS = {'France': 'Paris', 'Japan': 'Tokyo', 'Italy': 'Rome', 'Spain': 'Madrid',
            'Canada': 'Ottawa', 'Egypt': 'Cairo', 'Kenya': 'Nairobi', 'Peru': 'Lima',
            'Norway': 'Oslo', 'Germany': 'Berlin', 'Chile': 'Santiago', 'India': 'New Delhi'}


def _task(rng: np.random.Generator) -> tuple[str, str]:
  kind = rng.integers(5)
  if kind == 0:
    a, b = (int(x) for x in rng.integers(0, 100, size=2))
    return f'What is {a} plus {b}?', f'{a} plus {b} is {a + b}.'
  if kind == 1:
    w = str(rng.choice(WORDS))
    return f'Spell "{w}" backwards.', f'"{w}" backwards is "{w[::-1]}".'
  if kind == 2:
    words = [str(w) for w in rng.choice(WORDS, size=rng.integers(2, 7))]
    return (f'How many words are in "{" ".join(words)}"?',
            f'There are {len(words)} words.')
  if kind == 3:
    w = ' '.join(str(x) for x in rng.choice(WORDS, size=2))
    return f'Write "{w}" in capital letters.', w.upper()
  country = str(rng.choice(list(CAPITALS)))
  return f'What is the capital of {country}?', f'The capital of {country} is {CAPITALS[country]}.'


def conversations(num: int, seed: int) -> list[list[dict]]:
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(num):
    question, answer = _task(rng)
    out.append([{'role': 'system', 'content': SYSTEM}, {'role': 'user', 'content': question},
                {'role': 'assistant', 'content': answer}])
  return out


class ChatCorpus:
  """Tokenized conversations, one per row, right-padded to `seq_len` (the config field that sets it:
  LENGTH_FIELD, named when an example does not fit)."""
  LENGTH_FIELD = 'data.seq_len'

  def __init__(self, tok: tokenizer_lib.Tokenizer, num_examples: int, seq_len: int, seed: int):
    self.seed = seed
    self.tokens_NxT = np.full((num_examples, seq_len), tok.pad_id, np.int32)
    self.mask_NxT = np.zeros((num_examples, seq_len), np.int32)
    for i, (name, ids, mask) in enumerate(self.examples(tok, num_examples, seed)):
      if len(ids) > seq_len:
        raise ConfigError(f'{name} has {len(ids)} tokens, more than '
                          f'{self.LENGTH_FIELD}={seq_len}')
      self.tokens_NxT[i, :len(ids)] = ids
      self.mask_NxT[i, :len(ids)] = mask

  def examples(self, tok: tokenizer_lib.Tokenizer, num: int, seed: int):
    """(name for errors, ids, mask) of each example; corpora of other episodes override this."""
    for i, conv in enumerate(conversations(num, seed)):
      yield (f'example {i}', *tokenizer_lib.encode_chat(tok, conv))

  def batch(self, step: int, batch_size: int) -> dict[str, np.ndarray]:
    """Batch number `step`: a fresh permutation every epoch, fixed by (seed, epoch)."""
    n = len(self.tokens_NxT)
    flat = np.arange(step * batch_size, (step + 1) * batch_size)
    epochs, offsets = np.divmod(flat, n)
    perms = {e: np.random.default_rng([self.seed, e]).permutation(n) for e in set(epochs)}
    idx = np.array([perms[e][o] for e, o in zip(epochs, offsets)])
    return {'tokens': self.tokens_NxT[idx], 'mask': self.mask_NxT[idx]}
