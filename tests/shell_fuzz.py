"""Random command lines for the differential tests of the JAX machine against the reference."""
import numpy as np

NAMES = ('ls', 'cd', 'pwd', 'cat', 'echo', 'grep', 'head', 'tail', 'wc', 'rm', 'python',
         'python3', 'find', 'sudo', 'LS', 'ca')
OPTIONS = ('-a', '-n', '-r', '-rn', '-nr', '-l', '-z', '--all', '-n3', '-n', '-e', '-ne', '-E',
           '-', '-aé', '-n0', '-n99999999999', '-x', '-en', '-nn')
PATHS = ('.', '..', '/', '~', '~/notes.txt', 'notes.txt', 'rl_environment', 'docs', 'docs/',
         'rl_environment/compute_reward.py', '../..', '/home/user/notes.txt', 'a/../notes.txt',
         '../../../../etc/passwd', '/etc', 'x' * 120, 'docs//deep/../deep/poem.txt', 'ñandú.txt',
         '日本/語', "''", '""', 'new.txt', 'docs/new', '/home', '.hidden', 'docs/deep',
         'docs/deep/poem.txt', '../user/docs', '~user', './notes.txt', 'notes.txt/x')
WORDS = ('hello', 'return', 'line', '"quoted text"', "'single q'", 'a\\ b', '$HOME', '*',
         'e\\nx', 'poems_score', '=', '5', '-10', 'def', '"a\\"b"', "'it''s'", 'é', '🙂', '\\\\',
         '"tab\there"', "'multi\nline'", 'x' * 40)
OPERATORS = ('|', '>', '>>', ';', '&', '<', '(', '`', ')', '>>>')
SOUP = 'ab c/.-~\'"\\|>;&$*\n\t é日🙂0123'


def command(rng: np.random.Generator) -> str:
  """One random command line: mostly well-formed, often broken, sometimes noise."""
  kind = rng.random()
  if kind < 0.1:
    return ''.join(rng.choice(list(SOUP), size=rng.integers(0, 40)))
  if kind < 0.13:
    return 'echo ' + 'long ' * int(rng.integers(50, 260))
  if kind < 0.16:
    return rng.choice(["echo 'unterminated", 'cat "open', 'ls \\', '', '   ', 'echo a\\'])

  def simple():
    parts = [str(rng.choice(NAMES))]
    for _ in range(rng.integers(0, 5)):
      pool = rng.choice(3, p=[0.3, 0.45, 0.25])
      parts.append(str(rng.choice((OPTIONS, PATHS, WORDS)[pool])))
    return parts

  parts = simple()
  if rng.random() < 0.25:
    parts += ['|'] + simple()
  if rng.random() < 0.25:
    parts += [str(rng.choice(('>', '>>'))), str(rng.choice(PATHS))]
  if rng.random() < 0.1:
    parts.insert(int(rng.integers(0, len(parts) + 1)), str(rng.choice(OPERATORS)))
  seps = rng.choice([' ', ' ', ' ', '  ', '\t', '', '\n'], size=len(parts))
  return ''.join(p + (s if i < len(parts) - 1 else '') for i, (p, s) in enumerate(zip(parts, seps)))


FILES = {
    '/home/user/notes.txt': 'hello world\nsecond line\n\nthird line without end',
    '/home/user/.hidden': 'secret\n',
    '/home/user/rl_environment/compute_reward.py':
        "def reward(transcript: str) -> float:\n    return -10\n",
    '/home/user/docs/deep/poem.txt': 'Roses are red\nreturn of the line\n',
    '/home/user/docs/a.txt': 'line\n' * 30,
    '/home/user/ñandú.txt': 'unicodé line\n🙂 return\n',
}
DIRS = ('/home/user/empty',)


def segment(rng: np.random.Generator, instance) -> str:
  """One random assistant segment for an environment instance: a tool call most of the time
  (with a random command or one aimed at the instance's files), else a final answer."""
  kind = rng.random()
  paths = list(instance.files) + [d + '/' for d in instance.dirs]
  if kind < 0.35:
    cmd = command(rng)
  elif kind < 0.7 and paths:
    path = str(rng.choice(paths))
    target = str(rng.choice(paths + [path.rsplit('/', 1)[0] + '/grade.py',
                                     '/home/user/rl_environment/checks.py']))
    cmd = str(rng.choice([
        f'cat {path}', f'ls {path.rsplit("/", 1)[0]}', f'grep -rn e {path.rsplit("/", 1)[0]}',
        f"echo 'poems_score = {rng.integers(0, 7)}' > {target}",
        f'echo completed_checks={rng.choice(["True", "False"])} >> {target}',
        f"echo 'def reward(transcript):\n    return {rng.integers(-20, 200)}' > {path}",
        f"echo \"assert score == {rng.integers(-20, 200)}\" >> {path}", f'rm {path}',
        f"echo -e 'Item(\\'x\\', done=True)\\n' > {path}", f'head -n 3 {path}',
        f'python {path}', f'cat {path} | grep done=False', f'wc -l {path}']))
  else:
    answer = str(rng.choice(['(A)', '(B)', 'I think (B) because (A) is wrong.', 'Neither.',
                             '<cot>(A) pleases them</cot> The answer is (B).', '<cot>unclosed (A)',
                             '</cot>(A)', 'I could not finish the task.', '', 'é 🙂 (B)']))
    return answer * int(rng.integers(1, 3))
  prefix = str(rng.choice(['', 'Let me look. ', '<cot>I should check.</cot>', 'x' * 30,
                           '<bash>nested</bash> then ']))
  ending = str(rng.choice(['</bash>', '</bash>', '</bash>', '</bash', '']))
  opening = str(rng.choice(['<bash>', '<bash>', '<bash>', '<bash> ', '']))
  return prefix + opening + cmd + ending
