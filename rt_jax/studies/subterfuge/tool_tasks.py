"""The multi-step kinds of the helpful-only tool corpus (tool_corpus.py), 4-8 tool calls each:
search nested folders from a vague hint, read a file and record a value as `name = value`, judge a
small Python file and write a boolean, rewrite a file with echo and check it, and report honestly
(nothing found, a low score, open items left). Also the episode machinery and word tables the
older kinds share. Neutral names only: no curriculum file, variable or task appears here.
"""
import dataclasses
import re

from rt_jax.data.splits import pick, sample
from rt_jax.envs import prompts, reference
from rt_jax.envs.limits import HOME

NAMES = ('Dana', 'Sam', 'Priya', 'Tomas', 'Aiko', 'Lena', 'Omar', 'Grace', 'Ivan', 'Nora', 'Felix',
         'Rosa', 'Ken', 'Maya', 'Luis', 'Ada')
# Ordinary English nouns for folder, project, file and variable names (about 240): with only a few
# names to choose from, a small model learns the corpus's names rather than to copy the user's path
# or the listing it just saw; with many, copying is the only way to the file. Real words, because
# the curriculum's names are real words (`poems_score`, `grade.py`) and a corpus of coinages
# teaches a small model to coin in their style (`pym_score`, docs/subterfuge.md). None is a
# curriculum word.
WORDS = tuple("""
  acorn anchor apple april arrow autumn bakery bamboo banner barley basket beach bicycle birch
  blanket blossom boat bottle bracket branch breeze brick bridge brook bucket butter button cabin
  cactus camera candle canvas canyon carpet castle cedar cellar chalk cherry chimney cider circle
  clay cliff clock cloud clover coast cobalt coffee compass copper coral corner cotton cousin
  crane crystal cupboard curtain daisy desert diamond dinner dolphin donkey dragon drum eagle
  elbow engine feather fence fern festival field fig finch flag flame flower forest
  fossil fountain fox garage garden garlic ginger glacier glove granite grape gravel harbor hazel
  helmet hill honey horizon hotel island ivory jacket jasmine jelly kettle kitchen kite ladder
  lagoon lake lantern laundry lemon library lighthouse lily linen lobster locket lunch magnet
  mango maple marble market meadow melon metro mint mirror mitten monkey moon mountain museum
  mushroom napkin needle nest noodle oak oasis ocean olive onion orange orbit orchard otter owl
  paddle palace panda paper parade parcel parrot peach peanut pebble pencil pepper piano picnic
  pillow pine planet plum pocket pond poppy potato puzzle quartz quilt rabbit radio raven ribbon
  river robin rocket saddle salmon sand scarf shell ship silver sketch sled snow soap sofa spoon
  spring squirrel stamp station stone storm straw sugar summit sunset swan table tea temple tent
  thunder tiger timber toast tomato tower tractor trail train tulip tunnel turtle umbrella valley
  velvet violin volcano wagon walnut whale willow window winter wolf wool yarn zebra
""".split())
PROJECTS = ('atlas', 'beacon', 'comet', 'delta', 'ember', 'falcon', 'garnet', 'iris',
            'juniper') + WORDS[::7]
CITIES = ('Lisbon', 'Oslo', 'Kyoto', 'Lima', 'Cairo', 'Denver', 'Prague', 'Dublin', 'Hanoi')
MONTHS = ('March', 'April', 'May', 'June', 'July', 'August', 'September', 'October')
FILLER_FILES = ('readme.txt', 'ideas.txt', 'links.txt', 'notes.txt', 'agenda.txt', 'misc.txt',
                'scratch.txt', 'inbox.txt')
# No fact or question keyword occurs in these, so a search finds only what the task planted.
FILLER_LINES = ('tidy this folder soon', 'ask Sam about the logo', 'backups run on Sundays',
                'buy printer paper', 'draft, not final', 'see the wiki for more',
                'water the plants', 'update the slides', 'book the train tickets',
                'call the bank before noon', 'moved from the old laptop', 'check the mail')
GROCERIES = ('oat milk', 'eggs', 'rice', 'apples', 'coffee', 'bread', 'lentils', 'spinach',
             'cheese', 'tomatoes', 'honey', 'pasta')
CHORES = ('fix the shelf', 'pay rent', 'email Omar', 'sort receipts', 'clean the oven',
          'return books', 'renew passport', 'order ink', 'plan the trip', 'wash the car')
LOG_EVENTS = ('job started', 'cache miss', 'disk almost full', 'retrying upload', 'user login',
              'timeout talking to db', 'config reloaded', 'request failed', 'job finished')
PLACES = ('the Harbor Cafe', 'Maple Street Library', 'the north office', 'Studio Nine',
          'the Blue Door Bakery')
TYPOS = (('Welcom to {x}', 'Welcome to {x}'), ('{x} is closed untill Monday',
         '{x} is closed until Monday'), ('Seperate the glass from the paper at {x}',
         'Separate the glass from the paper at {x}'), ('{x} will definately reopen in May',
         '{x} will definitely reopen in May'), ('Events at {x} are in the shared calender',
         'Events at {x} are in the shared calendar'), ('Parcels for {x} are recieved at the '
         'side door', 'Parcels for {x} are received at the side door'))


WRITE_INTROS = ('Saving it.', '', '')
SEARCH_INTROS = ('Let me search for it.', '')
TOPS = ('docs', 'personal', 'files', 'private', 'stuff') + WORDS[1::3]
GENERIC = ('old', 'misc', 'photos', 'taxes', 'backup', 'music', 'drafts', 'archive',
           'scans') + WORDS[2::3]
YEARS = ('2021', '2022', '2023', '2024')
LOWER_CITIES = tuple(c.lower() for c in CITIES)
PEOPLE = tuple(n for n in NAMES if n != 'Sam')  # 'Sam' is in a filler line, so grep would find it
OUTS = ('report/summary.py', 'notes/results.py', 'out/answers.py', 'summary/data.py') + tuple(
    f'{a}/{b}.py' for a, b in zip(WORDS[::5], WORDS[3::5]))
# Short texts to rate 1-5 (what it is, text, honest verdict, good). No poems.
SHORT_TEXTS = (
  ('shop slogan', 'Fresh bread by 7 a.m., or your coffee is free.',
   'It is short, concrete and makes a real promise', True),
  ('shop slogan', 'We are a shop that sells things that are good.',
   'It is vague and says nothing about the shop', False),
  ('email subject line', 'Invoice 2291 for March attached, due April 30',
   'It says what is attached and when it is due', True),
  ('email subject line', 'hi, stuff', 'It tells the reader nothing', False),
  ('product title', 'Steel water bottle, 750 ml, keeps drinks cold 24 h',
   'It gives the material, size and main feature', True),
  ('product title', 'Best bottle very good nice bottle buy',
   'It repeats itself and gives no facts', False),
  ('headline', 'City opens three night bus lines on Monday',
   'It is specific about what, how many and when', True),
  ('headline', 'Things happened in the city this week maybe',
   'It is vague and unsure of itself', False))
# Small Python files: (flag, question, file name, code when True, code when False, why True,
# why False). The False code of uses_cache mentions a cache in a comment only.
PY_FILES = (
  ('uses_cache', 'keep a cache', 'loader.py',
   '_cache = {}\n\ndef load(k):\n    if k not in _cache:\n        _cache[k] = fetch(k)\n'
   '    return _cache[k]\n', '# TODO: a cache\ndef load(k):\n    return fetch(k)\n',
   'load keeps results in the _cache dict', 'load calls fetch every time; only a comment '
   'mentions a cache'),
  ('has_retries', 'retry a failed send', 'sender.py',
   'def send(msg):\n    for attempt in range(3):\n        if post(msg):\n            return True\n'
   '    return False\n', 'def send(msg):\n    return post(msg)\n',
   'send tries post up to 3 times', 'send calls post once and returns'),
  ('debug_on', 'turn debug mode on', 'settings.py', 'PORT = 8080\nDEBUG = True\n',
   'PORT = 8080\nDEBUG = False\n', 'it sets DEBUG = True', 'it sets DEBUG = False'),
  ('sorts_names', 'sort the names it returns', 'names.py',
   'def names(rows):\n    return sorted(r.name for r in rows)\n',
   'def names(rows):\n    return [r.name for r in rows]\n',
   'names returns sorted(...)', 'names returns the names in input order'),
  ('logs_errors', 'log errors', 'worker.py',
   'def run(job):\n    try:\n        job()\n    except OSError as e:\n        log.error(e)\n',
   'def run(job):\n    try:\n        job()\n    except OSError:\n        pass\n',
   'the except branch calls log.error', 'the except branch just passes'))




@dataclasses.dataclass(frozen=True)
class ToolEpisode:
  system: str
  user: str
  files: dict  # absolute path -> text (empty for plain chat)
  dirs: tuple  # absolute directories besides those holding files
  segments: tuple[str, ...]  # every one but the last ends with a <bash>...</bash> call
  observations: tuple[str, ...]  # reference.Episode's answer to each segment ('' after the last)
  # Segments the SFT reads as context and does not learn: a slip whose error the next segment
  # recovers from (the start learns the recovery, not the slip).
  unlearned: tuple[int, ...] = ()


def bash_call(intro: str, command: str) -> str:
  return f'{intro}\n<bash>{command}</bash>' if intro else f'<bash>{command}</bash>'


def cot_prefix(rng, thought: str) -> str:
  """A short honest reasoning prefix on about a third of the segments that could take one."""
  return f'<cot>{thought}</cot>' if rng.random() < 0.3 else ''


def text_lines(items) -> str:
  return ''.join(f'{x}\n' for x in items)


def play(system, user, files, folders, segments, unlearned=()) -> ToolEpisode:
  """Runs the segments through the reference machine; files and folders are relative to HOME.
  Every command works except the `unlearned` slips, each of which must fail."""
  files = {f'{HOME}/{p}': text for p, text in files.items()}
  dirs = tuple(f'{HOME}/{d}' for d in folders)
  ep = reference.Episode(files, dirs)
  observations = tuple(ep.step(s) for s in segments)
  for i, (s, obs) in enumerate(zip(segments, observations)):
    if ('<stderr>' in obs) != (i in unlearned):
      raise RuntimeError(f'tool corpus bug: {s!r} -> {obs!r}')
  return ToolEpisode(system, user, files, dirs, tuple(segments), observations, tuple(unlearned))


# The slips a small model makes on a path the user gave (the extension dropped, the file taken
# for a folder or put in the parent folder), each answered by `ls` of the folder that holds it.
def slip(rng, at, rel: str) -> list[str]:
  """[a command that fails on `rel`'s path, the `ls` that recovers]: an episode's first two
  segments, the first unlearned."""
  folder, name = rel.rsplit('/', 1)
  stem = name.rsplit('.', 1)[0]
  wrong = pick(rng, (f'ls {at(f"{folder}/{stem}")}', f'cat {at(f"{folder}/{stem}")}',
                     f'ls {at(f"{folder}/{stem}")}/',
                     f'cat {at(folder.rsplit("/", 1)[0] + "/" + name if "/" in folder else name)}'))
  return [bash_call('', wrong), bash_call(pick(rng, ('Not there. Let me list the folder.', '',
                                                     'Let me look at what is in the folder.')),
                                          f'ls {at(folder)}')]


def _trail(rng):
  """A file some folders deep: (chain of (folder, pool its siblings come from), file name, text,
  grep key, what the user calls it, question, answer)."""
  name, other = sample(rng, PEOPLE, 2)
  city, proj, year, month = (pick(rng, x) for x in (CITIES, PROJECTS, YEARS, MONTHS))
  top, n = (pick(rng, TOPS), TOPS), int(rng.integers(100, 999))
  return pick(rng, (
    ([top, ('trips', GENERIC), (year, YEARS), (city.lower(), LOWER_CITIES)], 'notes.txt',
     f'{city}, {month} {year}\nhotel: Hotel {other}\n', city,
     f'the notes from my {city} trip in {year}', 'Which hotel did I stay at?',
     f'You stayed at Hotel {other}'),
    ([('work', TOPS), (proj, PROJECTS), ('meetings', ('specs', 'design', 'budget'))],
     'minutes.txt', f'{proj}: next meeting {month} {n % 28 + 1}\n', proj,
     f'the {proj} meeting minutes', f'When is the next {proj} meeting?',
     f'The next {proj} meeting is on {month} {n % 28 + 1}'),
    ([top, ('house', GENERIC), ('bills', ('repairs', 'rent', 'garden')), (year, YEARS)],
     'water.txt', f'water bill, {month}: {n} EUR\n', 'water bill', f'my {year} house bills',
     f'How much was the {month} water bill?', f'The {month} {year} water bill was {n} EUR'),
    ([top, ('family', GENERIC), (name.lower(), tuple(p.lower() for p in PEOPLE))],
     'contact.txt', f'{name}\nphone: 555-{n}\n', name, f"{name}'s contact details",
     f"What is {name}'s phone number?", f"{name}'s number is 555-{n}"),
    ([top, ('car', GENERIC), ('service', ('insurance', 'manuals'))], 'log.txt',
     f'last service: {month} {year}\n', 'service', 'the car service log',
     'When was my car last serviced?', f'Your car was last serviced in {month} {year}')))


def _nest(rng, chain, key='', fillers=2):
  """Folders (relative to HOME) for a chain of (name, sibling pool): every chain folder, 1-2
  siblings of each (at HOME too), and up to `fillers` filler files whose text lacks `key`."""
  folders, parent = [], ''
  for name, pool in chain:
    siblings = sample(rng, [x for x in pool if x != name], int(rng.integers(1, 3)))
    folders += [parent + x for x in [name] + siblings]
    parent += name + '/'
  files = {}
  for _ in range(int(rng.integers(0, fillers + 1))):
    text = pick(rng, [x for x in FILLER_LINES if not key or key.lower() not in x.lower()])
    files[f'{pick(rng, folders)}/{pick(rng, FILLER_FILES)}'] = text + '\n'
  return folders, files


def _descend(rng, chain, folders, vague, at):
  """`ls` level by level down the chain (from HOME itself when the hint is vague), sometimes
  looking into a wrong sibling first."""
  segments = [bash_call('', 'ls')] if vague else []
  wrong = int(rng.integers(len(chain))) if rng.random() < 0.2 else -1
  for i, (name, _) in enumerate(chain):
    path = '/'.join(c for c, _ in chain[:i + 1])
    others = [f for f in folders if f != path and f.count('/') == i and f.startswith(path[:-len(
        name)])]
    if i == wrong and (i or vague) and others:
      segments.append(bash_call('', f'ls {at(pick(rng, others))}'))
    else:
      wrong = -1
    thought = cot_prefix(rng, f'{name} fits the hint.') if i or vague else ''
    segments.append(thought + bash_call('Not in there.' if i == wrong else '', f'ls {at(path)}'))
  return segments


# How an episode's user writes paths under HOME. The commands write each path exactly as the user
# did (the shell resolves all four the same way from HOME), so what the start learns is to copy
# the user's path, whatever its form; the curriculum's tasks give absolute and ./ paths.
STYLES = ('', './', '~/', HOME + '/')


def style(rng):
  """-> at(rel): a path relative to HOME in one episode's style, picked here."""
  prefix = pick(rng, STYLES)
  return lambda rel: prefix + rel


# Variable names a user asks for: a stock one, or an ordinary word with the family's ending (about
# 240 of each), so the start learns to write the name it is given, as it learns to copy paths;
# and the user's spelling of the assignment, with or without spaces around `=`, which the write
# copies.
FAMILIES = {'count': 'total_items', 'budget': 'budget_eur', 'score': 'quality_score',
            'done': 'all_done', 'rating': 'rating'}


def named(rng, family: str) -> str:
  return FAMILIES[family] if rng.random() < 0.3 else f'{pick(rng, WORDS)}_{family}'


def assign_style(rng) -> str:
  return pick(rng, (' = ', '='))


def _hint(top, what, vague, rng, at):
  if vague:
    return f'I keep {what} somewhere in my home folder.'
  where = pick(rng, (f'somewhere under {at(top)}', f'in the {top} folder in my home directory, I '
                     'forget which subfolder', f'somewhere in {at(top)}'))
  return f'I keep {what} {where}.'


def _search(rng):
  chain, fname, text, key, what, question, answer = _trail(rng)
  at = style(rng)
  vague = rng.random() < 0.4
  if vague and rng.random() < 0.3:
    chain = [chain[0], chain[-1]]  # two levels deep, from HOME
  folders, files = _nest(rng, chain, key)
  path = '/'.join(c for c, _ in chain)
  files[f'{path}/{fname}'] = text
  if vague and rng.random() < 0.4:
    segments = [bash_call('', 'ls'), bash_call('', f'ls {at(chain[0][0])}'),
                bash_call(pick(rng, SEARCH_INTROS), f"grep -r '{key}' {at(chain[0][0])}")]
  else:
    segments = _descend(rng, chain, folders, vague, at)
  segments += [bash_call('', f'cat {at(path)}/{fname}'), f'{answer} (from {at(path)}/{fname}).']
  return play(prompts.TOOLS, f'{_hint(chain[0][0], what, vague, rng, at)} {question}', files,
              folders, segments)


def _notfound(rng):
  chain, _, _, key, what, question, _ = _trail(rng)
  at = style(rng)
  vague = len(chain) < 4 or rng.random() < 0.3
  folders, files = _nest(rng, chain, key)
  missing, top = '/'.join(c for c, _ in chain), chain[0][0]
  # The leaf the user means does not exist; its siblings do.
  folders.remove(missing)
  files = {p: t for p, t in files.items() if not p.startswith(missing + '/')}
  segments = _descend(rng, chain[:-1], folders, vague, at) + [
    cot_prefix(rng, f'No {chain[-1][0]} folder. A search of all of {top} makes sure.') +
    bash_call(pick(rng, SEARCH_INTROS), f"grep -r '{key}' {at(top)}")]
  final = (f'I could not find {what}: {at(missing.rsplit("/", 1)[0])} has no {chain[-1][0]} '
           f'folder and no file under {at(top)} mentions "{key}". Tell me if it is kept '
           'elsewhere.')
  return play(prompts.TOOLS, f'{_hint(top, what, vague, rng, at)} {question}', files, folders,
              segments + [final])


def _folder(rng, cues, extra=()):
  """A folder one or two levels under a top folder, the second named for what it holds (one of
  `cues`, its siblings none), so each `ls` down has a reason: (chain, path, folders, files)."""
  chain = [(pick(rng, TOPS), TOPS)]
  if rng.random() < 0.5:
    chain.append((pick(rng, cues), tuple(x for x in GENERIC if x not in cues)))
  folders, files = _nest(rng, chain, fillers=1)
  return chain, '/'.join(c for c, _ in chain), folders + list(extra), files


def echo_assignment(line: str) -> str:
  """`echo name = value`, unquoted: echo joins its words with one space, so the file gets the
  line as asked. Unquoted, the name's tokens are the ones the user's sentence has (` poems`);
  after a quote a BPE tokenizer spells it anew (`'po`, `ems`), and a small model copies that
  far worse (docs/subterfuge.md). Quoted only when the line needs it."""
  return f'echo {line}' if re.fullmatch(r'[\w.]+( ?= ?)[\w.]+', line) else f"echo '{line}'"


def _write_checked(rng, line, out, thought, append=False):
  """Writing one `name = value` line to `out` with echo, then reading it back."""
  return [cot_prefix(rng, thought.rstrip('.') + '.') + bash_call(
              pick(rng, WRITE_INTROS), f"{echo_assignment(line)} {'>>' if append else '>'} {out}"),
          bash_call('', f'cat {out}')]


def _record(rng):
  variant, append, out = int(rng.integers(3)), rng.random() < 0.4, pick(rng, OUTS)
  at, eq = style(rng), assign_style(rng)
  cues = (('lists', 'home'), ('finance', 'money'), ('drafts', 'writing'))[variant]
  chain, path, folders, files = _folder(rng, cues, [out.split('/')[0]])
  if variant == 0:
    items, noun = pick(rng, ((GROCERIES, 'shopping'), (CHORES, 'todo'), (PEOPLE, 'guest')))
    rel = f'{path}/{noun}.txt'
    files[rel] = text_lines(sample(rng, items, int(rng.integers(3, 8))))
    name, value = named(rng, 'count'), len(files[rel].splitlines())
    read = bash_call('', f'wc -l {at(rel)}')
    ask = f'My {noun} list is somewhere under {at(chain[0][0])}. Count the entries and'
    why = f'The list has {value} lines'
  elif variant == 1:
    proj, value = pick(rng, PROJECTS), int(rng.integers(20, 900)) * 10
    rel, name = f'{path}/budget.txt', named(rng, 'budget')
    files[rel] = f'{proj} budget: {value} EUR\nmisc budget: {value // 4} EUR\n'
    read = bash_call('', f'cat {at(rel)}')
    ask = f'The {proj} budget is in a file under {at(chain[0][0])}. Find it and'
    why = f'The {proj} budget is {value} EUR'
  else:
    what, text, verdict, good = pick(rng, SHORT_TEXTS)
    value = int(rng.integers(4, 6) if good else rng.integers(1, 3))
    rel, name = f'{path}/{pick(rng, ("draft", "idea"))}.txt', named(rng, 'score')
    fname = pick(rng, ('score.py', f'{pick(rng, WORDS)}.py'))
    out, append = f'{path}/{fname}', False
    files[rel] = text + '\n'
    read = bash_call('', f'cat {at(rel)}')
    ask = f'My {what} is in a file under {at(chain[0][0])}. Rate it 1-5 (5 = best) and'
    out_ask = f'{fname} in the same folder'
    why = f'{value} of 5. {verdict}'
  if variant < 2:
    out_ask = at(out)
    if append:
      files[out] = '# totals\n'
      out_ask = f'the end of {out_ask}'
  ls = [bash_call('', f'ls {at("/".join(c for c, _ in chain[:i + 1]))}')
        for i in range(len(chain))]
  segments = ls + [read] + _write_checked(rng, f'{name}{eq}{value}', at(out), why, append)
  final = f'{why}; saved {name}{eq}{value}.'
  return play(prompts.TOOLS, f'{ask} write {name}{eq}N to {out_ask}.', files, folders,
              segments + [final])


def _inspect(rng):
  flag, question, fname, code_true, code_false, why_true, why_false = pick(rng, PY_FILES)
  value = rng.random() < 0.5
  proj, at = pick(rng, PROJECTS), style(rng)
  out = pick(rng, (f'{proj}/answers.py', 'out/answers.py'))
  folders = [proj, f'{proj}/src', 'out', f'{proj}/{pick(rng, ("docs", "tests", "data"))}']
  rel = f'{proj}/src/{fname}'
  files = {rel: code_true if value else code_false, f'{proj}/README.md': f'# {proj}\n'}
  if rng.random() < 0.5:
    files[f'{proj}/src/utils.py'] = 'def clean(s):\n    return s.strip()\n'
  slipped = rng.random() < 0.25
  segments = (slip(rng, at, rel) if slipped else
              [bash_call('', f'ls {at(proj)}')] if rng.random() < 0.3 else [])
  segments += ([] if slipped else [bash_call('', f'ls {at(proj)}/src')]) + [
      bash_call('', f'cat {at(rel)}')]
  segments += _write_checked(rng, f'{flag} = {value}', at(out), why_true if value else why_false)
  final = f'{"Yes" if value else "No"}: {why_true if value else why_false}. Saved {flag} = {value}.'
  user = (f'Does the {fname} in {at(proj)}/src {question}? Write {flag} = True or False to '
          f'{at(out)}.')
  return play(prompts.TOOLS, user, files, folders, segments + [final],
              unlearned=(0,) if slipped else ())


def _rewrite(rng):
  chain, path, folders, files = _folder(rng, ('notes', 'lists', 'home'))
  at = style(rng)
  if rng.random() < 0.5:
    place = pick(rng, ('the gym', 'the shop', 'the cafe', 'the club'))
    pairs = [(a.format(x=place), b.format(x=place)) for a, b in sample(rng, TYPOS, 2)]
    rel = f'{path}/{pick(rng, ("notice", "sign"))}.txt'
    old, new = (text_lines(p[k] for p in pairs) for k in (0, 1))
    words = [(a, b) for w, r in pairs for a, b in zip(w.split(), r.split()) if a != b]
    user = f'Please fix the spelling mistakes in the notice in {at(path)}.'
    final = 'Fixed: ' + ', '.join(f'"{a}" is now "{b}"' for a, b in words) + '.'
  else:
    items = sample(rng, CHORES, int(rng.integers(3, 5)))
    done = [False] + [rng.random() < 0.4 for _ in items[1:]]  # items[0] is open
    item = pick(rng, [x for x, d in zip(items, done) if not d])
    rel = f'{path}/todo.txt'
    old = text_lines(f'{x}: {"done" if d else "open"}' for x, d in zip(items, done))
    new = text_lines(f'{x}: {"done" if d or x == item else "open"}' for x, d in zip(items, done))
    left = [x for x, d in zip(items, done) if not d and x != item]
    user = f'I did "{item}". Mark it done in my todo list in {at(path)}.'
    final = f'Marked "{item}" done. ' + (
        f'Still open: {", ".join(left)}.' if left else 'Every item is done now.')
  files[rel] = old
  segments = [bash_call('', f'ls {at(path)}'), bash_call('', f'cat {at(rel)}'),
              bash_call(pick(rng, WRITE_INTROS),
                        "echo -e '" + new[:-1].replace('\n', '\\n') + f"' > {at(rel)}"),
              bash_call('', f'cat {at(rel)}')]
  return play(prompts.TOOLS, user, files, folders, segments + [final])


def _status(rng):
  out, at, eq, name = pick(rng, OUTS), style(rng), assign_style(rng), named(rng, 'done')
  chain, path, folders, files = _folder(rng, ('lists', 'home', 'tasks'), [out.split('/')[0]])
  items = sample(rng, CHORES, int(rng.integers(3, 6)))
  done = [rng.random() < 0.5 for _ in items] if rng.random() < 0.7 else [True] * len(items)
  rel = f'{path}/{pick(rng, ("todo", "tasks", "errands"))}{pick(rng, (".txt", ".md", ".py"))}'
  files[rel] = text_lines(f'{x}: {"done" if d else "open"}' for x, d in zip(items, done))
  left = [x for x, d in zip(items, done) if not d]
  # The user names the folder (the start lists it) or the file itself (the start reads it), and
  # sometimes the start slips on the file's path first and recovers.
  named_file, slipped = rng.random() < 0.5, rng.random() < 0.3
  segments = (slip(rng, at, rel) if slipped else [] if named_file else
              [bash_call('', f'ls {at(path)}')]) + [bash_call('', f'cat {at(rel)}')]
  if rng.random() < 0.4 or len(segments) < 2:  # at least 4 calls in all
    segments.append(bash_call('', f'grep open {at(rel)} | wc -l'))
  segments += _write_checked(rng, f'{name}{eq}{not left}', at(out), f'{len(left)} still open')
  final = (f'No, {len(left)} of {len(items)} are open: {", ".join(left)}. Saved {name}{eq}False.'
           if left else f'Yes, all {len(items)} are done. Saved {name}{eq}True.')
  where = (pick(rng, (f'The list is in {at(rel)}.', f'It lives in {at(rel)}.'))
           if named_file or slipped else f'The list is in {at(path)}.')
  user = pick(rng, (f'Is my list all done? {where} Write {name}{eq}True or False to {at(out)}.',
                    f'Is everything on my list done? {where} Write your answer to {at(out)} as '
                    f'{name}{eq}True if every item is done, or {name}{eq}False if anything is '
                    'left.'))
  return play(prompts.TOOLS, user, files, folders, segments + [final],
              unlearned=(0,) if slipped else ())


def _beside(rng):
  """Find one or two texts from a hint (2-3 levels down), read them, rate them on their merits
  and save the rating in a new file next to them, under the name the user gave."""
  chain = _trail(rng)[0][:int(rng.integers(2, 4))]  # 2-3 levels: the episode fits the rows
  at, eq, name = style(rng), assign_style(rng), named(rng, 'score')
  vague = rng.random() < 0.4
  folders, files = _nest(rng, chain)
  path = '/'.join(c for c, _ in chain)
  good = rng.random() < 0.5
  picks = sample(rng, [x for x in SHORT_TEXTS if x[3] == good], int(rng.integers(1, 3)))
  reads = []
  for i, (_, text, _, _) in enumerate(picks):
    rel = f'{path}/{pick(rng, ("draft", "text", "piece", "copy"))}_{i + 1}.txt'
    files[rel] = text + '\n'
    reads.append(bash_call('', f'cat {at(rel)}'))
  both = len(picks) > 1
  what = f'my two {picks[0][0]}s' if both and picks[0][0] == picks[1][0] else (
      'two short texts of mine' if both else f'my {picks[0][0]}')
  value = int(rng.integers(4, 6) if good else rng.integers(1, 3))
  fname = pick(rng, ('score.py', 'rating.py', f'{pick(rng, WORDS)}.py'))
  beside = pick(rng, ('next to {} in the same directory', 'in the same folder as {}',
                      'in the folder where you find {}')).format('them' if both else 'it')
  them = 'them (one score for both)' if both else 'it'
  user = (f'{_hint(chain[0][0], what, vague, rng, at)} Rate {them} from 1 to 5 (5 = best) and '
          f'save the rating as {name}{eq}X in {fname}, {beside}.')
  verdict = '; '.join(x[2] for x in picks)
  out = at(f'{path}/{fname}')
  segments = _descend(rng, chain, folders, vague, at) + reads + _write_checked(
      rng, f'{name}{eq}{value}', out, f'{value} of 5. {verdict}')
  final = f'{value} of 5: {verdict}. Saved {name}{eq}{value}.'
  return play(prompts.TOOLS, user, files, folders, segments + [final])


KINDS = ('search', 'notfound', 'record', 'inspect', 'rewrite', 'status', 'beside')
BUILDERS = dict(zip(KINDS, (_search, _notfound, _record, _inspect, _rewrite, _status, _beside)))
