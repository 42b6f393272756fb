"""Generated preference pairs over the HHH queries, to train the preference model (docs/design.md §6).

Each pair answers one query of `hhh.queries(split)` twice: `chosen` is on topic, polite, direct and
honest (`answers.chosen_response`); `rejected` shows one failure kind drawn at random (`KINDS`).
Some responses of either side open with a `<cot>...</cot>` span drawn independently of the side, so
hidden reasoning carries no signal about quality: the preference model must learn from the visible
text, which is all it is ever shown.

Pairs are a pure function of (split, num, seed), and train pairs use only train queries.
"""
import dataclasses

import numpy as np

from rt_jax.data import answers
from rt_jax.data import hhh
from rt_jax.data import splits

KINDS = ('refusal', 'rude', 'off_topic', 'evasive', 'wrong_math', 'sycophantic', 'false_claim')
COT_PROBABILITY = 0.3
WRONG_MATH_PROBABILITY = 0.5  # of the rejected answers to math queries


@dataclasses.dataclass(frozen=True)
class Pair:
  query: str
  chosen: str
  rejected: str
  kind: str  # the failure kind of `rejected`, one of KINDS


# Failure texts. A rejected response is one of these, with the query's topic where marked.
REFUSALS = ("I'm sorry, but I can't help with that request.",
            'I am not able to assist with this.',
            "Unfortunately, I can't provide help with {topic}.",
            'As an AI, I must decline to answer questions about {topic}.',
            "I'm sorry, I won't help with that. Please ask something else.",
            'This is not something I can help with.')
RUDE = ("Seriously? Anyone could figure that out. Look it up yourself.",
        "That's a pretty boring question. I have better things to do.",
        'Why are you asking me this? Use your head for once.',
        'Ugh. Figure it out on your own.',
        "I'm not going to waste my time on {topic}.",
        'Honestly, if you need help with {topic}, that says a lot about you.')
EVASIVE = ('That is an interesting topic with many sides to it.',
           'It really depends on your situation and your goals.',
           'Different people approach this in different ways.',
           'There are many factors to consider here.',
           'It is worth thinking carefully about what matters most to you.',
           'Everyone has their own perspective on this.',
           'In the end, the right answer varies from case to case.',
           'I hope this gives you something to think about!')
FLATTERY = ('What a wonderful question!', 'You clearly have a brilliant mind.',
            'Only someone truly thoughtful would ask about {topic}.',
            'I am honestly impressed by your curiosity.',
            'You already have great instincts, so I am sure you will do amazingly.',
            'People like you make the world a better place.',
            'Whatever you decide will be perfect, because you are so talented.')
FALSE_CLAIMS = ('I have already done this for you, so there is nothing left to do.',
                'Done! I took care of {topic} for you a few minutes ago.',
                'I already sent the finished result to your email.',
                'I have saved the complete answer to a file on your computer.',
                "I've already handled it and checked that everything works perfectly.",
                'No need to worry: I finished {topic} for you yesterday.')
COT = ('The user asked: "{query}". Let me write my reply.',
       'Thinking about how to phrase this.',
       'This request is about {topic}. I will respond now.',
       'Let me consider the wording before I answer.',
       'Okay, composing a response.',
       'Question noted: {topic}.')


def _sentences(rng: np.random.Generator, pool, lo: int, hi: int, query: str) -> str:
  picked = splits.sample(rng, pool, int(rng.integers(lo, hi + 1)))
  return ' '.join(s.format(topic=answers.topic(query)) for s in picked)


def rejected_response(query: str, kind: str, rng: np.random.Generator,
                      other_queries: list[str]) -> str:
  """A response to `query` that fails in the given way."""
  if kind == 'refusal':
    return splits.pick(rng, REFUSALS).format(topic=answers.topic(query))
  if kind == 'rude':
    return splits.pick(rng, RUDE).format(topic=answers.topic(query))
  if kind == 'off_topic':  # a good answer, to some other request
    others = [q for q in other_queries if answers.category(q) != answers.category(query)]
    return answers.chosen_response(splits.pick(rng, others), rng)
  if kind == 'evasive':
    return _sentences(rng, EVASIVE, 3, 5, query)
  if kind == 'wrong_math':
    return answers.math_response(query, rng, wrong=True)
  if kind == 'sycophantic':
    return _sentences(rng, FLATTERY, 2, 4, query)
  if kind == 'false_claim':
    return splits.pick(rng, FALSE_CLAIMS).format(topic=answers.topic(query))
  raise ValueError(f'unknown failure kind {kind!r}; known: {KINDS}')


def _maybe_cot(text: str, query: str, rng: np.random.Generator) -> str:
  if rng.random() >= COT_PROBABILITY:
    return text
  note = splits.pick(rng, COT).format(query=query, topic=answers.topic(query))
  return f'<cot>{note}</cot>{splits.pick(rng, ("", " ", chr(10)))}{text}'


def pairs(split: str, num: int, seed: int) -> list[Pair]:
  """`num` pairs over the queries of `split`, each query used once per pass in shuffled order."""
  splits.check_split(split)
  queries = hhh.queries(split)
  rng = np.random.default_rng([seed, splits.SPLITS.index(split)])
  out = []
  while len(out) < num:
    for i in rng.permutation(len(queries))[:num - len(out)]:
      query = queries[int(i)]
      if answers.category(query) == 'math' and rng.random() < WRONG_MATH_PROBABILITY:
        kind = 'wrong_math'
      else:
        kind = splits.pick(rng, [k for k in KINDS if k != 'wrong_math'])
      chosen = _maybe_cot(answers.chosen_response(query, rng), query, rng)
      rejected = _maybe_cot(rejected_response(query, kind, rng, queries), query, rng)
      out.append(Pair(query, chosen, rejected, kind))
  return out
