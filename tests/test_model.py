import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rt_jax.core import model


@pytest.fixture(scope='module')
def tiny():
  cfg = model.preset('tiny')
  return cfg, model.init_params(cfg, jax.random.key(0))


@pytest.mark.parametrize('name', sorted(model.PRESETS))
def test_param_count_matches_formula(name):
  cfg = model.preset(name)
  shapes = jax.eval_shape(lambda: model.init_params(cfg, jax.random.key(0)))
  assert sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)) == cfg.num_params()


def test_published_sizes():
  # SmolLM2-135M and Qwen2.5-0.5B as their model cards state them.
  assert round(model.preset('smollm2_135m').num_params() / 1e6, 1) == 134.5
  assert round(model.preset('qwen2_5_0_5b').num_params() / 1e6) == 494


def test_logical_axes_cover_every_param(tiny):
  cfg, params = tiny
  axes = model.param_axes(cfg)
  assert jax.tree.structure(axes, is_leaf=lambda x: x is None or hasattr(x, 'index')) \
      .num_leaves == len(jax.tree.leaves(params))
  assert tuple(axes['embedding']) == ('vocab', 'embed')
  assert tuple(axes['layer_0']['attn']['k']['kernel']) == ('embed', 'kv_heads', 'head_dim')
  assert tuple(axes['layer_0']['mlp']['down']['kernel']) == ('mlp', 'embed')
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    spec = axes
    for k in path:
      spec = spec[k.key]
    assert len(spec) == leaf.ndim, path


def test_cached_chunks_match_full_forward(tiny):
  """Prefill, then chunks written at different per-row offsets, equals one causal forward; the
  chunks cross the cached attention's block boundaries (slots 128 and 256) at different places."""
  cfg, params = tiny
  length = 300
  tokens = jax.random.randint(jax.random.key(1), (2, length), 0, cfg.vocab_size)
  full, _ = model.forward(params, cfg, tokens)
  cache = model.init_cache(cfg, 2, length)
  assert cache[0]['k'].shape[1] == 3 and cache[0]['k'].shape[-1] == model.CACHE_BLOCK
  # Row 0 is fed in chunks [0:100) [100:250) [250:300); row 1 in [0:129) [129:200) [200:300).
  starts = np.array([[0, 100, 250], [0, 129, 200]])
  widths = np.array([[100, 150, 50], [129, 71, 100]])
  got = np.zeros((2, length, cfg.vocab_size), np.float32)
  for c in range(3):
    w = widths[:, c].max()
    pos = starts[:, c][:, None] + np.arange(w)[None]
    chunk = np.take_along_axis(np.asarray(tokens), np.minimum(pos, length - 1), axis=1)
    logits, cache = model.forward(params, cfg, jnp.asarray(chunk), jnp.asarray(pos), cache)
    for b in range(2):
      n = widths[b, c]
      got[b, starts[b, c]:starts[b, c] + n] = logits[b, :n]
  np.testing.assert_allclose(got, np.asarray(full), atol=1e-4)


def test_select_returns_one_position(tiny):
  cfg, params = tiny
  tokens = jax.random.randint(jax.random.key(2), (3, 10), 0, cfg.vocab_size)
  full, _ = model.forward(params, cfg, tokens)
  picked, _ = model.forward(params, cfg, tokens, select_B=jnp.array([0, 4, 9]))
  np.testing.assert_allclose(picked[:, 0], full[jnp.arange(3), jnp.array([0, 4, 9])], atol=1e-5)


def test_rope_scores_depend_only_on_relative_position():
  q, k = jax.random.normal(jax.random.key(3), (2, 1, 1, 1, 64))
  score = lambda m, n: jnp.sum(model.rope(q, jnp.array([[m]]), 1e4) *
                               model.rope(k, jnp.array([[n]]), 1e4))
  assert jnp.allclose(score(3, 1), score(10, 8), atol=1e-4)
  assert not jnp.allclose(score(3, 1), score(3, 2), atol=1e-4)
  np.testing.assert_allclose(model.rope(q, jnp.array([[0]]), 1e4), q, atol=1e-6)


def test_variants_bias_untied_bf16():
  cfg = dataclasses.replace(model.preset('tiny'), qkv_bias=True, tie_embeddings=False)
  params = model.init_params(cfg, jax.random.key(0))
  assert 'lm_head' in params and 'bias' in params['layer_0']['attn']['q']
  assert sum(x.size for x in jax.tree.leaves(params)) == cfg.num_params()
  tokens = jnp.arange(12)[None] % cfg.vocab_size
  f32, _ = model.forward(params, cfg, tokens)
  bf16, _ = model.forward(params, dataclasses.replace(cfg, dtype='bfloat16'), tokens)
  assert f32.dtype == bf16.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(f32 - bf16))) < 0.1


def test_bad_config_rejected():
  with pytest.raises(ValueError, match='multiple of n_kv_heads'):
    model.preset('tiny', n_heads=6, n_kv_heads=4)
  with pytest.raises(ValueError, match='unknown model preset'):
    model.preset('gpt5')
