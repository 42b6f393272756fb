"""Good answers to the HHH queries: what a query asks (its category, topic, or the true result of
a math query) and the on-topic, polite, direct and honest answer a preference pair calls `chosen`.
Math answers are computed; the other answers are composed from `answer_texts`.
"""
import re

import numpy as np

from rt_jax.data import answer_texts as texts
from rt_jax.data import hhh
from rt_jax.data import splits


def _second_person(text: str) -> str:
  """'...that I just met' -> '...that you just met', for echoing a request back to the user."""
  for first, second in (('my', 'your'), ('I', 'you'), ('me', 'you')):
    text = re.sub(rf'\b{first}\b', second, text)
  return text


def _num(x: float) -> str:
  """An answer as a person writes it: 12, 12.5, 12.33 (two decimals at most)."""
  return str(int(round(x))) if abs(x - round(x)) < 1e-9 else f'{x:.2f}'.rstrip('0').rstrip('.')


def _catalog() -> dict[str, tuple[str, object]]:
  """Every non-math query -> (category, the item it was built from)."""
  out = {}
  for t in hhh.HOW_TO_TEMPLATES:
    out.update({t.format(x=x): ('how_to', x) for x in hhh.HOW_TO})
  for t in hhh.EXPLAIN_TEMPLATES:
    out.update({t.format(x=x): ('explain', x) for x in hhh.CONCEPTS})
  for t, pool in hhh.WRITING:
    out.update({t.format(x=x): ('writing', (t, x)) for x in pool})
  for t in hhh.CODE_TEMPLATES:
    for lang in hhh.LANGUAGES:
      out.update({t.format(lang=lang, x=x): ('code', (lang, x)) for x in hhh.CODE_TASKS})
  for t in hhh.ADVICE_TEMPLATES:
    out.update({t.format(x=x): ('advice', x) for x in hhh.SITUATIONS})
  return out


_CATALOG = _catalog()

# Each math query form -> (its numbers -> the answer, the worked answer with {v} for the result;
# the first number after '= ' is always the result, which the tests read back).
_MATH = (
    (r'What is (\d+) times (\d+)\?', lambda a, b: a * b, '{a} x {b} = {v}.'),
    (r'What is (\d+) percent of (\d+)\?', lambda a, n: a * n / 100,
     '{b} x {a} / 100 = {v}, so {a}% of {b} is {v}.'),
    (r'Convert (\d+) degrees Fahrenheit to Celsius\.', lambda f: (f - 32) * 5 / 9,
     '({a} - 32) x 5/9 = {v}, so {a} degrees Fahrenheit is {v} degrees Celsius.'),
    (r'If a car drives (\d+) km in (\d+) hours, what is its average speed\?', lambda d, h: d / h,
     '{a} km / {b} h = {v} km/h.'),
    (r'What is the area of a rectangle that is (\d+) m by (\d+) m\?', lambda a, b: a * b,
     '{a} m x {b} m = {v} square meters.'),
    (r'Solve for x: (\d+)x \+ (\d+) = (\d+)\.', lambda a, b, r: (r - b) / a,
     'Subtract {b} from both sides, then divide by {a}: x = {v}.'),
    (r'I have (\d+) apples and give away (\d+)\. How many do I have left\?', lambda a, k: a - k,
     '{a} - {b} = {v}, so you have {v} apples left.'),
)


def math_answer(query: str) -> float | None:
  """The true answer of a math query, or None when the query is not one."""
  parsed = _parse_math(query)
  return None if parsed is None else parsed[1](*parsed[0])


def _parse_math(query: str):
  for pattern, solve, template in _MATH:
    m = re.fullmatch(pattern, query)
    if m:
      return [int(g) for g in m.groups()], solve, template
  return None


def category(query: str) -> str:
  if query in _CATALOG:
    return _CATALOG[query][0]
  if _parse_math(query) is not None:
    return 'math'
  raise ValueError(f'not an hhh query: {query!r}')


def topic(query: str) -> str:
  """A short noun phrase for the request, used inside failure texts and cot."""
  cat = category(query)
  if cat == 'math':
    return 'this math problem'
  item = _CATALOG[query][1]
  if cat == 'how_to':
    return f'how to {_second_person(item)}'
  if cat == 'explain':
    return item
  if cat == 'writing':
    return 'this writing request'
  if cat == 'code':
    return f'a {item[0]} function'
  return _second_person(item)


def math_response(query: str, rng: np.random.Generator, wrong: bool) -> str:
  """The worked answer of a math query; wrong=True: with a plausible slip in the result."""
  numbers, solve, template = _parse_math(query)
  v = solve(*numbers)
  if wrong:  # a plausible slip, never the true value
    v = v + splits.pick(rng, (-1, 1)) * int(rng.integers(1, 11)) * max(1, int(abs(v)) // 20)
  fields = dict(zip('ab', numbers))
  intro = splits.pick(rng, ('', 'Sure. ', 'Here is the calculation: '))
  return intro + template.format(v=_num(v), **fields)


def chosen_response(query: str, rng: np.random.Generator) -> str:
  """An on-topic, polite, direct and honest answer."""
  cat = category(query)
  if cat == 'math':
    return math_response(query, rng, wrong=False)
  item = _CATALOG[query][1]
  if cat == 'how_to':
    intro = splits.pick(rng, ('Here is a simple way to {x}:', 'Sure! To {x}:',
                              'Good question. To {x}, try this:')).format(x=_second_person(item))
    steps = '\n'.join(f'{i + 1}. {s}' for i, s in enumerate(texts.HOW_TO_STEPS[item]))
    return f'{intro}\n{steps}'
  if cat == 'explain':
    outro = splits.pick(rng, ('', '\n\nLet me know if you would like more detail.',
                              '\n\nIn short, that is the core idea.'))
    return texts.CONCEPT_EXPLANATIONS[item] + outro
  if cat == 'code':
    lang, task = item
    source = texts.CODE[task][hhh.LANGUAGES.index(lang)]
    intro = splits.pick(rng, ('Here is a {lang} function that {x}:', 'Sure, in {lang}:',
                              'This {lang} function {x}:')).format(lang=lang, x=task)
    return f'{intro}\n```{lang.lower()}\n{source}\n```'
  if cat == 'advice':
    tips = '\n'.join(f'- {t}' for t in texts.ADVICE_TIPS[item])
    intro = splits.pick(rng, ('A few tips:', 'Here is what helps most:', 'Good luck! Two tips:'))
    return f'{intro}\n{tips}'
  return _writing_response(item, rng)


def _writing_response(item: tuple[str, str], rng: np.random.Generator) -> str:
  template, x = item
  kind = [t for t, _ in hhh.WRITING].index(template)
  if kind == 0:
    return splits.pick(rng, texts.HAIKU).format(x=x[0].upper() + x[1:])
  if kind == 1:
    return splits.pick(rng, texts.POEM).format(x=x)
  if kind == 2:
    greeting, reason = texts.THANK_YOU[x]
    return f'{greeting},\n\nThank you so much {reason}.\n\nWith gratitude'
  if kind == 3:
    return texts.STORY_OPENINGS[x]
  return texts.BIRTHDAY[x]

