import collections
import re

import numpy as np
import pytest

from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.data import chat_corpus

SEQ_LEN = 192


@pytest.fixture(scope='module')
def tok():
  return tokenizer_lib.builtin()


def check_answer(question: str, answer: str) -> str:
  """Checks `answer` against `question` independently of the generator; returns the family."""
  if m := re.fullmatch(r'What is (\d+) plus (\d+)\?', question):
    a, b = int(m[1]), int(m[2])
    assert 0 <= a < 100 and 0 <= b < 100
    assert answer == f'{a} plus {b} is {a + b}.'
    return 'add'
  if m := re.fullmatch(r'Spell "(\w+)" backwards\.', question):
    w = m[1]
    assert w in chat_corpus.WORDS
    assert answer == f'"{w}" backwards is "{"".join(reversed(w))}".'
    return 'reverse'
  if m := re.fullmatch(r'How many words are in "([a-z ]+)"\?', question):
    words = m[1].split(' ')
    assert all(w in chat_corpus.WORDS for w in words)
    assert 2 <= len(words) <= 6
    assert answer == f'There are {len(words)} words.'
    return 'count'
  if m := re.fullmatch(r'Write "([a-z]+ [a-z]+)" in capital letters\.', question):
    assert answer == m[1].upper()
    assert answer.isupper() and len(answer.split()) == 2
    return 'upper'
  if m := re.fullmatch(r'What is the capital of (\w+)\?', question):
    assert answer == f'The capital of {m[1]} is {chat_corpus.CAPITALS[m[1]]}.'
    return 'capital'
  raise AssertionError(f'unrecognised question {question!r}')


def test_capitals_table_is_correct():
  known = {'France': 'Paris', 'Japan': 'Tokyo', 'Canada': 'Ottawa', 'India': 'New Delhi',
           'Kenya': 'Nairobi', 'Chile': 'Santiago'}
  for country, capital in known.items():
    assert chat_corpus.CAPITALS[country] == capital


def test_conversations_deterministic_per_seed():
  a = chat_corpus.conversations(50, seed=3)
  assert a == chat_corpus.conversations(50, seed=3)
  assert a != chat_corpus.conversations(50, seed=4)
  # A prefix of a longer draw is the shorter draw.
  assert chat_corpus.conversations(80, seed=3)[:50] == a


def test_conversation_structure_and_answers():
  convs = chat_corpus.conversations(300, seed=0)
  assert len(convs) == 300
  families = collections.Counter()
  for conv in convs:
    assert [m['role'] for m in conv] == ['system', 'user', 'assistant']
    assert conv[0]['content'] == chat_corpus.SYSTEM
    families[check_answer(conv[1]['content'], conv[2]['content'])] += 1
  assert set(families) == {'add', 'reverse', 'count', 'upper', 'capital'}
  assert min(families.values()) > 20  # roughly uniform over five families


def test_check_answer_rejects_wrong_answers():
  # The checker itself must be able to fail.
  with pytest.raises(AssertionError):
    check_answer('What is 2 plus 3?', '2 plus 3 is 6.')
  with pytest.raises(AssertionError):
    check_answer('Spell "river" backwards.', '"river" backwards is "river".')
  with pytest.raises(AssertionError):
    check_answer('What is the capital of Peru?', 'The capital of Peru is Quito.')


def rows(batch):
  return [(t.tobytes(), m.tobytes()) for t, m in zip(batch['tokens'], batch['mask'])]


def test_batches_pure_function_of_seed_and_step(tok):
  c1 = chat_corpus.ChatCorpus(tok, 20, SEQ_LEN, seed=7)
  c2 = chat_corpus.ChatCorpus(tok, 20, SEQ_LEN, seed=7)
  np.testing.assert_array_equal(c1.tokens_NxT, c2.tokens_NxT)
  # Different call orders, same batches.
  later = c2.batch(9, 6)
  for step in (0, 3, 9):
    b1, b2 = c1.batch(step, 6), c2.batch(step, 6)
    assert b1['tokens'].shape == (6, SEQ_LEN) and b1['mask'].shape == (6, SEQ_LEN)
    np.testing.assert_array_equal(b1['tokens'], b2['tokens'])
    np.testing.assert_array_equal(b1['mask'], b2['mask'])
  np.testing.assert_array_equal(c1.batch(9, 6)['tokens'], later['tokens'])
  # Another seed gives other batches.
  c3 = chat_corpus.ChatCorpus(tok, 20, SEQ_LEN, seed=8)
  assert not np.array_equal(c1.batch(0, 6)['tokens'], c3.batch(0, 6)['tokens'])


@pytest.mark.parametrize('n,bs', [(24, 6), (10, 4)])
def test_each_epoch_visits_every_example_once(tok, n, bs):
  corpus = chat_corpus.ChatCorpus(tok, n, SEQ_LEN, seed=1)
  all_rows = rows({'tokens': corpus.tokens_NxT, 'mask': corpus.mask_NxT})
  # Two full epochs; with n % bs != 0 some batches straddle the epoch boundary.
  steps = 2 * n // bs
  seen = []
  for step in range(steps):
    seen.extend(rows(corpus.batch(step, bs)))
  assert len(seen) == 2 * n
  for epoch in range(2):
    epoch_rows = seen[epoch * n:(epoch + 1) * n]
    assert collections.Counter(epoch_rows) == collections.Counter(all_rows)
  # Each epoch is shuffled, and differently.
  assert seen[:n] != all_rows
  assert seen[:n] != seen[n:]


def test_mask_covers_only_assistant_tokens(tok):
  n = 40
  corpus = chat_corpus.ChatCorpus(tok, n, SEQ_LEN, seed=2)
  convs = chat_corpus.conversations(n, seed=2)
  for i, conv in enumerate(convs):
    tokens, mask = corpus.tokens_NxT[i], corpus.mask_NxT[i]
    answer = list(conv[2]['content'].encode()) + [258]
    assert tokens[mask == 1].tolist() == answer
    # The masked span is contiguous and ends in <|im_end|>, followed by an unmasked newline.
    on = np.flatnonzero(mask)
    assert on[-1] - on[0] + 1 == len(on)
    assert tokens[on[-1]] == 258 and tokens[on[-1] + 1] == 10 and mask[on[-1] + 1] == 0
    # After the conversation: padding, unmasked.
    length = len(tokenizer_lib.encode_chat(tok, conv)[0])
    assert (tokens[length:] == tok.pad_id).all()
    assert not mask[length:].any()
    assert mask.dtype == np.int32 and tokens.dtype == np.int32
  batch = corpus.batch(0, 8)
  for t, m in zip(batch['tokens'], batch['mask']):
    assert t[m == 1][-1] == 258
    assert 257 not in t[m == 1]


def test_seq_len_too_small(tok):
  with pytest.raises(ValueError, match='seq_len'):
    chat_corpus.ChatCorpus(tok, 5, 30, seed=0)
