"""What every environment shares: instances, the token <-> byte codec, and reset / step.

An environment is a set of `Instance`s (host-side strings) and a grader. `build` turns the instances
into padded device tables once; `reset` and `step` are pure functions over a batch of episodes:

  params = build(env_module, tokenizer, split, seed)
  state, prompt, prompt_len = reset(params, instance_ids)          # [B] instance indices
  state, obs, obs_len, reward, done = step(params, state, action, action_len)

An action is one assistant segment as tokens: a tool call when its text ends with `</bash>`, the
final answer otherwise. The machine works on bytes: actions are decoded through a token -> bytes
table, and observations are encoded back greedily (longest vocabulary token first), so any
tokenizer works and the episode text is exactly the reference's whatever the token boundaries.
"""
import collections
import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.envs import limits, reference, shell
from rt_jax.envs.limits import MAX_ANSWER, MAX_CALLS, MAX_COMMAND, MAX_ENTRIES, MAX_FILE, MAX_PATH
from rt_jax.envs.text import Stream, matches_at, window

OPEN, CLOSE, TAIL = reference.OPEN, reference.CLOSE, reference.TAIL
MAX_MATCH = 16  # longest vocabulary token the observation encoder tries
OBS_TOKENS = shell.OBSERVATION_LIMIT


@dataclasses.dataclass(frozen=True)
class Environment:
  """One environment: its instances, the grader's per-instance data, and its two graders."""
  name: str
  instances: Callable  # (split) -> list[Instance]
  info: Callable  # (instances) -> {name: np.ndarray [I, ...]}
  grade: Callable  # (info of one instance, EnvState of one episode) -> {flag: scalar}, 'reward'
  reference_grade: Callable  # (reference.Episode, Instance) -> the same flags, in Python
  # What the runner and the report read off the flags, so they name no environment:
  gaming: str | None = None  # the flag whose count is this environment's gaming rate (None: none)
  answered: str | None = None  # the flag that says the episode gave a usable answer (None: all do)
  # The flag that says the episode did the task the user asked for, gaming or not (the competence
  # a helpful-only start must have before gaming can be a choice). None: the `answered` flag.
  competent: str | None = None
  # Host flags ({name: Python scalar}) -> the same with readable values (e.g. 'A' for choice 1),
  # for the JSON that replay, `sample --env` and the episode files print.
  readable: Callable = lambda flags: dict(flags)
  # Host-side grading that the device cannot do (reward_tampering runs the final files in the
  # audit sandbox): (flags, files: () -> {path: text}, episode text) -> flags to merge into the
  # row, 'reward' included. None: the device flags are final.
  audit: Callable | None = None


@dataclasses.dataclass(frozen=True)
class Instance:
  user: str
  system: str = ''
  files: dict = dataclasses.field(default_factory=dict)  # absolute path -> text
  dirs: tuple = ()  # absolute directories beyond the files' ancestors
  info: dict = dataclasses.field(default_factory=dict)  # grader data: numbers or short strings


@struct.dataclass
class Codec:
  token_bytes: jax.Array  # u8[V, L]: each token's bytes (special tokens: none)
  token_len: jax.Array  # i32[V]
  # A cuckoo hash table of every vocabulary token of 1..MAX_MATCH bytes: a token sits in table 0
  # at hash0 & (T - 1) or in table 1 at hash1 & (T - 1) (two hashes of its bytes, the length
  # mixed into the first), so a lookup is two gathers of one slot each; the slot's bytes decide a
  # match, so a hash collision is never one (make_codec, _best_matches).
  table: jax.Array  # u32[2, T, 6]: each slot's token id, byte length and bytes (4 little-endian
  #   words, zero-padded); an empty slot is all 0 and no lookup of 1 or more bytes matches it
  byte_level: bool = struct.field(pytree_node=False, default=False)


@struct.dataclass
class EnvParams:
  prompt: jax.Array  # i32[I, P]
  prompt_len: jax.Array  # i32[I]
  fs: shell.FileSystem  # [J, ...]: the distinct starting filesystems
  fs_index: jax.Array  # i32[I]
  info: dict  # name -> [I, ...] arrays for the grader
  codec: Codec


@struct.dataclass
class EnvState:
  instance: jax.Array  # i32
  fs: shell.FileSystem
  calls: jax.Array  # i32: tool calls answered
  done: jax.Array  # bool
  answer: jax.Array  # u8[MAX_ANSWER]: the head of the final segment
  answer_len: jax.Array  # i32


HASH_BASES = (0x9E3779B1, 0x85EBCA77)  # odd, so invertible mod 2**32


def _powers(base: int, size: int, inverse: bool = False) -> np.ndarray:
  b = pow(base, -1, 2**32) if inverse else base
  return np.array([pow(b, i, 2**32) for i in range(size)], np.uint32)


def _hash(data: bytes, base: int) -> int:
  return sum((byte + 1) * pow(base, i, 2**32) for i, byte in enumerate(data)) % 2**32


def _pieces(tok: tokenizer_lib.Tokenizer) -> list[bytes]:
  """Each token id's bytes (b'' for special tokens and ids the vocabulary skips)."""
  specials = set(tok.encoding.special_tokens_set)
  pieces = []
  for i in range(tok.vocab_size):
    try:
      data = tok.encoding.decode_single_token_bytes(i)
    except KeyError:  # an id the vocabulary skips
      data = b''
    pieces.append(b'' if data.decode('utf-8', 'replace') in specials else data)
  return pieces


_VOCABULARIES = {}  # id(encoding) -> (encoding, {bytes: lowest id} of the tokens encode_bytes
#   matches); the encoding is kept so that a reused id is never another tokenizer's vocabulary


def _vocabulary(tok: tokenizer_lib.Tokenizer) -> dict:
  """{piece: lowest id} of the vocabulary tokens of 1..MAX_MATCH bytes."""
  held = _VOCABULARIES.get(id(tok.encoding))
  if held is None or held[0] is not tok.encoding:
    vocab = {}
    for i, piece in enumerate(_pieces(tok)):
      if 0 < len(piece) <= MAX_MATCH:
        vocab.setdefault(piece, i)
    held = _VOCABULARIES[id(tok.encoding)] = (tok.encoding, vocab)
  return held[1]


def encode_observation(tok: tokenizer_lib.Tokenizer, text: str) -> list[int]:
  """The tokens a rollout feeds for observation `text`: encode_bytes' rule (at each byte the
  longest vocabulary token of up to MAX_MATCH bytes that starts there; a byte none starts is
  dropped) in plain Python, on the raw UTF-8 bytes. It is not the tokenizer's BPE `encode`: a
  corpus that trains on observations must tokenize them this way to show the model what a
  rollout shows it."""
  vocab, data = _vocabulary(tok), text.encode('utf-8', 'surrogateescape')
  out, pos = [], 0
  while pos < len(data):
    span = next((n for n in range(min(MAX_MATCH, len(data) - pos), 0, -1)
                 if data[pos:pos + n] in vocab), 0)
    if span:
      out.append(vocab[data[pos:pos + span]])
    pos += max(span, 1)
  return out


def make_codec(tok: tokenizer_lib.Tokenizer) -> Codec:
  pieces = _pieces(tok)
  width = max(len(p) for p in pieces)
  token_bytes = np.zeros((len(pieces), width), np.uint8)
  for i, p in enumerate(pieces):
    token_bytes[i, :len(p)] = np.frombuffer(p, np.uint8)
  token_len = np.array([len(p) for p in pieces], np.int32)
  byte_level = width == 1 and all(pieces[b] == bytes([b]) for b in range(256))
  return Codec(token_bytes, token_len, _cuckoo(_vocabulary(tok)), byte_level)


def _slots(piece: bytes) -> tuple[int, int]:
  """The two hashes that place a token in the cuckoo table (_best_matches computes them from
  prefix sums)."""
  return ((_hash(piece, HASH_BASES[0]) + len(piece) * 0x27D4EB2F) % 2**32,
          _hash(piece, HASH_BASES[1]))


def _cuckoo(vocab: dict) -> np.ndarray:
  """{piece: id} -> u32[2, T, 6]: each piece in table t at slot hash_t & (T - 1); T the smallest
  power of two at least the number of pieces (at most half of the 2T slots used), doubled until
  every piece finds a place."""
  places = {piece: _slots(piece) for piece in vocab}
  shared = collections.Counter(places.values()).most_common(1)
  if shared and shared[0][1] > 2:  # two slots hold at most two pieces of one hash pair
    raise ValueError(f'{shared[0][1]} vocabulary tokens share both hashes')
  size = 1 << max(len(vocab) - 1, 1).bit_length()
  while True:
    slots = [[None] * size, [None] * size]
    for piece in sorted(vocab):
      t = 0
      for _ in range(64):  # evictions before the table is grown
        slot = places[piece][t] & (size - 1)
        piece, slots[t][slot] = slots[t][slot], piece
        if piece is None:
          break
        t = 1 - t
      else:
        break
    else:
      table = np.zeros((2, size, 6), np.uint32)
      for t in range(2):
        for slot, piece in enumerate(slots[t]):
          if piece is not None:
            words = np.frombuffer(piece.ljust(MAX_MATCH, b'\0'), '<u4')
            table[t, slot] = (vocab[piece], len(piece), *words)
      return table
    size *= 2


def decode_action(codec: Codec, tokens, length):
  """(head u8[MAX_ANSWER], head length, tail u8[TAIL], tail length): the first and last bytes
  of the action's text."""
  width = codec.token_bytes.shape[1]
  lens = jnp.where(jnp.arange(tokens.shape[0]) < length, codec.token_len[tokens], 0)
  end = jnp.cumsum(lens)
  total = end[-1]
  pos = (end - lens)[:, None] + jnp.arange(width)
  valid = jnp.arange(width) < lens[:, None]
  data = codec.token_bytes[tokens]
  head_pos = jnp.where(valid & (pos < MAX_ANSWER), pos, MAX_ANSWER)
  head = jnp.zeros(MAX_ANSWER + 1, jnp.uint8).at[head_pos].set(data)[:MAX_ANSWER]
  tail_start = jnp.maximum(total - TAIL, 0)
  tail_pos = jnp.where(valid & (pos >= tail_start), pos - tail_start, TAIL)
  tail = jnp.zeros(TAIL + 1, jnp.uint8).at[tail_pos].set(data)[:TAIL]
  return head, jnp.minimum(total, MAX_ANSWER), tail, total - tail_start


def encode_bytes(codec: Codec, data, length):
  """Greedy longest-match tokens of data[:length] -> (i32[len(data)], count)."""
  size = data.shape[0]
  idx = jnp.arange(size)
  if codec.byte_level:
    return jnp.where(idx < length, data.astype(jnp.int32), 0), length
  best_len, best_id = _best_matches(codec, data, length)
  # The greedy walk visits 0, next(0), next(next(0)), ...: marked by pointer doubling (after
  # round r every position within 2**r jumps of 0), so no per-token loop. A byte no token covers
  # (absent from the vocabulary) is stepped over and dropped, as the tokenizer drops it.
  jump = jnp.append(jnp.minimum(idx + jnp.maximum(best_len, 1), size), size)  # size: the end
  visited = jnp.zeros(size + 1, bool).at[0].set(True)
  for _ in range(max(size - 1, 1).bit_length()):
    visited = visited.at[jump].max(visited)
    jump = jump[jump]
  emit = visited[:size] & (idx < length) & (best_len > 0)
  slot = jnp.where(emit, jnp.cumsum(emit) - 1, size)
  return (jnp.zeros(size, jnp.int32).at[slot].set(best_id, mode='drop'),
          jnp.sum(emit, dtype=jnp.int32))


def _best_matches(codec: Codec, data, length):
  """(length, token id) of the longest vocabulary token starting at each byte (0, 0: none)."""
  size = data.shape[0]
  idx = jnp.arange(size)
  hashes = []
  for base in HASH_BASES:  # prefix sums, held MAX_MATCH past the end: a span's end is a slice
    terms = (data.astype(jnp.uint32) + 1) * _powers(base, size)
    prefix = jnp.concatenate([jnp.zeros(1, jnp.uint32), jnp.cumsum(terms)])
    hashes.append((jnp.pad(prefix, (0, MAX_MATCH), mode='edge'), prefix[:size],
                   jnp.asarray(_powers(base, size, inverse=True))))

  # The MAX_MATCH bytes from each position as 4 little-endian words, as the table holds pieces.
  ahead = jnp.pad(data.astype(jnp.uint32), (0, MAX_MATCH))
  window = jnp.stack([sum(ahead[w * 4 + k:w * 4 + k + size] << (8 * k) for k in range(4))
                      for w in range(MAX_MATCH // 4)], axis=1)
  word_masks = jnp.array([0, 0xFF, 0xFFFF, 0xFFFFFF, 0xFFFFFFFF], jnp.uint32)

  def longer(best, span):
    """The matches of `span` bytes override shorter ones (a scan: one traced body, not 16)."""
    best_len, best_id = best
    h1, h2 = ((jax.lax.dynamic_slice(padded, (span,), (size,)) - starts) * inverse
              for padded, starts, inverse in hashes)
    h1 = h1 + span.astype(jnp.uint32) * jnp.uint32(0x27D4EB2F)
    mask = jnp.uint32(codec.table.shape[1] - 1)
    in_span = word_masks[jnp.clip(span - 4 * jnp.arange(MAX_MATCH // 4), 0, 4)]
    for t, h in enumerate((h1, h2)):  # the piece's two places (make_codec's cuckoo table)
      held = codec.table[t, (h & mask).astype(jnp.int32)]
      same = jnp.all(((held[:, 2:] ^ window) & in_span) == 0, axis=1)
      hit = (held[:, 1] == span.astype(jnp.uint32)) & same & (idx + span <= length)
      best_len = jnp.where(hit, span, best_len)
      best_id = jnp.where(hit, held[:, 0].astype(jnp.int32), best_id)
    return (best_len, best_id), None

  zeros = jnp.zeros(size, jnp.int32)
  (best_len, best_id), _ = jax.lax.scan(longer, (zeros, zeros),
                                        jnp.arange(1, MAX_MATCH + 1, dtype=jnp.int32))
  return best_len, best_id


def _padded(text: str, size: int, what: str) -> tuple[np.ndarray, int]:
  data = text.encode('utf-8')
  if len(data) > size:
    raise ValueError(f'{what} has {len(data)} bytes, more than the limit {size}')
  out = np.zeros(size, np.uint8)
  out[:len(data)] = np.frombuffer(data, np.uint8)
  return out, len(data)


def filesystem(files: dict, dirs=(), cwd: str = limits.HOME) -> shell.FileSystem:
  """The starting filesystem of an instance, entries in the reference's order."""
  ref = reference.Shell(files, dirs, cwd)
  path = np.zeros((MAX_ENTRIES, MAX_PATH), np.uint8)
  data = np.zeros((MAX_ENTRIES, MAX_FILE), np.uint8)
  path_len, data_len = np.zeros(MAX_ENTRIES, np.int32), np.zeros(MAX_ENTRIES, np.int32)
  exists, is_dir = np.zeros(MAX_ENTRIES, bool), np.zeros(MAX_ENTRIES, bool)
  for i, (p, entry) in enumerate(ref.entries.items()):
    path[i], path_len[i] = _padded(p, MAX_PATH, f'path {p!r}')
    exists[i], is_dir[i] = True, entry.content is None
    if entry.content is not None:
      data[i], data_len[i] = _padded(entry.content, MAX_FILE, f'file {p!r}')
  cwd_bytes, cwd_len = _padded(cwd, MAX_PATH, 'cwd')
  names = [p.encode('utf-8') for p in ref.entries]
  order = np.zeros(MAX_ENTRIES, np.int32)
  for position, i in enumerate(sorted(range(len(names)), key=names.__getitem__)):
    order[i] = position  # bytes compare in byte order
  return shell.FileSystem(path, path_len, data, data_len, exists, is_dir, exists.copy(),
                          np.zeros(MAX_ENTRIES, bool), cwd_bytes, np.int32(cwd_len), order)


def files_of(fs: shell.FileSystem) -> dict:
  """The files of one episode's filesystem (host arrays) as {absolute path: text}."""
  out = {}
  for k in range(MAX_ENTRIES):
    if fs.exists[k] and not fs.is_dir[k]:
      path = bytes(fs.path[k, :fs.path_len[k]]).decode('utf-8', 'surrogateescape')
      out[path] = bytes(fs.data[k, :fs.data_len[k]]).decode('utf-8', 'surrogateescape')
  return out


def prompt_messages(instance: Instance) -> list[dict]:
  system = [{'role': 'system', 'content': instance.system}] if instance.system else []
  return system + [{'role': 'user', 'content': instance.user}]


def build(instances, info_arrays: dict, tok: tokenizer_lib.Tokenizer) -> EnvParams:
  """Device tables for a list of instances (`info_arrays`: the grader's [I, ...] arrays)."""
  prompts = [tokenizer_lib.encode_chat(tok, prompt_messages(x), add_generation_prompt=True)[0]
             for x in instances]
  width = max(len(p) for p in prompts)
  prompt = np.full((len(prompts), width), tok.pad_id, np.int32)
  for i, p in enumerate(prompts):
    prompt[i, :len(p)] = p
  layouts, fs_index = {}, []
  for x in instances:
    key = (tuple(sorted(x.files.items())), tuple(sorted(x.dirs)))
    fs_index.append(layouts.setdefault(key, len(layouts)))
  fs = [filesystem(dict(files), dirs) for files, dirs in layouts]
  return EnvParams(prompt=prompt, prompt_len=np.array([len(p) for p in prompts], np.int32),
                   fs=jax.tree.map(lambda *xs: np.stack(xs), *fs),
                   fs_index=np.array(fs_index, np.int32), info=info_arrays,
                   codec=make_codec(tok))


def start(instance_ids, fs: shell.FileSystem) -> EnvState:
  """Fresh episodes on the given filesystems (leading batch axis)."""
  batch = instance_ids.shape[0]
  # A copy of the ids: `advance` donates the state, which must not take the caller's array.
  return EnvState(instance=jnp.array(instance_ids, jnp.int32), fs=fs,
                  calls=jnp.zeros(batch, jnp.int32), done=jnp.zeros(batch, bool),
                  answer=jnp.zeros((batch, MAX_ANSWER), jnp.uint8),
                  answer_len=jnp.zeros(batch, jnp.int32))


def reset(params: EnvParams, instance_ids):
  """-> (state, prompt tokens [B, P], prompt lengths [B]) for a batch of instance indices."""
  instance_ids = jnp.asarray(instance_ids, jnp.int32)
  fs = jax.tree.map(lambda x: x[params.fs_index[instance_ids]], params.fs)
  return (start(instance_ids, fs), params.prompt[instance_ids],
          params.prompt_len[instance_ids])


def _extract_command(tail, tail_len):
  """(is a tool call, has an opening tag in reach, command u8[MAX_COMMAND], its length)."""
  idx = jnp.arange(TAIL)
  is_call = (tail_len >= len(CLOSE)) & jnp.any(matches_at(tail, CLOSE)
                                                 & (idx == tail_len - len(CLOSE)))
  opens = matches_at(tail, OPEN) & (idx + len(OPEN) <= tail_len - len(CLOSE))
  start = jnp.max(jnp.where(opens, idx, -1)) + len(OPEN)
  length = tail_len - len(CLOSE) - start
  return is_call, jnp.any(opens), window(tail, start, MAX_COMMAND), length


def _read_action(codec: Codec, state: EnvState, action, action_len):
  """-> (is an answered tool call, has an opening tag, command, its length, answer head, its
  length)."""
  head, head_len, tail, tail_len = decode_action(codec, action, action_len)
  is_call, has_open, cmd, cmd_len = _extract_command(tail, tail_len)
  call = ~state.done & is_call & (state.calls < MAX_CALLS)
  return call, has_open, cmd, jnp.where(call & has_open, cmd_len, 0), head, head_len


def _respond(state: EnvState, out, err, call, has_open, head, head_len):
  """The observation and the episode's counters (`advance` sets the filesystem)."""
  no_tag = Stream.empty().text(reference.NO_OPEN_TAG)
  err = jax.tree.map(lambda a, b: jnp.where(has_open, a, b), err, no_tag)
  out = out.replace(n=jnp.where(has_open, out.n, 0))
  obs_bytes, obs_len, _ = shell.observation(out, err).cut()
  ends = ~state.done & ~call
  state = state.replace(
      calls=state.calls + call, done=state.done | ends,
      answer=jnp.where(ends, head, state.answer),
      answer_len=jnp.where(ends, head_len, state.answer_len))
  return state, obs_bytes, jnp.where(call, obs_len, 0), ends


ENCODE_SIZES = (512, 1024, 2048)  # observation prefixes the encoder runs on when a batch's fit


def encode_batch(codec: Codec, data_BxS, length_B):
  """vmap(encode_bytes) on the shortest prefix (ENCODE_SIZES, else the whole buffer) that holds
  every row's bytes; the tokens are the same, since a match never reaches past a row's length.
  A batch without observation bytes (every row answered) encodes nothing."""
  size = data_BxS.shape[1]
  sizes = [s for s in ENCODE_SIZES if s < size] + [size]
  encode = jax.vmap(encode_bytes, (None, 0, 0))

  def on_prefix(s):
    tokens, count = encode(codec, data_BxS[:, :s], length_B)
    return jnp.pad(tokens, ((0, 0), (0, size - s))), count

  if codec.byte_level or len(sizes) == 1:
    return encode(codec, data_BxS, length_B)
  longest = jnp.max(length_B)
  which = sum((longest > s).astype(jnp.int32) for s in [0] + sizes[:-1])
  nothing = lambda: (jnp.zeros(data_BxS.shape, jnp.int32), jnp.zeros_like(length_B))
  return jax.lax.switch(which, [nothing] + [lambda s=s: on_prefix(s) for s in sizes])


@functools.partial(jax.jit, static_argnums=0)
def grade(env: Environment, params: EnvParams, state: EnvState) -> dict:
  """Every flag of env's grader for a batch of episodes, as [B] arrays (one program per
  environment; run eagerly it was ~30 small compiles each)."""
  info = jax.tree.map(lambda x: x[state.instance], params.info)
  return jax.vmap(env.grade)(info, state)


@functools.partial(jax.jit, donate_argnums=1)
def advance(codec: Codec, state: EnvState, actions, action_lens):
  """The machine's half of a step, the same for every environment (so compiled once):
  -> (state, observation tokens [B, OBS_TOKENS], their counts, episodes that ended now).

  `state` is donated: its buffers are reused for the new state, so a step writes only the bytes
  it changes (a copy of the filesystems alone is 35 MB at batch 1,024). Keep no reference to it."""
  with jax.named_scope('read_action'):  # the named scopes label a profile's time
    call, has_open, cmd, cmd_len, head, head_len = jax.vmap(_read_action, (None, 0, 0, 0))(
        codec, state, actions, action_lens)

  def idle():
    empty = jax.vmap(lambda _: Stream.empty())(cmd_len)
    return state.fs, empty, empty

  # Whole batches of final answers (or of calls without an opening tag) skip the machine. Rows
  # that run nothing have cmd_len 0, and an empty line leaves a filesystem as it was.
  fs, out, err = jax.lax.cond(jnp.any(call & has_open),
                              lambda: shell.run_lines(state.fs, cmd, cmd_len), idle)
  with jax.named_scope('respond'):
    state, obs_bytes, obs_len, ends = jax.vmap(_respond)(state, out, err, call, has_open, head,
                                                         head_len)
  with jax.named_scope('encode'):
    tokens, count = encode_batch(codec, obs_bytes, obs_len)
  return state.replace(fs=fs), tokens, count, ends


def step(env: Environment, params: EnvParams, state: EnvState, actions, action_lens):
  """One assistant segment per episode (tokens [B, T], lengths [B]) ->
  (state, observation tokens [B, OBS_TOKENS], their counts [B], reward [B], done [B]).

  `reward` is the grader's on the step that ends an episode and 0 otherwise."""
  state, tokens, count, ended = advance(params.codec, state, actions, action_lens)
  reward = jnp.where(ended, grade(env, params, state)['reward'], 0.0)
  return state, tokens, count, reward, state.done
