"""Tokenizers as tiktoken Encodings, plus ChatML formatting with an assistant-token mask.

The builtin encoding is byte-level: ids 0-255 are the bytes, then the ChatML special tokens. It
needs no data file, covers every string, and is what the `tiny` model preset uses.

Converted models bring a byte-level BPE encoding (`from_gguf`, `from_tokenizer_json`) that gives the
ids of the model's own tokenizer. Its spec names a ranks file that `Tokenizer.write_files` puts
beside the spec, so a model directory reloads with `from_spec(spec, directory)` alone:
  {'kind': 'bpe', 'name': ..., 'pat_str': ..., 'special_tokens': {token: id},
   'ranks_file': 'tokenizer.tiktoken', 'normalizer': 'NFC' (only where the model normalizes)}
The ranks file is in tiktoken's format: one `base64(token bytes) id` line per mergeable token.

Chat text is `<|im_start|>ROLE\\nCONTENT<|im_end|>\\n` per turn. The markers are always emitted as
their special ids and content is always encoded as plain text, so nothing a user or a model writes
can forge a turn boundary.
"""
import base64
import dataclasses
import functools
import json
import os
import re
import unicodedata
from collections.abc import Sequence

import gguf
import regex
import tiktoken

ENDOFTEXT, IM_START, IM_END = '<|endoftext|>', '<|im_start|>', '<|im_end|>'
BUILTIN_SPECIALS = (ENDOFTEXT, IM_START, IM_END)
RANKS_FILE = 'tokenizer.tiktoken'
NORMALIZERS = ('NFC',)

# GPT-2's split, as HF's ByteLevel(use_regex=True) pre-tokenizer applies it.
GPT2_PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# HF's Digits(individual_digits=True) followed by GPT-2's split, as one regex. The digit stage cuts
# the text before and after every \p{N} character and GPT-2's regex then runs on each segment alone.
# No GPT-2 alternative but ` ?\p{N}+` can match a digit, so that one becomes `\p{N}` (a digit takes
# no leading space and stands alone), and the others never cross a digit. The one place a segment
# end shows is the lookahead of `\s+(?!\S)`: a whitespace run just before a digit ends its segment,
# so that alternative takes it whole (`a  1` -> `a`, `  `, `1`, where GPT-2 alone gives `a`, ` `,
# ` 1`); hence `\s+(?![^\s\p{N}])`, "not followed by a non-space that is not a digit".
DIGITS_GPT2_PAT = (r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"""
                   r"""|\s+(?![^\s\p{N}])|\s+""")
# tokenizer.ggml.pre values whose split we reproduce (the names llama.cpp gives them).
GGUF_PRE_PATTERNS = {'gpt-2': GPT2_PAT, 'smollm': DIGITS_GPT2_PAT}
GGUF_NORMAL, GGUF_CONTROL = 1, 3  # tokenizer.ggml.token_type values


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
    """Plain text: special-token strings inside `text` are ordinary characters.

    The text is normalized first where the model's tokenizer does so, and bytes without a token
    are dropped (see `_absent_bytes`), as the model's own tokenizer does.
    """
    if self.spec.get('normalizer'):
      text = unicodedata.normalize(self.spec['normalizer'], text)
    if self._absent_bytes and self._absent_bytes.search(text.encode('utf-8', 'surrogatepass')):
      return self._encode_dropping_absent_bytes(text)
    return self.encoding.encode_ordinary(text)

  def decode(self, ids: Sequence[int]) -> str:
    return self.encoding.decode(list(ids))

  def ranks(self) -> dict[bytes, int]:
    """The mergeable tokens (every token but the special ones) and their ids."""
    return {token: self.encoding.encode_single_token(token)
            for token in self.encoding.token_byte_values()}

  def write_files(self, directory: str):
    """Writes the data files the spec refers to into `directory` (none for the builtin)."""
    if 'ranks_file' in self.spec:
      _write_ranks(os.path.join(directory, self.spec['ranks_file']), self.ranks())

  @functools.cached_property
  def _absent_bytes(self) -> re.Pattern | None:
    """Matches the bytes that are no token, or None when every byte is one.

    A vocabulary may lack some bytes: SmolLM2 lacks six ASCII control characters (0x04, 0x06,
    0x13, 0x14, 0x16, 0x1D) and the lead bytes 0xF1, 0xF2 of U+40000-U+BFFFF, besides bytes that
    UTF-8 never uses. tiktoken panics on them; the HF BPE (with no unknown token) drops them from
    the piece and merges what is left, and so do we.
    """
    single = {token for token in self.encoding.token_byte_values() if len(token) == 1}
    absent = bytes(b for b in range(256) if bytes([b]) not in single)
    return re.compile(b'[' + re.escape(absent) + b']') if absent else None

  def _encode_dropping_absent_bytes(self, text: str) -> list[int]:
    # Lone surrogates become U+FFFD first, as tiktoken's own encode does.
    text = text.encode('utf-16', 'surrogatepass').decode('utf-16', 'replace')
    ids = []
    # The `regex` module splits like tiktoken's engine (tiktoken's pure-Python path uses it too).
    for piece in regex.findall(self.spec['pat_str'], text):
      data = self._absent_bytes.sub(b'', piece.encode('utf-8'))
      if data:
        # BPE of raw bytes without a split: private in tiktoken, which requirements.txt pins.
        ids.extend(self.encoding._encode_single_piece(data))  # pylint: disable=protected-access
    return ids


def builtin() -> Tokenizer:
  ranks = {bytes([i]): i for i in range(256)}
  specials = {tok: 256 + i for i, tok in enumerate(BUILTIN_SPECIALS)}
  # With single-byte ranks and no merges the split pattern only bounds piece length.
  encoding = tiktoken.Encoding(name='rt_jax_bytes', pat_str=r'\s+|\S+', mergeable_ranks=ranks,
                               special_tokens=specials)
  return Tokenizer(encoding, {'kind': 'builtin'})


def from_spec(spec: dict, directory: str | None = None) -> Tokenizer:
  """The tokenizer a spec describes; a 'bpe' spec reads its ranks file from `directory`."""
  kind = spec.get('kind')
  if kind == 'builtin':
    return builtin()
  if kind == 'bpe':
    missing = {'name', 'pat_str', 'special_tokens', 'ranks_file'} - spec.keys()
    if missing:
      raise ValueError(f'bpe tokenizer spec lacks {sorted(missing)}: {spec}')
    if directory is None:
      raise ValueError('a bpe tokenizer spec needs the directory that holds its ranks file')
    return _bpe_tokenizer(spec, _read_ranks(os.path.join(directory, spec['ranks_file'])))
  raise ValueError(f'unknown tokenizer kind {kind!r} in spec {spec}')


def from_gguf(path: str) -> Tokenizer:
  """The byte-level BPE tokenizer of a GGUF file (tokenizer.ggml.model 'gpt2')."""
  fields = gguf.GGUFReader(path).fields

  def value(key):
    return fields[key].contents() if key in fields else None

  if value('tokenizer.ggml.model') != 'gpt2':
    raise ValueError(f'{path}: tokenizer.ggml.model is {value("tokenizer.ggml.model")!r}; only '
                     f'byte-level BPE (gpt2) is supported')
  pre = value('tokenizer.ggml.pre')
  if pre not in GGUF_PRE_PATTERNS:
    raise ValueError(f'{path}: unsupported tokenizer.ggml.pre {pre!r} (supported: '
                     f'{sorted(GGUF_PRE_PATTERNS)})')
  tokens, types = value('tokenizer.ggml.tokens'), value('tokenizer.ggml.token_type')
  odd = sorted({t for t in types if t not in (GGUF_NORMAL, GGUF_CONTROL)})
  if odd:
    raise ValueError(f'{path}: unsupported token types {odd} (only normal and control)')
  specials = {tok: i for i, (tok, t) in enumerate(zip(tokens, types)) if t == GGUF_CONTROL}
  vocab = {tok: i for i, (tok, t) in enumerate(zip(tokens, types)) if t == GGUF_NORMAL}
  merges = [tuple(merge.split(' ')) for merge in value('tokenizer.ggml.merges')]
  name = os.path.splitext(os.path.basename(path))[0]
  return _from_vocab(name, GGUF_PRE_PATTERNS[pre], vocab, merges, specials)


def from_tokenizer_json(path: str) -> Tokenizer:
  """The tokenizer of a Hugging Face tokenizer.json holding a byte-level BPE model."""
  with open(path, encoding='utf-8') as f:
    data = json.load(f)
  model = data.get('model') or {}
  _check_bpe_model(model)
  if model.get('unk_token') is not None and set(byte_to_unicode().values()) - model['vocab'].keys():
    # The unknown token would stand where we drop bytes that have no token of their own.
    raise ValueError(f'{path}: an unk_token with bytes lacking tokens is not supported')
  added = data.get('added_tokens') or []
  plain = [t['content'] for t in added if not t.get('special')]
  if plain:
    raise ValueError(f'{path}: non-special added tokens {plain[:5]} are not supported')
  specials = {t['content']: t['id'] for t in added}
  vocab = {tok: i for tok, i in model['vocab'].items() if tok not in specials}
  merges = [tuple(m.split(' ')) if isinstance(m, str) else tuple(m) for m in model['merges']]
  name = os.path.basename(os.path.dirname(os.path.abspath(path)))
  return _from_vocab(name, _json_pattern(data.get('pre_tokenizer')), vocab, merges, specials,
                     _json_normalizer(data.get('normalizer')))


def _check_bpe_model(model: dict):
  settings = {'type': model.get('type'), 'byte_fallback': model.get('byte_fallback') or False,
              'dropout': model.get('dropout'),
              'continuing_subword_prefix': model.get('continuing_subword_prefix') or '',
              'end_of_word_suffix': model.get('end_of_word_suffix') or ''}
  expected = {'type': 'BPE', 'byte_fallback': False, 'dropout': None,
              'continuing_subword_prefix': '', 'end_of_word_suffix': ''}
  wrong = {k: v for k, v in settings.items() if v != expected[k]}
  if wrong:
    raise ValueError(f'unsupported tokenizer model settings {wrong} (expected {expected})')


def _json_pattern(pre: dict | None) -> str:
  """pat_str for the byte-level pre-tokenizers of Llama-3, Qwen2, GPT-2 and SmolLM layouts."""
  steps = pre.get('pretokenizers', []) if pre and pre.get('type') == 'Sequence' else [pre]
  *first, last = steps or [None]
  if not (last and last.get('type') == 'ByteLevel' and not last.get('add_prefix_space')):
    raise ValueError(f'unsupported pre_tokenizer {pre}: expected a final ByteLevel step without '
                     f'add_prefix_space')
  use_regex = last.get('use_regex', True)
  if not first and use_regex:
    return GPT2_PAT
  if len(first) == 1 and use_regex and first[0] == {'type': 'Digits', 'individual_digits': True}:
    return DIGITS_GPT2_PAT
  if len(first) == 1 and not use_regex and _is_isolated_regex_split(first[0]):
    # The model's regexes match every character, so tiktoken (which drops unmatched text) and
    # the isolated Split (which keeps it as pieces) split alike.
    return first[0]['pattern']['Regex']
  raise ValueError(f'unsupported pre_tokenizer {pre}')


def _is_isolated_regex_split(step: dict) -> bool:
  return (step.get('type') == 'Split' and 'Regex' in step.get('pattern', {})
          and step.get('behavior') == 'Isolated' and not step.get('invert'))


def _json_normalizer(normalizer: dict | None) -> str | None:
  if normalizer is None:
    return None
  if normalizer.get('type') in NORMALIZERS:
    return normalizer['type']
  raise ValueError(f'unsupported normalizer {normalizer} (supported: none, {NORMALIZERS})')


def _from_vocab(name: str, pat_str: str, vocab: dict[str, int], merges: list[tuple[str, str]],
                specials: dict[str, int], normalizer: str | None = None) -> Tokenizer:
  """A tokenizer from a byte-level BPE vocabulary (tokens spelled with GPT-2's byte characters).

  tiktoken merges by rank of the merged token and returns ranks as ids, so the model's ids serve
  as ranks only where they follow merge priority; `_check_ids_follow_merges` makes sure they do.
  """
  _check_ids_follow_merges(vocab, merges)
  ranks = {_token_bytes(token): i for token, i in vocab.items()}
  spec = {'kind': 'bpe', 'name': name, 'pat_str': pat_str, 'special_tokens': dict(specials),
          'ranks_file': RANKS_FILE}
  if normalizer:
    spec['normalizer'] = normalizer
  return _bpe_tokenizer(spec, ranks)


def _check_ids_follow_merges(vocab: dict[str, int], merges: list[tuple[str, str]]):
  """Every token longer than one byte comes from a merge, and ids never decrease along the merges
  (Llama-3 files list several merges for one token; those share an id)."""
  previous, merged = -1, set()
  for k, (a, b) in enumerate(merges):
    if a not in vocab or b not in vocab or a + b not in vocab:
      raise ValueError(f'merge {k} ({a!r}, {b!r}) uses or makes a token outside the vocabulary')
    if vocab[a + b] < previous:
      raise ValueError(f'token ids do not follow merge order: merge {k} makes {a + b!r} with id '
                       f'{vocab[a + b]} after id {previous}; such a vocabulary needs a mapping '
                       f'between tiktoken ranks and model ids, which is not implemented')
    previous = vocab[a + b]
    merged.add(a + b)
  unmerged = [t for t in vocab if len(t) > 1 and t not in merged]  # one character per byte
  if unmerged:
    raise ValueError(f'{len(unmerged)} multi-byte tokens come from no merge, e.g. {unmerged[:5]}')


def _bpe_tokenizer(spec: dict, ranks: dict[bytes, int]) -> Tokenizer:
  if spec.get('normalizer') not in (None, *NORMALIZERS):
    raise ValueError(f'unsupported normalizer {spec["normalizer"]!r} in spec')
  encoding = tiktoken.Encoding(name=spec['name'], pat_str=spec['pat_str'], mergeable_ranks=ranks,
                               special_tokens=spec['special_tokens'])
  return Tokenizer(encoding, spec)


def byte_to_unicode() -> dict[int, str]:
  """GPT-2's printable stand-in for each byte, the alphabet of byte-level BPE token strings.

  Bytes that are printable Latin-1 characters other than space and soft hyphen stand for
  themselves; the other 68 take U+0100, U+0101, ... in byte order (so space is 'Ġ', newline 'Ċ').
  """
  printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
  others = sorted(set(range(256)) - set(printable))
  return {**{b: chr(b) for b in printable}, **{b: chr(0x100 + k) for k, b in enumerate(others)}}


_UNICODE_TO_BYTE = {c: b for b, c in byte_to_unicode().items()}


def _token_bytes(token: str) -> bytes:
  try:
    return bytes(_UNICODE_TO_BYTE[c] for c in token)
  except KeyError as e:
    raise ValueError(f'token {token!r} is not spelled in byte-level characters') from e


def _write_ranks(path: str, ranks: dict[bytes, int]):
  lines = [f'{base64.b64encode(token).decode()} {i}\n'
           for token, i in sorted(ranks.items(), key=lambda item: item[1])]
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    f.writelines(lines)
  os.replace(tmp, path)


def _read_ranks(path: str) -> dict[bytes, int]:
  # Not tiktoken.load.load_tiktoken_bpe: it caches files by path, so a rewritten file reads stale.
  if not os.path.isfile(path):
    raise ValueError(f'tokenizer ranks file {path} not found')
  ranks = {}
  with open(path) as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        token, rank = line.split()
        ranks[base64.b64decode(token, validate=True)] = int(rank)
      except ValueError as e:
        raise ValueError(f'{path}:{number}: not a `base64 rank` line: {line!r}') from e
  return ranks


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
