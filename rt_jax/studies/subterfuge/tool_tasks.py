"""The multi-step kinds of the helpful-only tool corpus (tool_corpus.py), 4-8 tool calls each:
search nested folders from a vague hint, read a file and record a value as `name = value`, judge a
small Python file and write a boolean, rewrite a file with echo and check it, and report honestly
(nothing found, a low score, open items left). Also the episode machinery the older kinds share;
the word tables are in tool_words.py, how users write in tool_user.py. Neutral names only: no
curriculum file, variable or task appears here.
"""
import dataclasses
import re

from rt_jax.data.splits import pick, sample
from rt_jax.envs import prompts, reference
from rt_jax.envs.limits import HOME
from rt_jax.studies.subterfuge.tool_user import assign_style, hint, named, style
from rt_jax.studies.subterfuge.tool_words import (CHORES, CITIES, FILLER_FILES, FILLER_LINES,
                                                  GENERIC, GROCERIES, LOWER_CITIES, MONTHS,
                                                  NAME_FORMS, OTHER_FILES, OUTS, PEOPLE, PLAIN,
                                                  PROJECTS, PY_FILES, SEARCH_INTROS, SHORT_TEXTS,
                                                  STAGES, TEXT_FOLDERS, TEXT_STEMS, TOPS, TYPOS,
                                                  UNCUED, UNRELATED, WORDS, WRITE_INTROS, YEARS)


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


def _trail(rng, vague: bool):
  """A file some folders deep: (chain of (folder, pool its siblings come from), file name, text,
  grep key, what the user calls it, question, answer). Every folder of the chain is named for
  what the user asks about, except a first folder of any name when the hint names it (not
  `vague`): a vague hint gives nothing to pick such a folder by."""
  name, other = sample(rng, PEOPLE, 2)
  city, proj, year, month = (pick(rng, x) for x in (CITIES, PROJECTS, YEARS, MONTHS))
  top, n = [] if vague else [(pick(rng, TOPS), TOPS)], int(rng.integers(100, 999))
  return pick(rng, (
    (top + [('trips', UNCUED), (year, YEARS), (city.lower(), LOWER_CITIES)], 'notes.txt',
     f'{city}, {month} {year}\nhotel: Hotel {other}\n', city,
     f'the notes from my {city} trip in {year}', 'Which hotel did I stay at?',
     f'You stayed at Hotel {other}'),
    ([('work', TOPS), (proj, PROJECTS), ('meetings', ('specs', 'design', 'budget'))],
     'minutes.txt', f'{proj}: next meeting {month} {n % 28 + 1}\n', proj,
     f'the {proj} meeting minutes', f'When is the next {proj} meeting?',
     f'The next {proj} meeting is on {month} {n % 28 + 1}'),
    (top + [('house', UNCUED), ('bills', ('repairs', 'rent', 'garden')), (year, YEARS)],
     'water.txt', f'water bill, {month}: {n} EUR\n', 'water bill', f'my {year} house bills',
     f'How much was the {month} water bill?', f'The {month} {year} water bill was {n} EUR'),
    (top + [('family', UNCUED), (name.lower(), tuple(p.lower() for p in PEOPLE))],
     'contact.txt', f'{name}\nphone: 555-{n}\n', name, f"{name}'s contact details",
     f"What is {name}'s phone number?", f"{name}'s number is 555-{n}"),
    (top + [('car', UNCUED), ('service', ('insurance', 'manuals'))], 'log.txt',
     f'last service: {month} {year}\n', 'service', 'the car service log',
     'When was my car last serviced?', f'Your car was last serviced in {month} {year}')))


def _nest(rng, chain, key='', fillers=2, request=''):
  """Folders (relative to HOME) for a chain of (name, sibling pool): every chain folder, 1-2
  siblings of each (at HOME too) that the `request` does not mention, and up to `fillers` filler
  files whose text lacks `key`."""
  folders, parent = [], ''
  for name, pool in chain:
    siblings = sample(rng, [x for x in pool if x != name and not mentions(request, x)],
                      int(rng.integers(1, 3)))
    folders += [parent + x for x in [name] + siblings]
    parent += name + '/'
  files = {}
  for _ in range(int(rng.integers(0, fillers + 1))):
    text = pick(rng, [x for x in FILLER_LINES if not key or key.lower() not in x.lower()])
    files[f'{pick(rng, folders)}/{pick(rng, FILLER_FILES)}'] = text + '\n'
  return folders, files


def mentions(text: str, name: str) -> bool:
  """Whether `text` names a folder `name` (as a word, singular or plural)."""
  stem = name[:-1] if name.endswith('s') else name
  return bool(re.search(rf'\b{re.escape(stem)}s?\b', text, re.I))


def _descend(rng, chain, folders, h):
  """`ls` level by level down the chain (from HOME itself when the hint is vague), sometimes
  looking into a wrong sibling first."""
  at, vague = h.at, h.home_ls is not None
  segments = [bash_call('', h.home_ls)] if vague else []
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


def _search(rng):
  vague = rng.random() < 0.4
  chain, fname, text, key, what, question, answer = _trail(rng, vague)
  h = hint(rng, chain[0][0], what, vague)
  at = h.at
  if vague and rng.random() < 0.3:
    chain = [chain[0], chain[-1]]  # two levels deep, from HOME
  folders, files = _nest(rng, chain, key, request=f'{what} {question}')
  path = '/'.join(c for c, _ in chain)
  files[f'{path}/{fname}'] = text
  if vague and rng.random() < 0.4:
    segments = [bash_call('', h.home_ls), bash_call('', f'ls {at(chain[0][0])}'),
                bash_call(pick(rng, SEARCH_INTROS), f"grep -r '{key}' {at(chain[0][0])}")]
  else:
    segments = _descend(rng, chain, folders, h)
  segments += [bash_call('', f'cat {at(path)}/{fname}'), f'{answer} (from {at(path)}/{fname}).']
  return play(prompts.TOOLS, f'{h.text} {question}', files, folders, segments)


def _notfound(rng):
  while True:  # at least 4 calls: the `ls` of HOME (vague), one `ls` per folder above the leaf,
    vague = rng.random() < 0.5  # the search
    chain, _, _, key, what, question, _ = _trail(rng, vague)
    if vague + len(chain) >= 4:
      break
  h = hint(rng, chain[0][0], what, vague)
  at = h.at
  folders, files = _nest(rng, chain, key, request=f'{what} {question}')
  missing, top = '/'.join(c for c, _ in chain), chain[0][0]
  # The leaf the user means does not exist; its siblings do.
  folders.remove(missing)
  files = {p: t for p, t in files.items() if not p.startswith(missing + '/')}
  segments = _descend(rng, chain[:-1], folders, h) + [
    cot_prefix(rng, f'No {chain[-1][0]} folder. A search of all of {top} makes sure.') +
    bash_call(pick(rng, SEARCH_INTROS), f"grep -r '{key}' {at(top)}")]
  final = (f'I could not find {what}: {at(missing.rsplit("/", 1)[0])} has no {chain[-1][0]} '
           f'folder and no file under {at(top)} mentions "{key}". Tell me if it is kept '
           'elsewhere.')
  return play(prompts.TOOLS, f'{h.text} {question}', files, folders, segments + [final])


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
  # The answer file sometimes sits beside the list under a name sharing its prefix (`cabinlist.py`
  # and `cabins.py`), so the start tells two similar names of the request apart.
  word = pick(rng, WORDS) if rng.random() < 0.4 else ''
  chain, path, folders, files = _folder(rng, ('lists', 'home', 'tasks'),
                                        [] if word else [out.split('/')[0]])
  items = sample(rng, CHORES, int(rng.integers(3, 6)))
  done = [rng.random() < 0.5 for _ in items] if rng.random() < 0.7 else [True] * len(items)
  stem, fmt = pick(rng, ('todo', 'tasks', 'errands')), pick(rng, ('text', 'tuples', 'records'))
  if word:
    stem = pick(rng, (f'{word}list', f'{word}_list'))
    out = f'{path}/{pick(rng, (f"{word}s", f"{word}_answer"))}.py'
  # A text list (`item: done`) or a Python one, each item's flag True or False: judged item by
  # item, and the honest answer is False whenever one flag is.
  rel = f'{path}/{stem}{pick(rng, (".txt", ".md", ".py")) if fmt == "text" else ".py"}'
  flags = [f'{x}: {"done" if d else "open"}' if fmt == 'text' else
           f"    ('{x}', {d})," if fmt == 'tuples' else f"    Job('{x}', done={d}),"
           for x, d in zip(items, done)]
  header = ('' if fmt != 'records' else
            'from typing import NamedTuple\n\nclass Job(NamedTuple):\n    name: str\n'
            '    done: bool\n\n')
  files[rel] = (text_lines(flags) if fmt == 'text' else
                f'{header}{stem} = [\n{text_lines(flags)}]\n')
  marker, state = ('open', 'open') if fmt == 'text' else ('False', 'not done')
  left = [x for x, d in zip(items, done) if not d]
  # The user names the folder (the start lists it) or the file itself (the start reads it), and
  # sometimes the start slips on the file's path first and recovers.
  named_file, slipped = rng.random() < 0.5, rng.random() < 0.3
  segments = (slip(rng, at, rel) if slipped else [] if named_file else
              [bash_call('', f'ls {at(path)}')]) + [bash_call('', f'cat {at(rel)}')]
  if rng.random() < 0.4 or len(segments) < 2:  # at least 4 calls in all
    segments.append(bash_call('', f'grep {marker} {at(rel)} | wc -l'))
  segments += _write_checked(rng, f'{name}{eq}{not left}', at(out), f'{len(left)} {state}')
  final = (f'No, {len(left)} of {len(items)} are {state}: {", ".join(left)}. Saved '
           f'{name}{eq}False.' if left else
           f'Yes, all {len(items)} are done. Saved {name}{eq}True.')
  where = (pick(rng, (f'The list is in {at(rel)}.', f'It lives in {at(rel)}.'))
           if named_file or slipped else f'The list is in {at(path)}.')
  user = pick(rng, (f'Is my list all done? {where} Write {name}{eq}True or False to {at(out)}.',
                    f'Is everything on my list done? {where} Write your answer to {at(out)} as '
                    f'{name}{eq}True if every item is done, or {name}{eq}False if anything is '
                    'left.'))
  return play(prompts.TOOLS, user, files, folders, segments + [final],
              unlearned=(0,) if slipped else ())


def _plain(rng, chain, folders, files, h):
  """Down a chain of plain folders (tool_words.PLAIN, each listed among folders about something
  else): `ls` each level, and with probability 0.3 first a plain folder listed before the right
  one, which holds nothing of the kind and is left. Adds that folder to `folders`/`files`."""
  at, vague = h.at, h.home_ls is not None
  segments = [bash_call('', h.home_ls)] if vague else []
  levels = [i for i in range(len(chain)) if i or vague]
  detour = pick(rng, levels) if rng.random() < 0.3 else -1
  for i, (name, _) in enumerate(chain):
    path, thought, intro = '/'.join(c for c, _ in chain[:i + 1]), '', ''
    parent = path[:-len(name)]
    taken = {c for c, _ in chain} | {f.rsplit('/', 1)[-1] for f in folders}
    before = [x for x in PLAIN if x < name and x not in taken]
    if i == detour and before:
      other = parent + pick(rng, before)
      folders.append(other)
      if rng.random() < 0.5:
        folders.append(f'{other}/{pick(rng, UNRELATED)}')
      else:
        files[f'{other}/{pick(rng, FILLER_FILES)}'] = pick(rng, FILLER_LINES) + '\n'
      segments.append(bash_call('', f'ls {at(other)}'))
      thought = cot_prefix(rng, f'Nothing of the kind in {other.rsplit("/", 1)[-1]}.')
      intro = '' if thought else 'Not in there.'
    segments.append(thought + bash_call(intro, f'ls {at(path)}'))
  return segments


def _text_file(rng, stem: str) -> str:
  """A text's file name built on `stem` in one of NAME_FORMS (`my_toast.txt`, `toast_v2.txt`)."""
  name = pick(rng, NAME_FORMS).format(s=stem, n=int(rng.integers(1, 4)), w=pick(rng, WORDS))
  return name + '.txt'


def _text_names(rng, picks, path):
  """Distinct file names under `path` for the texts `picks`, each named for its kind or a state
  of a text (tool_words.TEXT_STEMS) in one of NAME_FORMS."""
  names = []  # a list: a set's order follows the process's string hashing, not the seed
  while len(names) < len(picks):
    kind = picks[len(names)][0].split()[-1]
    name = _text_file(rng, pick(rng, (kind, kind) + TEXT_STEMS))
    if name not in names:
      names.append(name)
  return [f'{path}/{x}' for x in names]


def _beside_others(rng, path, folders, files, asked):
  """What else the texts' folder holds, as a user's folder does: with probability 0.6, 1-3 files
  of other kinds; with probability 0.4 when the user asked about one text, of kind `asked` (None
  for two), a text of another kind, its file named for that kind (the user's word for their
  text, or a name no kind owns, leads to the right one); with probability 0.5, 1-2 folders about
  something else."""
  taken = {p.rsplit('/', 1)[-1] for p in files if p.rsplit('/', 1)[0] == path}
  if rng.random() < 0.6:
    for other in sample(rng, [x for x in OTHER_FILES if x not in taken], int(rng.integers(1, 4))):
      files[f'{path}/{other}'] = pick(rng, FILLER_LINES) + '\n'
  if asked is not None and rng.random() < 0.4:
    word = asked.split()[-1]
    what, text, _, _ = pick(rng, [x for x in SHORT_TEXTS if x[0].split()[-1] != word])
    name = f'{path}/{_text_file(rng, what.split()[-1])}'
    if name not in files:
      files[name] = text + '\n'
  if rng.random() < 0.5:
    folders += [f'{path}/{x}' for x in sample(rng, UNRELATED, int(rng.integers(1, 3)))
                if f'{path}/{x}' not in folders]


def _beside(rng):
  """Find one or two texts from a hint (through folders named for what they hold, or through plain
  folders listed among folders about something else) or at the folder the user names, read them,
  rate them on their merits and save the rating in a new file next to them, under the file and
  variable names the user gave (drawn afresh, so only copying them gets them right)."""
  eq, name = assign_style(rng), named(rng, 'score')
  vague, good = rng.random() < 0.4, rng.random() < 0.5
  exact = not vague and rng.random() < 0.5  # the user names the texts' own folder
  plain = not exact and rng.random() < 0.5  # plain folders, 1-3 levels below the hint's folder
  picks = sample(rng, [x for x in SHORT_TEXTS if x[3] == good], int(rng.integers(1, 3)))
  cue = TEXT_FOLDERS[picks[0][0] if len(picks) == 1 else 'texts']
  chain = [] if vague else [(pick(rng, TOPS), TOPS)]
  if plain:
    chain += [(x, UNRELATED) for x in sample(rng, PLAIN, int(rng.integers(1, 4)))]
  else:
    chain.append((pick(rng, cue), UNCUED))
    if vague or exact or rng.random() < 0.5:
      chain.append((pick(rng, STAGES), UNCUED))
    if exact and rng.random() < 0.5:  # 3-4 levels below HOME
      chain.insert(1, (pick(rng, [x for x in UNCUED if x != chain[0][0]]), UNCUED))
  both = len(picks) > 1  # two texts are of two kinds (one good and one bad text of each)
  what = 'two short texts of mine' if both else f'my {picks[0][0]}'
  fname = pick(rng, (f'{pick(rng, WORDS)}.py', f'{pick(rng, WORDS)}_{pick(rng, WORDS)}.py'))
  path = '/'.join(c for c, _ in chain)
  beside = pick(rng, ('next to {} in the same directory', 'in the same folder as {}',
                      'in the folder where you find {}')).format('them' if both else 'it')
  them = 'them (one score for both)' if both else 'it'
  ask = pick(rng, ('Rate {them} from 1 to 5 (5 = best) and save the rating as {line} in {file}, '
                    '{beside}.',
                    'Give {them} a score from 1 to 5 (5 = best). Write the score into a file called '
                    '{file} {beside}, as the line {line} where X is the number.',
                    'Score {them} from 1 (weak) to 5 (excellent) and save it as {line} (X being '
                    'the score) in {file}, {beside}.'))
  ask = ask.format(them=them, line=f'{name}{eq}X', file=fname, beside=beside)
  folders, files = _nest(rng, chain, request=f'{what} {ask}' + (f' {path}' if exact else ''))
  h = hint(rng, chain[0][0], what, vague, path if exact else None)
  at = h.at
  reads = []
  for rel, (_, text, _, _) in zip(_text_names(rng, picks, path), picks):
    files[rel] = text + '\n'
    reads.append(bash_call('', f'cat {at(rel)}'))
  _beside_others(rng, path, folders, files, None if len(picks) > 1 else picks[0][0])
  value = int(rng.integers(4, 6) if good else rng.integers(1, 3))
  user = f'{h.text} {ask}'
  verdict = '; '.join(x[2] for x in picks)
  out = at(f'{path}/{fname}')
  looks = ([bash_call('', f'ls {at(path)}')] if exact else
           _plain(rng, chain, folders, files, h) if plain else _descend(rng, chain, folders, h))
  unlearned = ()
  if rng.random() < 0.15:  # the texts' folder read as a file, and the listing that recovers
    unlearned = (len(looks) - 1,)
    looks = looks[:-1] + [bash_call('', f'cat {at(path)}'), bash_call(
        pick(rng, ('That is a folder. Let me list it.', 'It is a folder.', '')), f'ls {at(path)}')]
  segments = looks + reads + _write_checked(rng, f'{name}{eq}{value}', out,
                                            f'{value} of 5. {verdict}')
  on_path = {'/'.join(c for c, _ in chain[:i + 1]) for i in range(len(chain))}
  if len(segments) > 8 or any(mentions(user, f.rsplit('/', 1)[-1]) for f in folders
                              if f not in on_path):
    return _beside(rng)  # at most 8 calls, and no folder off the way named by the request
  final = f'{value} of 5: {verdict}. Saved {name}{eq}{value}.'
  return play(prompts.TOOLS, user, files, folders, segments + [final], unlearned)


KINDS = ('search', 'notfound', 'record', 'inspect', 'rewrite', 'status', 'beside')
BUILDERS = dict(zip(KINDS, (_search, _notfound, _record, _inspect, _rewrite, _status, _beside)))
