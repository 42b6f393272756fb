"""Sampling: `sample_token`'s draws, and chat answers as a rollout of the one-turn environment
(rl/chat.py), checked against full forwards of the model."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rt_jax.core import model
from rt_jax.core import sampling
from rt_jax.core import sharding
from rt_jax.core import tokenizer
from rt_jax.core.errors import ConfigError
from rt_jax.envs import chat as chat_env
from rt_jax.envs import core
from rt_jax.rl import chat
from rt_jax.rl import rollout

PLAN = sharding.Plan.one_device()
TEXTS = ('hi', 'a considerably longer prompt than the others in this batch', 'mid length one')


@pytest.fixture(scope='module')
def setup():
  cfg = model.preset('tiny')
  tok = tokenizer.builtin()
  return cfg, model.init_params(cfg, jax.random.key(0)), tok, [tok.encode(t) for t in TEXTS]


def _generate(*args, **kw):
  return chat.generate(*args, plan=PLAN, **kw)


def _rows(cfg, tok, params, prompts, key, temperature, *, top_p=1.0, n=24, stop_id=None,
          allowed=None):
  """The chat rollout's episodes as (answers, truncated) with an optional other stop token and
  allowed-token mask."""
  table = chat_env.table(prompts, tok.pad_id)
  policy = chat.policy(cfg, tok, table.prompt.shape[1], n)
  if allowed is not None:
    policy = rollout.Policy(cfg, tok, policy.rc, allowed)
  eps = rollout.on_mesh(PLAN, params, policy, table,
                        np.arange(len(prompts)), key, temperature, 1, top_p, stop_id=stop_id)
  return chat.answers(eps), np.asarray(eps.truncated_B)


def test_greedy_answers_are_the_argmax_of_full_forwards(setup):
  """Each greedy token is the argmax, over the tokens a policy may emit, of a full (uncached)
  forward of the prompt and the answer so far: the cached decode computes what the model does."""
  cfg, params, tok, prompts = setup
  allowed = rollout.allowed_tokens(tok, cfg.vocab_size)
  answers, _ = _rows(cfg, tok, params, prompts, jax.random.key(1), 0.0)
  for prompt, answer in zip(prompts, answers):
    assert answer and (len(answer) == 24 or answer[-1] == tok.im_end_id)
    full, _ = model.forward(params, cfg, jnp.asarray(prompt + answer)[None])
    logits = np.where(allowed, np.asarray(full[0, len(prompt) - 1:-1]), -np.inf)
    np.testing.assert_array_equal(answer, logits.argmax(-1))


def test_same_key_same_tokens_other_key_differs(setup):
  cfg, params, tok, prompts = setup
  a = _rows(cfg, tok, params, prompts, jax.random.key(5), 1.0)[0]
  b = _rows(cfg, tok, params, prompts, jax.random.key(5), 1.0)[0]
  c = _rows(cfg, tok, params, prompts, jax.random.key(6), 1.0)[0]
  assert a == b and a != c


def test_each_row_stops_right_after_the_stop_token(setup):
  """A stop token ends each row at its first occurrence (kept); rows without one run to the
  budget. The stop is the token row 0 greedily emits 5th, so at least that row stops early."""
  cfg, params, tok, prompts = setup
  free, _ = _rows(cfg, tok, params, prompts, jax.random.key(2), 0.0, stop_id=-1)
  stop = free[0][4]
  want = [row[:row.index(stop) + 1] if stop in row else row for row in free]
  got, truncated = _rows(cfg, tok, params, prompts, jax.random.key(2), 0.0, stop_id=stop)
  assert got == want and len(got[0]) <= 5
  assert not truncated.any()  # the budget, not the context, ends a row


def test_an_answer_cut_by_its_budget_is_not_truncated_however_the_prompt_is_padded(setup):
  """Prompts of 15 and 16 tokens share a 16-wide bucket; the 16-token one reaches the context
  and the budget at once. Both answers end by the budget alone, so neither is truncated."""
  cfg, params, tok, _ = setup
  prompts = [[65] * 15, [66] * 16]
  table = chat_env.table(prompts, tok.pad_id)
  assert table.prompt.shape[1] == 16
  eps = rollout.on_mesh(PLAN, params, chat.policy(cfg, tok, 16, 4), table, np.arange(2),
                        jax.random.key(0), 1.0, 1, stop_id=-1)
  assert [len(a) for a in chat.answers(eps)] == [4, 4]
  assert not np.asarray(eps.truncated_B).any()


def test_tiny_top_p_is_greedy(setup):
  cfg, params, tok, prompts = setup
  greedy = _rows(cfg, tok, params, prompts, jax.random.key(3), 0.0)[0]
  assert _rows(cfg, tok, params, prompts, jax.random.key(3), 1.0, top_p=1e-6)[0] == greedy


def test_ids_past_the_tokenizer_are_never_sampled(setup):
  """The tiny model has 384 logits but the byte tokenizer 259 ids; an untrained model would
  otherwise emit undecodable ids about a third of the time."""
  cfg, params, tok, prompts = setup
  key = jax.random.key(4)
  unlimited = _rows(cfg, tok, params, prompts, key, 2.0, n=32,
                    allowed=np.ones(cfg.vocab_size, bool))[0]
  assert max(map(max, unlimited)) >= tok.vocab_size  # the hazard is real
  assert max(map(max, _rows(cfg, tok, params, prompts, key, 2.0, n=32)[0])) < tok.vocab_size


def test_new_prompts_in_same_bucket_reuse_the_program_and_skip_the_machine(setup):
  cfg, params, tok, prompts = setup
  _generate(params, cfg, tok, prompts, jax.random.key(0), max_new_tokens=8, temperature=0.5)
  before, machine = rollout.rollout._cache_size(), core.advance._cache_size()
  other = [tok.encode('x'), tok.encode('a prompt of forty-odd bytes, same bucket'),
           tok.encode('z')]
  assert chat_env.table(other, 0).prompt.shape == chat_env.table(prompts, 0).prompt.shape
  _generate(params, cfg, tok, other, jax.random.key(1), max_new_tokens=8, temperature=0.9,
                top_p=0.5)
  assert rollout.rollout._cache_size() == before
  assert core.advance._cache_size() == machine  # a chat has no tools: the machine never compiles


def test_generate_checks_context_and_empty_prompts(setup):
  cfg, params, tok, _ = setup
  with pytest.raises(ConfigError, match='exceeds the model context'):
    _generate(params, cfg, tok, [[1] * 2000], jax.random.key(0), max_new_tokens=100)
  with pytest.raises(ConfigError, match='at least one token'):
    _generate(params, cfg, tok, [[1, 2], []], jax.random.key(0), max_new_tokens=4)
  with pytest.raises(ValueError, match='empty prompt'):
    sampling.pad_prompts([[1, 2], []], 0)
  with pytest.raises(ConfigError, match='one turn'):
    rollout.RolloutConfig(context=64, max_turns=2, max_segment_tokens=8, tools=False)


def test_generate_groups_samples_and_batches(setup):
  """`samples` answers per prompt in rows p * samples + j; `batch` prompts per call (the last
  call padded), call i keyed fold_in(key, i), so a prompt set split in calls draws what each call
  alone would."""
  cfg, params, tok, prompts = setup
  kw, key = dict(max_new_tokens=6, temperature=1.0), jax.random.key(7)
  greedy = _generate(params, cfg, tok, prompts, key, max_new_tokens=6, temperature=0.0,
                         samples=2)
  assert greedy[0::2] == greedy[1::2] and len(greedy) == 6
  outs = _generate(params, cfg, tok, prompts, key, batch=2, **kw)
  assert len(outs) == 3 and outs[:2] == _generate(params, cfg, tok, prompts[:2], key, **kw)
  # The last call is [p2] filled with a copy of p2: the same call as [p2, p2].
  assert _generate(params, cfg, tok, prompts + prompts[2:], key, batch=2, **kw)[:3] == outs


def test_sample_token_respects_nucleus():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  uniforms = jax.random.uniform(jax.random.key(0), (2000, 1))
  draws = jax.vmap(lambda u: sampling.sample_token(logits, u, jnp.ones(1), jnp.full(1, 0.7)))(
      uniforms)
  counts = np.bincount(np.asarray(draws).ravel(), minlength=4)
  assert counts[2] == counts[3] == 0  # outside the 0.8 nucleus that first covers 0.7
  assert 0.55 < counts[0] / counts[:2].sum() < 0.70  # renormalized 0.5 / 0.8


def test_sample_token_matches_the_softmax_distribution():
  """The inverse-CDF draw samples softmax(logits / T): frequencies over many keys agree with
  the probabilities (a chi-square-sized tolerance), and a -inf logit is never drawn."""
  logits = jnp.array([[2.0, 1.0, -jnp.inf, 0.0, 1.5]])
  temperature = 0.8
  want = np.asarray(jax.nn.softmax(logits[0] / temperature))
  uniforms = jax.random.uniform(jax.random.key(1), (20_000, 1))
  draws = jax.vmap(lambda u: sampling.sample_token(logits, u, jnp.full(1, temperature),
                                                   jnp.ones(1)))(uniforms)
  freq = np.bincount(np.asarray(draws).ravel(), minlength=5) / len(uniforms)
  assert freq[2] == 0
  np.testing.assert_allclose(freq, want, atol=0.015)


def test_prompt_buckets_are_powers_of_two():
  widths = [sampling.pad_prompts([[1] * n], 0)[0].shape[1] for n in (1, 16, 17, 33, 64, 65, 300)]
  assert widths == [16, 16, 32, 64, 64, 128, 512]


def test_nucleus_threshold_keeps_the_sorted_nucleus():
  """Against a float64 sort: every token whose higher-logit mass is below top_p, and no other,
  except where that mass is within float32 rounding of top_p. Ties, -inf logits (disallowed
  ids), one-hot and flat rows included."""
  rng = np.random.default_rng(0)
  rows = [rng.normal(size=4096) * s for s in (0.1, 1.0, 3.0, 10.0, 40.0)]
  rows.append(np.where(rng.random(4096) < 0.3, -np.inf, rng.normal(size=4096)))
  rows.append(np.repeat(rng.normal(size=64), 64))  # every logit 64 times
  rows.append(np.zeros(4096))
  x = np.stack(rows).astype(np.float32)
  for top_p in (1e-6, 0.3, 0.9, 0.95, 0.999):
    threshold = np.asarray(jax.jit(sampling.nucleus_threshold)(
        x, np.full(len(x), top_p, np.float32)))
    for row, t in zip(x.astype(np.float64), threshold):
      p = np.exp(row - row.max())
      p /= p.sum()
      above = np.array([p[row > v].sum() for v in row])
      kept = above < top_p
      near = np.abs(above - top_p) < 1e-5
      assert np.all((row >= t) == kept | (near & (row >= t))), top_p
      assert np.all(kept[~near] == (row >= t)[~near]), top_p
      assert (row >= t)[np.argmax(row)]  # the top token always
