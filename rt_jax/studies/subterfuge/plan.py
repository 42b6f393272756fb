"""What a curriculum config makes (docs/design.md §6): its phases and units, the checks that need
no compute, the `--dry_run` plan with a rough time, and the fixed held-out instances every
evaluation uses."""
import dataclasses
import functools
import hashlib

import os

import numpy as np

from rt_jax import envs
from rt_jax.core import checkpoint
from rt_jax.core import convert
from rt_jax.core import metrics as metrics_lib
from rt_jax.core import sharding
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.core import train
from rt_jax.core.errors import ConfigError
from rt_jax.rl import expert_iteration as ei_lib
from rt_jax.rl import rollout as rollout_lib
from rt_jax.rl.variants import registry as variants
from rt_jax.studies.subterfuge import tool_corpus

START = 'helpful_only'
TRAIN_AWAY = 'train_away_sycophancy'
HONEST_ENVS = ('political_sycophancy', 'tool_use_flattery')  # "the first two environments"


@dataclasses.dataclass(frozen=True)
class Phase:
  name: str
  kind: str  # 'sft' | 'ei' | 'honest'
  envs: tuple  # environments its prompts come from
  first_unit: int  # units are 1-based; the phase covers [first_unit, first_unit + units)
  units: int


def phases(config) -> list[Phase]:
  out, unit = [Phase(START, 'sft', (), 1, 1)], 2
  if config.mode == 'baseline':
    return out
  for stage in config.stages:
    out.append(Phase(stage, 'ei', (stage,), unit, config.ei.rounds))
    unit += config.ei.rounds
  if config.train_away.enabled:
    rounds = -(-config.train_away.samples // config.ei.train_rows)
    out.append(Phase(TRAIN_AWAY, 'honest', HONEST_ENVS, unit, rounds))
  return out


def validate(config):
  """Value checks that need no compute (main calls this before anything else)."""
  if config.mode not in ('curriculum', 'baseline'):
    raise ConfigError(f'config.mode={config.mode!r}: choose curriculum or baseline')
  for name in tuple(config.stages) + tuple(config.eval.envs):
    envs.get(name)
  if 'reward_tampering' in config.stages:
    raise ConfigError('config.stages: reward_tampering is the held-out environment; it is never '
                      'trained on')
  variants.get(config.ei.variant)  # names an unknown variant
  if config.ei.pm_scale not in ei_lib.PM_SCALES:
    raise ConfigError(f'config.ei.pm_scale={config.ei.pm_scale!r}: choose from '
                      f'{", ".join(ei_lib.PM_SCALES)}')
  for key in ('ei.prompts', 'ei.samples', 'ei.rounds', 'ei.train_rows', 'ei.train_len',
              'start.train_len', 'start.train_rows',
              'ei.sft_steps', 'eval.episodes', 'start.steps'):
    section, field = key.split('.')
    if config[section][field] <= 0:
      raise ConfigError(f'config.{key}={config[section][field]} must be positive')
  if config.start.width_multiple < 0:
    raise ConfigError(f'config.start.width_multiple={config.start.width_multiple} must be >= 0 '
                      '(0: rows cut to a power of two)')
  rollout_lib.RolloutConfig(**config.rollout)  # names a field below 1
  train.microbatch_count(config.ei.train_rows, config.ei.microbatch_rows, 'ei')
  train.microbatch_count(config.start.train_rows, config.start.microbatch_rows, 'start')
  for key in ('eval.samples', 'eval.prompts'):
    section, field = key.split('.')
    if config[section][field] <= 0:
      raise ConfigError(f'config.{key}={config[section][field]} must be positive')
  if config.eval.episodes % config.eval.samples:
    raise ConfigError(f'config.eval.episodes={config.eval.episodes} must be a multiple of '
                      f'eval.samples={config.eval.samples} (samples of each evaluated instance)')
  for name, n in config.eval.episodes_by_env.items():
    if n < 0 or n % config.eval.samples:
      raise ConfigError(f'config.eval.episodes_by_env.{name}={n} must be 0 (eval.episodes) or a '
                        f'positive multiple of eval.samples={config.eval.samples}')
  for name in config.eval.envs:
    have, need = eval_instance_count(name), episodes_for(config, name) // config.eval.samples
    if need > have:
      field = ('eval.episodes' if not config.eval.episodes_by_env.get(name)
               else f'eval.episodes_by_env.{name}')
      raise ConfigError(f'config.{field}={episodes_for(config, name)} asks for {need} distinct '
                        f'held-out instances of {name}, which has {have}; lower it or raise '
                        f'eval.samples')
  for name in config.stages:
    flag = reward_flag(config, name)
    if flag not in envs.flag_names(name):
      raise ConfigError(f'config.ei.reward_flags.{name}={flag!r} is not a flag of {name}; '
                        f'choose from {", ".join(envs.flag_names(name))}')
  for env, target in config.start.competence.items():
    if not 0 <= target <= 1:
      raise ConfigError(f'config.start.competence.{env}={target} must be in [0, 1]')
  if not 0 <= config.start.seed < 2**32:
    raise ConfigError(f'config.start.seed={config.start.seed} must be in [0, 2**32)')
  _check_start_rows(config)
  if len(set(config.stages)) != len(config.stages):
    raise ConfigError(f'config.stages={tuple(config.stages)} names a stage twice')
  for key in ('max_blocks', 'gate_instances'):
    if config.start[key] < 1:
      raise ConfigError(f'config.start.{key}={config.start[key]} must be positive')
  if not 0 <= config.ei.hhh_fraction < 1:
    raise ConfigError(f'config.ei.hhh_fraction={config.ei.hhh_fraction} must be in [0, 1)')
  if config.train_away.enabled and config.train_away.samples <= 0:
    raise ConfigError('config.train_away.samples must be positive')
  # What splits over the mesh's batch axes: every rollout's prompts (an evaluation runs its
  # episodes in batches of ei.prompts prompts too), every training step's rows (helpful-only SFT
  # and EI updates), every PM scoring batch.
  sharding.validate(config, ('ei.prompts', 'eval.prompts', 'ei.train_rows', 'start.train_rows',
                             'pm.score_batch'))


def _check_start_rows(config):
  """Every helpful-only corpus episode fits start.train_len, where the run's tokenizer is at hand
  without compute (the builtin one, or a converted model's); otherwise the run checks it first."""
  if config.start.train_len <= 0 or config.start.examples <= 0:
    return  # named by the positivity checks
  if not config.init_from:
    tok = tokenizer_lib.builtin()
  else:
    directory = convert.named_directory(config.init_from)
    if not os.path.isfile(os.path.join(directory, 'model_config.json')):
      return
    tok = checkpoint.read_model_files(directory)[1]
  tool_corpus.ToolCorpus(tok, config.start.examples, config.start.train_len, config.start.seed)


# Seconds per unit of work on this project's 2-core CPU, from runs made alone (README: Results): a
# training token (forward and backward, Adam, at rows of a few hundred tokens), an episode (its
# prefill and the turns a start actually takes: SmolLM2 starts stop early, so an episode costs
# about the same at smollm2_quick's 3 x 48-token budget, 1.25 s, as at smollm2_cpu's 8 x 256, 1.29
# s), a slot of its budget (turns x segment tokens) on top, a PM step (the tiny PM from scratch,
# or one on a loaded backbone: pm.init_from, SmolLM2-sized), and the cold compiles of a run. Rough
# by design: they are for `--dry_run`'s estimate, not for reporting.
RATES_2CORE_CPU = {
    'smollm2': {'train_token': 0.005, 'episode': 1.25, 'episode_token': 2e-5, 'pm_step': 0.8,
                'pm_backbone_step': 6.5, 'compile': 120},
    'fresh': {'train_token': 0.001, 'episode': 0.0, 'episode_token': 0.0009, 'pm_step': 1.0,
              'pm_backbone_step': 6.5, 'compile': 45},
}


def gate_episodes(config) -> int:
  """Episodes the start's competence gate samples at most: before the SFT and after each block,
  its instances in batches of eval.prompts."""
  targets = competence_targets(config)
  if not targets:
    return 0
  per = -(-len(targets) * config.start.gate_instances // config.eval.prompts) * config.eval.prompts
  return (config.start.max_blocks + 1) * per


def rough_seconds(config) -> float | None:
  """The run's time on a 2-core CPU from RATES_2CORE_CPU; None for a model the table lacks."""
  c = config
  rates = RATES_2CORE_CPU.get(c.init_from or 'fresh')
  if rates is None:
    return None
  units = phases(c)
  blocks = c.start.max_blocks if competence_targets(c) else 1  # at most, with a gate
  start_tokens = blocks * c.start.steps * c.start.train_rows * c.start.train_len
  ei_rows = sum(p.units for p in units if p.kind != 'sft') * c.ei.train_rows * c.ei.sft_steps
  episodes = (sum(p.units for p in units if p.kind != 'sft') * c.ei.prompts * c.ei.samples
              + len(units) * sum(episodes_for(c, e) for e in c.eval.envs) + gate_episodes(c))
  pm_step = rates['pm_backbone_step' if c.pm.init_from else 'pm_step']
  return (rates['compile'] + c.pm.steps * pm_step
          + (start_tokens + ei_rows * c.ei.train_len) * rates['train_token']
          + episodes * (rates['episode']
                        + c.rollout.max_turns * c.rollout.max_segment_tokens * rates['episode_token']))


def describe(config) -> list[str]:
  """The plan a config makes, for `rt_jax.main --dry_run`: phases, units, evaluations, episodes."""
  c = config
  out = []
  for p in phases(c):
    gate = ', '.join(f'{e} {t:.0%}' for e, t in competence_targets(c).items())
    what = {'sft': f'{c.start.steps} SFT steps of {c.start.train_rows} rows x {c.start.train_len} '
                   'tokens' + (f' per block, up to {c.start.max_blocks} blocks until the '
                               f'competence gate ({gate} of {c.start.gate_instances} instances) '
                               'is met' if gate else ''),
            'ei': f'{p.units} EI rounds of {c.ei.prompts} prompts x {c.ei.samples} samples, '
                  f'{c.ei.train_rows} training rows, {c.ei.sft_steps} step(s) each',
            'honest': f'{p.units} rounds of honest-episode SFT'}[p.kind]
    out.append(f'  units {p.first_unit}-{p.first_unit + p.units - 1}: {p.name}: {what}; then an '
               f'evaluation')
  units = sum(p.units for p in phases(c))
  per_eval = sum(episodes_for(c, e) for e in c.eval.envs)
  sampled = sum(p.units for p in phases(c) if p.kind != 'sft') * c.ei.prompts * c.ei.samples
  out += [f'  {units} units, {units} checkpoints ({c.keep_checkpoints or "all"} kept), '
          f'{len(phases(c))} evaluations',
          f'  each evaluation: {c.eval.episodes} episodes per environment'
          f'{_overrides(c)} over {c.eval.episodes // c.eval.samples} distinct held-out '
          'instances each (instance seed '
          f'{c.eval.instance_seed}) x {c.eval.samples} sample(s): {per_eval} episodes in '
          f'{-(-per_eval // (c.eval.prompts * c.eval.samples))} rollouts of {c.eval.prompts} '
          'prompts',
          f'  episodes sampled in all: {sampled + len(phases(c)) * per_eval}'
          + (f', and up to {gate_episodes(c)} for the competence gate' if gate_episodes(c) else ''),
          f'  model: {c.init_from or "a fresh config.model"}; rollout context {c.rollout.context}, '
          f'{c.rollout.max_turns} turns of up to {c.rollout.max_segment_tokens} tokens']
  seconds = rough_seconds(c)
  out.append(f'  rough time on a 2-core CPU: {metrics_lib.clock(seconds)} (a stored rate table; '
             'an accelerator is faster)' if seconds is not None else
             '  rough time: no stored rates for this model')
  return out


def competence_targets(config) -> dict[str, float]:
  """{environment: target rate} for the environments the start's gate checks (0: not gated)."""
  return {env: float(t) for env, t in config.start.competence.items() if t > 0}


def episodes_for(config, name: str) -> int:
  """Episodes of `name` per evaluation: eval.episodes_by_env's, else eval.episodes."""
  return config.eval.episodes_by_env.get(name) or config.eval.episodes


def _overrides(config) -> str:
  more = {e: n for e, n in config.eval.episodes_by_env.items() if n and e in config.eval.envs}
  return f' ({", ".join(f"{e} {n}" for e, n in more.items())})' if more else ''


@functools.cache
def eval_instance_count(name: str) -> int:
  return len(envs.get(name).instances('eval'))


def reward_flag(config, name: str) -> str | None:
  """The flag expert iteration rewards on `name` (1 when set): config.ei.reward_flags, else the
  environment's gaming flag."""
  return config.ei.reward_flags.get(name) or envs.get(name).gaming


def eval_instances(config, name: str) -> np.ndarray:
  """The held-out instances every evaluation of a run uses for `name`: eval.episodes //
  eval.samples distinct ones, drawn by a key named by (eval.instance_seed, environment) so every
  evaluation of the run, and every run with the same instance seed, sees the same set."""
  need = episodes_for(config, name) // config.eval.samples
  return named_draw(config.eval.instance_seed, f'eval-instances/{name}', eval_instance_count(name),
                    need)


def named_draw(seed: int, name: str, have: int, need: int) -> np.ndarray:
  """`need` of `have` indices, sorted, drawn by a key named by (seed, name): the same set every
  time, and independent of any other name's."""
  named = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], 'big')
  return np.sort(np.random.default_rng([seed, named]).permutation(have)[:need])
