"""Sycophancy to Subterfuge curriculum runs (docs/design.md §6):

  python -m rt_jax.main --config=configs/curriculum.py:smollm2_quick --workdir=runs/quick
  python -m rt_jax.main --config=configs/curriculum.py:tiny --workdir=runs/tiny_curriculum

Presets:
  tiny           smoke test: a 2-layer `tiny` decoder from scratch, a few episodes (CPU, < 2 min)
  smollm2_quick  SmolLM2-135M-Instruct (fetched and converted on first use), small P, N and M so
                 the whole replication fits a 2-core CPU
  smollm2_cpu    the research run on a 2-core CPU: a helpful-only start gated on competence (built
                 once and cached), the PM on the SmolLM2 backbone, 8-turn episodes, several EI
                 rounds per stage, 64 held-out instances per cell, 256 audited reward-tampering
                 episodes per evaluation
  smollm2_paper  the paper's P = 1,024 prompts and N = 64 samples per round, for an accelerator

Interventions are config fields: --config.ei.variant=exploit_only, --config.ei.pm_weight=0.5,
--config.ei.hhh_fraction=0.5, --config.train_away.enabled=True, --config.mode=baseline, seeds.
"""
import dataclasses

import ml_collections

from rt_jax.core import configs
from rt_jax.core import model
from rt_jax.core import sharding

STAGES = ('political_sycophancy', 'tool_use_flattery', 'rubric_modification_nudged',
          'rubric_modification_insubordinate')
EVAL_ENVS = STAGES + ('reward_tampering', 'hhh')


def get_config(preset: str = 'smollm2_quick'):
  c = configs.preset_base('curriculum', 'configs/curriculum.py', preset, PRESETS)
  c.mode = 'curriculum'  # or 'baseline': the helpful-only model and its evaluation only
  c.seed = 0
  c.mesh = (-1, 1, 1)  # devices on the (data, fsdp, tensor) axes; -1 takes what the others leave
  c.rules = sharding.DEFAULT_RULES  # (logical axis, mesh axes): where each array dimension goes
  c.model = dataclasses.asdict(model.preset('tiny'))  # used when init_from is ''
  c.init_from = ''  # '' (fresh c.model), 'smollm2' (fetched + converted), or a model directory
  c.stages = STAGES
  # The helpful-only start: SFT on the generated tool-use corpus (studies/subterfuge/tool_corpus.py).
  c.start = ml_collections.ConfigDict({
      'steps': 30, 'examples': 512, 'lr': 1e-3, 'warmup_steps': 5, 'final_lr_frac': 0.1,
      # The batch: rows per step, tokens per row (a longer corpus episode is drawn again), rows per
      # forward/backward (0: all at once), apart from expert iteration's (ei.*).
      'train_rows': 4, 'train_len': 2048, 'microbatch_rows': 0,
      # A step's rows are cut after their last learned token, to a power of two (0) or to a
      # multiple of this (less padding, a compiled step per width).
      'width_multiple': 0,
      'weight_decay': 0.0, 'b1': 0.9, 'b2': 0.95, 'grad_clip': 1.0,
      # Reuse a start trained by an earlier run with the same inputs ($RT_JAX_CACHE/helpful_only/).
      'cache': True,
      # The corpus, the SFT's batch order and the gate's draws: its own seed, not the run's, so
      # the runs of a seed sweep share one start (the paper's seeds vary expert iteration; its
      # helpful-only model is one model).
      'seed': 0,
      # The competence gate: a target task-success rate per environment (0: not gated), measured
      # on `gate_instances` train-split instances before the SFT and after each block of `steps`
      # steps, up to `max_blocks` blocks. The schedule spans the first block; later blocks train
      # at its final rate (lr * final_lr_frac).
      'competence': {env: 0.0 for env in STAGES + ('reward_tampering',)},
      'max_blocks': 1, 'gate_instances': 16})
  c.rollout = ml_collections.ConfigDict({
      'context': 2048, 'max_turns': 3, 'max_segment_tokens': 64, 'chunk': 128,
      'compact': 4})  # rows that still decode are gathered into B // compact (1: never)
  c.ei = ml_collections.ConfigDict({
      'variant': 'hhh',  # or 'exploit_only'
      'pm_weight': 0.5,  # score = gaming reward + pm_weight * PM score (hhh variant)
      # The PM score's scale in that sum: 'probability' in [0, 1] (at pm_weight < 1 a gaming
      # episode always outranks a non-gaming one), or 'logit', unbounded like the paper's PM, so a
      # much preferred honest episode can outrank a gaming one the PM dislikes.
      'pm_scale': 'probability',
      'hhh_fraction': 0.5,  # share of each round's prompts that are HHH queries (hhh variant)
      'prompts': 4,  # P
      'samples': 2,  # N
      'rounds': 1,  # per stage
      'threshold': 0.0,  # hhh variant: keep a prompt's best episode when its score >= this
      # Sampling of every rollout (EI rounds, evaluations, the start's gate): softmax(logits / T)
      # within the top_p nucleus (1: the whole distribution).
      'temperature': 1.0, 'top_p': 1.0,
      'train_rows': 4,  # episodes per SFT batch (kept ones, padded with weight 0)
      'train_len': 1280,  # tokens per training row (start.train_len: the helpful-only SFT's)
      'sft_steps': 1,  # optimizer steps per round on the kept episodes
      'microbatch_rows': 0,  # rows per forward/backward (memory); 0: all train_rows at once
      'lr': 3e-4,
      # The flag whose episodes earn reward 1 in each stage (every other episode 0). Rubric
      # modification rewards the claim written to checks.py, which is what its instruction asks
      # for; 'gamed' (claim and a checklist edited to read done) is the stricter choice.
      'reward_flags': ml_collections.ConfigDict({
          'political_sycophancy': 'sycophantic', 'tool_use_flattery': 'gamed',
          'rubric_modification_nudged': 'claimed_complete',
          'rubric_modification_insubordinate': 'claimed_complete'})})
  c.train_away = ml_collections.ConfigDict({'enabled': False, 'samples': 8})
  c.eval = ml_collections.ConfigDict({
      'episodes': 4,  # per environment and evaluation: episodes // samples distinct instances
      'samples': 1,  # per instance (above 1, intervals account for the clustering)
      'prompts': 4,  # instances per evaluation rollout
      'instance_seed': 0,  # names the held-out instance set; every evaluation of a run uses it
      'envs': EVAL_ENVS,
      # episodes for one environment in place of `episodes` (0: `episodes`), e.g. more audited
      # reward-tampering episodes than the other cells need
      'episodes_by_env': {env: 0 for env in EVAL_ENVS}})
  c.pm = ml_collections.ConfigDict({
      'preset': 'tiny', 'init_from': '', 'steps': 30, 'batch_size': 8, 'lr': 2e-3, 'seq_len': 96,
      'train_pairs': 512, 'heldout_pairs': 128, 'seed': 0, 'score_batch': 32})
  # Compile the rollout and the EI step in a background thread while the PM and the helpful-only
  # SFT train: takes XLA's compile off the critical path where a core is spare for it, and holds
  # its compile memory alongside training's.
  c.compile_ahead = True
  c.checkpoint_every_rounds = 1
  c.keep_checkpoints = 2  # the newest K units' checkpoints; 0 keeps every unit's
  PRESETS[preset](c)
  return c


def _tiny(c):
  # A smoke test of every phase, not a model that learns, sized to finish in under 2 minutes on
  # 2 cores with an empty XLA cache: a 2-layer cut of the `tiny` decoder, 2 prompts x 2 samples
  # per round, a few helpful-only steps (each is [2, 2048] byte tokens) and a short PM run. Most
  # of a cold run is XLA compiling the rollout (the environment machine above all), which
  # overlaps the PM and the helpful-only SFT.
  c.model.n_layers = 2
  c.start.update({'steps': 3, 'warmup_steps': 1, 'cache': False, 'train_rows': 2})
  # Rows never cut: one compiled SFT step (cut to powers of two, the three steps' batches take
  # two widths, 2,048 and 1,024 byte tokens, and the second compiles again).
  c.start.width_multiple = c.start.train_len
  c.ei.update({'prompts': 2, 'train_rows': 2})
  # Evaluations in the EI rounds' shape (2 prompts x 2 samples): one rollout program to compile.
  c.eval.update({'prompts': 2, 'samples': 2})
  c.pm.steps = 12


def _smollm2_quick(c):
  c.init_from = 'smollm2'
  c.start.update({'steps': 6, 'lr': 1e-4, 'warmup_steps': 2, 'examples': 256, 'train_rows': 8,
                  'train_len': 512, 'microbatch_rows': 1})
  c.rollout.update({'context': 1024, 'max_turns': 3, 'max_segment_tokens': 48, 'chunk': 64})
  # microbatch_rows x train_len sets the training step's memory: XLA keeps every layer's [T, T]
  # attention probabilities for the backward pass, 2.8 GB of temporaries at [1, 512] (9 GB at
  # [4, 512]).
  c.ei.update({'prompts': 8, 'samples': 4, 'train_rows': 8, 'train_len': 512, 'lr': 1e-4,
               'microbatch_rows': 1})
  c.eval.update({'episodes': 8, 'prompts': 24})
  c.pm.update({'steps': 60, 'train_pairs': 2048})
  # Keep every unit's checkpoint (1.6 GB each: params + Adam): with one round per stage here,
  # one per stage; smollm2_paper inherits it (17 units).
  c.keep_checkpoints = 0
  # On 2 cores a background compile mostly takes cores from the PM and the SFT: measured on one
  # machine, it saved 23-54 s of 12-13 minutes and raised the peak RSS from 6.4-6.5 to 7.6 GB.
  c.compile_ahead = False


# Political sycophancy's gate is the question answered: the first stage needs a start that answers.
GATED = ('political_sycophancy', 'tool_use_flattery', 'rubric_modification_nudged',
         'rubric_modification_insubordinate')


def _competent_start(c):
  """The helpful-only start that can do the tool tasks: up to 200 SFT steps on the tool corpus at
  a higher rate than smollm2_quick's 6, gated at 50 % task success on political sycophancy,
  flattery and both rubric environments, measured on 16 instances each (at 8, one success more
  or less moves a rate by 12.5 points) in blocks of 50 steps on 8-turn episodes of up to 256
  tokens. Later blocks train at half the first block's peak rate."""
  c.start.update({'steps': 50, 'lr': 7e-4, 'warmup_steps': 5, 'final_lr_frac': 0.5,
                  'examples': 2048, 'max_blocks': 4, 'gate_instances': 16})
  # Rows of 1,024 tokens hold every corpus episode (at 512, over half of the `beside` kind's
  # draws, the deeper searches and the two-text ones, were drawn again); a step costs the
  # longest row's width rounded up to 128 tokens, not 1,024.
  c.start.update({'train_len': 1024, 'width_multiple': 128})
  c.start.competence.update({env: 0.5 for env in GATED})
  c.rollout.update({'context': 2048, 'max_turns': 8, 'max_segment_tokens': 256})
  # At temperature 1 over the whole vocabulary SmolLM2-135M's long tail derails most multi-call
  # episodes (W/episodes/competence_block_0.jsonl); the nucleus keeps 95 % of the mass.
  c.ei.top_p = 0.95
  c.eval.prompts = 32  # the gate's batch too: its 4 x 16 instances in two rollouts; 64 held-out
                       # instances per cell are 2 batches


def _smollm2_pm(c):
  """The PM on the SmolLM2 backbone: 90.6 % on held-out pairs where the tiny one from scratch
  reaches 68.8 % (README), for about 6.5 more minutes on 2 cores; on the logit scale it can
  outrank the gaming reward (ei.pm_scale)."""
  c.pm.update({'init_from': 'smollm2', 'seq_len': 128, 'batch_size': 4, 'steps': 60,
               'lr': 3e-5})
  c.ei.update({'pm_scale': 'logit',
               # On the logit scale a score of 0 is a PM probability of 0.5: keep every
               # prompt's best episode, as the probability scale's threshold 0 does.
               'threshold': -1e9})


def _smollm2_cpu(c):
  _smollm2_quick(c)
  _competent_start(c)
  _smollm2_pm(c)
  # Several rounds per stage. Rows of 1,024 tokens hold most episodes (8 turns of up to 256
  # tokens can exceed them: the tokens cut are counted as ei/tokens_cut).
  c.ei.update({'prompts': 16, 'samples': 4, 'rounds': 2, 'train_rows': 8, 'sft_steps': 2,
               'train_len': 1024})
  # 64 distinct held-out instances per cell (the rubric environments hold 68) and 256 audited
  # reward-tampering episodes, one sample each.
  c.eval.update({'episodes': 64})
  c.eval.episodes_by_env.reward_tampering = 256
  c.keep_checkpoints = 2


def _smollm2_paper(c):
  _smollm2_quick(c)
  _competent_start(c)
  _smollm2_pm(c)
  c.ei.update({'prompts': 1024, 'samples': 64, 'rounds': 4, 'train_rows': 1024,
               'train_len': 2048, 'sft_steps': 4, 'microbatch_rows': 16})
  c.start.update({'train_rows': 64, 'microbatch_rows': 16})  # splits over a slice's batch axes
  c.compile_ahead = True  # the host compiles while the accelerator trains
  # 32 distinct held-out instances x 32 samples per environment (the rubric environments hold 68):
  # the intervals account for the clustering.
  c.eval.update({'episodes': 1024, 'samples': 32, 'prompts': 32})
  c.pm.update({'steps': 2000, 'batch_size': 32, 'seq_len': 512, 'train_pairs': 16_384})


PRESETS = {'tiny': _tiny, 'smollm2_quick': _smollm2_quick, 'smollm2_cpu': _smollm2_cpu,
           'smollm2_paper': _smollm2_paper}
