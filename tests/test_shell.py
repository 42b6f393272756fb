"""The JAX machine against the Python reference on random command lines and random episodes:
the same observation text, the same files and cwd, and the same grading flags."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import shell_fuzz

from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.envs import (ENVIRONMENTS, core, make, reference, rows, shell, shell_grep,
                         shell_paths, shell_syntax)
from rt_jax.envs.limits import HOME, MAX_COMMAND, MAX_FILE, MAX_WORDS

TOK = tokenizer_lib.builtin()
CODEC = core.make_codec(TOK)
WIDTH = 2048  # action tokens: the longest fuzz segment fits; one shape, one compile


def _actions(segments):
  ids = [TOK.encode(s)[:WIDTH] for s in segments]
  actions = np.zeros((len(ids), WIDTH), np.int32)
  for i, x in enumerate(ids):
    actions[i, :len(x)] = x
  return actions, np.array([len(x) for x in ids], np.int32), [TOK.decode(x) for x in ids]


def _observations(tokens, counts):
  tokens, counts = np.asarray(tokens), np.asarray(counts)
  return [TOK.decode(tokens[i, :counts[i]].tolist()) for i in range(len(counts))]


def shell_fuzz_mismatches(sequences: int, steps: int, batch: int, seed: int) -> list[str]:
  rng = np.random.default_rng(seed)
  fs0 = core.filesystem(shell_fuzz.FILES, shell_fuzz.DIRS)
  bad = []
  for _ in range(sequences // batch):
    state = core.start(np.zeros(batch, np.int32), jax.tree.map(lambda x: np.stack([x] * batch),
                                                               fs0))
    episodes = [reference.Episode(shell_fuzz.FILES, shell_fuzz.DIRS) for _ in range(batch)]
    for _ in range(steps):
      lines = [shell_fuzz.command(rng).encode()[:MAX_COMMAND].decode('utf-8', 'ignore')
               for _ in range(batch)]
      actions, lens, texts = _actions([f'<bash>{line}</bash>' for line in lines])
      state, tokens, counts, _ = core.advance(CODEC, state, actions, lens)
      for line, text, ep, got in zip(lines, texts, episodes, _observations(tokens, counts)):
        want = ep.step(text)
        if got != want:
          bad.append(f'{line!r}: got {got!r}, want {want!r}')
    host = jax.device_get(state.fs)
    for i, ep in enumerate(episodes):
      one = jax.tree.map(lambda x, i=i: x[i], host)
      cwd = bytes(one.cwd[:one.cwd_len]).decode()
      if core.files_of(one) != ep.shell.files() or cwd != ep.shell.cwd:
        bad.append(f'filesystem of sequence {i} differs')
  return bad


def episode_fuzz_mismatches(name: str, episodes: int, steps: int, batch: int, seed: int):
  rng = np.random.default_rng(seed)
  env, params, items = make(name, TOK, 'eval')
  bad = []
  for _ in range(episodes // batch):
    ids = rng.integers(0, len(items), batch)
    state, _, _ = core.reset(params, ids)
    refs = [reference.Episode(items[i].files, items[i].dirs) for i in ids]
    for t in range(steps):
      segments = [shell_fuzz.segment(rng, items[i]) for i in ids]
      if t == steps - 1:  # every episode ends with an answer, so every grader sees one
        segments = [s.replace('</bash>', '') for s in segments]
      actions, lens, texts = _actions(segments)
      state, tokens, counts, _ = core.advance(params.codec, state, actions, lens)
      for text, ep, got in zip(texts, refs, _observations(tokens, counts)):
        want = ep.step(text)
        if got != want:
          bad.append(f'{name} {text!r}: got {got!r}, want {want!r}')
    flags = jax.device_get(core.grade(env, params, state))
    for i, (ep, k) in enumerate(zip(refs, ids)):
      want = env.reference_grade(ep, items[k])
      got = {f: type(want[f])(np.asarray(flags[f][i]).item()) for f in want}
      if got != want:
        bad.append(f'{name} flags: got {got}, want {want}')
  return bad


def test_random_command_lines_match_reference():
  assert shell_fuzz_mismatches(sequences=512, steps=4, batch=256, seed=0) == []


@pytest.mark.parametrize('name', list(ENVIRONMENTS))
def test_random_episodes_match_reference(name):
  assert episode_fuzz_mismatches(name, episodes=256, steps=4, batch=256, seed=1) == []


@pytest.mark.slow
def test_ten_thousand_sequences_match_reference():
  """The acceptance fuzz: 4,096 command sequences on the fuzz filesystem plus 1,024 episodes in
  each of the six environments, four segments each."""
  bad = shell_fuzz_mismatches(sequences=4096, steps=4, batch=1024, seed=10)
  for k, name in enumerate(ENVIRONMENTS):
    bad += episode_fuzz_mismatches(name, episodes=1024, steps=4, batch=1024, seed=11 + k)
  assert bad == []


def test_nothing_reaches_the_real_filesystem(tmp_path, monkeypatch):
  """Paths name virtual entries only: a real file is invisible, nothing is created on disk, and
  the same lines run from another real directory give the same observations."""
  real = tmp_path / 'real.txt'
  real.write_text('REAL CONTENT\n')
  lines = [f'cat {real}', f'ls {tmp_path}', f'echo x > {tmp_path}/created.txt',
           'echo y > ../../../../tmp/escape.txt', f'grep -r REAL {tmp_path}', 'cat /etc/hostname',
           f'rm {real}', 'ls /', f'cd {tmp_path}', 'ls ../../..', 'cat ~/../../etc/passwd']
  fs0 = core.filesystem(shell_fuzz.FILES, shell_fuzz.DIRS)
  runs = []
  for cwd in (tmp_path, os.path.dirname(os.path.abspath(__file__))):
    monkeypatch.chdir(cwd)
    state = core.start(np.zeros(256, np.int32), jax.tree.map(lambda x: np.stack([x] * 256), fs0))
    actions, lens, _ = _actions([f'<bash>{line}</bash>' for line in lines] * 23
                                + ['<bash>pwd</bash>'] * (256 - 23 * len(lines)))
    _, tokens, counts, _ = core.advance(CODEC, state, actions, lens)
    runs.append(_observations(tokens, counts))
  assert runs[0] == runs[1]
  assert not any('REAL CONTENT' in obs for obs in runs[0])
  assert real.read_text() == 'REAL CONTENT\n'
  assert sorted(os.listdir(tmp_path)) == ['real.txt']
  assert not os.path.exists('/tmp/escape.txt')
  assert runs[0][0] == f'\n<stderr>\ncat: {real}: No such file or directory\n</stderr>\n'
  assert runs[0][7] == '\n<stdout>\nhome\n</stdout>\n' and HOME == '/home/user'


# Files whose greps fall on each side of each packed size (shell_grep.PACKS), with texts that
# meet inside the buffer: a whole MAX_FILE block without a final newline, then a text starting
# with what would complete a match across the two.
def _pack_files(size: int) -> dict:
  return {f'{HOME}/exact{size}/a.txt': 'ab\n' + 'y' * (size // 2 - 4) + '\n',
          f'{HOME}/exact{size}/b.txt': 'y' * (size // 2 - 1) + 'b',
          f'{HOME}/over{size}/a.txt': 'ab\n' + 'y' * (size // 2 - 4) + '\n',
          f'{HOME}/over{size}/b.txt': 'y' * (size // 2 - 1) + 'b',
          f'{HOME}/over{size}/c.txt': 'b'}


PACK_FILES = {f'{HOME}/small/one.txt': 'alpha ab\nbeta\n\nab',
              f'{HOME}/edge/full.txt': 'q' * (MAX_FILE - 2) + 'ab',
              f'{HOME}/edge/next.txt': 'c and more\nab\n'}
for _size in shell_grep.PACKS:
  PACK_FILES.update(_pack_files(_size))
PACK_LINES = ('grep -r abc edge', 'grep -rn bc edge', 'grep -rn ab edge', 'grep -r ab small',
              'grep ab edge/full.txt', 'cat edge/full.txt | grep ab', 'grep -rn ab .',
              'grep -rn "" small', 'grep -r c small') + tuple(
    line.format(s) for s in shell_grep.PACKS
    for line in ('grep -rn ab exact{}', 'grep -rn ab over{}', 'grep -r yb exact{}',
                 'grep -r yb over{}', 'grep -r y exact{}', 'cat exact{0}/a.txt exact{0}/b.txt | '
                 'grep -n yb', 'cat over{0}/a.txt over{0}/b.txt over{0}/c.txt | grep yb'))


def test_grep_is_exact_on_both_sides_of_each_packed_size():
  """Each line alone (its own need picks the program) and all of them in one batch (the full
  program for every row), against the reference. Every program runs: the lines read up to
  exactly each packed size, or one byte more; and a match never spans two files."""
  need = lambda line: sum(len(t) for p, t in PACK_FILES.items()
                          if p.startswith(f'{HOME}/{line.split()[-1]}'.rstrip('.')))
  for size in shell_grep.PACKS:
    assert need(f'grep -r y exact{size}') == size and need(f'grep -r y over{size}') == size + 1
  fs0 = core.filesystem(PACK_FILES)
  batch = 256
  batches = [[line] for line in PACK_LINES] + [list(PACK_LINES)]
  bad = []
  for lines in batches:
    rows_ = lines + ['pwd'] * (batch - len(lines))
    state = core.start(np.zeros(batch, np.int32), jax.tree.map(lambda x: np.stack([x] * batch),
                                                               fs0))
    actions, lens, texts = _actions([f'<bash>{line}</bash>' for line in rows_])
    _, tokens, counts, _ = core.advance(CODEC, state, actions, lens)
    for line, text, got in zip(lines, texts, _observations(tokens, counts)):
      want = reference.Episode(PACK_FILES).step(text)
      if got != want:
        bad.append(f'{line!r} in a batch of {len(lines)}: got {got!r}, want {want!r}')
  assert bad == []
  separate = reference.Episode(PACK_FILES).step('<bash>grep -r abc edge</bash>')
  assert 'abc' not in separate  # the reference keeps files apart, and so must the machine


def _thue_morse(doublings: int) -> str:
  text = 'a'
  for _ in range(doublings):
    text += text.translate(str.maketrans('ab', 'ba'))
  return text


def test_grep_hashes_do_not_collide_on_thue_morse_and_skip_directories():
  """A 128-byte Thue-Morse string and its complement hash alike under any polynomial hash mod
  2**32 with odd bases: grep must still not report the one for the other (its prime-modulus
  hashes). And `grep PAT DIR` without -r reads no file, so nothing is marked read."""
  text = _thue_morse(7)
  other = text.translate(str.maketrans('ab', 'ba'))
  files = {f'{HOME}/tm.txt': text + '\n', f'{HOME}/s/a.txt': 'x\n'}
  lines = [f'grep {other} tm.txt', f'cat tm.txt | grep {other}', f'grep {text} tm.txt', 'grep x s']
  batch = 256
  state = core.start(np.zeros(batch, np.int32),
                     jax.tree.map(lambda x: np.stack([x] * batch), core.filesystem(files)))
  actions, lens, texts = _actions([f'<bash>{line}</bash>' for line in lines]
                                  + ['<bash>pwd</bash>'] * (batch - len(lines)))
  state, tokens, counts, _ = core.advance(CODEC, state, actions, lens)
  host = jax.device_get(state.fs)
  for i, (text_i, got) in enumerate(zip(texts, _observations(tokens, counts))):
    ep = reference.Episode(files)
    assert got == ep.step(text_i), lines[i]
    one = jax.tree.map(lambda x, i=i: x[i], host)
    read = {bytes(one.path[k, :one.path_len[k]]).decode() for k in range(len(one.read))
            if one.read[k]}
    assert read == {p for p, e in ep.shell.originals.items() if e.read}, lines[i]
  assert text in _observations(tokens, counts)[2]  # the true match is still found


@pytest.mark.parametrize('chunk', [1, 3, 8, 64])
def test_chunked_equals_vmap_on_the_chosen_rows(chunk):
  """rows.chunked against plain vmap: the chosen rows get fn's result, the others keep `into`'s
  rows, for none, one, some (not a multiple of the chunk), and all rows chosen; a chunk-level
  function sees exactly its chunk's chosen rows as valid."""
  fn = lambda x, y: {'sum': x.sum() + y, 'row': x * y}
  x_BxK = jnp.arange(24 * 5, dtype=jnp.int32).reshape(24, 5)
  y_B = jnp.arange(24, dtype=jnp.int32) * 3 + 1
  want = jax.vmap(fn)(x_BxK, y_B)
  into = jax.tree.map(lambda a: jnp.full_like(a, -7), want)
  for chosen in (np.zeros(24, bool), np.eye(24, dtype=bool)[5], np.arange(24) % 3 == 1,
                 np.ones(24, bool)):
    got = rows.chunked(fn, jnp.asarray(chosen), chunk, x_BxK, y_B, into=into)
    for key in want:
      expect = np.where(chosen.reshape((-1,) + (1,) * (want[key].ndim - 1)), want[key], -7)
      np.testing.assert_array_equal(got[key], expect, err_msg=f'{key} chosen={chosen}')
    zeros = rows.chunked(fn, jnp.asarray(chosen), chunk, x_BxK, y_B)
    assert int(jnp.sum(jnp.where(jnp.asarray(chosen), 0, zeros['sum']))) == 0
    seen = rows.chunked(lambda valid, x, y: {'n': jnp.broadcast_to(valid.sum(), valid.shape)},
                        jnp.asarray(chosen), chunk, x_BxK, y_B, on_chunk=True)['n']
    full, rest = divmod(int(chosen.sum()), min(chunk, 24))
    assert sorted(np.asarray(seen)[chosen].tolist()) == sorted(
        [min(chunk, 24)] * (full * min(chunk, 24)) + [rest] * rest)


def _boundary_lines(rng) -> list[str]:
  """Command lines around the lexer's short width (shell_syntax.SHORT_COMMAND) and up to
  MAX_COMMAND: a quote, an escape or a word straddling the limit, and 1..MAX_WORDS + 1 words."""
  short = shell_syntax.SHORT_COMMAND
  lines = []
  for size in (short - 1, short, short + 1, MAX_COMMAND - 1, MAX_COMMAND):
    for body in ('echo {}', "echo '{}'", 'echo "a\\"{}"', 'grep -rn {} docs', 'cat {} | wc -l',
                 'echo x{} > new.txt', "echo '{}", 'ls {}\\'):
      fill = 'y' * max(0, size - len(body.format('')))
      lines.append(body.format(fill)[:size])
  for count in range(1, MAX_WORDS + 2):
    words = [str(rng.choice(shell_fuzz.PATHS)) for _ in range(count - 1)]
    lines.append(' '.join([str(rng.choice(['cat', 'ls', 'wc', 'rm', 'echo']))] + words))
    lines.append(' '.join(['echo'] + words[:count - 3] + ['>', 'out.txt']) if count > 2
                 else 'pwd')
  return lines


def test_lines_across_the_size_buckets_match_reference():
  """Short and long lines, few and many words: each kind alone in a batch (the short program, or
  the long one for every chosen row) and all mixed, against the reference."""
  rng = np.random.default_rng(3)
  lines = _boundary_lines(rng)
  short = [line for line in lines if len(line.encode()) <= shell_syntax.SHORT_COMMAND]
  long = [line for line in lines if len(line.encode()) > shell_syntax.SHORT_COMMAND]
  assert short and long and max(len(line.encode()) for line in lines) == MAX_COMMAND
  fs0 = core.filesystem(shell_fuzz.FILES, shell_fuzz.DIRS)
  batch = 256
  bad = []
  for group in (short, long, lines):
    rows_ = (group * (batch // len(group) + 1))[:batch]
    state = core.start(np.zeros(batch, np.int32), jax.tree.map(lambda x: np.stack([x] * batch),
                                                               fs0))
    actions, lens, texts = _actions([f'<bash>{line}</bash>' for line in rows_])
    state, tokens, counts, _ = core.advance(CODEC, state, actions, lens)
    host = jax.device_get(state.fs)
    for i, (line, text, got) in enumerate(zip(rows_, texts, _observations(tokens, counts))):
      ep = reference.Episode(shell_fuzz.FILES, shell_fuzz.DIRS)
      want = ep.step(text)
      one = jax.tree.map(lambda x, i=i: x[i], host)
      if got != want or core.files_of(one) != ep.shell.files():
        bad.append(f'{line!r} in a group of {len(group)}: got {got!r}, want {want!r}')
  assert bad == []


def test_only_the_words_a_command_opens_are_resolved():
  """shell._resolve_words resolves the tokens shell._path_words picks (every argument of a
  command but echo's and pwd's, and a redirect target) exactly as resolving every slot does, and
  gives every other slot the empty word's result (the cwd, EMPTY). Names and operators are never
  picked; the fuzz against the reference shows no command reads them."""
  rng = np.random.default_rng(4)
  lines = [shell_fuzz.command(rng) for _ in range(96)] + _boundary_lines(rng) + [
      'echo a b > x', 'ls docs | grep a', 'pwd x', 'cat a b >> c', 'echo x | cat y']
  cmd = np.zeros((len(lines), MAX_COMMAND), np.uint8)
  n = np.zeros(len(lines), np.int32)
  for i, line in enumerate(lines):
    data = line.encode()[:MAX_COMMAND]
    cmd[i, :len(data)], n[i] = np.frombuffer(data, np.uint8), len(data)
  cwds = [core.filesystem(shell_fuzz.FILES, shell_fuzz.DIRS, cwd=cwd)
          for cwd in ('/', HOME, f'{HOME}/docs', f'{HOME}/docs/deep')]
  fs = jax.tree.map(lambda *x: np.stack([x[i % len(x)] for i in range(len(lines))]), *cwds)
  lexed, _ = jax.jit(shell_syntax.lex_lines)(cmd, n)
  parsed, _ = jax.jit(jax.vmap(shell_syntax.parse))(lexed)
  need = np.asarray(jax.jit(jax.vmap(shell._path_words))(lexed, parsed))
  got = jax.jit(shell._resolve_words)(fs, lexed, need)
  every = jax.jit(jax.vmap(lambda lx, cwd, cwd_len: jax.vmap(
      shell_paths.resolve, (0, 0, None, None))(shell_syntax.words(lx, shell_paths.MAX_PATH),
                                               lx.length, cwd, cwd_len)))(lexed, fs.cwd,
                                                                          fs.cwd_len)
  empty = jax.jit(jax.vmap(lambda cwd, cwd_len: shell_paths.resolve(
      np.zeros(shell_paths.MAX_PATH, np.uint8), 0, cwd, cwd_len)))(fs.cwd, fs.cwd_len)
  for g, w, e in zip(got, every, empty):
    g, w, e = np.asarray(g), np.asarray(w), np.broadcast_to(np.asarray(e)[:, None], g.shape)
    np.testing.assert_array_equal(g[need], w[need])
    np.testing.assert_array_equal(g[~need], e[~need])
  picked = {line: [t for t, k in zip(line.split(), need[i]) if k] for i, line in
            enumerate(lines[-5:], len(lines) - 5)}
  assert picked == {'echo a b > x': ['x'], 'ls docs | grep a': ['docs', 'a'], 'pwd x': [],
                    'cat a b >> c': ['a', 'b', 'c'], 'echo x | cat y': ['y']}, picked
  assert 0 < need.sum() < (np.arange(16) < np.asarray(lexed.count)[:, None]).sum()


def _step_lines(files, lines, filler='pwd', batch=256):
  """One machine step of `lines` (padded to `batch` rows with `filler`) on `files` -> the line
  texts as the machine saw them, and the observations; each checked against the reference."""
  state = core.start(np.zeros(batch, np.int32),
                     jax.tree.map(lambda x: np.stack([x] * batch), core.filesystem(files)))
  actions, lens, texts = _actions([f'<bash>{line}</bash>' for line in lines]
                                  + [f'<bash>{filler}</bash>'] * (batch - len(lines)))
  _, tokens, counts, _ = core.advance(CODEC, state, actions, lens)
  got = _observations(tokens, counts)
  for i, line in enumerate(lines):
    assert got[i] == reference.Episode(files).step(texts[i]), line
  return got


def test_listing_order_matches_reference_on_awkward_names():
  """ls and grep -r list in byte order: names sorting before '.', prefixes of each other, upper
  case, multi-byte UTF-8, and a path of more than one 32-bit word of equal prefix."""
  names = ['-x', '+a', ' sp', '.a', 'a.', 'A', 'é', 'ab', 'abc', 'ab.c', 'abcd' * 5 + 'z',
           'abcd' * 5 + 'y', '日本', 'Z9']
  files = {f'{HOME}/w/{name}': f'{name} hit\n' for name in names}
  lines = ['ls w', 'ls -a w', 'grep -r hit w', 'grep -rn hit .', 'ls -a /', 'ls w/ab']
  got = _step_lines(files, lines, filler='ls -a w')
  assert got[0].index('\n-x\n') < got[0].index('\nA\n') < got[0].index('\nab\n')  # not vacuous


def test_line_counts_around_the_cap_match_reference():
  """head/tail -n values with leading zeros, and of 9, 10 and 11 digits (10**9 and more cap):
  a wrong cap or digit weight shows another number of lines."""
  files = {f'{HOME}/many.txt': ''.join(f'line {i}\n' for i in range(40))}
  values = ['3', '00000000003', '0000000000000002', '999999999', '1000000003', '2000000001',
            '12345678901', '0', '-1', '1x', '']
  lines = [f'{cmd} -n {v} many.txt' for cmd in ('head', 'tail') for v in values]
  lines += ['head -n5 many.txt', 'tail -n 0000000007 many.txt']
  # Runs of bare -n: each odd one takes the next word as its value.
  lines += [f'{cmd} {runs} many.txt' for cmd in ('head', 'tail') for runs in (
      '-n -n', '-n -n 3', '-n -n -n 3', '-n -n -n -n', '-n 2 -n -n', '-n3 -n -n 4')]
  got = _step_lines(files, lines)
  assert got[values.index('1000000003')].count('\nline') == 40  # every line: the cap


def test_echo_options_match_reference():
  """echo's leading -n/-e/-E words, in every order and mix: the later of -e and -E decides, the
  first word that is not all option letters ends the options, and `-` or `--` print."""
  lines = ["echo -e 'a\\nb'", "echo -E 'a\\nb'", "echo -e -E 'a\\nb'", "echo -E -e 'a\\nb'",
           "echo -eE 'a\\nb'", "echo -Ee 'a\\nb'", "echo -n -e 'x\\ty'", "echo -ne 'x\\ty'",
           "echo -e -x 'a\\nb'", "echo -x -e 'a\\nb'", 'echo -n', 'echo -nn hi', 'echo - hi',
           'echo -- hi', 'echo -e', "echo -n -E -e -E 'a\\nb' -e", 'echo -en -n hi -n',
           "echo hi -e 'a\\nb'", "echo '-e' 'a\\nb'", 'echo -e- hi']
  got = _step_lines({}, lines)
  assert got[0] != got[1] and got[2] == got[1] and got[3] == got[0]  # not vacuous


def test_created_files_list_in_byte_order():
  """Files created by redirects (and one removed, then created again) take their places in the
  kept order: ls -a and grep -r after each step, against the reference, in one episode."""
  files = {f'{HOME}/w/{name}': f'{name} hit\n' for name in ('b', '.b', 'b0', '-b')}
  lines = ['echo hit > w/a', 'ls -a w', 'echo hit > w/+z', 'echo hit > w/.-', 'echo hit > w/..z',
           'grep -rn hit w', 'rm w/b', 'ls -a w', 'echo hit > w/b', 'echo hit > w/b-', 'ls -a w',
           'echo hit > z.txt', 'echo hit > w/ab', 'grep -r hit .', 'ls -a']
  batch = 256
  state = core.start(np.zeros(batch, np.int32),
                     jax.tree.map(lambda x: np.stack([x] * batch), core.filesystem(files)))
  ep = reference.Episode(files)
  for line in lines:
    actions, lens, texts = _actions([f'<bash>{line}</bash>'] * batch)
    state, tokens, counts, _ = core.advance(CODEC, state, actions, lens)
    assert _observations(tokens, counts)[0] == ep.step(texts[0]), line


def test_observation_encoder_buckets_equal_the_whole_buffer(tmp_path):
  """core.encode_batch encodes on the shortest prefix that holds every row: batches whose
  longest row falls in each bucket (and on each side of its edge) give the tokens that encoding
  the whole buffer gives, and those decode to the text. A BPE codec (byte-level ones skip it)."""
  from test_tokenizer import tiny_tokenizer_json
  tok = tokenizer_lib.from_tokenizer_json(tiny_tokenizer_json(tmp_path))
  codec = core.make_codec(tok)
  assert not codec.byte_level
  size = core.OBS_TOKENS
  text = ('the  the!! 9 x the\n' * (size // 19 + 1)).encode()[:size]
  edges = [s + d for s in core.ENCODE_SIZES for d in (-1, 0, 1)] + [size, 0, 7]
  whole = jax.jit(jax.vmap(core.encode_bytes, (None, 0, 0)))
  for longest in edges:
    lens = np.array([longest, min(longest, 5), 0, longest // 2], np.int32)
    data = np.stack([np.pad(np.frombuffer(text[:n], np.uint8), (0, size - n)) for n in lens])
    got, want = jax.jit(core.encode_batch)(codec, data, lens), whole(codec, data, lens)
    np.testing.assert_array_equal(got[1], want[1], err_msg=str(longest))
    np.testing.assert_array_equal(got[0], want[0], err_msg=str(longest))
    assert tok.decode(np.asarray(got[0][0, :got[1][0]]).tolist()) == text[:longest].decode()


def test_observation_encoder_is_the_greedy_rule(tmp_path):
  """encode_bytes against core.encode_observation, the same greedy longest match in plain Python
  (what the tool corpus trains on), on random byte strings over the vocabulary's pieces and bytes
  no token covers, of every length up to the buffer's, and on a buffer whose one token is its
  last byte, after a walk of one step per byte. Neither is the tokenizer's BPE `encode`, which
  merges across a byte it drops."""
  from test_tokenizer import tiny_tokenizer_json
  tok = tokenizer_lib.from_tokenizer_json(tiny_tokenizer_json(tmp_path))
  codec = core.make_codec(tok)
  vocab = core._vocabulary(tok)
  pieces = sorted(vocab, key=vocab.get)
  rng = np.random.default_rng(0)
  size = 97
  rows, lens = [], []
  for n in range(size + 1):
    data = b''
    while len(data) < n:
      data += pieces[rng.integers(len(pieces))] if rng.random() < 0.9 else bytes([0xff])
    rows.append(np.frombuffer(data[:n].ljust(size, b'\0'), np.uint8))
    lens.append(n)
  last = next(p for p in pieces if len(p) == 1)  # a token reached only after size - 1 steps
  rows.append(np.frombuffer(b'\xff' * (size - 1) + last, np.uint8))
  lens.append(size)
  tokens, count = jax.jit(jax.vmap(core.encode_bytes, (None, 0, 0)))(
      codec, np.stack(rows), np.array(lens, np.int32))
  for row, n, got, k in zip(rows, lens, np.asarray(tokens), np.asarray(count)):
    want = core.encode_observation(tok, bytes(row[:n]).decode('utf-8', 'surrogateescape'))
    assert got[:k].tolist() == want and not got[k:].any(), n
  assert core.encode_observation(tok, '!\x04!') == tok.encode('!') * 2 != tok.encode('!\x04!')


def test_observation_encoder_finds_every_token_in_either_table(tmp_path):
  """Each vocabulary token of up to MAX_MATCH bytes, alone, encodes to itself (the lowest id of
  its bytes), wherever the cuckoo table put it. The tiny vocabulary fills table 1 only a little,
  so half of table 0's tokens are also moved to their table-1 slot where it is free: the
  encoder must look in both places."""
  from test_tokenizer import tiny_tokenizer_json
  tok = tokenizer_lib.from_tokenizer_json(tiny_tokenizer_json(tmp_path))
  codec = core.make_codec(tok)
  table = np.array(codec.table)
  mask = table.shape[1] - 1
  moved = 0
  for slot in range(0, table.shape[1], 2):
    if table[0, slot, 1]:
      piece = table[0, slot, 2:].astype('<u4').tobytes()[:table[0, slot, 1]]
      other = core._slots(piece)[1] & mask
      if not table[1, other, 1]:
        table[1, other], table[0, slot] = table[0, slot], 0
        moved += 1
  assert moved > 50
  planted = codec.replace(table=table)
  pieces = core._vocabulary(tok)
  data = np.zeros((len(pieces), core.MAX_MATCH), np.uint8)
  for row, piece in enumerate(pieces):
    data[row, :len(piece)] = np.frombuffer(piece, np.uint8)
  lens = np.array([len(p) for p in pieces], np.int32)
  for c in (codec, planted):
    tokens, count = jax.jit(jax.vmap(core.encode_bytes, (None, 0, 0)))(c, data, lens)
    assert np.all(np.asarray(count) == 1)
    np.testing.assert_array_equal(np.asarray(tokens)[:, 0], list(pieces.values()))


def test_observation_encoder_matches_bytes_not_hashes(tmp_path):
  """A slot's bytes decide a match: a token planted in both slots where another text's hashes
  land, with that text's length but other bytes (what a hash collision looks like to the
  lookup), is never matched, and the text encodes as before."""
  from test_tokenizer import tiny_tokenizer_json
  tok = tokenizer_lib.from_tokenizer_json(tiny_tokenizer_json(tmp_path))
  codec = core.make_codec(tok)
  text = b'zq'
  table = np.array(codec.table)
  mask = table.shape[1] - 1
  decoy = tok.encode(' the')[0]
  for t, h in enumerate(core._slots(text)):
    table[t, h & mask] = (decoy, len(text), *np.frombuffer(b'zz'.ljust(core.MAX_MATCH, b'\0'),
                                                           '<u4'))
  data, lens = np.frombuffer(text.ljust(8, b'\0'), np.uint8)[None], np.array([2], np.int32)
  encode = jax.jit(jax.vmap(core.encode_bytes, (None, 0, 0)))
  for c in (codec, codec.replace(table=table)):
    tokens, count = encode(c, data, lens)
    assert np.asarray(tokens)[0, :count[0]].tolist() == core.encode_observation(tok, 'zq')
    assert decoy not in np.asarray(tokens)[0, :count[0]].tolist()


def test_observation_tokens_of_two_tokenizers_with_one_spec(tmp_path):
  """Two tokenizer.json files in folders of one name have equal specs but not equal
  vocabularies: each tokenizer's observation tokens are its own, in either order."""
  from test_tokenizer import MERGES, tiny_tokenizer_json, tiny_tokens
  (tmp_path / 'a' / 'tok').mkdir(parents=True)
  (tmp_path / 'b' / 'tok').mkdir(parents=True)
  a = tokenizer_lib.from_tokenizer_json(tiny_tokenizer_json(tmp_path / 'a' / 'tok'))
  b = tokenizer_lib.from_tokenizer_json(tiny_tokenizer_json(
      tmp_path / 'b' / 'tok', model_changes={
          'vocab': {t: i for i, t in enumerate(tiny_tokens()[:-1])},
          'merges': [list(m) for m in MERGES[:-1]]}))
  assert a.spec == b.spec and a.vocab_size != b.vocab_size
  text = a.encoding.decode_single_token_bytes(a.vocab_size - 1).decode() * 2
  want_a, want_b = core.encode_observation(a, text), core.encode_observation(b, text)
  assert want_a != want_b and max(want_b) < b.vocab_size
  core._VOCABULARIES.clear()
  assert (core.encode_observation(b, text), core.encode_observation(a, text)) == (want_b, want_a)


def test_rows_that_run_nothing_keep_their_filesystem_and_the_state_is_donated():
  """A step that writes a file on one row leaves the rows that answer, or call without an opening
  tag, bit for bit as they were (the machine merges no filesystem), and `advance` consumes its
  state: reusing it is an error, not a silent read of overwritten buffers."""
  files = {f'{HOME}/a.txt': 'alpha\n'}
  fs0 = core.filesystem(files)
  batch = 256  # the other tests' batch: one compiled program
  state = core.start(np.zeros(batch, np.int32), jax.tree.map(lambda x: np.stack([x] * batch),
                                                             fs0))
  segments = [f"<bash>echo hi > {HOME}/b.txt</bash>", 'echo x</bash>'] + ['done, no call'] * (
      batch - 2)
  actions, lens, texts = _actions(segments)
  new, tokens, counts, _ = core.advance(CODEC, state, actions, lens)
  host = jax.device_get(new.fs)
  row = lambda i: jax.tree.map(lambda x: x[i], host)
  assert core.files_of(row(0)) == {**files, f'{HOME}/b.txt': 'hi\n'}  # the planted change
  for i in range(1, batch):
    jax.tree.map(np.testing.assert_array_equal, row(i), fs0)
  got = _observations(tokens, counts)
  for i in (0, 1, 2):
    assert got[i] == reference.Episode(files).step(texts[i])
  with pytest.raises(ValueError, match='deleted or donated'):
    core.advance(CODEC, state, actions, lens)
