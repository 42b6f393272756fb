import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rt_jax.core import model
from rt_jax.core import sampling
from rt_jax.core import tokenizer


@pytest.fixture(scope='module')
def setup():
  cfg = model.preset('tiny')
  return cfg, model.init_params(cfg, jax.random.key(0)), tokenizer.builtin()


def _ragged_batch(tok):
  texts = ['hi', 'a considerably longer prompt than the others in this batch', 'mid length one']
  return sampling.pad_prompts([tok.encode(t) for t in texts], tok.pad_id)


def _call(cfg, params, buf, lengths, key, temperature, top_p=1.0, stops=None, n=24):
  b = len(lengths)
  stops = np.full((b, 1), -1, np.int32) if stops is None else stops
  return sampling.sample(params, cfg, buf, lengths, key, np.full(b, temperature, np.float32),
                         np.full(b, top_p, np.float32), stops, max_new_tokens=n,
                         return_logits=True)


@pytest.mark.parametrize('temperature', [0.0, 1.0])
def test_cached_logits_equal_full_forward(setup, temperature):
  """Acceptance: the logits behind every sampled token equal a full forward of the sequence."""
  cfg, params, tok = setup
  buf, lengths = _ragged_batch(tok)
  out = _call(cfg, params, buf, lengths, jax.random.key(1), temperature)
  tokens, ends = np.asarray(out.tokens_BxS), np.asarray(out.lengths_B)
  for b in range(len(lengths)):
    n = ends[b] - lengths[b]
    assert n == 24
    full, _ = model.forward(params, cfg, jnp.asarray(tokens[b, :ends[b]])[None])
    want = np.asarray(full[0, lengths[b] - 1:ends[b] - 1])
    got = np.asarray(out.logits_BxNxV[b, :n])
    assert np.max(np.abs(got - want)) < 1e-4
    if temperature == 0:  # greedy picks the argmax of those same logits
      np.testing.assert_array_equal(tokens[b, lengths[b]:ends[b]], want.argmax(-1))


def test_same_key_same_tokens_other_key_differs(setup):
  cfg, params, tok = setup
  buf, lengths = _ragged_batch(tok)
  a = _call(cfg, params, buf, lengths, jax.random.key(5), 1.0)
  b = _call(cfg, params, buf, lengths, jax.random.key(5), 1.0)
  c = _call(cfg, params, buf, lengths, jax.random.key(6), 1.0)
  np.testing.assert_array_equal(a.tokens_BxS, b.tokens_BxS)
  assert not np.array_equal(a.tokens_BxS, c.tokens_BxS)


def test_per_row_stop_tokens(setup):
  """Each row stops right after its own stop token; the others run to the budget."""
  cfg, params, tok = setup
  buf, lengths = _ragged_batch(tok)
  free = _call(cfg, params, buf, lengths, jax.random.key(2), 0.0)
  tokens = np.asarray(free.tokens_BxS)
  # Row 0 stops at the token it greedily emits 5th; the rest get unused stop ids.
  stop0 = tokens[0, lengths[0] + 4]
  first = np.argmax(tokens[0, lengths[0]:lengths[0] + 24] == stop0)
  stops = np.array([[stop0], [-1], [-1]], np.int32)
  out = _call(cfg, params, buf, lengths, jax.random.key(2), 0.0, stops=stops)
  ends = np.asarray(out.lengths_B)
  assert ends[0] - lengths[0] == first + 1
  assert list(ends[1:] - lengths[1:]) == [24, 24]
  np.testing.assert_array_equal(np.asarray(out.tokens_BxS)[0, :ends[0]], tokens[0, :ends[0]])


def test_tiny_top_p_is_greedy(setup):
  cfg, params, tok = setup
  buf, lengths = _ragged_batch(tok)
  greedy = _call(cfg, params, buf, lengths, jax.random.key(3), 0.0)
  nucleus = _call(cfg, params, buf, lengths, jax.random.key(3), 1.0, top_p=1e-6)
  np.testing.assert_array_equal(greedy.tokens_BxS, nucleus.tokens_BxS)


def test_sample_token_respects_nucleus():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  uniforms = jax.random.uniform(jax.random.key(0), (2000, 1))
  draws = jax.vmap(lambda u: sampling.sample_token(logits, u, jnp.ones(1), jnp.full(1, 0.7)))(
      uniforms)
  counts = np.bincount(np.asarray(draws).ravel(), minlength=4)
  assert counts[2] == counts[3] == 0  # outside the 0.8 nucleus that first covers 0.7
  assert 0.55 < counts[0] / counts[:2].sum() < 0.70  # renormalized 0.5 / 0.8


def test_new_prompts_in_same_bucket_do_not_recompile(setup):
  cfg, params, tok = setup
  buf, lengths = _ragged_batch(tok)
  _call(cfg, params, buf, lengths, jax.random.key(0), 0.5, n=8)
  before = sampling.sample._cache_size()
  other, other_lengths = sampling.pad_prompts(
      [tok.encode('x'), tok.encode('a prompt of forty-odd bytes, same bucket'), tok.encode('z')],
      tok.pad_id)
  assert other.shape == buf.shape == (3, 64)
  _call(cfg, params, other, other_lengths, jax.random.key(1), 0.9, top_p=0.5, n=8)
  assert sampling.sample._cache_size() == before


def test_generate_checks_context_and_empty_prompts(setup):
  cfg, params, tok = setup
  with pytest.raises(ValueError, match='exceeds the model context'):
    sampling.generate(params, cfg, tok, [[1] * 2000], jax.random.key(0), max_new_tokens=100)
  with pytest.raises(ValueError, match='empty prompt'):
    sampling.pad_prompts([[1, 2], []], 0)


def test_generate_returns_generated_tokens_only(setup):
  cfg, params, tok = setup
  prompts = [tok.encode('abc'), tok.encode('longer prompt')]
  outs = sampling.generate(params, cfg, tok, prompts, jax.random.key(0), max_new_tokens=6,
                           temperature=0.0)
  assert [len(o) for o in outs] == [6, 6]
  full, _ = model.forward(params, cfg, jnp.asarray(prompts[0] + outs[0][:-1])[None])
  assert outs[0][0] == int(full[0, 2].argmax())


def test_ids_past_the_tokenizer_are_never_sampled(setup):
  """The tiny model has 384 logits but the byte tokenizer 259 ids; an untrained model would
  otherwise emit undecodable ids about a third of the time."""
  cfg, params, tok = setup
  buf, lengths = _ragged_batch(tok)
  b = len(lengths)
  args = (params, cfg, buf, lengths, jax.random.key(4), np.full(b, 2.0, np.float32),
          np.ones(b, np.float32), np.full((b, 1), -1, np.int32))
  unlimited = sampling.sample(*args, max_new_tokens=32)
  assert np.asarray(unlimited.tokens_BxS).max() >= tok.vocab_size  # the hazard is real
  limited = sampling.sample(*args, tok.vocab_size, max_new_tokens=32)
  generated = [np.asarray(limited.tokens_BxS)[i, lengths[i]:] for i in range(b)]
  assert max(g.max() for g in generated) < tok.vocab_size


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
