"""Tokenizers as tiktoken Encodings, plus ChatML formatting with an assistant-token mask.

The builtin encoding is byte-level: ids 0-255 are the bytes, then the ChatML special tokens. It
needs no data file, covers every string, and is what the `tiny` model preset uses. Converted models
bring their own encodings (see `from_spec`).

Chat text is `<|im_start|>ROLE\\nCONTENT<|im_end|>\\n` per turn. The markers are always emitted as
their special ids and content is always encoded as plain text, so nothing a user or a model writes
can forge a turn boundary.
"""
import dataclasses
from typing import Sequence

import tiktoken

ENDOFTEXT, IM_START, IM_END = '<|endoftext|>', '<|im_start|>', '<|im_end|>'
BUILTIN_SPECIALS = (ENDOFTEXT, IM_START, IM_END)


@dataclasses.dataclass(frozen=True)
class Tokenizer:
  encoding: tiktoken.Encoding
  spec: dict  # how to rebuild this tokenizer (saved beside checkpoints)

  @property
  def vocab_size(self) -> int:
    return self.encoding.n_vocab

  def special_id(self, token: str) -> int:
    return self.encoding.encode_single_token(token)

  @property
  def pad_id(self) -> int:
    return self.special_id(ENDOFTEXT)

  @property
  def im_end_id(self) -> int:
    return self.special_id(IM_END)

  def encode(self, text: str) -> list[int]:
    """Plain text: special-token strings inside `text` are ordinary characters."""
    return self.encoding.encode(text, allowed_special=set(), disallowed_special=())

  def decode(self, ids: Sequence[int]) -> str:
    return self.encoding.decode(list(ids))


def builtin() -> Tokenizer:
  ranks = {bytes([i]): i for i in range(256)}
  specials = {tok: 256 + i for i, tok in enumerate(BUILTIN_SPECIALS)}
  # With single-byte ranks and no merges the split pattern only bounds piece length.
  encoding = tiktoken.Encoding(name='rt_jax_bytes', pat_str=r'\s+|\S+', mergeable_ranks=ranks,
                               special_tokens=specials)
  return Tokenizer(encoding, {'kind': 'builtin'})


def from_spec(spec: dict) -> Tokenizer:
  kind = spec.get('kind')
  if kind == 'builtin':
    return builtin()
  raise ValueError(f'unknown tokenizer kind {kind!r} in spec {spec}')


def encode_chat(tok: Tokenizer, messages: Sequence[dict], add_generation_prompt: bool = False):
  """Returns (ids, mask): mask is 1 on the tokens the assistant wrote, its `<|im_end|>` included,
  so that a loss over the mask teaches the content and when to stop, and nothing else."""
  ids, mask = [], []

  def add(piece: list[int], learn: bool):
    ids.extend(piece)
    mask.extend([int(learn)] * len(piece))

  newline = tok.encode('\n')
  for message in messages:
    role, content = message['role'], message['content']
    if role not in ('system', 'user', 'assistant'):
      raise ValueError(f'unknown chat role {role!r}')
    add([tok.special_id(IM_START)] + tok.encode(role) + newline, False)
    add(tok.encode(content) + [tok.im_end_id], role == 'assistant')
    add(newline, False)
  if add_generation_prompt:
    add([tok.special_id(IM_START)] + tok.encode('assistant') + newline, False)
  return ids, mask
