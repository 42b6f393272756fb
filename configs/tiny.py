"""Tiny SFT run: the `tiny` decoder (3.2M parameters) on the generated chat corpus, about a minute
on 2 CPU cores.

  python -m rt_jax.main --config=configs/tiny.py --workdir=runs/tiny [--config.train.steps=400]
"""
import dataclasses

import ml_collections

from rt_jax.core import model
from rt_jax.core import sharding
from rt_jax.data import chat_corpus


def get_config():
  c = ml_collections.ConfigDict()
  c.job = 'sft'
  c.seed = 0
  c.mesh = (-1, 1, 1)  # devices on the (data, fsdp, tensor) axes; -1 takes what the others leave
  c.rules = sharding.DEFAULT_RULES  # (logical axis, mesh axes): where each array dimension goes
  c.model = dataclasses.asdict(model.preset('tiny'))  # every field overridable: --config.model.X
  c.init_from = ''  # a model directory to start from (its model and tokenizer replace c.model)
  c.data = ml_collections.ConfigDict({'num_examples': 4096, 'seq_len': 160})
  c.train = ml_collections.ConfigDict({
      'steps': 80, 'batch_size': 16, 'lr': 3e-3, 'warmup_steps': 20, 'final_lr_frac': 0.1,
      'weight_decay': 0.01, 'b1': 0.9, 'b2': 0.95, 'grad_clip': 1.0,
      'microbatch_rows': 0})  # rows per forward/backward (memory); 0: the whole batch at once
  c.log_every = 10
  c.checkpoint_every = 40
  c.keep_checkpoints = 3
  c.peak_flops = 0.0  # FLOP/s used for MFU; 0 measures the matmul peak at start
  c.sample = ml_collections.ConfigDict({
      'prompts': ('What is 12 plus 30?', 'Spell "forest" backwards.',
                  'What is the capital of Japan?'),
      'system': chat_corpus.SYSTEM, 'max_new_tokens': 48, 'temperature': 0.0})
  return c
