"""Training-step throughput and MFU against the machine's measured matmul peak and, optionally,
against HF transformers + PyTorch training the same model shape; prints one JSON line.

  python -m bench.train [--preset=smollm2_135m] [--batch=8] [--seq_len=512] [--microbatch_rows=1]
  python -m bench.train --preset=smollm2_135m --peer=torch   # needs requirements-ref.txt

One step is the forward pass, the backward pass and a clipped AdamW update on `batch` rows of
`seq_len` positions of random tokens, every target learned; weights are random (the speed does not
depend on them). With --microbatch_rows the gradient is accumulated over row slices, on both
sides. The FLOP formula is rt_jax.core.perf.train_flops_per_token: 6N + 12·L·H·Dh·T per token (the
matmuls forward and backward, plus attention scores and values; PaLM, arXiv 2204.02311,
appendix B), N counting the tied embedding once. MFU = tokens/s x FLOPs per token / the measured
f32 matmul peak (rt_jax.core.perf.matmul_peak_flops). tokens_per_s is the best of --repeats timed
steps after one compiling step. The peer is transformers' LlamaForCausalLM with the same shapes in
f32, torch.optim.AdamW and the same gradient clipping; rt_jax's peak resident memory is read
before the peer is imported.
"""
import resource

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags

import bench
from rt_jax.core import cli
from rt_jax.core import model as model_lib
from rt_jax.core import perf
from rt_jax.core import train
from rt_jax.core.errors import ConfigError

_PRESET = flags.DEFINE_enum('preset', 'smollm2_135m', sorted(model_lib.PRESETS),
                            'Model shapes (random weights).')
_BATCH = flags.DEFINE_integer('batch', 8, 'Rows per step.', lower_bound=1)
_SEQ_LEN = flags.DEFINE_integer('seq_len', 512, 'Positions per row.', lower_bound=2)
_MICROBATCH_ROWS = flags.DEFINE_integer(
    'microbatch_rows', 1, 'Rows per forward/backward (gradient accumulation); 0: all at once.',
    lower_bound=0)
_PEER = flags.DEFINE_enum('peer', None, ['torch'], 'Also time HF transformers + PyTorch.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed steps (the best is reported).',
                                lower_bound=1)
_SEED = flags.DEFINE_integer('seed', 0, 'Seed for weights and tokens.')

# The sft job's optimizer settings (configs/tiny.py); the learning rate does not change the speed.
OPTIMIZER = ml_collections.ConfigDict({
    'lr': 1e-4, 'warmup_steps': 1, 'steps': 100, 'final_lr_frac': 0.1, 'weight_decay': 0.0,
    'b1': 0.9, 'b2': 0.95, 'grad_clip': 1.0})


def time_rt_jax(cfg, tokens_BxT1, microbatches: int, repeats: int, seed: int) -> dict:
  optimizer = train.make_optimizer(OPTIMIZER)
  params = model_lib.init_params(cfg, jax.random.key(seed))
  state = [train.TrainState(jnp.int32(0), params, optimizer.init(params))]
  batch = {'tokens': tokens_BxT1, 'mask': np.ones_like(tokens_BxT1)}

  def call():  # the state is donated: each step's output is the next step's input
    state[0], m = train.train_step(state[0], batch, jax.random.key(0), cfg=cfg,
                                   optimizer=optimizer, microbatches=microbatches)
    float(m['loss'])
  first, best = perf.best_time(call, repeats)
  return {'step_s': round(best, 3), 'first_step_s': round(first, 2),
          'peak_rss_gb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def time_torch(cfg, tokens_BxT1, microbatches: int, repeats: int, seed: int) -> dict:
  import torch  # the peer is imported only when asked for, after rt_jax's memory is read
  from transformers import LlamaConfig, LlamaForCausalLM
  torch.manual_seed(seed)
  hf = LlamaForCausalLM(LlamaConfig(
      vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.mlp_dim,
      num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
      num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim,
      max_position_embeddings=cfg.max_len, rope_theta=cfg.rope_base, rms_norm_eps=cfg.norm_eps,
      tie_word_embeddings=cfg.tie_embeddings, attention_bias=cfg.qkv_bias)).float().train()
  n_params = sum(p.numel() for p in hf.parameters())
  if n_params != cfg.num_params():
    raise ConfigError(f'the torch peer has {n_params} parameters, rt_jax {cfg.num_params()}: '
                      f'not the same model')
  opt = torch.optim.AdamW(hf.parameters(), lr=OPTIMIZER.lr, betas=(OPTIMIZER.b1, OPTIMIZER.b2),
                          weight_decay=OPTIMIZER.weight_decay)
  tokens = torch.from_numpy(tokens_BxT1).long()
  total = tokens[:, 1:].numel()

  def call():
    opt.zero_grad(set_to_none=True)
    for rows in tokens.chunk(microbatches):
      logits = hf(input_ids=rows[:, :-1]).logits
      nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten(),
                                              reduction='sum')
      (nll / total).backward()
    torch.nn.utils.clip_grad_norm_(hf.parameters(), OPTIMIZER.grad_clip)
    opt.step()
  first, best = perf.best_time(call, repeats)
  return {'step_s': round(best, 3), 'first_step_s': round(first, 2),
          'torch_threads': torch.get_num_threads()}


def _throughput(timing: dict, tokens: int, flops_per_token: float, peak: float) -> dict:
  tokens_per_s = tokens / timing['step_s']
  return {**timing, 'tokens_per_s': round(tokens_per_s, 1),
          'mfu': round(tokens_per_s * flops_per_token / peak, 4)}


def main(argv):
  del argv
  cfg = model_lib.preset(_PRESET.value)
  batch, seq_len = _BATCH.value, _SEQ_LEN.value
  if _MICROBATCH_ROWS.value and batch % _MICROBATCH_ROWS.value:
    raise ConfigError(f'--microbatch_rows={_MICROBATCH_ROWS.value} must divide --batch={batch}')
  microbatches = batch // (_MICROBATCH_ROWS.value or batch)
  if seq_len > cfg.max_len:
    raise ConfigError(f'--seq_len={seq_len} exceeds the {_PRESET.value} preset\'s max_len '
                      f'{cfg.max_len}')
  rng = np.random.default_rng(_SEED.value)
  tokens_BxT1 = rng.integers(0, cfg.vocab_size, size=(batch, seq_len + 1), dtype=np.int32)
  flops_per_token = perf.train_flops_per_token(cfg, seq_len)
  peak = perf.matmul_peak_flops()
  measure = lambda timing: _throughput(timing, batch * seq_len, flops_per_token, peak)
  ours = measure(time_rt_jax(cfg, tokens_BxT1, microbatches, _REPEATS.value, _SEED.value))
  result = {'bench': 'train', 'model': _PRESET.value, 'device': jax.devices()[0].device_kind,
            'params': cfg.num_params(), 'batch': batch, 'seq_len': seq_len,
            'microbatches': microbatches, 'flops_per_token': flops_per_token,
            'flop_formula': '6N + 12*L*H*Dh*T (PaLM appendix B)',
            'matmul_peak_gflops': round(peak / 1e9, 1), 'rt_jax': ours}
  if _PEER.value == 'torch':
    peer = measure(time_torch(cfg, tokens_BxT1, microbatches, _REPEATS.value, _SEED.value))
    result['torch'] = peer
    result['ratio_rt_jax_over_torch'] = round(ours['tokens_per_s'] / peer['tokens_per_s'], 2)
  bench.emit('train', result)


if __name__ == '__main__':
  cli.run(main)
