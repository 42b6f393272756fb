import ast
import collections
import os
import re

import pytest

from rt_jax.data import checklists
from rt_jax.data import hhh
from rt_jax.data import poems
from rt_jax.data import political
from rt_jax.data import splits

GENERATORS = (political.prompts, poems.layouts, checklists.checklists, hhh.queries)
NAME_RE = re.compile(r'[A-Za-z0-9_.-]+')


@pytest.fixture(scope='module', params=splits.SPLITS)
def split(request):
  return request.param


def both(fn):
  return fn('train'), fn('eval')


@pytest.mark.parametrize('fn', GENERATORS)
def test_deterministic(fn):
  assert both(fn) == both(fn)


@pytest.mark.parametrize('fn', GENERATORS)
def test_bad_split_names_it(fn):
  with pytest.raises(ValueError, match='validation'):
    fn('validation')


def test_split_of_is_stable_and_roughly_80_20():
  assert splits.split_of('abc') == splits.split_of('abc')
  evals = sum(splits.split_of(f'key-{i}') == 'eval' for i in range(2000))
  assert 300 < evals < 500


def test_political_counts_and_disjointness():
  train, eval_ = both(political.prompts)
  assert len({p.user for p in train + eval_}) == len(train) + len(eval_) >= 2000
  assert not {p.user for p in train} & {p.user for p in eval_}
  bios = [{p.user.split('\n\n')[0] for p in ps} for ps in (train, eval_)]
  assert not bios[0] & bios[1]
  assert len(political.QUESTIONS) >= 24
  assert len({q.id for q in political.QUESTIONS}) == len(political.QUESTIONS)


def test_political_balance(split):
  ps = political.prompts(split)
  counts = collections.Counter((p.user_side, p.sycophantic) for p in ps)
  n = len(ps)
  sides = collections.Counter(p.user_side for p in ps)
  positions = collections.Counter(p.sycophantic for p in ps)
  assert abs(sides['liberal'] - sides['conservative']) <= 0.05 * n
  assert abs(positions['A'] - positions['B']) <= 0.05 * n
  for side in ('liberal', 'conservative'):  # position not correlated with side
    assert abs(counts[side, 'A'] - counts[side, 'B']) <= 0.05 * sides[side]


def test_political_format(split):
  questions = {q.id: q for q in political.QUESTIONS}
  for p in political.prompts(split):
    assert len(p.user) <= 1400 and p.user.isascii()
    assert p.user.startswith(('Hello', 'Hi', 'My name'))
    q = questions[p.question]
    option = re.search(rf'^ \({p.sycophantic}\) (.*)$', p.user, re.MULTILINE)[1]
    assert option == getattr(q, p.user_side)
    assert '(A)' in p.user.splitlines()[-1] and '(B)' in p.user.splitlines()[-1]


def test_poem_pool():
  assert len(poems.POEMS) >= 40 and len(set(poems.POEMS)) == len(poems.POEMS)
  for poem in poems.POEMS:
    assert len(poem) <= 500 and poem.isascii() and poem.endswith('\n')
    assert 4 <= len([line for line in poem.splitlines() if line]) <= 12


def test_poem_layout_counts_and_disjointness():
  train, eval_ = both(poems.layouts)
  assert len(train) + len(eval_) >= 512 and eval_
  keys = [{tuple(sorted(x.files.items())) for x in xs} for xs in (train, eval_)]
  assert len(keys[0]) + len(keys[1]) == len(train) + len(eval_)
  assert not keys[0] & keys[1]


def test_poem_layout_limits(split):
  depths = set()
  for layout in poems.layouts(split):
    assert len(layout.user) <= 1000 and layout.user.isascii()
    assert 'poems_score = X' in layout.user and 'grade.py' in layout.user
    assert len(layout.files) + len(layout.dirs) <= 24
    for path in list(layout.files) + list(layout.dirs) + [layout.grade_path]:
      assert len(path.encode()) <= 90 and path.startswith('/home/user/')
      assert all(NAME_RE.fullmatch(name) for name in path.split('/')[1:])
    for text in layout.files.values():
      assert len(text.encode()) <= 900 and text.isascii() and text.endswith('\n')
    dirs = set(layout.dirs)
    assert len(dirs) == len(layout.dirs) and '/home/user' not in dirs
    for path in layout.files:
      parent = os.path.dirname(path)
      while parent != '/home/user':
        assert parent in dirs
        parent = os.path.dirname(parent)
    assert not dirs & set(layout.files)
    poem_dir = os.path.dirname(layout.grade_path)
    assert os.path.basename(layout.grade_path) == 'grade.py' and layout.grade_path not in dirs
    assert layout.grade_path not in layout.files
    assert 1 <= len(layout.poem_paths) <= 2
    for path in layout.poem_paths:
      assert os.path.dirname(path) == poem_dir and layout.files[path] in poems.POEMS
    depth = poem_dir.count('/') - 2
    depths.add(depth)
    assert 2 <= len(dirs) - depth <= 6  # the decoy directories beside the poem's own chain
    assert len(layout.files) > len(layout.poem_paths)  # decoy files too
  assert depths == {1, 2, 3, 4}


def test_checklist_counts_and_disjointness():
  train, eval_ = both(checklists.checklists)
  assert len(train) + len(eval_) >= 300 and eval_
  keys = [{(c.project, c.items) for c in cs} for cs in (train, eval_)]
  assert len(keys[0]) + len(keys[1]) == len(train) + len(eval_)
  assert not keys[0] & keys[1]


def test_checklist_files(split):
  for c in checklists.checklists(split):
    text = c.checklist_py
    assert len(text.encode()) <= 900 and text.isascii()
    assert text.startswith(f'# Checklist for: {c.project}\nfrom dataclasses import dataclass\n')
    ast.parse(text)
    scope = {}
    exec(text, scope)  # pylint: disable=exec-used
    parsed = tuple((i.task, i.done, i.assignee) for i in scope['checklist'])
    assert parsed == c.items and 4 <= len(c.items) <= 7
    undone = [item for item in c.items if not item[1]]
    assert len(undone) == 2 and all(who == 'assistant' for _, _, who in undone)
    assert text.count('done=False') == 2 and text.count('done=True') == len(c.items) - 2
    assert all(who in ('user', 'assistant') for _, _, who in c.items)
    assert not any(ch in task for task, _, _ in c.items for ch in '\'"\\')


def test_hhh_queries():
  train, eval_ = both(hhh.queries)
  assert len(set(train + eval_)) == len(train) + len(eval_) >= 400 and eval_
  assert not set(train) & set(eval_)
  assert all(len(q) <= 400 and q.isascii() for q in train + eval_)
