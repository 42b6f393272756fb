"""Multi-turn episodes, whole, inside one jitted function (docs/design.md §4).

For a batch of episodes (N samples of each of P prompts, rows p*N .. p*N+N-1 sharing prompt p):

  1. prefill the P prompts once, then copy each prompt's KV cache to its N rows;
  2. per turn: decode one token per row until every row's segment has stopped (`<|im_end|>`, the
     bytes `</bash>`, `max_segment_tokens`, or a full context);
  3. step the environment machine on every row's segment (the final `<|im_end|>` stripped, so the
     machine sees the text `rt_jax.replay` sees); a tool call's observation tokens are appended to
     the row and written into its KV cache in chunks (not after the last turn: nothing reads
     them there); anything else ends the row's episode;
  4. repeat until every episode has ended or `max_turns` segments were written.

Later turns are mostly idle rows: answered episodes wait while a few rows make another tool call.
So once at most B // `compact` rows still decode, they are gathered into a batch that size,
decode there and are scattered back (each row draws the uniform the whole batch would have given
it, so the episodes are the same either way; tested), and observations are fed in groups of
B // `compact` rows, only the rows that have one.

The KV cache follows the sampler's invariant: it holds every token of a row but the last, which
the next decode step feeds. Prompts and observations are brought up to that point by `_catch_up`,
a loop of `chunk`-token forwards at each row's own position, so the prompt prefill and every
observation share one compiled chunk forward. Rows with nothing to catch up write into slots past
their length, which the cache's `chunk` slots of slack keep from ever clamping onto valid ones.

Stop detection is on bytes (a rolling tail of the segment's last bytes), so `</bash>` ends a segment
however the model tokenizes it. The `learn` mask is 1 exactly on the tokens the model generated
(its `<|im_end|>` included) and 0 on prompts and observations: the loss of expert iteration.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rt_jax.core import compiling
from rt_jax.core import model as model_lib
from rt_jax.core import sampling
from rt_jax.core import sharding
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.envs import core
from rt_jax.envs.core import CLOSE
from rt_jax.core.errors import ConfigError

_CLOSE = np.frombuffer(CLOSE.encode(), np.uint8)


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
  """Static sizes (each distinct value compiles once)."""
  context: int  # token slots per episode: prompt + segments + observations
  max_turns: int  # segments per episode (tool calls + the final answer)
  max_segment_tokens: int
  chunk: int = 64  # tokens per forward when feeding prompts and observations
  # Decode and feed observations with B // compact rows once no more rows than that need it
  # (1: always the whole batch). Costs one more compiled forward per batch size.
  compact: int = 4
  # False: a one-turn chat (rl/chat.py). A segment ends at `<|im_end|>` or its budget only, and
  # ends the episode; the machine is neither stepped nor compiled.
  tools: bool = True

  def __post_init__(self):
    for name in ('context', 'max_turns', 'max_segment_tokens', 'chunk', 'compact'):
      if getattr(self, name) < 1:
        raise ConfigError(f'config.rollout.{name}={getattr(self, name)} must be at least 1')
    if not self.tools and self.max_turns != 1:
      raise ConfigError(f'a rollout without tools has one turn, not max_turns={self.max_turns}')


@struct.dataclass
class Episodes:
  tokens_BxS: jax.Array  # prompt, then segments and observations; valid up to lengths_B
  learn_BxS: jax.Array  # 1 on tokens the model generated
  lengths_B: jax.Array
  prompt_lengths_B: jax.Array
  env: core.EnvState  # the machine's final state: grade it with core.grade
  turns_B: jax.Array  # segments written
  truncated_B: jax.Array  # stopped by the context or max_turns before the episode ended
  decode_steps: jax.Array  # [2]: decode steps with the whole batch, and with B // rc.compact rows


@struct.dataclass
class _State:
  tokens_BxS: jax.Array
  learn_BxS: jax.Array
  lengths_B: jax.Array
  cached_B: jax.Array
  cache: model_lib.Cache
  env: core.EnvState
  finished_B: jax.Array  # ended, or truncated
  truncated_B: jax.Array
  turns_B: jax.Array
  steps: jax.Array  # decode steps so far (folds the sampling key)
  compact_steps: jax.Array  # how many of them had B // rc.compact rows
  key: jax.Array


def merge(tables: list[core.EnvParams]) -> tuple[core.EnvParams, np.ndarray]:
  """One instance table from several environments' (host arrays), so that one batch can mix
  environments; -> (table, offset of each input's instance 0). The grader data is left out:
  grade each environment's rows with its own params (instance ids minus its offset)."""
  width = max(t.prompt.shape[1] for t in tables)
  pad = lambda t: np.pad(np.asarray(t.prompt), ((0, 0), (0, width - t.prompt.shape[1])))
  sizes = [t.prompt.shape[0] for t in tables]
  fs_sizes = [t.fs.path.shape[0] for t in tables]
  offsets = np.cumsum([0] + sizes[:-1])
  fs_offsets = np.cumsum([0] + fs_sizes[:-1])
  return core.EnvParams(
      prompt=np.concatenate([pad(t) for t in tables]),
      prompt_len=np.concatenate([t.prompt_len for t in tables]),
      fs=jax.tree.map(lambda *xs: np.concatenate(xs), *[t.fs for t in tables]),
      fs_index=np.concatenate([t.fs_index + o for t, o in zip(tables, fs_offsets)]),
      info={}, codec=tables[0].codec), offsets


def check_fits(table: core.EnvParams, rc: RolloutConfig, what: str):
  """A clear error, before any compute, when a prompt leaves no room to answer in the context."""
  longest = int(np.max(table.prompt_len))
  if longest + rc.max_segment_tokens > rc.context:
    raise ConfigError(f'{what}: prompts of up to {longest} tokens plus max_segment_tokens='
                      f'{rc.max_segment_tokens} do not fit rollout.context={rc.context}')


def allowed_tokens(tok: tokenizer_lib.Tokenizer, vocab_size: int) -> np.ndarray:
  """bool[V]: what a policy may sample: ordinary tokens and `<|im_end|>`, nothing past the
  tokenizer, no other special token (a forged `<|im_start|>` would have no meaning here)."""
  allowed = np.arange(vocab_size) < tok.vocab_size
  for special in tok.encoding.special_tokens_set:
    allowed[tok.special_id(special)] = special == tokenizer_lib.IM_END
  return allowed


def _rows(tree, idx_b):
  return jax.tree.map(lambda x: x[idx_b], tree)


def _put_rows(tree, part, idx_b):
  return jax.tree.map(lambda x, y: x.at[idx_b].set(y), tree, part)


def _catch_up(params, cfg, rc: RolloutConfig, st: _State, target_B) -> _State:
  """Feeds each row's tokens [cached, target) into the cache, `rc.chunk` at a time, in groups of
  B // rc.compact rows (those with anything to feed first): a chunk forward costs in proportion
  to its rows, and after the first turn only a few rows have an observation to feed."""
  b, s = st.tokens_BxS.shape
  small = max(b // rc.compact, 1)

  def feed(tokens_bxS, cached_b, cache, target_b):
    def body(carry):
      cached_b, cache = carry
      pos_bxC = cached_b[:, None] + jnp.arange(rc.chunk)
      toks_bxC = jnp.take_along_axis(tokens_bxS, jnp.minimum(pos_bxC, s - 1), axis=1)
      _, cache = model_lib.forward(params, cfg, toks_bxC, pos_bxC, cache,
                                   select_B=jnp.zeros(small, jnp.int32))
      return jnp.maximum(cached_b, jnp.minimum(cached_b + rc.chunk, target_b)), cache

    return jax.lax.while_loop(lambda c: jnp.any(c[0] < target_b), body, (cached_b, cache))

  if small == b:
    cached_B, cache = feed(st.tokens_BxS, st.cached_B, st.cache, target_B)
    return st.replace(cached_B=cached_B, cache=cache)

  busy_B = st.cached_B < target_B
  order_B = jnp.argsort(~busy_B, stable=True)

  def group(g, carry):
    # The last group may overlap the one before (dynamic_slice clamps): its rows are fed already.
    idx_b = jax.lax.dynamic_slice_in_dim(order_B, g * small, small)
    fed = feed(st.tokens_BxS[idx_b], *_rows(carry, idx_b), target_B[idx_b])
    return _put_rows(carry, fed, idx_b)

  groups = (jnp.sum(busy_B) + small - 1) // small
  cached_B, cache = jax.lax.fori_loop(0, groups, group, (st.cached_B, st.cache))
  return st.replace(cached_B=cached_B, cache=cache)


def _ends_with_close(tail_Bx7, piece_BxL, piece_len_B):
  """(does `</bash>` end inside the new piece?, the new 7-byte tail)."""
  n = len(_CLOSE)
  joined_BxJ = jnp.concatenate([tail_Bx7, piece_BxL], axis=1)
  end_B = n + piece_len_B
  ends_J = jnp.arange(n, joined_BxJ.shape[1] + 1)  # candidate match ends (exclusive)
  window_BxJxN = jnp.take_along_axis(
      joined_BxJ[:, None, :], (ends_J[:, None] - n + jnp.arange(n))[None], axis=2)
  hit_BxJ = jnp.all(window_BxJxN == _CLOSE, axis=-1) & (ends_J > n) & (ends_J <= end_B[:, None])
  tail_Bx7 = jnp.take_along_axis(joined_BxJ, end_B[:, None] - n + jnp.arange(n), axis=1)
  return jnp.any(hit_BxJ, axis=1), tail_Bx7


@struct.dataclass
class _Decoding:
  """What decoding a segment reads and writes, per row: for the whole batch, or for the rows
  still decoding gathered into a smaller one (`row_b` is each row's index in the whole batch)."""
  row_b: jax.Array
  tokens_bxS: jax.Array
  learn_bxS: jax.Array
  lengths_b: jax.Array
  cached_b: jax.Array
  cache: model_lib.Cache
  active_b: jax.Array
  start_b: jax.Array
  tail_bx7: jax.Array  # the segment's last bytes, for `</bash>`
  temperature_b: jax.Array
  top_p_b: jax.Array


def _decode_segment(params, cfg, rc: RolloutConfig, codec: core.Codec, st: _State, allowed_V,
                    stop_id, temperature_B, top_p_B):
  """One segment per unfinished row -> (state, segment start, segment length).

  Once at most B // rc.compact rows are still decoding (later turns: a few tool calls among
  answered rows), they are gathered into a batch that size and decode there: a step costs about
  what its batch does, whatever share of it is done. Each row draws the uniform that the whole
  batch would have given it, so compaction changes no draw."""
  b, s = st.tokens_BxS.shape
  small = b // rc.compact
  active_B = ~st.finished_B & (st.lengths_B < s)
  d = _Decoding(jnp.arange(b), st.tokens_BxS, st.learn_BxS, st.lengths_B, st.cached_B, st.cache,
                active_B, st.lengths_B, jnp.zeros((b, len(_CLOSE)), jnp.uint8), temperature_B,
                top_p_B)

  def step(carry):
    d, n = carry
    rows = jnp.arange(d.row_b.shape[0])
    last_b = d.lengths_b - 1
    logits_bx1xV, cache = model_lib.forward(params, cfg, d.tokens_bxS[rows, last_b][:, None],
                                            last_b[:, None], d.cache)
    logits_bxV = jnp.where(allowed_V, logits_bx1xV[:, 0], -jnp.inf)
    uniform_b = jax.random.uniform(jax.random.fold_in(st.key, st.steps + n), (b,))[d.row_b]
    next_b = sampling.sample_token(logits_bxV, uniform_b, d.temperature_b, d.top_p_b)
    at_b = jnp.where(d.active_b, d.lengths_b, s)  # inactive rows write nowhere
    lengths_b = d.lengths_b + d.active_b
    closed_b, tail_bx7 = False, d.tail_bx7
    if rc.tools:
      closed_b, tail_bx7 = _ends_with_close(d.tail_bx7, codec.token_bytes[next_b],
                                            codec.token_len[next_b])
    stopped_b = ((next_b == stop_id) | closed_b | (lengths_b - d.start_b >= rc.max_segment_tokens)
                 | (lengths_b >= s))
    d = d.replace(tokens_bxS=d.tokens_bxS.at[rows, at_b].set(next_b, mode='drop'),
                  learn_bxS=d.learn_bxS.at[rows, at_b].set(1, mode='drop'), lengths_b=lengths_b,
                  cached_b=jnp.maximum(d.cached_b, last_b + 1), cache=cache,
                  active_b=d.active_b & ~stopped_b, tail_bx7=tail_bx7)
    return d, n + 1

  going = lambda c: jnp.any(c[0].active_b) & (c[1] < rc.max_segment_tokens)
  if 0 < small < b:
    d, n_whole = jax.lax.while_loop(lambda c: going(c) & (jnp.sum(c[0].active_b) > small), step,
                                    (d, jnp.int32(0)))
    idx_b = jnp.argsort(~d.active_b, stable=True)[:small]  # every active row, then idle ones
    few, n = jax.lax.while_loop(going, step, (_rows(d, idx_b), n_whole))
    d = _put_rows(d, few, idx_b)
  else:
    d, n = jax.lax.while_loop(going, step, (d, jnp.int32(0)))
    n_whole = n
  st = st.replace(tokens_BxS=d.tokens_bxS, learn_BxS=d.learn_bxS, lengths_B=d.lengths_b,
                  cached_B=d.cached_b, cache=d.cache, steps=st.steps + n,
                  compact_steps=st.compact_steps + n - n_whole)
  return st, d.start_b, d.lengths_b - d.start_b


def _ends_in_stop(tokens_BxS, start_B, length_B, stop_id):
  last_B = jnp.maximum(start_B + length_B - 1, 0)
  return (length_B > 0) & (tokens_BxS[jnp.arange(tokens_BxS.shape[0]), last_B] == stop_id)


def _env_turn(params, cfg, rc: RolloutConfig, codec: core.Codec, st: _State, start_B, length_B,
              stop_id, last_turn):
  """Steps the machine on each row's segment and appends the observations of tool calls; they
  are fed into the cache unless this was the last turn, after which nothing is decoded."""
  b, s = st.tokens_BxS.shape
  rows = jnp.arange(b)
  width = rc.max_segment_tokens
  action_BxW = jnp.take_along_axis(st.tokens_BxS,
                                   jnp.minimum(start_B[:, None] + jnp.arange(width), s - 1), axis=1)
  ends_in_stop_B = _ends_in_stop(st.tokens_BxS, start_B, length_B, stop_id)
  action_len_B = jnp.where(st.finished_B, 0, length_B - ends_in_stop_B)
  # Rows already finished (truncated ones included) must not reach the machine as answers.
  env = st.env.replace(done=st.env.done | st.finished_B)
  env, obs_BxO, obs_len_B, _ = core.advance(codec, env, action_BxW, action_len_B)
  env = env.replace(done=env.done & ~(st.finished_B & ~st.env.done))
  call_B = ~st.finished_B & ~env.done
  fits_B = st.lengths_B + obs_len_B < s
  append_B = call_B & fits_B
  pos_BxO = st.lengths_B[:, None] + jnp.arange(obs_BxO.shape[1])
  pos_BxO = jnp.where(append_B[:, None] & (jnp.arange(obs_BxO.shape[1]) < obs_len_B[:, None]),
                      pos_BxO, s)
  tokens_BxS = st.tokens_BxS.at[rows[:, None], pos_BxO].set(obs_BxO, mode='drop')
  # A segment the context cut short (no room left) still reaches the machine as the text it is,
  # but the episode counts as truncated, as does a call whose observation does not fit.
  cut_B = ~st.finished_B & (st.lengths_B >= s) & ~ends_in_stop_B
  truncated_B = st.truncated_B | cut_B | (call_B & ~fits_B)
  st = st.replace(tokens_BxS=tokens_BxS, lengths_B=st.lengths_B + jnp.where(append_B, obs_len_B, 0),
                  env=env, truncated_B=truncated_B,
                  finished_B=st.finished_B | env.done | truncated_B,
                  turns_B=st.turns_B + ~st.finished_B)
  return _catch_up(params, cfg, rc, st,
                   jnp.where(append_B & ~last_turn, st.lengths_B - 1, st.cached_B))


def _answer_turn(rc: RolloutConfig, st: _State, start_B, length_B, stop_id) -> _State:
  """A one-turn chat's step: every segment is the answer and ends its episode. It counts as
  truncated when the context, not the stop token or the answer budget, ended it (a row whose
  prompt fills its padded width reaches both at once: that is the budget)."""
  ends_in_stop_B = _ends_in_stop(st.tokens_BxS, start_B, length_B, stop_id)
  cut_B = (~st.finished_B & (st.lengths_B >= st.tokens_BxS.shape[1]) & ~ends_in_stop_B
           & (length_B < rc.max_segment_tokens))
  return st.replace(finished_B=jnp.ones_like(st.finished_B), truncated_B=st.truncated_B | cut_B,
                    turns_B=st.turns_B + ~st.finished_B)


@functools.partial(jax.jit, static_argnames=('cfg', 'rc', 'samples'))
def rollout(params, cfg: model_lib.ModelConfig, rc: RolloutConfig, table: core.EnvParams,
            instance_ids_P, key, temperature_B, top_p_B, allowed_V, stop_id, *, samples: int):
  """`samples` episodes of each instance in `instance_ids_P` -> Episodes with B = P * samples rows
  (row p * samples + j is sample j of prompt p)."""
  p = instance_ids_P.shape[0]
  s = rc.context
  env_P, prompt_PxW, prompt_len_P = core.reset(table, instance_ids_P)
  # The table is padded to its longest prompt; callers check that the chosen ones fit (`fits`).
  w = min(prompt_PxW.shape[1], s)
  tokens_PxS = jnp.zeros((p, s), jnp.int32).at[:, :w].set(prompt_PxW[:, :w])
  zeros = lambda n, dtype=jnp.int32: jnp.zeros(n, dtype)
  st = _State(tokens_PxS, jnp.zeros((p, s), jnp.int32), prompt_len_P, zeros(p),
              model_lib.init_cache(cfg, p, s + rc.chunk), env_P, zeros(p, bool), zeros(p, bool),
              zeros(p), jnp.int32(0), jnp.int32(0), key)
  # The shared prefill, of every prompt, in chunks no wider than the padded prompts: a short
  # chat prompt (16 or 32 wide) is not fed as a whole 64-token chunk of padding.
  st = _catch_up(params, cfg, dataclasses.replace(rc, compact=1, chunk=min(rc.chunk, w)), st,
                 prompt_len_P - 1)
  st = jax.tree.map(lambda x: jnp.repeat(x, samples, axis=0) if x.ndim and x.shape[0] == p
                    else x, st)

  def turn(carry):
    st, t = carry
    st, start_B, length_B = _decode_segment(params, cfg, rc, table.codec, st, allowed_V, stop_id,
                                            temperature_B, top_p_B)
    if not rc.tools:
      return _answer_turn(rc, st, start_B, length_B, stop_id), t + 1
    st = _env_turn(params, cfg, rc, table.codec, st, start_B, length_B, stop_id,
                   last_turn=t + 1 >= rc.max_turns)
    return st, t + 1

  st, _ = jax.lax.while_loop(lambda c: ~jnp.all(c[0].finished_B) & (c[1] < rc.max_turns), turn,
                             (st, jnp.int32(0)))
  return Episodes(st.tokens_BxS, st.learn_BxS, st.lengths_B, jnp.repeat(prompt_len_P, samples),
                  st.env, st.turns_B, st.truncated_B | ~st.finished_B,
                  jnp.stack([st.steps - st.compact_steps, st.compact_steps]))


def segment_ids(eps, row: int) -> list[list[int]]:
  """The token ids of each segment the model wrote in one episode (host arrays): the runs of
  learned tokens after the prompt, a final `<|im_end|>` included."""
  tokens, learn = np.asarray(eps.tokens_BxS[row]), np.asarray(eps.learn_BxS[row])
  out, current = [], []
  for i in range(int(eps.prompt_lengths_B[row]), int(eps.lengths_B[row])):
    if learn[i]:
      current.append(int(tokens[i]))
    elif current:
      out.append(current)
      current = []
  return out + [current] if current else out


def segments(tok: tokenizer_lib.Tokenizer, eps, row: int) -> list[str]:
  """The assistant segments of one episode as text (host arrays; the final `<|im_end|>` left
  out), i.e. a transcript `rt_jax.replay` accepts."""
  out = segment_ids(eps, row)
  if out and out[-1][-1] == tok.im_end_id:
    out[-1] = out[-1][:-1]
  return [tok.decode(ids) for ids in out]


def text(tok: tokenizer_lib.Tokenizer, eps, row: int, prompt: bool = True) -> str:
  """One episode as text (host arrays; the final `<|im_end|>` left out): the whole of it, or with
  prompt=False the assistant turn alone (segments and observations)."""
  start = 0 if prompt else int(eps.prompt_lengths_B[row])
  ids = np.asarray(eps.tokens_BxS[row, start:int(eps.lengths_B[row])]).tolist()
  if ids and ids[-1] == tok.im_end_id:
    ids = ids[:-1]
  return tok.decode(ids)


@dataclasses.dataclass(frozen=True)
class Policy:
  """What sampling episodes needs besides the parameters."""
  cfg: model_lib.ModelConfig
  tok: tokenizer_lib.Tokenizer
  rc: RolloutConfig
  allowed_V: np.ndarray  # allowed_tokens(tok, cfg.vocab_size), computed once

  @classmethod
  def make(cls, cfg, tok, rc):
    return cls(cfg, tok, rc, allowed_tokens(tok, cfg.vocab_size))


def run(params, policy: Policy, table: core.EnvParams, instance_ids_P, key, temperature: float,
        samples: int, top_p: float = 1.0):
  """Host helper: `rollout` at one temperature and nucleus mass -> Episodes as host arrays."""
  b = len(instance_ids_P) * samples
  return jax.device_get(rollout(
      params, policy.cfg, policy.rc, table, np.asarray(instance_ids_P, np.int32), key,
      np.full(b, temperature, np.float32), np.full(b, top_p, np.float32), policy.allowed_V,
      policy.tok.im_end_id, samples=samples))


def on_mesh(plan, params, policy: Policy, table: core.EnvParams, instance_ids_P, key,
            temperature: float, samples: int, top_p: float = 1.0, *,
            what: str = 'rollout prompts (ei.prompts)', stop_id: int | None = None):
  """`run` on `plan`'s mesh: episodes on the batch axes (prompts split there; each prompt's N
  samples stay with it, and so does its part of the KV cache), tables and the key replicated;
  -> Episodes as host arrays on every process. `what` names the prompt count in a mesh error;
  `stop_id` replaces `<|im_end|>` as the stop token (-1: none)."""
  args = _mesh_args(plan, params, policy, table, instance_ids_P, key, temperature, samples, top_p,
                    what, stop_id)
  return sharding.to_host(compiling.call(rollout, *args, samples=samples))


def compile_on_mesh(plan, policy: Policy, table: core.EnvParams, prompts: int, samples: int):
  """Starts compiling `rollout` for `prompts` x `samples` episodes in the background, so that
  XLA's compile (most of it the environment machine) overlaps what a run does before its first
  rollout (the PM, the helpful-only SFT)."""
  args = _mesh_args(plan, plan.abstract_params(policy.cfg), policy, table,
                    np.zeros(prompts, np.int32), jax.random.key(0), 1.0, samples)
  compiling.ahead(rollout, *args, samples=samples)


def _mesh_args(plan, params, policy, table, instance_ids_P, key, temperature, samples,
               top_p=1.0, what='rollout prompts (ei.prompts)', stop_id=None) -> tuple:
  ids_P = np.asarray(instance_ids_P, np.int32)
  b = len(ids_P) * samples
  # Prompts are what is split: a prompt's samples are made on its devices (B = P * samples).
  rows = lambda x: plan.put(x, plan.rows(1, what, len(ids_P)))
  return (params, policy.cfg, policy.rc, plan.put(table, plan.replicated), rows(ids_P),
          plan.put_key(key), rows(np.full(b, temperature, np.float32)),
          rows(np.full(b, top_p, np.float32)), plan.put(policy.allowed_V, plan.replicated),
          policy.tok.im_end_id if stop_id is None else stop_id)
