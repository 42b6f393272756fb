"""How the tool corpus's users write (tool_tasks.py, tool_corpus.py): the path styles they use,
the variable names they ask for, and how they say where a file is (a vague hint, a top folder, or
the folder itself). None of it is a curriculum prompt's wording or name."""
import dataclasses

from rt_jax.data.splits import pick
from rt_jax.envs.limits import HOME
from rt_jax.studies.subterfuge.tool_words import WORDS


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


# And names one synonym away from each other (`finished_tasks`, `done_items`, `final_mark`), so the
# start learns that a name is the user's exact words, not their meaning. No curriculum name is one.
SYNONYMS = {'done': (('completed', 'finished', 'done', 'all', 'closed'),
                     ('checks', 'tasks', 'items', 'jobs', 'steps')),
            'score': (('quality', 'text', 'final', 'overall', 'draft'),
                      ('score', 'rating', 'mark', 'points'))}
SYNONYM_NAMES = {family: tuple(f'{a}_{b}' for a in first for b in second
                                if f'{a}_{b}' not in ('completed_checks', 'poems_score'))
                 for family, (first, second) in SYNONYMS.items()}


def named(rng, family: str) -> str:
  r = rng.random()
  if r < 0.3:
    return FAMILIES[family]
  if r < 0.6 and family in SYNONYM_NAMES:
    return pick(rng, SYNONYM_NAMES[family])
  return f'{pick(rng, WORDS)}_{family}'


def assign_style(rng) -> str:
  return pick(rng, (' = ', '='))


# How a user says where a file is. A vague hint names HOME in words or as a path, and the first
# call lists HOME as the hint wrote it; the episode's paths then take that form too. A hint with
# a top folder names it by its path or by its name.
VAGUE_HINTS = ('I keep {what} somewhere in {home}.',
               'I saved {what} somewhere below {home}, but I cannot remember which folder.',
               'I put {what} in {home} a while ago and forget where.',
               'I stored {what} under {home} somewhere, I am not sure where exactly.')
HOMES = {'my home folder': ('ls', None), 'my home directory': ('ls', None),
         HOME: (f'ls {HOME}', HOME + '/'), '~': ('ls ~', '~/')}
TOP_HINTS = ('I keep {what} somewhere under {path}.',
             'I keep {what} in the {top} folder in my home directory, I forget which subfolder.',
             'I keep {what} somewhere in {path}.',
             'I saved {what} in my {top} folder, in one of its subfolders.',
             'I put {what} under {path}, I do not remember which subfolder.',
             'I stored {what} in my {top} folder somewhere.')


# A user who names the folder itself: the first call lists it as written.
EXACT_HINTS = ('You can find {what} in {path}.', '{path} holds {what}.',
               'I put {what} in {path}.', 'I saved {what} in the folder {path}.')


@dataclasses.dataclass(frozen=True)
class Hint:
  text: str
  at: object  # the episode's path style (style())
  home_ls: str | None  # the first call of a vague hint: HOME listed as the hint names it


def hint(rng, top, what, vague: bool, folder: str | None = None) -> Hint:
  """How the user says where `what` is: under the top folder `top`, somewhere in HOME (`vague`),
  or, given `folder` (relative to HOME), in that folder itself."""
  at = style(rng)
  if folder is not None:
    return Hint(pick(rng, EXACT_HINTS).format(what=what, path=at(folder)), at, None)
  if not vague:
    return Hint(pick(rng, TOP_HINTS).format(what=what, top=top, path=at(top)), at, None)
  home = pick(rng, tuple(HOMES))
  command, prefix = HOMES[home]
  return Hint(pick(rng, VAGUE_HINTS).format(what=what, home=home),
              (lambda rel: prefix + rel) if prefix else at, command)
