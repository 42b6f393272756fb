"""Whole-episode throughput: rt_jax's rollout (prefill, decoding, the environment machine and the
observations, in one jitted program) against the loop a researcher would otherwise write, HF
transformers `generate` one segment at a time with the plain-Python environment; prints one JSON
line (and appends it to bench/results/rollout.jsonl).

  python -m bench.rollout [--peer=hf] [--env=tool_use_flattery] [--split=eval] [--instances=4]
      [--samples=4] [--max_turns=4] [--max_segment_tokens=64] [--context=1024] [--repeats=2]
  python -m bench.rollout --model=tiny --context=1536 ...   # random weights, no download
  python -m bench.rollout --checkpoint=DIR --peer=hf   # a run's model (one that calls tools)

Both sides get the same work: the first --instances instances of --env's --split, each sampled
--samples times at --temperature (top-p 1) over the same allowed tokens (`rollout.allowed_tokens`),
up to --max_turns segments of at most --max_segment_tokens tokens in --context token slots per
episode, from the same prompt tokens and the same weights (by default SmolLM2-135M-Instruct as
converted into the cache). A segment ends at `<|im_end|>`, at the bytes `</bash>` (a tool call:
the environment answers and the episode goes on) or at its budget; the context, an observation
that does not fit and the last turn end an episode as truncated, on both sides as in
`rollout._env_turn`.

rt_jax: `rollout.on_mesh` on one device. The first call (XLA compile included; the persistent
compilation cache is off unless --compilation_cache) is reported apart from the best of --repeats
later calls. The environment's share of its time is estimated by replaying the episodes' segments
through `envs.core.advance` alone, batch and turns as in the rollout (the bench.envs approach).

hf (`--peer=hf`, needs requirements-ref.txt): transformers' LlamaForCausalLM (Qwen2 for qkv
biases) in f32 holding rt_jax's parameters. Per turn, one batched `generate` over the episodes
still going, each row stopped by `<|im_end|>`, `</bash>` or its budget; each segment's text goes
to its `reference.Episode`, the observation is tokenized and appended, and generation continues on
the same DynamicCache (see HFLoop; the prompts are prefilled once and copied to their samples, as
rt_jax does). Its environment share is the time in `reference.Episode.step`; first_call_s is its
warm-up call. Torch uses its default threads (the machine's cores), as JAX does.

Sampling differs between the two, so episodes differ in length: generated tokens per second (every
token the model wrote, `<|im_end|>` included) is the fairer ratio; episodes per second is reported
as well. Each side repeats its seed, so its repeats time the same episodes. `load_avg_before` is
the load average before any compute (the emitted row's load_1m includes this benchmark).
"""
import importlib.util
import os
import resource
import time

import jax
import ml_collections
import numpy as np
from absl import flags

import bench
from rt_jax import envs
from rt_jax.core import checkpoint
from rt_jax.core import cli
from rt_jax.core import convert
from rt_jax.core import model as model_lib
from rt_jax.core import perf
from rt_jax.core import sharding
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.core.errors import ConfigError
from rt_jax.data import splits
from rt_jax.envs import core, reference
from rt_jax.rl import rollout

_MODEL = flags.DEFINE_enum('model', 'smollm2', ['smollm2', 'tiny'],
                           'SmolLM2-135M-Instruct (converted once into the cache), or the tiny '
                           'preset with random weights over the builtin tokenizer (no peer).')
_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'A model directory to use instead of '
                                  '--model (a run\'s workdir or a converted model).')
_PEER = flags.DEFINE_enum('peer', None, ['hf'], 'Also time the HF transformers loop on the same '
                          'weights.')
_ENV = flags.DEFINE_enum('env', 'tool_use_flattery', list(envs.ENVIRONMENTS), 'Environment.')
_SPLIT = flags.DEFINE_enum('split', 'eval', list(splits.SPLITS), 'Its split.')
_INSTANCES = flags.DEFINE_integer('instances', 4, 'Instances (the split\'s first ones).',
                                  lower_bound=1)
_SAMPLES = flags.DEFINE_integer('samples', 4, 'Episodes per instance.', lower_bound=1)
_MAX_TURNS = flags.DEFINE_integer('max_turns', 4, 'Segments per episode.', lower_bound=1)
_MAX_SEGMENT = flags.DEFINE_integer('max_segment_tokens', 64, 'Tokens per segment.', lower_bound=1)
_CONTEXT = flags.DEFINE_integer('context', 1024, 'Token slots per episode (prompt, segments, '
                                'observations), on both sides.', lower_bound=1)
_TEMPERATURE = flags.DEFINE_float('temperature', 1.0, 'Softmax temperature (0: greedy).',
                                  lower_bound=0.0)
_REPEATS = flags.DEFINE_integer('repeats', 2, 'Timed calls after the first (the best is '
                                'reported).', lower_bound=1)
_SEED = flags.DEFINE_integer('seed', 0, 'Seed for weights (tiny) and sampling.')
_ENV_TIME = flags.DEFINE_bool('env_time', True, 'Estimate the environment\'s share of rt_jax\'s '
                              'time (compiles envs.core.advance once more).')
_COMPILATION_CACHE = flags.DEFINE_bool('compilation_cache', False, 'Keep the persistent XLA '
                                       'cache on (the first call may then load, not compile).')


# --- rt_jax -------------------------------------------------------------------------------------

def segment_tokens(eps, row: int, stop_id: int) -> list[list[int]]:
  """The tokens of each segment the model wrote in one episode (host arrays), as the machine
  received them: a final `stop_id` left out."""
  return [s[:-1] if s and s[-1] == stop_id else s for s in rollout.segment_ids(eps, row)]


def time_machine(table, ids_B, eps, width: int, stop_id: int, repeats: int) -> float:
  """Best seconds of `core.advance` stepping the whole batch through the episodes' segments, turn
  by turn, as the rollout steps it (rows that have ended get empty actions)."""
  segments = [segment_tokens(eps, r, stop_id) for r in range(len(ids_B))]
  turns = max(len(s) for s in segments)
  actions = np.zeros((turns, len(ids_B), width), np.int32)
  lens = np.zeros((turns, len(ids_B)), np.int32)
  for r, row in enumerate(segments):
    for t, seg in enumerate(row):
      actions[t, r, :len(seg)], lens[t, r] = seg, len(seg)
  codec = jax.device_put(table.codec)
  actions, lens = jax.device_put(actions), jax.device_put(lens)

  def call():
    state, _, _ = core.reset(table, ids_B)
    for t in range(turns):
      state, obs, _, _ = core.advance(codec, state, actions[t], lens[t])
    jax.block_until_ready(obs)
  return perf.best_time(call, repeats)[1]


def time_rt_jax(cfg, tok, params, table, ids_P, rc, samples: int, temperature: float,
                repeats: int, seed: int, env_time: bool) -> dict:
  policy = rollout.Policy.make(cfg, tok, rc)
  plan = sharding.Plan.one_device()
  out = {}

  def call():
    out['eps'] = rollout.on_mesh(plan, params, policy, table, ids_P, jax.random.key(seed),
                                 temperature, samples, what='--instances')
  first, best = perf.best_time(call, repeats)
  eps = out['eps']
  b = len(ids_P) * samples
  generated = int(eps.learn_BxS.sum())
  result = {'episodes_per_s': round(b / best, 3),
            'generated_tokens_per_s': round(generated / best, 1),
            'seconds': round(best, 3), 'first_call_s': round(first, 2), **_stats(
                generated, eps.turns_B, eps.env.calls, eps.truncated_B)}
  if env_time:
    ids_B = np.repeat(np.asarray(ids_P, np.int32), samples)
    env_s = time_machine(table, ids_B, eps, rc.max_segment_tokens, tok.im_end_id, repeats)
    result.update(env_s=round(env_s, 4), env_share=round(env_s / best, 4))
  else:
    result.update(env_s=None, env_share=None)
  result['peak_rss_gb'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
  return result


def _stats(generated: int, turns, calls, truncated) -> dict:
  return {'generated_tokens': generated, 'turns_mean': round(float(np.mean(turns)), 2),
          'tool_calls': int(np.sum(calls)), 'truncated': int(np.sum(truncated))}


# --- the HF transformers peer -------------------------------------------------------------------

def hf_model(cfg: model_lib.ModelConfig, params):
  """transformers' Llama (Qwen2 with qkv biases) of `cfg`'s shapes in f32, holding `params`, the
  very weights rt_jax samples from (convert.py's layout, inverted)."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  common = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.mlp_dim,
                num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim,
                max_position_embeddings=cfg.max_len, rope_theta=cfg.rope_base,
                rms_norm_eps=cfg.norm_eps, tie_word_embeddings=cfg.tie_embeddings)
  if cfg.qkv_bias:
    model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common))
  else:
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common, attention_bias=False))
  d = cfg.d_model
  params = jax.device_get(params)
  state = {'model.embed_tokens.weight': params['embedding'],
           'model.norm.weight': params['final_norm']['scale']}
  if not cfg.tie_embeddings:
    state['lm_head.weight'] = params['lm_head']['kernel'].T
  for i in range(cfg.n_layers):
    for name, path in convert._LAYER_TENSORS.items():  # pylint: disable=protected-access
      if name.endswith('bias') and not cfg.qkv_bias:
        continue
      w = params[f'layer_{i}']
      for key in path:
        w = w[key]
      if name.endswith(('q_proj.weight', 'k_proj.weight', 'v_proj.weight')):
        w = w.reshape(d, -1).T
      elif name.endswith('bias'):
        w = w.reshape(-1)
      elif name.endswith('o_proj.weight'):
        w = w.reshape(-1, d).T
      elif name.endswith('proj.weight'):
        w = w.T
      state[f'model.layers.{i}.{name}'] = w
  missing, unexpected = model.load_state_dict(
      {k: torch.tensor(np.asarray(v, np.float32)) for k, v in state.items()},
      strict=False)
  missing = [k for k in missing if not (cfg.tie_embeddings and k == 'lm_head.weight')]
  if missing or unexpected:
    raise ConfigError(f'the HF peer does not match the model: missing {missing}, unexpected '
                      f'{unexpected}')
  return model.float().eval()


class HFLoop:
  """The peer: HF `generate` segment by segment, the reference environment in between.

  The batch holds the episodes still going as left-padded rows over one DynamicCache: after a
  turn, the rows that ended are dropped from it, and each remaining row gets its segment (the
  tokens past its stop masked out) and its observation (left-padded to the longest, the padding
  masked) appended; `generate` feeds only what the cache lacks and takes each token's position
  from the mask. reuse_cache=False prefills every episode again at every turn (tests check that
  both give the same greedy episodes). Text goes through rt_jax's tokenizer (the same vocabulary
  as the model's own; tiktoken, so no slower than HF's), and a segment stops at `<|im_end|>`
  (eos), at its budget, or when its bytes end with `</bash>` (a StoppingCriteria that keeps each
  row's last bytes, as rt_jax's rollout does; HF's StopStringCriteria needs an HF tokenizer)."""

  def __init__(self, model, tok: tokenizer_lib.Tokenizer, rc: rollout.RolloutConfig,
               allowed_V: np.ndarray, reuse_cache: bool = True):
    import torch  # pylint: disable=import-outside-toplevel
    self.torch, self.model, self.tok, self.rc = torch, model, tok, rc
    self.stop_id, self.reuse_cache = tok.im_end_id, reuse_cache
    self.suppressed = np.flatnonzero(~allowed_V).tolist()
    if not self.suppressed:
      raise ConfigError('the peer needs a token the policy may not sample, to pad with')
    # A token the policy never samples: a row's segment ends where its padding starts.
    self.pad_id = self.suppressed[0]
    codec = core.make_codec(tok)
    self.token_bytes = [codec.token_bytes[i, :n].tobytes() for i, n in enumerate(codec.token_len)]
    self.token_bytes += [b''] * (len(allowed_V) - len(self.token_bytes))  # ids past the tokenizer

  def _left_padded(self, seqs):
    width = max(len(s) for s in seqs)
    ids = self.torch.full((len(seqs), width), self.pad_id, dtype=self.torch.long)
    mask = self.torch.zeros_like(ids)
    for i, s in enumerate(seqs):
      ids[i, width - len(s):] = self.torch.tensor(s)
      mask[i, width - len(s):] = 1
    return ids, mask

  def _generate(self, ids, mask, cache, budget: list[int], temperature: float):
    # pylint: disable-next=import-outside-toplevel
    from transformers import StoppingCriteria, StoppingCriteriaList
    torch = self.torch
    width, budget_b = ids.shape[1], torch.tensor(budget)
    token_bytes, close = self.token_bytes, reference.CLOSE.encode()
    tails = [b''] * ids.shape[0]

    class Stop(StoppingCriteria):  # `</bash>` ended the segment, or the row's budget did
      def __call__(self, input_ids, scores, **kwargs):
        for i, t in enumerate(input_ids[:, -1].tolist()):
          tails[i] = (tails[i] + token_bytes[t])[-len(close):]
        closed = torch.tensor([tail == close for tail in tails])
        return closed | ((input_ids.shape[1] - width) >= budget_b)

    sampling = ({'do_sample': True, 'temperature': temperature, 'top_k': 0, 'top_p': 1.0}
                if temperature > 0 else {'do_sample': False})
    return self.model.generate(
        input_ids=ids, attention_mask=mask, past_key_values=cache, max_new_tokens=max(budget),
        stopping_criteria=StoppingCriteriaList([Stop()]), eos_token_id=self.stop_id,
        pad_token_id=self.pad_id, suppress_tokens=self.suppressed, return_dict_in_generate=True,
        **sampling)

  def episodes(self, prompts_P: list[list[int]], items_P: list, samples: int, temperature: float,
               seed: int) -> dict:
    """`samples` episodes of each prompt (row p * samples + j: sample j of prompt p) -> their
    tokens, generated-token count, turns, tool calls, truncation and seconds in the environment."""
    from transformers import DynamicCache  # pylint: disable=import-outside-toplevel
    torch, rc = self.torch, self.rc
    torch.manual_seed(seed)
    n_rows = len(prompts_P) * samples
    episodes = [reference.Episode(item.files, item.dirs) for item in items_P
                for _ in range(samples)]
    tokens = [list(p) for p in prompts_P for _ in range(samples)]  # each episode's real tokens
    turns, truncated, generated, env_s = [0] * n_rows, [False] * n_rows, 0, 0.0
    ids, mask = self._left_padded(prompts_P)
    cache = None
    with torch.no_grad():
      if self.reuse_cache:  # each prompt prefilled once, its cache copied to its samples
        cache = DynamicCache(config=self.model.config)
        self.model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1],
                   position_ids=(mask[:, :-1].cumsum(-1) - 1).clamp(min=0),
                   past_key_values=cache, use_cache=True, logits_to_keep=1)
        cache.batch_repeat_interleave(samples)
      ids, mask = ids.repeat_interleave(samples, 0), mask.repeat_interleave(samples, 0)
      rows = list(range(n_rows))  # batch row -> episode
      for turn in range(rc.max_turns):
        width = ids.shape[1]
        budget = [min(rc.max_segment_tokens, rc.context - len(tokens[e])) for e in rows]
        out = self._generate(ids, mask, cache, budget, temperature)
        new = out.sequences[:, width:]
        keep, observations = [], []
        for i, e in enumerate(rows):
          seg = new[i].tolist()
          seg = seg[:seg.index(self.pad_id)] if self.pad_id in seg else seg
          generated += len(seg)
          tokens[e] += seg
          turns[e] += 1
          ends_in_stop = bool(seg) and seg[-1] == self.stop_id
          text = self.tok.decode(seg[:-1] if ends_in_stop else seg)
          start = time.perf_counter()
          obs = episodes[e].step(text)
          env_s += time.perf_counter() - start
          # As rollout._env_turn: a segment the context cut short, an observation that does not
          # fit and a call after the last turn end the episode as truncated.
          if len(tokens[e]) >= rc.context and not ends_in_stop:
            truncated[e] = True
          elif not episodes[e].done:
            obs_ids = self.tok.encode(obs)
            if len(tokens[e]) + len(obs_ids) >= rc.context:
              truncated[e] = True
              continue
            tokens[e] += obs_ids
            if turn + 1 == rc.max_turns:  # nothing more is decoded after it
              truncated[e] = True
            else:
              keep.append(i)
              observations.append(obs_ids)
        if not keep:
          break
        rows = [rows[i] for i in keep]
        if self.reuse_cache:
          idx = torch.tensor(keep)
          obs_ids, obs_mask = self._left_padded(observations)
          ids = torch.cat([out.sequences[idx], obs_ids], 1)
          mask = torch.cat([mask[idx], (new[idx] != self.pad_id).long(), obs_mask], 1)
          cache = out.past_key_values
          cache.batch_select_indices(idx)
        else:
          ids, mask = self._left_padded([tokens[e] for e in rows])
    return {'tokens': tokens, 'generated': generated, 'turns': turns, 'truncated': truncated,
            'calls': [ep.calls for ep in episodes], 'env_s': env_s}


def time_hf(cfg, tok, params, table, items, ids_P, rc, samples: int, temperature: float,
            repeats: int, seed: int) -> dict:
  import torch  # pylint: disable=import-outside-toplevel
  loop = HFLoop(hf_model(cfg, params), tok, rc, rollout.allowed_tokens(tok, cfg.vocab_size))
  prompts = [table.prompt[i, :table.prompt_len[i]].tolist() for i in ids_P]
  items_P = [items[i] for i in ids_P]
  timed = []  # (seconds, episodes) of every call, the first (warm-up) included
  for _ in range(repeats + 1):
    start = time.perf_counter()
    eps = loop.episodes(prompts, items_P, samples, temperature, seed)
    timed.append((time.perf_counter() - start, eps))
  best, eps = min(timed[1:], key=lambda x: x[0])
  b = len(ids_P) * samples
  return {'episodes_per_s': round(b / best, 3),
          'generated_tokens_per_s': round(eps['generated'] / best, 1), 'seconds': round(best, 3),
          'first_call_s': round(timed[0][0], 2),
          **_stats(eps['generated'], eps['turns'], eps['calls'], eps['truncated']),
          'env_s': round(eps['env_s'], 4), 'env_share': round(eps['env_s'] / best, 4),
          'torch_threads': torch.get_num_threads()}


# --- main ---------------------------------------------------------------------------------------

def _model_files():
  """(ModelConfig, Tokenizer, name, directory or None): what the flags name, weights not read."""
  if _CHECKPOINT.value:
    directory = _CHECKPOINT.value
  elif _MODEL.value == 'tiny':
    return model_lib.preset('tiny'), tokenizer_lib.builtin(), 'tiny', None
  else:
    directory = os.path.join(cli.cache_dir(), 'smollm2_135m_instruct')
    if not os.path.isfile(os.path.join(directory, 'model_config.json')):
      convert.initial_model(ml_collections.ConfigDict({'init_from': 'smollm2', 'model': {}}))
  if not os.path.isdir(directory):
    raise ConfigError(f'--checkpoint={directory} not found')
  cfg, tok = checkpoint.read_model_files(directory)
  return cfg, tok, _CHECKPOINT.value or 'smollm2_135m_instruct', directory


def main(argv):
  del argv
  load_before = [round(x, 2) for x in os.getloadavg()]  # other work on the machine
  if not _COMPILATION_CACHE.value:
    jax.config.update('jax_enable_compilation_cache', False)
  if _PEER.value:
    missing = [m for m in ('torch', 'transformers') if importlib.util.find_spec(m) is None]
    if missing:
      raise ConfigError(f'--peer=hf needs {" and ".join(missing)}: pip install -r '
                        'requirements-ref.txt')
  cfg, tok, name, directory = _model_files()
  env, table, items = envs.make(_ENV.value, tok, _SPLIT.value)
  del env
  if _INSTANCES.value > len(items):
    raise ConfigError(f'--instances={_INSTANCES.value}: the {_SPLIT.value} split of {_ENV.value} '
                      f'has {len(items)} instances')
  if _CONTEXT.value > cfg.max_len:
    raise ConfigError(f'--context={_CONTEXT.value} exceeds the model\'s {cfg.max_len} positions')
  ids_P = np.arange(_INSTANCES.value, dtype=np.int32)
  rc = rollout.RolloutConfig(context=_CONTEXT.value, max_turns=_MAX_TURNS.value,
                             max_segment_tokens=_MAX_SEGMENT.value)
  longest = int(table.prompt_len[ids_P].max())
  if longest + rc.max_segment_tokens > rc.context:
    raise ConfigError(f'prompts of up to {longest} tokens plus --max_segment_tokens='
                      f'{rc.max_segment_tokens} do not fit --context={rc.context}')
  if directory is None:
    params = model_lib.init_params(cfg, jax.random.key(_SEED.value))
  else:
    _, _, params = checkpoint.load_model(directory)

  ours = time_rt_jax(cfg, tok, params, table, ids_P, rc, _SAMPLES.value, _TEMPERATURE.value,
                     _REPEATS.value, _SEED.value, _ENV_TIME.value)
  result = {'bench': 'rollout', 'model': name, 'device': jax.devices()[0].device_kind,
            'env': _ENV.value, 'split': _SPLIT.value, 'instances': _INSTANCES.value,
            'samples': _SAMPLES.value, 'episodes': _INSTANCES.value * _SAMPLES.value,
            'max_turns': rc.max_turns, 'max_segment_tokens': rc.max_segment_tokens,
            'context': rc.context, 'temperature': _TEMPERATURE.value, 'repeats': _REPEATS.value,
            'compilation_cache': _COMPILATION_CACHE.value, 'load_avg_before': load_before,
            'rt_jax': ours}
  if _PEER.value == 'hf':
    peer = time_hf(cfg, tok, params, table, items, ids_P, rc, _SAMPLES.value,
                   _TEMPERATURE.value, _REPEATS.value, _SEED.value)
    result['hf'] = peer
    result['ratio_rt_jax_over_hf'] = {
        k: float(f'{ours[k] / peer[k]:.3g}') for k in ('episodes_per_s', 'generated_tokens_per_s')}
  result['peak_rss_gb'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
  bench.emit('rollout', result)


if __name__ == '__main__':
  cli.run(main)
