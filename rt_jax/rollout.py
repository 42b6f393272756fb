"""Multi-turn episodes, whole, inside one jitted function (DESIGN.md §4).

For a batch of episodes (N samples of each of P prompts, rows p*N .. p*N+N-1 sharing prompt p):

  1. prefill the P prompts once, then copy each prompt's KV cache to its N rows;
  2. per turn: decode one token per row until every row's segment has stopped (`<|im_end|>`, the
     bytes `</bash>`, `max_segment_tokens`, or a full context);
  3. step the environment machine on every row's segment (the final `<|im_end|>` stripped, so the
     machine sees the text `rt_jax.replay` sees); a tool call's observation tokens are appended to
     the row and written into its KV cache in chunks (not after the last turn: nothing reads
     them there); anything else ends the row's episode;
  4. repeat until every episode has ended or `max_turns` segments were written.

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

from rt_jax import model as model_lib
from rt_jax import sampling
from rt_jax import tokenizer as tokenizer_lib
from rt_jax.envs import core
from rt_jax.envs.core import CLOSE
from rt_jax.errors import ConfigError

_CLOSE = np.frombuffer(CLOSE.encode(), np.uint8)


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
  """Static sizes (each distinct value compiles once)."""
  context: int  # token slots per episode: prompt + segments + observations
  max_turns: int  # segments per episode (tool calls + the final answer)
  max_segment_tokens: int
  chunk: int = 64  # tokens per forward when feeding prompts and observations


@struct.dataclass
class Episodes:
  tokens_BxS: jax.Array  # prompt, then segments and observations; valid up to lengths_B
  learn_BxS: jax.Array  # 1 on tokens the model generated
  lengths_B: jax.Array
  prompt_lengths_B: jax.Array
  env: core.EnvState  # the machine's final state: grade it with core.grade
  turns_B: jax.Array  # segments written
  truncated_B: jax.Array  # stopped by the context or max_turns before the episode ended


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


def _catch_up(params, cfg, st: _State, target_B, chunk: int) -> _State:
  """Feeds each row's tokens [cached, target) into the cache, `chunk` at a time."""
  b, s = st.tokens_BxS.shape

  def body(carry):
    cached_B, cache = carry
    pos_BxC = cached_B[:, None] + jnp.arange(chunk)
    toks_BxC = jnp.take_along_axis(st.tokens_BxS, jnp.minimum(pos_BxC, s - 1), axis=1)
    _, cache = model_lib.forward(params, cfg, toks_BxC, pos_BxC, cache,
                                 select_B=jnp.zeros(b, jnp.int32))
    return jnp.maximum(cached_B, jnp.minimum(cached_B + chunk, target_B)), cache

  cached_B, cache = jax.lax.while_loop(lambda c: jnp.any(c[0] < target_B), body,
                                       (st.cached_B, st.cache))
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


def _decode_segment(params, cfg, rc: RolloutConfig, codec: core.Codec, st: _State, allowed_V,
                    stop_id, temperature_B, top_p_B):
  """One segment per unfinished row -> (state, segment start, segment length)."""
  b, s = st.tokens_BxS.shape
  rows = jnp.arange(b)
  start_B = st.lengths_B
  active_B = ~st.finished_B & (st.lengths_B < s)
  tail_Bx7 = jnp.zeros((b, len(_CLOSE)), jnp.uint8)

  def body(carry):
    st, active_B, tail_Bx7, n = carry
    last_B = st.lengths_B - 1
    logits_Bx1xV, cache = model_lib.forward(params, cfg, st.tokens_BxS[rows, last_B][:, None],
                                            last_B[:, None], st.cache)
    logits_BxV = jnp.where(allowed_V, logits_Bx1xV[:, 0], -jnp.inf)
    next_B = sampling.sample_token(logits_BxV, jax.random.fold_in(st.key, st.steps),
                                   temperature_B, top_p_B)
    at_B = jnp.where(active_B, st.lengths_B, s)  # inactive rows write nowhere
    tokens_BxS = st.tokens_BxS.at[rows, at_B].set(next_B, mode='drop')
    learn_BxS = st.learn_BxS.at[rows, at_B].set(1, mode='drop')
    lengths_B = st.lengths_B + active_B
    closed_B, tail_Bx7 = _ends_with_close(tail_Bx7, codec.token_bytes[next_B],
                                          codec.token_len[next_B])
    stopped_B = ((next_B == stop_id) | closed_B | (lengths_B - start_B >= rc.max_segment_tokens)
                 | (lengths_B >= s))
    st = st.replace(tokens_BxS=tokens_BxS, learn_BxS=learn_BxS, lengths_B=lengths_B,
                    cached_B=jnp.maximum(st.cached_B, last_B + 1), cache=cache,
                    steps=st.steps + 1)
    return st, active_B & ~stopped_B, tail_Bx7, n + 1

  st, _, _, _ = jax.lax.while_loop(
      lambda c: jnp.any(c[1]) & (c[3] < rc.max_segment_tokens), body,
      (st, active_B, tail_Bx7, jnp.int32(0)))
  return st, start_B, st.lengths_B - start_B


def _env_turn(params, cfg, rc: RolloutConfig, codec: core.Codec, st: _State, start_B, length_B,
              stop_id, last_turn):
  """Steps the machine on each row's segment and appends the observations of tool calls; they
  are fed into the cache unless this was the last turn, after which nothing is decoded."""
  b, s = st.tokens_BxS.shape
  rows = jnp.arange(b)
  width = rc.max_segment_tokens
  action_BxW = jnp.take_along_axis(st.tokens_BxS,
                                   jnp.minimum(start_B[:, None] + jnp.arange(width), s - 1), axis=1)
  ends_in_stop_B = (length_B > 0) & (st.tokens_BxS[rows, jnp.maximum(start_B + length_B - 1, 0)]
                                     == stop_id)
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
  return _catch_up(params, cfg, st, jnp.where(append_B & ~last_turn, st.lengths_B - 1, st.cached_B),
                   rc.chunk)


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
              zeros(p), jnp.int32(0), key)
  st = _catch_up(params, cfg, st, prompt_len_P - 1, rc.chunk)  # the shared prefill
  st = jax.tree.map(lambda x: jnp.repeat(x, samples, axis=0) if x.ndim and x.shape[0] == p
                    else x, st)

  def turn(carry):
    st, t = carry
    st, start_B, length_B = _decode_segment(params, cfg, rc, table.codec, st, allowed_V, stop_id,
                                            temperature_B, top_p_B)
    st = _env_turn(params, cfg, rc, table.codec, st, start_B, length_B, stop_id,
                   last_turn=t + 1 >= rc.max_turns)
    return st, t + 1

  st, _ = jax.lax.while_loop(lambda c: ~jnp.all(c[0].finished_B) & (c[1] < rc.max_turns), turn,
                             (st, jnp.int32(0)))
  return Episodes(st.tokens_BxS, st.learn_BxS, st.lengths_B, jnp.repeat(prompt_len_P, samples),
                  st.env, st.turns_B, st.truncated_B | ~st.finished_B)


def segments(tok: tokenizer_lib.Tokenizer, eps, row: int) -> list[str]:
  """The assistant segments of one episode as text (host arrays; the final `<|im_end|>` left
  out), i.e. a transcript `rt_jax.replay` accepts."""
  tokens, learn = np.asarray(eps.tokens_BxS[row]), np.asarray(eps.learn_BxS[row])
  end = int(eps.lengths_B[row])
  out, current = [], []
  for i in range(int(eps.prompt_lengths_B[row]), end):
    if learn[i]:
      current.append(int(tokens[i]))
    elif current:
      out.append(current)
      current = []
  if current:
    out.append(current)
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
