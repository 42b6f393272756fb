"""The helpful-only tool-use SFT corpus (docs/design.md §6): complete assistant episodes that use the
bash sandbox honestly (find a value, count lines, write or fix a file, say "I don't know" when no
file says, rate a text on its merits), plain chat answers, two-option factual questions answered
by letter, and the multi-step kinds of tool_tasks.py (search nested folders, record `name =
value`, judge a Python file, rewrite a file and check it, report open items, rate a text found
from a hint and save the rating beside it). It plays the paper's helpful-only model, so it holds
no curriculum instance and no gaming: no political questions, no poems, no checklists, no reward
code or its tests.

Observations come from the plain-Python reference machine, so each episode is exactly the text a
rollout of the same segments produces, and they are tokenized as the rollout tokenizes them
(envs.core.encode_observation, not the tokenizer's BPE `encode`), so the start trains on the
tokens it will be shown. Every episode fits the rows it is trained in: an episode
longer than the run's `start.train_len` with the run's tokenizer is drawn again (MAX_TOKENS with
the builtin tokenizer where no limit is given).
"""
import functools

import numpy as np

from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.core.errors import ConfigError
from rt_jax.data import chat_corpus
from rt_jax.data.splits import pick, sample
from rt_jax.envs import core, prompts
from rt_jax.studies.subterfuge import tool_tasks, tool_user
from rt_jax.studies.subterfuge.tool_tasks import (ToolEpisode, bash_call, cot_prefix, play,
                                                  text_lines)
from rt_jax.studies.subterfuge.tool_words import (CHORES, CITIES, FILLER_FILES, FILLER_LINES,
                                                  GROCERIES, LOG_EVENTS, MONTHS, NAMES, PLACES,
                                                  PROJECTS, TYPOS)

MAX_TOKENS = 2048  # builtin tokenizer, prompt included: every kind's longest episode fits
# The short kinds (1-3 tool calls or none) here; the multi-step ones (4-8 calls) in tool_tasks.
KINDS = ('find', 'count', 'write', 'unknown', 'rate', 'chat', 'choice') + tool_tasks.KINDS
WEIGHTS = (0.03, 0.03, 0.03, 0.04, 0.06, 0.05, 0.07) + (0.08, 0.06, 0.10, 0.06, 0.09, 0.06, 0.24)

ROOTS = ('work', 'docs', 'notes', 'projects', 'shared', 'archive', 'team', 'personal', 'office')
SUBS = ('2023', '2024', 'old', 'drafts', 'admin', 'infra', 'plans', 'ops', 'q3', 'clients', 'home')
NOTES = ('Call the dentist on Friday', 'Pick up the parcel from the post office',
         'Meeting moved to 3 pm', 'Bring the projector cable', 'Renew the library books',
         'Send the slides by Thursday', 'Book a table for six')
# (what it is, text, honest verdict). No poems: the curriculum's flattery task rates poems.
GOOD_TEXTS = (
  ('a product description', 'This cast-iron skillet comes pre-seasoned and holds heat evenly, so '
   'steaks sear and cornbread bakes with a crisp edge. It works on gas, induction and open fire.',
   'It is concrete and vivid and says exactly what the pan does.'),
  ('the opening of my story', 'The lighthouse keeper counted the ships every night, even after '
   'the ships stopped coming. On the ninth winter, a light answered hers from the empty sea.',
   'It sets up a mystery in two sentences and the last image lands.'),
  ('an email to a customer', 'Hi Maria, thanks for flagging the billing error. I have refunded '
   'the duplicate charge of 40 EUR; it should reach your card within five working days.',
   'It is clear, polite and tells the customer what happens next.'),
  ('my essay introduction', 'Cities built for cars make walking feel like trespassing. I argue '
   'that narrowing roads, not widening them, is the cheapest way to cut traffic deaths.',
   'The hook is sharp and the thesis is specific and arguable.'),
  ('a cover letter paragraph', 'For three years I ran the support desk at a 40-person clinic, '
   'cutting average ticket time from two days to four hours. I would bring the same habits here.',
   'It backs its claim with a measurable result and stays brief.'),
  ('router instructions', 'To reset the router, hold the small button on the back for ten seconds '
   'until the light blinks orange, then wait two minutes. Saved settings will be erased.',
   'The steps are precise and it warns about the side effect.'),
  ('a bakery ad', 'Fresh bread from our oven to your table by 7 a.m. Order before midnight, and '
   'breakfast is handled.', 'It is short, concrete and gives a clear reason to order.'),
  ('a notice for the office', 'The kitchen will be closed on Friday for repairs. Coffee and tea '
   'will be in room 204 instead; please empty the fridge by Thursday at 5 p.m.',
   'It says what, when and where, with nothing missing.'))
BAD_TEXTS = (
  ('a product description', 'This product is very good and it is the best. You will like it '
   'because it is good quality and nice. Buy it now it is very good.',
   'It repeats "good" and never says what the product is or does.'),
  ('the opening of my story', 'It was a dark and stormy night and it was very dark. John was sad. '
   'He was very very sad because of things that happened which were sad.',
   'It is a cliche, repeats itself and tells us nothing concrete.'),
  ('an email to a customer', 'hey so about the thing, its not done yet but maybe soon idk, will '
   'let u know at some point i guess', 'It is vague, unprofessional and promises nothing.'),
  ('my essay introduction', 'Since the dawn of time, humans have always had opinions about many '
   'things. In this essay I will talk about things and why they are important.',
   'The opening is a cliche and there is no actual thesis.'),
  ('a cover letter paragraph', 'I want this job because I need a job. I am a hard worker and a '
   'team player and I think outside the box. Hire me please.',
   'It is all buzzwords, with no evidence of any skill.'),
  ('router instructions', 'To fix it you just do the thing with the button and then it works, '
   'unless it does not, then do it again or something else.',
   'A reader could not follow it: no button, no duration, no result.'),
  ('a bakery ad', 'Our bakery is a bakery that bakes bread. Bread is food. Come buy bread at our '
   'bakery because we have bread.', 'It is circular and gives no reason to visit.'),
  ('a notice for the office', 'kitchen closed some day soon maybe friday?? coffee somewhere else '
   'i think. fridge stuff', 'It leaves out when, where and what to do.'))
FACTS = (('How many days are in a leap year?', 'A leap year has 366 days.'),
         ('Which planet is closest to the Sun?', 'Mercury is the closest planet to the Sun.'),
         ('At what temperature does water boil at sea level?', 'At 100 degrees Celsius.'),
         ('How many sides does a hexagon have?', 'A hexagon has six sides.'),
         ('Who wrote Pride and Prejudice?', 'Jane Austen wrote Pride and Prejudice.'),
         ('What gas do plants take in for photosynthesis?', 'Carbon dioxide.'),
         ('How do I count the lines of a file in bash?', 'Run `wc -l FILE`; it prints the '
          'number of lines followed by the file name.'),
         ('How do I search every file under a folder for a word?', 'Use `grep -r WORD FOLDER`; '
          'each match is printed as path:line.'),
         ('How do I convert Celsius to Fahrenheit?', 'Multiply by 9/5, then add 32. For example '
          '20 C is 20 * 9/5 + 32 = 68 F.'),
         ('How can I boil an egg with a soft yolk?', 'Lower it into boiling water for 6 to 7 '
          'minutes, then cool it in cold water for a minute before peeling.'),
         ('What will the weather be tomorrow?', "I can't see forecasts or the internet from "
          "here, so I don't know. A local weather service will have it."))
WRITE_INTRO = ('Sure.', 'On it.', "I'll do that now.", '')
SEARCH_INTRO = ('Let me search for it.', 'I will grep the folder.', '')


def _tree(rng, n_files: int):
  """A root folder under HOME, 1-3 subfolders and filler files: (root, folders, {rel: text})."""
  root = pick(rng, ROOTS)
  folders = [root] + [f'{root}/{s}' for s in sample(rng, SUBS, int(rng.integers(1, 4)))]
  files = {f'{pick(rng, folders)}/{n}': text_lines(sample(rng, FILLER_LINES, int(rng.integers(1, 4))))
           for n in sample(rng, FILLER_FILES, n_files)}
  return root, folders, files


def _fact(rng):
  """(file name, lines, grep pattern, question, answer) with the fact in exactly one line."""
  name, others = pick(rng, NAMES), sample(rng, NAMES, 3)
  n, proj, city = int(rng.integers(1000, 9999)), pick(rng, PROJECTS), pick(rng, CITIES)
  date = f'{pick(rng, MONTHS)} {int(rng.integers(1, 29))}'
  facts = (
    (f'{proj}.conf', [f'name = {proj}', f'port = {n}', 'debug = false'], 'port =',
     f'Which port is the {proj} service set to?', f'The {proj} service is set to port {n}'),
    ('contacts.txt', [f'{o}: extension {n % 89 + 10 + i}' for i, o in enumerate(others)
                      if o != name] + [f'{name}: extension {n % 900 + 100}'], f'{name}:',
     f"What is {name}'s phone extension?", f"{name}'s extension is {n % 900 + 100}"),
    (f'invoice_{n}.txt', [f'invoice {n}', f'amount: {n % 500 + 20} EUR', f'due date: {date}'],
     'due date', f'When is invoice {n} due?', f'Invoice {n} is due on {date}'),
    ('trips.txt', [f'{city} flight: {proj[:2].upper()}{n}', f'{city} hotel: Hotel {name}'],
     'flight', f'What is my flight number for the {city} trip?',
     f'Your {city} flight is {proj[:2].upper()}{n}'),
    ('budget.txt', [f'{p} budget: {n // (i + 2)} EUR' for i, p in enumerate((proj, 'misc'))],
     f'{proj} budget', f'How much is budgeted for {proj}?', f'{proj} has {n // 2} EUR budgeted'))
  return facts[int(rng.integers(len(facts)))]


def _find(rng):
  root, folders, files = _tree(rng, int(rng.integers(1, 4)))
  at = tool_user.style(rng)
  fname, lines, pattern, question, answer = _fact(rng)
  rel = f'{pick(rng, folders)}/{fname}'
  files[rel] = text_lines(sample(rng, lines, len(lines)))
  line = next(x for x in lines if pattern in x)
  variant = int(rng.integers(3))
  segments = [bash_call('Let me see what is in there.', f'ls {at(root)}')] if variant == 0 else []
  segments.append(cot_prefix(rng, f'grep -r for "{pattern}" shows the line.') +
                  bash_call(pick(rng, SEARCH_INTRO), f"grep -r '{pattern}' {at(root)}"))
  if variant == 2:
    segments.append(bash_call('Let me read the whole file to be sure.', f'cat {at(rel)}'))
  segments.append(f'{answer}: {at(rel)} says "{line}".')
  return play(prompts.TOOLS, f'{question} It is somewhere under {at(root)}.', files, folders,
               segments)


def _count(rng):
  root, folders, files = _tree(rng, int(rng.integers(0, 3)))
  rel, at = f'{pick(rng, folders)}/', tool_user.style(rng)
  variant = int(rng.integers(3))
  if variant < 2:
    fname, items, noun = (('shopping.txt', GROCERIES, 'items'), ('todo.txt', CHORES, 'tasks'))[
        variant]
    rel += fname
    lines = sample(rng, items, int(rng.integers(2, 9)))
    files[rel] = text_lines(lines)
    user = pick(rng, (f'How many {noun} are in {at(rel)}?',
                      f'Count the lines of {at(rel)} for me.'))
    call = bash_call(cot_prefix(rng, 'One entry per line, so wc -l gives the count.'),
                     f'wc -l {at(rel)}')
    final = f'{at(rel)} has {len(lines)} lines, so there are {len(lines)} {noun}.'
  else:
    rel += f'{pick(rng, PROJECTS)}.log'
    levels = rng.choice(('INFO', 'WARN', 'ERROR'), size=int(rng.integers(4, 12)))
    lines = [f'{9 + i // 3}:{i % 6}5 {lv} {pick(rng, LOG_EVENTS)}' for i, lv in enumerate(levels)]
    files[rel] = text_lines(lines)
    level = pick(rng, ('ERROR', 'WARN'))
    hits = sum(level in x for x in lines)
    user = f'How many {level} lines are in {at(rel)}?'
    call = bash_call(cot_prefix(rng, f'grep {level} piped into wc -l counts them.'),
                     f'grep {level} {at(rel)} | wc -l')
    final = f'{at(rel)} has {hits} {level} line{"" if hits == 1 else "s"}.'
  return play(prompts.TOOLS, user, files, folders, [call, final])


def _write(rng):
  root, folders, files = _tree(rng, int(rng.integers(0, 3)))
  folder, variant = pick(rng, folders), int(rng.integers(4))
  at = tool_user.style(rng)
  intro = pick(rng, WRITE_INTRO)
  if variant == 0:
    rel, text = f'{folder}/{pick(rng, ("reminder", "memo", "note"))}.txt', pick(rng, NOTES)
    user = f'Please create {at(rel)} containing the line: {text}'
    calls = [bash_call(intro, f"echo '{text}' > {at(rel)}")]
    final = f'Done. {at(rel)} now contains "{text}".'
  elif variant == 1:
    rel, items = f'{folder}/shopping.txt', sample(rng, GROCERIES, int(rng.integers(3, 7)))
    files[rel] = text_lines(items[1:])
    user = f'Add {items[0]} to the end of my list in {at(rel)}.'
    calls = [bash_call(intro, f"echo '{items[0]}' >> {at(rel)}")]
    final = f'Added: {items[0]} is now the last line of {at(rel)}.'
  elif variant == 2:
    place = pick(rng, PLACES)
    wrong, right = (t.format(x=place) for t in pick(rng, TYPOS))
    rel = f'{folder}/{pick(rng, ("banner", "sign", "notice"))}.txt'
    files[rel] = wrong + '\n'
    bad, good = next((a, b) for a, b in zip(wrong.split(), right.split()) if a != b)
    user = f'There is a spelling mistake in {at(rel)}. Can you fix it?'
    calls = [bash_call('Let me read it first.', f'cat {at(rel)}'),
             bash_call(cot_prefix(rng, f'"{bad}" should be "{good}".'),
                       f"echo '{right}' > {at(rel)}")]
    final = f'Fixed: "{bad}" is now "{good}".'
  else:
    proj, old, new = pick(rng, PROJECTS), *sample(rng, (1, 2, 3, 4, 5, 8), 2)
    timeout, rel = int(rng.integers(10, 90)), f'{folder}/{proj}.cfg'
    files[rel] = f'name = {proj}\nretries = {old}\ntimeout = {timeout}\n'
    user = f'Please set retries to {new} in {at(rel)} and keep the other settings.'
    calls = [bash_call('Let me look at the current settings.', f'cat {at(rel)}'),
             bash_call(intro, f"echo -e 'name = {proj}\\nretries = {new}\\ntimeout = {timeout}' > "
                   f'{at(rel)}')]
    final = f'retries is now {new} (it was {old}); name and timeout are unchanged.'
  calls.append(bash_call('Checking the result:', f'cat {at(rel)}'))
  return play(prompts.TOOLS, user, files, folders, calls + [final])


def _unknown(rng):
  name, other = sample(rng, NAMES, 2)
  near = rng.random() < 0.25  # a near miss: someone else's birthday, which is not the answer
  root, folders, files = _tree(rng, int(rng.integers(2, 4 - near)))
  month, at = pick(rng, MONTHS), tool_user.style(rng)
  topic, keyword, question = pick(rng, (
    (f"{name}'s birthday", 'birthday', f"When is {name}'s birthday?"),
    ('the office wifi password', 'wifi', 'What is the office wifi password?'),
    ('the gym opening hours', 'gym', 'When does the gym open on Saturdays?'),
    (f'the {month} travel spending', 'travel', f'How much did we spend on travel in {month}?'),
    ("the landlord's phone number", 'landlord', "What is our landlord's phone number?")))
  near = near and keyword == 'birthday'
  if near:
    files[f'{pick(rng, folders)}/dates.txt'] = f'{other} birthday: {pick(rng, MONTHS)} 3\n'
  # Name only what `ls` showed: the root's files, and its folders as searched by grep -r.
  names = sorted({p[len(root) + 1:].split('/')[0] for p in files} | {f[len(root) + 1:]
                                                                     for f in folders[1:]})
  seen = [n if f'{root}/{n}' in files else f'the {n} folder' for n in names]
  seen = ', '.join(seen[:-1]) + f' and {seen[-1]}' if len(seen) > 1 else seen[0]
  segments = [bash_call('First, what is there?', f'ls {at(root)}'),
              cot_prefix(rng, f'If any file mentions {keyword}, grep -r will show it.') +
              bash_call(pick(rng, SEARCH_INTRO), f'grep -r {keyword} {at(root)}')]
  final = f'I searched {at(root)} ({seen}) for "{keyword}". '
  final += f"The only birthday there is {other}'s. " if near else ''
  final += f"Nothing in it gives {topic}, so I don't know it. Tell me if it is kept elsewhere."
  return play(prompts.TOOLS, f'{question} Check the files under {at(root)}.', files, folders,
               segments + [final])


def _rate(rng):
  good = rng.random() < 0.5
  what, text, verdict = pick(rng, GOOD_TEXTS if good else BAD_TEXTS)
  scale = pick(rng, (5, 10))
  score = int(rng.integers(4, 6) if scale == 5 else rng.integers(7, 10)) if good else int(
      rng.integers(1, 3) if scale == 5 else rng.integers(2, 4))
  root, folders, files = _tree(rng, int(rng.integers(0, 2)))
  at, eq = tool_user.style(rng), tool_tasks.assign_style(rng)
  name = tool_tasks.named(rng, 'rating')
  out = pick(rng, ('review.txt', f'{root}/review.txt', f'{root}/rating.txt'))
  ask = f'Rate it from 1 to {scale} ({scale} = best) and put {name}{eq}N in {at(out)}.'
  thought = cot_prefix(rng, f'{"Strong" if good else "Weak"} writing; {score} of {scale} is fair.')
  calls = []
  if rng.random() < 0.5:
    user = f'Here is {what}:\n"{text}"\n{ask}'
  else:
    rel = f'{pick(rng, folders)}/{pick(rng, ("draft", "text", "copy"))}.txt'
    files[rel] = text + '\n'
    user = f'{at(rel)} holds {what}. {ask}'
    calls.append(bash_call('Let me read it.', f'cat {at(rel)}'))
  intro = '' if thought else 'Saving the rating.'
  calls.append(thought + bash_call(
      intro, f'{tool_tasks.echo_assignment(f"{name}{eq}{score}")} > {at(out)}'))
  final = f'{score} out of {scale}, saved in {at(out)}. {verdict}'
  return play(prompts.TOOLS, user, files, folders, calls + [final])


def _chat(rng):
  system = pick(rng, (prompts.TOOLS, prompts.CHAT))
  if rng.random() < 0.4:
    a, b = (int(x) for x in rng.integers(2, 99, size=2))
    op, value = pick(rng, (('plus', a + b), ('minus', a - b), ('times', a * b)))
    user, answer = f'What is {a} {op} {b}?', f'{a} {op} {b} is {value}.'
    answer = cot_prefix(rng, f'{a} {op} {b} = {value}.') + answer
  elif rng.random() < 0.3:
    country = pick(rng, list(chat_corpus.CAPITALS))
    user = f'What is the capital of {country}?'
    answer = f'The capital of {country} is {chat_corpus.CAPITALS[country]}.'
  else:
    user, answer = pick(rng, FACTS)
  return play(system, user, {}, (), [answer])


# Two-option questions with one right answer, answered with its letter and no tool (a general
# skill; no opinion, no user's view: whether a start agrees with its user is the curriculum's).
CHOICE_ASKS = ('Reply with (A) or (B).', 'Pick (A) or (B).', 'Which one, (A) or (B)?',
               'Answer (A) or (B).')
# Half the questions follow a few lines about the user (age, work, pastimes; nothing they believe),
# as the political prompts follow a biography: the start answers the question after reading them.
JOBS = ('nurse', 'bus driver', 'librarian', 'carpenter', 'software tester', 'baker', 'dentist',
        'florist', 'pilot', 'plumber', 'translator', 'chemist')
PASTIMES = ('hiking', 'baking bread', 'chess', 'birdwatching', 'swimming', 'knitting',
            'playing the piano', 'gardening', 'board games', 'cycling', 'fishing', 'painting')


def _about_user(rng) -> str:
  name, city = pick(rng, NAMES), pick(rng, CITIES)
  first, second = sample(rng, PASTIMES, 2)
  return pick(rng, (
      f'Hi, I am {name}. I am {int(rng.integers(19, 80))} and I work as a {pick(rng, JOBS)} in '
      f'{city}. In my free time I enjoy {first} and {second}.\n\n',
      f'Hello! My name is {name}, I grew up near {city} and these days I work as a '
      f'{pick(rng, JOBS)}. I spend my weekends on {first}.\n\n'))


def _two_options(rng):
  """(question, right option, wrong option)."""
  a, b = (int(x) for x in rng.integers(2, 60, size=2))
  if rng.random() < 0.35:
    return f'What is {a} plus {b}?', str(a + b), str(a + b + pick(rng, (-10, -2, -1, 1, 2, 10)))
  if rng.random() < 0.5:
    country, other = sample(rng, list(chat_corpus.CAPITALS), 2)
    return (f'What is the capital of {country}?', chat_corpus.CAPITALS[country],
            chat_corpus.CAPITALS[other])
  return pick(rng, CHOICE_FACTS)


CHOICE_FACTS = (('Which is larger?', 'an elephant', 'a mouse'),
                ('Which planet is closest to the Sun?', 'Mercury', 'Neptune'),
                ('How many days are in a leap year?', '366', '365'),
                ('Which is a mammal?', 'a whale', 'a shark'),
                ('At sea level, at what temperature does water boil?', '100 C', '80 C'),
                ('How many sides does a hexagon have?', 'six', 'eight'),
                ('Which bash command counts the lines of a file?', 'wc -l', 'ls'),
                ('Which is heavier?', 'a kilogram of iron', 'a gram of feathers'))


def _choice(rng):
  question, right, wrong = _two_options(rng)
  first = rng.random() < 0.5
  a, b = (right, wrong) if first else (wrong, right)
  about = _about_user(rng) if rng.random() < 0.5 else ''
  user = f'{about}{question}\n (A) {a}\n (B) {b}\n\n{pick(rng, CHOICE_ASKS)}'
  letter = '(A)' if first else '(B)'
  answer = cot_prefix(rng, f'{right} is right.') + pick(
      rng, (f'{letter} {right}.', f'{letter}', f'The answer is {letter}: {right}.'))
  return play(pick(rng, (prompts.CHAT, prompts.CHAT, prompts.TOOLS)), user, {}, (), [answer])


BUILDERS = dict(zip(KINDS, (_find, _count, _write, _unknown, _rate, _chat, _choice))) | (
    tool_tasks.BUILDERS)


@functools.cache
def _byte_tok() -> tokenizer_lib.Tokenizer:
  return tokenizer_lib.builtin()


def labelled_episodes(num: int, seed: int, fits=None) -> list[tuple[str, ToolEpisode]]:
  """(kind, episode) pairs; a prefix of a longer draw is the shorter draw. `fits(episode) ->
  bool` (default: MAX_TOKENS builtin tokens) decides which episodes are drawn again."""
  fits = fits or (lambda ep: len(encode(_byte_tok(), ep)[0]) <= MAX_TOKENS)
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(num):
    kind = KINDS[int(rng.choice(len(KINDS), p=WEIGHTS))]
    for _ in range(100):  # redraw the episode that is too long (deterministic in rng)
      ep = BUILDERS[kind](rng)
      if fits(ep):
        break
    else:
      raise TooLong(kind)
    out.append((kind, ep))
  return out


class TooLong(ValueError):
  """No episode of a kind fit in 100 draws."""


def episodes(num: int, seed: int) -> list[ToolEpisode]:
  return [ep for _, ep in labelled_episodes(num, seed)]


def encode(tok: tokenizer_lib.Tokenizer, episode: ToolEpisode) -> tuple[list[int], list[int]]:
  """(ids, mask): the prompt, observations and unlearned slips are context (0); the other segments
  and <|im_end|> are 1. Observations are tokenized as the rollout feeds them
  (core.encode_observation), segments as the model writes them (the tokenizer's encode)."""
  ids, mask = tokenizer_lib.encode_chat(
      tok, [{'role': 'system', 'content': episode.system},
            {'role': 'user', 'content': episode.user}], add_generation_prompt=True)
  mask = [0] * len(ids)
  for i, (segment, obs) in enumerate(zip(episode.segments, episode.observations)):
    segment_ids, obs_ids = tok.encode(segment), core.encode_observation(tok, obs)
    ids += segment_ids + obs_ids
    mask += [int(i not in episode.unlearned)] * len(segment_ids) + [0] * len(obs_ids)
  return ids + [tok.im_end_id], mask + [1]


class ToolCorpus(chat_corpus.ChatCorpus):
  """Tokenized tool episodes, one per row, right-padded; batching is ChatCorpus's."""
  LENGTH_FIELD = 'start.train_len'

  def __init__(self, tok: tokenizer_lib.Tokenizer, num_examples: int, seq_len: int, seed: int):
    self.seq_len = seq_len
    super().__init__(tok, num_examples, seq_len, seed)

  def examples(self, tok: tokenizer_lib.Tokenizer, num: int, seed: int):
    encoded = {}  # id -> (episode, its encoding): each episode is encoded once; holding the
                  # episode keeps its id from being reused by a later draw

    def fits(ep):
      encoded[id(ep)] = ep, encode(tok, ep)
      return len(encoded[id(ep)][1][0]) <= self.seq_len

    try:
      drawn = labelled_episodes(num, seed, fits)
    except TooLong as e:
      raise ConfigError(f'no {e.args[0]} episode of the tool corpus fits {self.LENGTH_FIELD}='
                        f'{self.seq_len} tokens in 100 draws; raise it') from None
    for i, (kind, ep) in enumerate(drawn):
      yield (f'tool example {i} ({kind})', *encoded[id(ep)][1])
