import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from rt_jax.core import model
from rt_jax.core import train
from rt_jax.core.errors import ConfigError

CFG = model.preset('tiny', d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16,
                   mlp_dim=128)
TRAIN = ml_collections.ConfigDict({
    'steps': 100, 'lr': 1e-2, 'warmup_steps': 10, 'final_lr_frac': 0.1, 'weight_decay': 0.0,
    'b1': 0.9, 'b2': 0.95, 'grad_clip': 1.0})


def _batch(seed=0, b=4, t=24):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(0, 256, size=(b, t), dtype=np.int32)
  mask = np.zeros((b, t), np.int32)
  mask[:, t // 2:] = 1
  return {'tokens': tokens, 'mask': mask}


def _state(cfg=CFG):
  params = model.init_params(cfg, jax.random.key(0))
  return train.TrainState(jnp.array(0), params, train.make_optimizer(TRAIN).init(params))


def test_masked_nll_matches_numpy():
  params = model.init_params(CFG, jax.random.key(1))
  batch = _batch()
  logits, _ = model.forward(params, CFG, batch['tokens'][:, :-1])
  logp = np.asarray(jax.nn.log_softmax(logits))
  targets, weights = batch['tokens'][:, 1:], batch['mask'][:, 1:]
  picked = np.take_along_axis(logp, targets[..., None], -1)[..., 0]
  want = -(picked * weights).sum() / weights.sum()
  assert abs(float(train.masked_nll(params, CFG, batch['tokens'], batch['mask'])) - want) < 1e-5


def test_unmasked_targets_do_not_matter():
  """Tokens outside the mask change neither the loss nor the gradient when nothing after them
  is learned from: the loss covers assistant tokens only."""
  params = model.init_params(CFG, jax.random.key(1))
  batch = _batch()
  batch['mask'][:, -3:] = 0
  other = batch['tokens'].copy()
  other[:, -3:] = (other[:, -3:] + 7) % 256
  grad = jax.grad(train.masked_nll)
  g1, g2 = grad(params, CFG, batch['tokens'], batch['mask']), grad(params, CFG, other,
                                                                    batch['mask'])
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('name, lr', [('adamw', 1e-2), ('lion', 3e-3), ('sgd', 0.3)])
def test_step_lowers_loss_on_fixed_batch(name, lr):
  settings = ml_collections.ConfigDict({**TRAIN.to_dict(), 'optimizer': name, 'lr': lr})
  optimizer, batch = train.make_optimizer(settings), _batch()
  params = model.init_params(CFG, jax.random.key(0))
  state = train.TrainState(jnp.array(0), params, optimizer.init(params))
  losses = []
  for i in range(30):
    state, m = train.train_step(state, batch, jax.random.key(i), cfg=CFG, optimizer=optimizer)
    losses.append(float(m['loss']))
    assert bool(m['finite'])
  assert int(state.step) == 30
  assert losses[-1] < 0.5 * losses[0]


def test_microbatched_step_equals_whole_batch_step():
  """Accumulating the gradient over row slices is the whole batch's step, even when the slices
  hold different numbers of learned tokens (the mean is over the batch, not per slice)."""
  optimizer, batch = train.make_optimizer(TRAIN), _batch(b=4)
  batch['mask'][:2, :20] = 1  # rows 0-1 learn 19 targets, rows 2-3 learn 12
  whole, m_whole = train.train_step(_state(), batch, jax.random.key(0), cfg=CFG,
                                    optimizer=optimizer)
  for microbatches in (2, 4):
    sliced, m = train.train_step(_state(), batch, jax.random.key(0), cfg=CFG, optimizer=optimizer,
                                 microbatches=microbatches)
    np.testing.assert_allclose(float(m['loss']), float(m_whole['loss']), rtol=1e-6)
    np.testing.assert_allclose(float(m['grad_norm']), float(m_whole['grad_norm']), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(sliced.params), jax.tree.leaves(whole.params)):
      np.testing.assert_allclose(a, b, atol=1e-6)


def test_trimmed_batch_trains_as_the_padded_one():
  """train.trimmed cuts the right padding after the last learned token (to a power of two or a
  multiple of the one given, at least the floor): the step's loss and new parameters equal the padded batch's, while the width
  shrinks; a batch learned up to its end keeps every column."""
  optimizer = train.make_optimizer(TRAIN)
  batch = _batch(b=4, t=64)
  batch['mask'][:] = 0
  batch['mask'][0, 3:19] = 1  # the last learned token is column 18 of 64
  batch['mask'][2, 5:11] = 1
  batch['tokens'][:, 19:] = 0  # padding
  cut = train.trimmed(batch, floor=8)
  assert cut['tokens'].shape == cut['mask'].shape == (4, 32)  # 19 -> the next power of two
  assert train.trimmed(batch, floor=48)['tokens'].shape == (4, 48)
  assert train.trimmed(batch, floor=8, multiple=12)['tokens'].shape == (4, 24)  # 19 -> 2 x 12
  assert train.trimmed(batch, floor=8, multiple=40)['tokens'].shape == (4, 40)
  full = dict(batch, mask=np.ones_like(batch['mask']))
  assert train.trimmed(full, floor=8)['tokens'].shape == (4, 64)
  padded, m_padded = train.train_step(_state(), batch, jax.random.key(0), cfg=CFG,
                                      optimizer=optimizer)
  trim, m_trim = train.train_step(_state(), cut, jax.random.key(0), cfg=CFG, optimizer=optimizer)
  np.testing.assert_allclose(float(m_trim['loss']), float(m_padded['loss']), rtol=1e-6)
  for a, b in zip(jax.tree.leaves(trim.params), jax.tree.leaves(padded.params)):
    np.testing.assert_allclose(a, b, atol=1e-6)
  # Not vacuous: a cut inside the learned span changes the loss.
  inside = {k: v[:, :16] for k, v in batch.items()}
  _, m_inside = train.train_step(_state(), inside, jax.random.key(0), cfg=CFG,
                                 optimizer=optimizer)
  assert abs(float(m_inside['loss']) - float(m_padded['loss'])) > 1e-4


def test_non_finite_step_leaves_state_unchanged():
  state, optimizer = _state(), train.make_optimizer(TRAIN)
  poisoned = jax.tree.map(lambda x: x, state.params)
  poisoned['embedding'] = poisoned['embedding'].at[3, 0].set(jnp.nan)
  state = train.TrainState(state.step, poisoned, state.opt_state)
  kept = jax.tree.map(np.asarray, state)
  new, m = train.train_step(state, _batch(), jax.random.key(0), cfg=CFG, optimizer=optimizer)
  assert not bool(m['finite'])
  for a, b in zip(jax.tree.leaves(kept.params), jax.tree.leaves(new.params)):
    np.testing.assert_array_equal(a, b)


def test_schedule_warms_up_then_decays():
  schedule = train.lr_schedule(TRAIN)
  assert float(schedule(0)) == 0.0
  assert float(schedule(10)) == pytest.approx(1e-2)
  assert float(schedule(100)) == pytest.approx(1e-3)
  assert float(schedule(5)) == pytest.approx(5e-3)


def test_unknown_optimizer_is_a_config_error():
  with pytest.raises(ConfigError, match=r"config.safety.optimizer='adam': choose from adamw, "
                                        r"lion, sgd"):
    train.check_optimizer(ml_collections.ConfigDict({'optimizer': 'adam'}), 'safety')
  train.check_optimizer(TRAIN, 'train')  # no field: AdamW
