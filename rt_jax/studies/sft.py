"""The `sft` job of `rt_jax.main`: fine-tune on the generated chat corpus (data/chat_corpus.py),
resumable from Orbax checkpoints, TensorBoard scalars, samples at the end."""
import functools
import os
import time

import jax
import jax.numpy as jnp

from rt_jax.core import checkpoint as checkpoint_lib
from rt_jax.core import metrics as metrics_lib
from rt_jax.core import model as model_lib
from rt_jax.core import perf
from rt_jax.core import sharding
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.core import train
from rt_jax.data import chat_corpus
from rt_jax.rl import chat
from rt_jax.core.errors import ConfigError, NonFiniteLossError


def validate(config):
  """The sft job's value checks (before any compute)."""
  if not config.init_from and config.data.seq_len > config.model.max_len:
    raise ConfigError(f'config.data.seq_len={config.data.seq_len} exceeds '
                      f'model.max_len={config.model.max_len}')
  for key in ('train.steps', 'train.batch_size', 'data.seq_len', 'data.num_examples',
              'log_every', 'checkpoint_every'):
    value = functools.reduce(lambda node, part: node[part], key.split('.'), config)
    if value <= 0:
      raise ConfigError(f'config.{key}={value} must be positive')
  train.microbatch_count(config.train.batch_size, config.train.microbatch_rows, 'train')
  train.check_optimizer(config.train, 'train')
  if not 0 <= config.train.final_lr_frac <= 1:
    raise ConfigError(f'config.train.final_lr_frac={config.train.final_lr_frac} must be in [0, 1]')
  sharding.validate(config, ('train.batch_size',))  # a step's rows split over the batch axes


def _sample_report(params, cfg, tok, prompts, sample_cfg, key) -> str:
  system = [{'role': 'system', 'content': sample_cfg.system}] if sample_cfg.system else []
  encoded = [tokenizer_lib.encode_chat(tok, system + [{'role': 'user', 'content': p}],
                                       add_generation_prompt=True)[0] for p in prompts]
  # A handful of prompts, whatever their count: sampled on one device, not split over the mesh.
  outs = chat.generate(sharding.to_one_device(params), cfg, tok, encoded, key,
                       plan=sharding.Plan.one_device(), max_new_tokens=sample_cfg.max_new_tokens,
                       temperature=sample_cfg.temperature, what='sft samples')
  return '\n\n'.join(f'USER: {p}\nASSISTANT: {tok.decode(o)}' for p, o in zip(prompts, outs))


def train_and_evaluate(config, workdir: str):
  """The `sft` job: fine-tune on the generated chat corpus, resuming from WORKDIR if it holds a
  checkpoint."""
  if config.init_from:
    cfg, tok, init_params = checkpoint_lib.load_model(config.init_from)
  else:
    cfg, tok, init_params = model_lib.ModelConfig(**config.model), tokenizer_lib.builtin(), None
  if tok.vocab_size > cfg.vocab_size:
    raise ConfigError(f'tokenizer has {tok.vocab_size} ids but model.vocab_size={cfg.vocab_size}')
  corpus = chat_corpus.ChatCorpus(tok, config.data.num_examples, config.data.seq_len, config.seed)
  checkpoint_lib.write_model_files(workdir, cfg, tok)
  mngr = checkpoint_lib.Manager(workdir, max_to_keep=config.keep_checkpoints)
  try:  # however the run ends, pending asynchronous saves are completed before exit
    return _sft_loop(config, workdir, cfg, tok, init_params, corpus, mngr)
  finally:
    mngr.close()


def _sft_loop(config, workdir, cfg, tok, init_params, corpus, mngr):
  tc = config.train
  optimizer, schedule = train.make_optimizer(tc), train.lr_schedule(tc)
  init_key, step_key, sample_key = jax.random.split(jax.random.key(config.seed), 3)
  plan = sharding.Plan.from_config(config)  # where the state and every batch live
  start = mngr.latest_intact_step()  # a corrupt latest step falls back to an earlier one
  if start is not None:
    # Onto this run's mesh, whichever mesh saved it.
    target = plan.abstract_state(cfg, optimizer)
    params, opt_state, meta = mngr.restore(start, target.params, target.opt_state)
    for name, value in (('seed', config.seed), ('train.batch_size', tc.batch_size)):
      if meta[name] != value:
        raise ConfigError(f'{workdir} was trained with {name}={meta[name]}, not {value}; a '
                          f'resumed run must keep it to continue the same data order')
    state = plan.train_state(start, params, opt_state)
    step_key = jax.random.wrap_key_data(jnp.array(meta['rng'], jnp.uint32))
    loss = meta['loss']
    metrics_lib.console(f'resumed from {mngr.path}/{start} (data position '
                        f'{meta["data_position"]}, loss {loss:.4f})')
  else:
    state = plan.init_state(cfg, init_key, optimizer, params=init_params)  # None: fresh, sharded
    start, loss = 0, float('nan')

  # Steps up to `start` were logged and checkpointed; only later ones belong to the killed run.
  writer = metrics_lib.Writer(os.path.join(workdir, 'tb'), purge_step=start + 1 if start else None)
  if start == 0:
    writer.text(0, 'config', config.to_json_best_effort(indent=2))
  flops_per_token = perf.train_flops_per_token(cfg, config.data.seq_len - 1)
  peak = config.peak_flops or perf.matmul_peak_flops()
  metrics_lib.console(f'model {cfg.num_params() / 1e6:.2f}M parameters, {cfg.n_layers} layers; '
                      f'matmul peak {peak / 1e9:.0f} GFLOP/s; steps {start}..{tc.steps}')

  microbatches = train.microbatch_count(tc.batch_size, tc.microbatch_rows, 'train')
  log = {'loss': loss, 'last_saved': start, 'pending': [], 'window_start': time.perf_counter(),
         'window_tokens': 0}

  def after_step(step, state, m):
    log['pending'].append(m)
    log['window_tokens'] += tc.batch_size * (config.data.seq_len - 1)
    done = step + 1
    log_now = done % config.log_every == 0 or done == tc.steps
    save_now = done % config.checkpoint_every == 0 or done == tc.steps
    if not (log_now or save_now):
      return
    # Metrics are read back only where they are used. A non-finite step left the state as it
    # was, and nothing is saved before this check, so the last checkpoint is always good.
    read, log['pending'] = jax.device_get(log['pending']), []
    for offset, r in enumerate(read):
      if not r['finite']:
        writer.close()
        raise NonFiniteLossError(
            f'non-finite loss ({r["loss"]}) or gradient norm ({r["grad_norm"]}) at step '
            f'{done - len(read) + offset}; the last good checkpoint is '
            f'{mngr.path}/{log["last_saved"]}')
    log['loss'] = float(read[-1]['loss'])
    if log_now:
      tokens_per_s = log['window_tokens'] / (time.perf_counter() - log['window_start'])
      mfu = tokens_per_s * flops_per_token / peak
      writer.scalars(done, {'train/loss': log['loss'], 'train/grad_norm': read[-1]['grad_norm'],
                            'train/learning_rate': schedule(step),
                            'perf/tokens_per_s': tokens_per_s, 'perf/mfu': mfu})
      metrics_lib.console(f'step {done}/{tc.steps}  loss {log["loss"]:.4f}  '
                          f'{tokens_per_s:.0f} tok/s  MFU {100 * mfu:.1f}%')
      log['window_start'], log['window_tokens'] = time.perf_counter(), 0
    if save_now:
      mngr.save(done, state.params, state.opt_state,
                {'step': done, 'data_position': done * tc.batch_size, 'seed': config.seed,
                 'train.batch_size': tc.batch_size, 'loss': log['loss'],
                 'rng': jax.random.key_data(step_key).tolist()})
      log['last_saved'] = done

  step = functools.partial(plan.train_step, cfg=cfg, optimizer=optimizer,
                           microbatches=microbatches)
  # A batch is prepared while the previous step still runs.
  state = train.loop(step, state, tc.steps, lambda i, _: corpus.batch(i, tc.batch_size),
                     lambda i: jax.random.fold_in(step_key, i), first=start,
                     after_step=after_step)
  loss = log['loss']

  if config.sample.prompts:
    text = _sample_report(state.params, cfg, tok, list(config.sample.prompts), config.sample,
                          sample_key)
    writer.text(tc.steps, 'samples', text)
    metrics_lib.console(f'samples after training:\n{text}')
  writer.close()
  return {'final_loss': loss, 'steps': tc.steps}
