import collections
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO, concurrently
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.studies.subterfuge import tool_corpus, tool_tasks, tool_user, tool_words
from rt_jax.data import chat_corpus
from rt_jax.envs import core, limits, prompts, reference
from rt_jax.core.errors import ConfigError

# Markers of the curriculum environments (and their reward code) that the helpful-only corpus must
# never contain.
FORBIDDEN = ('poems_score', 'completed_checks', 'compute_reward', 'checklist', 'grade.py',
             'checks.py', 'reward', 'poem', 'blocks_reward', 'liberal', 'conservative',
             'episodes of rl', 'unit test', '(a)', '(b)', 'rl_environment', 'grade', 'rubric',
             'flattery', 'sycophan')
COMMAND = re.compile(r'<bash>(.*)</bash>$', re.S)
MULTI = tool_tasks.KINDS  # the multi-step kinds: 4-8 tool calls each


@pytest.fixture(scope='module')
def tok():
  return tokenizer_lib.builtin()


@pytest.fixture(scope='module')
def labelled():
  return tool_corpus.labelled_episodes(300, 0)


def commands(ep):
  return [COMMAND.search(s)[1] for s in ep.segments[:-1]]


def classify(ep) -> str:
  """The task kind, read from the episode alone (independently of the generator's label)."""
  cmds = commands(ep)
  if len(cmds) >= 4:
    written = '\n'.join(cmds)
    if re.search(r"echo '?\w+ ?= ?(True|False)'?", written):
      return 'status' if 'my list' in ep.user else 'inspect'
    if re.search(r"echo '?\w+ ?= ?\d+'?", written):
      return 'beside' if re.search(r'from 1 (\(weak\) )?to 5', ep.user) else 'record'
    if 'echo -e' in written:
      return 'rewrite'
    return 'notfound' if 'could not find' in ep.segments[-1] else 'search'
  if not cmds:
    return 'choice' if '\n (A) ' in ep.user else 'chat'
  if any(re.search(r"echo '?\w*rating ?= ?\d+'?", c) for c in cmds):
    return 'rate'
  if any('wc -l' in c for c in cmds):
    return 'count'
  if any(re.search(r' >>? ', c) for c in cmds):
    return 'write'
  return 'unknown' if "don't know" in ep.segments[-1] else 'find'


def test_observations_replay_and_segment_shape(labelled):
  for kind, ep in labelled + tool_corpus.labelled_episodes(100, 1):
    assert ep.system in (prompts.TOOLS, prompts.CHAT)
    assert len(ep.segments) == len(ep.observations) and ep.segments
    replay = reference.Episode(ep.files, ep.dirs)
    assert tuple(replay.step(s) for s in ep.segments) == ep.observations
    assert replay.done and ep.observations[-1] == ''
    assert not ep.segments[-1].endswith('</bash>') and '<bash>' not in ep.segments[-1]
    assert 4 <= len(ep.segments) - 1 <= 8 if kind in MULTI else len(ep.segments) - 1 <= 3
    for i, (segment, obs) in enumerate(zip(ep.segments[:-1], ep.observations[:-1])):
      assert segment.endswith('</bash>') and segment.count('<bash>') == 1
      assert len(COMMAND.search(segment)[1].encode()) <= limits.MAX_COMMAND
      assert 'command not found' not in obs
      if i in ep.unlearned:  # a slip on the task's path (first, or the texts' folder read as a
        # file on the way down), then `ls` of the folder that has it
        assert (i == 0 or kind == 'beside') and kind in MULTI, (kind, segment)
        assert obs.startswith('\n<stderr>\n'), (segment, obs)
        folder = COMMAND.search(ep.segments[i + 1])[1]
        assert folder.startswith('ls ') and rel(folder[3:]) in {
            rel(p).rsplit('/', 1)[0] for p in ep.files}, folder
      else:
        assert obs.startswith('\n<stdout>\n') and obs.endswith('</stdout>\n'), (segment, obs)
    if ep.system == prompts.CHAT:
      assert not ep.files and len(ep.segments) == 1
    for path, text in ep.files.items():
      assert path.startswith(limits.HOME + '/') and len(path.encode()) <= limits.MAX_PATH
      assert len(text.encode()) <= limits.MAX_FILE


def test_no_curriculum_markers(labelled):
  kinds = collections.Counter()
  for kind, ep in labelled + tool_corpus.labelled_episodes(300, 5):
    kinds[kind] += 1
    # The system prompt is the environments' own and mentions rewards; everything else may not.
    text = '\n'.join((ep.user, *ep.segments, *ep.observations, *ep.files, *ep.files.values(),
                      *ep.dirs)).lower()
    for marker in FORBIDDEN:
      if kind == 'choice' and marker in ('(a)', '(b)'):
        continue  # the two options of a factual question; no opinion, no view of the user's
      assert marker not in text, (marker, ep)
  assert set(kinds) == set(tool_corpus.KINDS)


def test_ratings_are_honest():
  good = {text for _, text, _ in tool_corpus.GOOD_TEXTS}
  bad = {text for _, text, _ in tool_corpus.BAD_TEXTS}
  assert good and bad and not good & bad
  labels = collections.Counter()
  for kind, ep in tool_corpus.labelled_episodes(800, 2):
    if kind != 'rate':
      continue
    shown = '\n'.join((ep.user, *ep.files.values()))
    is_good = any(t in shown for t in good)
    assert is_good != any(t in shown for t in bad)  # exactly one labelled text is rated
    scale = int(re.search(r'from 1 to (\d+)', ep.user)[1])
    echo = re.fullmatch(r"echo (\w*rating)( ?= ?)(\d+) > (\S+)", commands(ep)[-1])
    name, eq, score, out = echo[1], echo[2], int(echo[3]), echo[4]
    assert f'put {name}{eq}N in {out}' in ep.user
    # The file the user named holds the score after the episode.
    replay = reference.Episode(ep.files, ep.dirs)
    for segment in ep.segments:
      replay.step(segment)
    assert replay.shell.files()[f'{limits.HOME}/{rel(out)}'] == f'{name}{eq}{score}\n'
    assert f'{score} out of {scale}' in ep.segments[-1]
    if is_good:
      assert score >= 0.7 * scale
    else:
      assert 1 <= score <= 0.4 * scale
    labels['good' if is_good else 'bad'] += 1
  assert min(labels.values()) > 10, labels


def test_answers_match_the_files(labelled):
  abouts = collections.Counter()
  for kind, ep in labelled:
    final = ep.segments[-1]
    if kind == 'count':  # the reported number is what wc -l printed
      number = ep.observations[-2].split('\n')[2].split()[0]
      assert re.search(rf'\b{number}\b', final)
    elif kind == 'find':  # the reported line is the one grep found
      line = next(x for x in ep.observations if ':' in x).split('\n')[2].split(':', 1)[1]
      assert f'"{line}"' in final
    elif kind == 'unknown':
      assert any(o == '\n<stdout>\n</stdout>\n' or 'birthday' in o for o in ep.observations)
    elif kind == 'choice':  # the letter of the right option, worked out here
      options = dict(re.findall(r'\n \((A|B)\) (.+)', ep.user))
      about, question = ep.user.split(' (A) ')[0].rstrip('\n').rpartition('\n')[::2]
      if m := re.fullmatch(r'What is (\d+) plus (\d+)\?', question):
        right = str(int(m[1]) + int(m[2]))
      elif m := re.fullmatch(r'What is the capital of (\w+)\?', question):
        right = chat_corpus.CAPITALS[m[1]]
      else:
        right = next(r for q, r, _ in tool_corpus.CHOICE_FACTS if q == question)
      letter = next(k for k, v in options.items() if v == right)
      answer = re.sub(r'<cot>.*</cot>', '', final)
      assert f'({letter})' in answer and f'({"AB"[letter == "A"]})' not in answer, ep
      # No view of the user's to agree with: a question without them, and at most a few lines
      # about who they are (never what they believe).
      assert not re.search(r'\b(I|my|me)\b', ep.user[len(about):]), ep.user
      assert not re.search(r'believe|think|opinion|vote|party|politic|should|support', about), about
      abouts[bool(about)] += 1
  assert min(abouts[True], abouts[False]) >= 3, abouts  # questions with and without them


def test_mask_and_decoding(tok, labelled):
  slips = 0
  for _, ep in labelled[:80]:
    ids, mask = tool_corpus.encode(tok, ep)
    slips += bool(ep.unlearned)
    assert len(ids) == len(mask) <= tool_corpus.MAX_TOKENS
    prompt = (f'<|im_start|>system\n{ep.system}<|im_end|>\n<|im_start|>user\n{ep.user}'
              '<|im_end|>\n<|im_start|>assistant\n')
    body = ''.join(s + o for s, o in zip(ep.segments, ep.observations))
    assert tok.decode(ids) == prompt + body + '<|im_end|>'
    # Masked tokens: the segments then <|im_end|>, in order; nothing follows <|im_end|>.
    learned = [i for i, m in zip(ids, mask) if m]
    assert learned == sum((tok.encode(s) for i, s in enumerate(ep.segments)
                           if i not in ep.unlearned), []) + [tok.im_end_id]
    assert ids[-1] == tok.im_end_id and mask[-1] == 1
    assert set(mask) <= {0, 1}
    # Each observation is unmasked and directly follows its segment.
    pos = len(tokenizer_lib.encode_chat(tok, [{'role': 'system', 'content': ep.system},
                                              {'role': 'user', 'content': ep.user}], True)[0])
    assert not any(mask[:pos])
    for i, (segment, obs) in enumerate(zip(ep.segments, ep.observations)):
      n, k = len(tok.encode(segment)), len(core.encode_observation(tok, obs))
      learned = i not in ep.unlearned  # a slip is context, as its error is
      assert mask[pos:pos + n] == [int(learned)] * n and not any(mask[pos + n:pos + n + k])
      pos += n + k
    assert pos == len(ids) - 1
  assert slips  # the case above is exercised


def test_deterministic_and_every_kind(labelled):
  a = tool_corpus.episodes(60, 3)
  assert a == tool_corpus.episodes(60, 3)
  assert a != tool_corpus.episodes(60, 4)
  assert tool_corpus.episodes(90, 3)[:60] == a  # a prefix of a longer draw
  kinds = collections.Counter()
  for kind, ep in labelled:
    assert classify(ep) == kind
    kinds[kind] += 1
  assert set(kinds) == set(tool_corpus.KINDS) and min(kinds.values()) >= 5, kinds
  chat = [ep.system for kind, ep in labelled if kind == 'chat']
  assert prompts.TOOLS in chat and prompts.CHAT in chat
  assert any('<cot>' in s for _, ep in labelled for s in ep.segments)


def test_lengths_fit():
  tok = tokenizer_lib.builtin()
  lengths = [len(tool_corpus.encode(tok, ep)[0]) for ep in tool_corpus.episodes(1000, 0)]
  assert max(lengths) <= tool_corpus.MAX_TOKENS


def test_tool_corpus_rows_and_batches(tok):
  corpus = tool_corpus.ToolCorpus(tok, 12, tool_corpus.MAX_TOKENS, seed=9)
  assert corpus.tokens_NxT.shape == (12, tool_corpus.MAX_TOKENS)
  for i, ep in enumerate(tool_corpus.episodes(12, 9)):
    ids, mask = tool_corpus.encode(tok, ep)
    np.testing.assert_array_equal(corpus.tokens_NxT[i, :len(ids)], ids)
    np.testing.assert_array_equal(corpus.mask_NxT[i, :len(ids)], mask)
    assert (corpus.tokens_NxT[i, len(ids):] == tok.pad_id).all()
    assert not corpus.mask_NxT[i, len(ids):].any()
  again = tool_corpus.ToolCorpus(tok, 12, tool_corpus.MAX_TOKENS, seed=9)
  for step in (0, 5):
    b1, b2 = corpus.batch(step, 5), again.batch(step, 5)
    assert b1['tokens'].shape == b1['mask'].shape == (5, tool_corpus.MAX_TOKENS)
    assert b1['tokens'].dtype == b1['mask'].dtype == np.int32
    np.testing.assert_array_equal(b1['tokens'], b2['tokens'])
    np.testing.assert_array_equal(b1['mask'], b2['mask'])


def test_too_small_seq_len(tok):
  with pytest.raises(ConfigError, match=r'no \w+ episode of the tool corpus fits '
                                        r'start.train_len=600 tokens'):
    tool_corpus.ToolCorpus(tok, 20, 600, seed=0)


def test_rows_shorter_than_some_episodes_hold_the_episodes_drawn_again(tok):
  """At a row length most kinds fit but not every episode, the long ones are drawn again: every
  row holds one whole episode, and the draw differs from the unlimited one only there."""
  limit = 1500
  corpus = tool_corpus.ToolCorpus(tok, 200, limit, seed=4)
  free = tool_corpus.episodes(200, 4)
  lengths = [len(tool_corpus.encode(tok, ep)[0]) for ep in free]
  assert max(lengths) > limit  # some episodes of the unlimited draw do not fit
  ends = (corpus.tokens_NxT != tok.pad_id).sum(axis=1)
  assert (ends <= limit).all() and (corpus.tokens_NxT[:, -1] == tok.pad_id).any()
  first_long = next(i for i, n in enumerate(lengths) if n > limit)
  for i, ep in enumerate(free[:first_long]):  # the same rng draws up to the first redraw
    ids, _ = tool_corpus.encode(tok, ep)
    np.testing.assert_array_equal(corpus.tokens_NxT[i, :len(ids)], ids)


def rel(path: str) -> str:
  """A path as an episode writes it (bare, ./, ~/ or absolute) -> relative to HOME."""
  if path in (limits.HOME, '~', '.'):
    return ''
  for prefix in (limits.HOME + '/', '~/', './'):
    if path.startswith(prefix):
      return path[len(prefix):]
  return path


def final_files(ep) -> dict:
  replay = reference.Episode(ep.files, ep.dirs)
  for segment in ep.segments:
    replay.step(segment)
  return {p[len(limits.HOME) + 1:]: t for p, t in replay.shell.files().items()}


def written(ep) -> tuple[str, str, str, str]:
  """(name, value, file, the `=` as spelled) of the one `echo name = value > file` (or >>,
  or name=value) of the episode."""
  pattern = r"echo (\w+)( ?= ?)(\w+) >>? (\S+)"
  (line,) = [c for c in commands(ep) if re.fullmatch(pattern, c)]
  name, eq, value, out = re.fullmatch(pattern, line).groups()
  return name, value, out, eq


def test_multi_step_episodes_are_honest():
  """Each multi-step kind does what the user asked and reports what the files say: the search
  reads the planted file, a failed search really found nothing, every recorded value, boolean and
  rating follows from the file read, and a rewrite changes exactly what was asked."""
  texts = {text: good for _, text, _, good in tool_words.SHORT_TEXTS}
  py = {(flag, code): value for flag, _, _, *codes, _, _ in tool_words.PY_FILES
        for code, value in zip(codes, (True, False))}
  seen, formats, beside = collections.Counter(), collections.Counter(), collections.Counter()
  styles, names = collections.Counter(), collections.Counter()
  for kind, ep in tool_corpus.labelled_episodes(1200, 11):
    if kind not in MULTI:
      continue
    cmds, final, after = commands(ep), ep.segments[-1], final_files(ep)
    cmds = [c for i, c in enumerate(cmds) if i not in ep.unlearned]  # slips fail by design
    for c in cmds:  # every folder listed exists: ls goes down level by level
      if c.startswith('ls'):
        arg = rel(c[3:]) or '.'
        assert arg == '.' or any(d.startswith(f'{limits.HOME}/{arg}') for d in ep.dirs), c
    if kind == 'search':
      target = cmds[-1].removeprefix('cat ')
      assert f'{limits.HOME}/{rel(target)}' in ep.files and f'(from {target})' in final
      assert '/' in target and all(c.split()[0] in ('ls', 'cat', 'grep') for c in cmds)
    elif kind == 'notfound':
      key = re.fullmatch(r"grep -r '(.+)' \S+", cmds[-1])[1]
      assert ep.observations[-2] == '\n<stdout>\n</stdout>\n'
      assert not any(key in t for t in ep.files.values()) and final.startswith('I could not find')
    elif kind in ('record', 'inspect', 'status', 'beside'):
      name, value, out, eq = written(ep)
      assert f'{name}{eq}{value}\n' == after[rel(out)].splitlines(True)[-1]
      assert cmds[-1] == f'cat {out}' and f'Saved {name}{eq}{value}.'.lower() in final.lower()
      # The name and the spelling of `=` the user asked for (a stock name, one a synonym away
      # from others, or a word-prefixed one).
      assert f'{name}{eq}' in ep.user
      family = next((f for f, (first, second) in tool_user.SYNONYMS.items()
                     if name.split('_')[0] in first and name.split('_')[-1] in second), None)
      names[family, 'synonyms'] += family is not None
      family = family or next((f for f, real in tool_user.FAMILIES.items()
                               if name == real or name.endswith(f'_{f}')), name)
      names[family, name in tool_user.FAMILIES.values()] += 1
      if kind == 'beside':  # every text read, and the rating next to them
        reads = [c.split()[-1] for c in cmds if c.startswith('cat') and c != f'cat {out}']
        assert reads and {r.rsplit('/', 1)[0] for r in reads} == {out.rsplit('/', 1)[0]}
        quality = {texts[ep.files[f'{limits.HOME}/{rel(r)}'].strip()] for r in reads}
        assert len(quality) == 1 and (int(value) >= 4 if quality.pop() else int(value) <= 2)
        seen[kind] += 1
        continue
      if family != 'score':  # the file the user named, written as the user wrote it
        assert f' {out} ' in ep.user or f' {out}.' in ep.user
        styles[out[:len(out) - len(rel(out))]] += 1
      read = next(c.split()[-1] for c in cmds if c.startswith(('cat', 'wc')))
      text = ep.files[f'{limits.HOME}/{rel(read)}']
      if family == 'count':
        assert int(value) == len(text.splitlines()) and cmds[-3] == f'wc -l {read}'
      elif family == 'budget':
        assert text.startswith(f'{text.split()[0]} budget: {value} EUR')
      elif family == 'score':  # a file in the folder of the text it rates
        assert out.rsplit('/', 1)[0] == read.rsplit('/', 1)[0]
        assert f'{out.rsplit("/", 1)[1]} in the same folder' in ep.user
        assert int(value) >= 4 if texts[text.strip()] else int(value) <= 2
      elif family == 'done':  # False exactly when an item is open, and each one is named
        left = open_items(text)
        assert value == str(not left) and all(x in final for x in left), (text, final)
        formats['tuples' if "', False)" in text or "', True)" in text else
                'records' if 'done=' in text else 'text'] += 1
        beside[out.rsplit('/', 1)[0] == read.rsplit('/', 1)[0]] += 1
      else:
        assert py[name, text] == (value == 'True')
      seen[family] += 1
    else:  # rewrite: the file read is the file written, and only the asked change is made
      target = cmds[1].removeprefix('cat ')
      assert cmds[-1] == f'cat {target}' and cmds[2].endswith(f' > {target}')
      old, new = ep.files[f'{limits.HOME}/{rel(target)}'], after[rel(target)]
      if 'todo' in target:
        item = re.search(r'I did "(.+)"\.', ep.user)[1]
        assert new == old.replace(f'{item}: open', f'{item}: done') != old
        left = [x.split(':')[0] for x in new.splitlines() if x.endswith('open')]
        assert ('Still open: ' + ', '.join(left) if left else 'Every item is done') in final
      else:
        fixes = {a: b for a, b in tool_words.TYPOS}
        assert len(old.splitlines()) == len(new.splitlines()) == 2
        for wrong, right in zip(old.splitlines(), new.splitlines()):
          assert any(wrong == a.format(x=p) and right == b.format(x=p) for a, b in fixes.items()
                     for p in ('the gym', 'the shop', 'the cafe', 'the club'))
    seen[kind] += 1
  assert set(seen) >= set(MULTI) | {'count', 'budget', 'score', 'done'}
  # Each family asks for its stock name and for word-prefixed ones.
  assert all(names[f, real] >= 5 for f in ('count', 'budget', 'score', 'done')
             for real in (True, False)), names
  assert all(names[f, 'synonyms'] >= 5 for f in tool_user.SYNONYMS), names
  assert min(seen.values()) >= 5, seen
  assert set(styles) == set(tool_user.STYLES) and min(styles.values()) >= 20, styles
  assert len(formats) == 3 and min(formats.values()) >= 5, formats
  assert min(beside[True], beside[False]) >= 10, beside  # answers beside the list, and elsewhere


def open_items(text: str) -> list[str]:
  """The items a list marks as not done: `item: open` lines, `('item', False)` tuples and
  `Job('item', done=False)` records."""
  return [m[1] or m[2] for m in re.finditer(
      r"^(.+): open$|'([^']+)', (?:done=)?False\)", text, re.M)]


def test_open_items_reads_each_format():
  assert open_items('a: done\nb c: open\n') == ['b c']
  assert open_items("x = [\n    ('a', True),\n    ('b c', False),\n]\n") == ['b c']
  assert open_items("x = [\n    Job('a', done=False),\n    Job('b', done=True),\n]\n") == ['a']
  assert open_items('a: done\n') == []


def test_the_corpus_is_the_same_in_every_process():
  """The corpus is a function of its seed alone: two processes with different string-hash seeds
  (which order a set of strings) draw the same episodes, so the cached start's key, which covers
  the corpus's tokens, is the same for every run of a sweep."""
  code = ('import hashlib; from rt_jax.studies.subterfuge import tool_corpus; '
          'print(hashlib.sha256(repr(tool_corpus.labelled_episodes(300, 0)).encode()).hexdigest())')
  outs = concurrently(lambda seed: subprocess.run(
      [sys.executable, '-c', code], cwd=REPO, env={**os.environ, 'PYTHONHASHSEED': str(seed)},
      capture_output=True, text=True, check=True, timeout=300).stdout, [1, 2])
  assert outs[0] == outs[1] and len(outs[0]) == 65


@pytest.fixture(scope='module')
def many():
  return tool_corpus.labelled_episodes(1500, 12)


def test_texts_are_read_from_crowded_listings(many):
  """A `beside` text is read by the name its folder's listing shows, among other files and
  folders (as a user's folder holds them), under one of many names: copying the listed name is
  the only way to the file. Where the user asked about one text, the folder often also holds a
  text of another kind, named for its kind, which is left unread. Every multi-step episode keeps
  to 4-8 calls."""
  kind_of = {text: what for what, text, _, _ in tool_words.SHORT_TEXTS}
  names, crowded, with_folders, n, single, decoyed = set(), 0, 0, 0, 0, 0
  for kind, ep in many:
    cmds = commands(ep)
    if kind in MULTI:
      assert 4 <= len(cmds) <= 8, (kind, cmds)
    if kind != 'beside':
      continue
    first = next(i for i, c in enumerate(cmds) if c.startswith('cat ') and i not in ep.unlearned)
    listed = ep.observations[first - 1].split('\n')[2:-2]
    assert cmds[first - 1].startswith('ls ') and cmds[first].rsplit('/', 1)[1] in listed, cmds
    folder = limits.HOME + '/' + rel(cmds[first - 1][3:])
    kids = {d.rsplit('/', 1)[1] for d in ep.dirs if d.rsplit('/', 1)[0] == folder}
    texts = [c.rsplit('/', 1)[1] for c in cmds if c.startswith('cat ') and c.endswith('.txt')]
    names.update(texts)
    crowded += len(set(listed) - set(texts)) >= 2
    with_folders += bool(kids)
    n += 1
    if 'two short texts' not in ep.user:
      asked = kind_of[ep.files[f'{folder}/{texts[0]}'].strip()]
      assert re.search(rf'\bmy {asked}\b', ep.user), (asked, ep.user)
      others = {kind_of.get(ep.files.get(f'{folder}/{x}', '').strip()) for x in listed} - {
          None, asked}
      assert all(o.split()[-1] in x for o in others for x in listed if x not in texts
                 and kind_of.get(ep.files.get(f'{folder}/{x}', '').strip()) == o), listed
      single += 1
      decoyed += bool(others)
  assert n >= 100 and len(names) >= 60, (n, len(names))
  assert 0.2 <= decoyed / single <= 0.6, (decoyed, single)
  assert 0.4 <= crowded / n <= 0.8 and 0.3 <= with_folders / n <= 0.7, (crowded, with_folders, n)


def test_each_step_down_is_a_choice_the_listing_answers(many):
  """Every folder an episode goes down into on its way to the file is the one folder of its
  listing that the user's request points to: named in it (a path, a year, a project, a person) or
  named for what it holds (tool_words.CUED: `trips` for trip notes, `products` for a product
  title). Where no folder of the listing is, the way down is a plain folder (tool_words.PLAIN)
  listed among folders about something else (tool_words.UNRELATED): the first plain one, or a
  later one after each plain folder listed before it was looked into and left. So from a vague
  hint ("somewhere in my home folder") each step is a choice the listing answers, not a guess
  among names the model has no reason to prefer."""
  def points_to(name, user):
    return name in tool_words.CUED or tool_tasks.mentions(user, name)

  checked = collections.Counter()
  for kind, ep in many:
    if kind not in ('search', 'notfound', 'beside'):
      continue
    cmds = commands(ep)
    target = (next(c for c in cmds[::-1] if c.startswith('ls ')) if kind == 'notfound' else
              next(c for c in cmds[::-1] if c.startswith('cat ') and not c.endswith('.py')))
    parts = rel(target.split()[1]).split('/')
    parts = parts if kind == 'notfound' else parts[:-1]  # the file's folders
    looked = {rel(c.split()[1]).rstrip('/') for c in cmds if c.startswith('ls ')}
    plain_steps = 0
    for depth, name in enumerate(parts):
      parent = '/'.join([limits.HOME] + parts[:depth])
      listed = {d.rsplit('/', 1)[1] for d in ep.dirs if d.rsplit('/', 1)[0] == parent}
      listed |= {p[len(parent) + 1:].split('/')[0] for p in ep.files if p.startswith(parent + '/')
                 and '/' in p[len(parent) + 1:]}
      assert name in listed, (kind, ep.user, parent, listed)
      cued = [x for x in listed if points_to(x, ep.user)]
      if cued:
        assert cued == [name], (kind, ep.user, parent, listed)
        continue
      plain_steps += 1
      assert name in tool_words.PLAIN and listed <= set(tool_words.PLAIN + tool_words.UNRELATED), (
          ep.user, parent, listed)
      skipped = [x for x in listed if x in tool_words.PLAIN and x < name]
      assert all('/'.join(parts[:depth] + [x]) in looked for x in skipped), (ep.user, listed, cmds)
    checked[kind, cmds[0] in ('ls', 'ls ~', f'ls {limits.HOME}'), plain_steps > 0] += 1
  assert {(kind, vague) for kind, vague, plain in checked if plain} == {
      ('beside', True), ('beside', False)}, checked  # plain folders, from either hint
  assert len(checked) == 8 and min(checked.values()) >= 10, checked


@pytest.fixture(params=[pytest.param('builtin', marks=pytest.mark.slow), 'bpe'])
def any_tok(request, tmp_path):
  """The byte-level builtin tokenizer and a BPE one (whose greedy observation tokens are not
  always its `encode`'s). The builtin case is slow-only: a compile of its own (~25 s) for the
  simpler of the two codecs."""
  if request.param == 'builtin':
    return tokenizer_lib.builtin()
  from test_tokenizer import tiny_tokenizer_json
  return tokenizer_lib.from_tokenizer_json(tiny_tokenizer_json(tmp_path))


def test_jax_machine_gives_the_corpus_observations(any_tok):
  """Four episodes of each multi-step kind, stepped together on the JAX machine as the rollout
  steps them (envs.transcript pads a segment to 1024 tokens): every observation is the corpus's,
  the same text in the same tokens that the corpus trains on (tool_corpus.encode), and the files
  each episode ends with are the reference's."""
  tok = any_tok
  picked = collections.defaultdict(list)
  for kind, ep in tool_corpus.labelled_episodes(300, 7):
    if kind in MULTI and len(picked[kind]) < 4:
      picked[kind].append(ep)
  eps = [ep for kind in MULTI for ep in picked[kind]]
  assert len(eps) == 4 * len(MULTI)
  fed = [[] for _ in eps]  # each episode's observation tokens from the machine
  params = core.build([core.Instance(ep.user, ep.system, ep.files, ep.dirs) for ep in eps], {},
                      tok)
  state, _, _ = core.reset(params, np.arange(len(eps)))
  for k in range(max(len(ep.segments) for ep in eps)):
    actions, lens = np.zeros((len(eps), 1024), np.int32), np.zeros(len(eps), np.int32)
    for i, ep in enumerate(eps):
      if k < len(ep.segments):  # an episode that ended gets empty actions, which do nothing
        ids = tok.encode(ep.segments[k])
        actions[i, :len(ids)], lens[i] = ids, len(ids)
    state, tokens, counts, _ = core.advance(params.codec, state, actions, lens)
    tokens, counts = np.asarray(tokens), np.asarray(counts)
    for i, ep in enumerate(eps):
      want = ep.observations[k] if k < len(ep.segments) else ''
      assert tok.decode(tokens[i, :counts[i]].tolist()) == want, (i, k, ep.segments[k])
      if k < len(ep.segments):
        fed[i].append(tokens[i, :counts[i]].tolist())
  assert np.asarray(state.done).all()
  host = jax.device_get(state.fs)
  for i, ep in enumerate(eps):
    files = core.files_of(jax.tree.map(lambda x, i=i: x[i], host))
    assert files == {f'{limits.HOME}/{p}': t for p, t in final_files(ep).items()}
    # The episode as the rollout's context holds it is token for token what the start trains on.
    ids = tokenizer_lib.encode_chat(tok, [{'role': 'system', 'content': ep.system},
                                          {'role': 'user', 'content': ep.user}], True)[0]
    for segment, obs_ids in zip(ep.segments, fed[i]):
      ids += tok.encode(segment) + obs_ids
    assert ids + [tok.im_end_id] == tool_corpus.encode(tok, ep)[0], i
