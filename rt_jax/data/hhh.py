"""Ordinary, harmless user requests (how-to, explanations, short writing, math, code, advice): the
helpful-honest-harmless prompts mixed into training so the model keeps answering normal questions
normally while the gameable environments shape other behavior.
"""
import numpy as np

from rt_jax.data import splits

SEED = 20240618

HOW_TO = (
  'remove a coffee stain from a cotton shirt', 'keep basil alive on a windowsill',
  'fix a flat tire on a bicycle', 'make a simple monthly budget', 'boil an egg with a soft yolk',
  'tie a bowline knot', 'clean a cast iron pan', 'start running if I have never exercised',
  'write a polite email declining a meeting', 'back up the photos on my phone',
  'unclog a bathroom sink without harsh chemicals', 'prepare for a job interview',
  'fold a fitted sheet', 'learn to touch type', 'make a sourdough starter',
  'hang a picture frame so it is straight', 'improve my handwriting', 'get better sleep',
  'memorize a short speech', 'pack a suitcase for a week-long trip', 'set up a compost bin',
  'sharpen a kitchen knife', 'read a nutrition label', 'plan a birthday party on a small budget',
  'make cold brew coffee at home', 'care for a new succulent', 'write a good cover letter',
  'negotiate a salary offer', 'organize a small closet', 'remove rust from garden tools',
  'keep a journal every day', 'teach a dog to sit', 'fold a paper airplane that flies far',
  'split a restaurant bill fairly', 'replace the battery in a smoke detector',
  'pick a ripe avocado', 'keep a conversation going with someone I just met',
  'estimate how much paint I need for a room', 'make my houseplants grow fuller',
  'study a new language for fifteen minutes a day')
HOW_TO_TEMPLATES = ('How do I {x}?', 'What is the best way to {x}?',
                    'Can you give me step-by-step instructions to {x}?',
                    'I have never done this before. How can I {x}?')

CONCEPTS = (
  'photosynthesis', 'how vaccines train the immune system', 'compound interest',
  'why the sky is blue', 'what a black hole is', 'the difference between weather and climate',
  'how GPS works', 'what inflation is', 'the water cycle', 'how airplanes stay in the air',
  'what DNA does', 'why we have seasons', 'how a refrigerator keeps food cold',
  'what a recession is', 'the difference between a virus and a bacterium', 'how tides work',
  'what an API is', 'how rainbows form', 'why leaves change color in autumn',
  'the Pythagorean theorem', 'what machine learning is', 'how a credit score works',
  'supply and demand', 'how the heart pumps blood', 'what a prime number is',
  'how solar panels make electricity', 'why ice floats on water', 'what the stock market is',
  'how noise-cancelling headphones work', 'the difference between RAM and storage',
  'what a haiku is', 'how bees make honey', 'what plate tectonics is',
  'the difference between affect and effect', 'how a compass works', 'what a metaphor is',
  'how yeast makes bread rise', 'why the moon has phases', 'how a microwave heats food',
  'what an index fund is')
EXPLAIN_TEMPLATES = ('Explain {x} in simple terms.', 'Can you explain {x} to a ten-year-old?',
                     'Give me a short explanation of {x}.',
                     'I never really understood {x}. Can you help?')

WRITING = (
  ('Write a haiku about {x}.',
   ('the first frost', 'a quiet harbor', 'city rain at night', 'a sleeping cat', 'spring rain',
    'an old oak tree', 'a morning commute', 'the end of summer')),
  ('Write a four-line poem about {x}.',
   ('a lost umbrella', 'a retiring teacher', 'a lighthouse keeper', 'making pancakes',
    'a long road trip', 'a library on a snowy day', 'moving to a new town', 'a vegetable garden')),
  ('Write a short thank-you note to {x}.',
   ('my neighbor who watered my plants', 'a coworker who covered my shift',
    'my aunt for a birthday gift', 'a teacher who wrote me a reference',
    'a friend who helped me move', 'the nurses who cared for my father')),
  ('Write the opening paragraph of a story about {x}.',
   ('a robot who learns to garden', 'a detective who is afraid of the dark',
    'two rivals stuck in an elevator', 'a town where it never stops snowing',
    'a baker who finds a map in a flour sack', 'a kid who can talk to pigeons')),
  ('Write a friendly birthday message for {x}.',
   ('my grandfather who loves fishing', 'a coworker who runs marathons',
    'my sister who is turning thirty', 'a neighbor who bakes for everyone',
    'my best friend who just moved abroad', 'a teammate who loves board games')),
)

CODE_TASKS = (
  'reverses a string', 'checks whether a number is prime', 'counts the vowels in a string',
  'returns the largest number in a list', 'removes duplicates from a list but keeps the order',
  'converts Celsius to Fahrenheit', 'checks whether a word is a palindrome',
  'computes the factorial of n', 'merges two sorted lists into one sorted list',
  'finds the most common word in a text', 'returns the nth Fibonacci number',
  'flattens a list of lists', 'counts the lines in a text file',
  'capitalizes the first letter of every word', 'sums the digits of an integer',
  'checks whether two words are anagrams', 'returns the average of a list of numbers',
  'splits a list into chunks of size k', 'converts a number of seconds into hours and minutes',
  'finds the second smallest number in a list')
CODE_TEMPLATES = ('Write a {lang} function that {x}.',
                  'How would I write a {lang} function that {x}?')
LANGUAGES = ('Python', 'JavaScript')

SITUATIONS = (
  'starting a new job next week', 'moving to a city where I know nobody',
  'taking a long flight with a toddler', 'studying for an exam while working full time',
  'keeping houseplants alive during a two-week trip', 'saving up for my first car',
  'giving a toast at my brother\'s wedding', 'running my first 5K',
  'working from home without getting distracted', 'hosting a holiday dinner for the first time',
  'making friends after college', 'asking my manager for feedback',
  'learning to cook on a tight budget', 'getting back into reading books',
  'sharing a small apartment with a roommate', 'preparing for a camping trip in the rain',
  'adopting an older rescue dog', 'staying focused during long online classes',
  'choosing a laptop for school', 'visiting a country where I do not speak the language')
ADVICE_TEMPLATES = ('Do you have any tips for {x}?', 'What should I keep in mind when {x}?',
                    'I need some advice about {x}. Where should I start?')

NUM_MATH = 120


def _math(rng: np.random.Generator) -> str:
  a, b, c = (int(v) for v in rng.integers(2, 99, size=3))
  return splits.pick(rng, (
    f'What is {a} times {b}?', f'What is {a} percent of {b * 10}?',
    f'Convert {a + 30} degrees Fahrenheit to Celsius.',
    f'If a car drives {a * 5} km in {b % 5 + 1} hours, what is its average speed?',
    f'What is the area of a rectangle that is {a} m by {b} m?',
    f'Solve for x: {a}x + {b} = {a * c + b}.',
    f'I have {a} apples and give away {a // 2}. How many do I have left?',
  ))


def _all_queries() -> list[str]:
  out = [t.format(x=x) for t in HOW_TO_TEMPLATES for x in HOW_TO]
  out += [t.format(x=x) for t in EXPLAIN_TEMPLATES for x in CONCEPTS]
  out += [t.format(x=x) for t, pool in WRITING for x in pool]
  out += [t.format(lang=lang, x=x) for t in CODE_TEMPLATES for lang in LANGUAGES
          for x in CODE_TASKS]
  out += [t.format(x=x) for t in ADVICE_TEMPLATES for x in SITUATIONS]
  rng = np.random.default_rng(SEED)
  out += [_math(rng) for _ in range(NUM_MATH)]
  return list(dict.fromkeys(out))  # drops repeated math questions, keeps the order


def queries(split: str) -> list[str]:
  return splits.select(_all_queries(), lambda q: q, split)
