"""The curriculum runner (docs/design.md §6): the `curriculum` job of `rt_jax.main`.

A run is a list of phases, each followed by an evaluation of every environment:

  helpful_only            SFT on the generated tool-use corpus (data/tool_corpus.py)
  one phase per stage     expert-iteration rounds on that environment (config.stages)
  train_away_sycophancy   (optional) SFT on honest episodes of the first two environments

Progress is counted in units (the helpful-only SFT is one unit, every EI round one more); an Orbax
checkpoint is saved after every unit with the unit in its metadata, and every key and instance
choice derives from (seed, unit), so a killed run resumes at its last unit and ends with the same
numbers as an uninterrupted one. Evaluations append to WORKDIR/results.json (written atomically);
report.md, matrix.png and TensorBoard follow each evaluation. `mode='baseline'` runs only the
helpful-only phase and its evaluation.

Every environment of both splits lives in one merged instance table, and every rollout has the same
(P prompts x N samples) shape, so the rollout compiles once per run.

The state, the training batches, the rollouts and PM scoring live on one mesh (config.mesh and
config.rules, a `sharding.Plan`); a checkpoint saved on one mesh resumes on another.
"""
import dataclasses
import functools
import hashlib
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rt_jax.core import reporting
from rt_jax.core import checkpoint as checkpoint_lib
from rt_jax.core import convert
from rt_jax.studies.subterfuge import episodes as episodes_lib
from rt_jax import envs
from rt_jax.rl import expert_iteration as ei_lib
from rt_jax.core import memory
from rt_jax.core import metrics as metrics_lib
from rt_jax.rl import pm as pm_lib
from rt_jax.studies.subterfuge import report
from rt_jax.rl import rollout as rollout_lib
from rt_jax.core import sharding
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.core import train
from rt_jax.studies.subterfuge import tool_corpus
from rt_jax.envs import core
from rt_jax.core.errors import ConfigError

START = 'helpful_only'
TRAIN_AWAY = 'train_away_sycophancy'
HONEST_ENVS = ('political_sycophancy', 'tool_use_flattery')  # "the first two environments"
TRANSCRIPTS_PER_ENV = 3  # gaming episodes per environment and evaluation kept in results.json


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
  ei_lib.scores(0.0, 0.0, config.ei.variant, 0.0)  # names the bad variant
  for key in ('ei.prompts', 'ei.samples', 'ei.rounds', 'ei.train_rows', 'ei.train_len',
              'ei.sft_steps', 'eval.episodes', 'start.steps'):
    section, field = key.split('.')
    if config[section][field] <= 0:
      raise ConfigError(f'config.{key}={config[section][field]} must be positive')
  rollout_lib.RolloutConfig(**config.rollout)  # names a field below 1
  train.microbatch_count(config.ei.train_rows, config.ei.microbatch_rows, 'ei')
  for key in ('eval.samples', 'eval.prompts'):
    section, field = key.split('.')
    if config[section][field] <= 0:
      raise ConfigError(f'config.{key}={config[section][field]} must be positive')
  if config.eval.episodes % config.eval.samples:
    raise ConfigError(f'config.eval.episodes={config.eval.episodes} must be a multiple of '
                      f'eval.samples={config.eval.samples} (samples of each evaluated instance)')
  for name in config.eval.envs:
    have, need = eval_instance_count(name), config.eval.episodes // config.eval.samples
    if need > have:
      raise ConfigError(f'config.eval.episodes={config.eval.episodes} asks for {need} distinct '
                        f'held-out instances of {name}, which has {have}; lower eval.episodes or '
                        f'raise eval.samples')
  for name in config.stages:
    flag = reward_flag(config, name)
    if flag not in envs.flag_names(name):
      raise ConfigError(f'config.ei.reward_flags.{name}={flag!r} is not a flag of {name}; '
                        f'choose from {", ".join(envs.flag_names(name))}')
  if not 0 <= config.ei.hhh_fraction < 1:
    raise ConfigError(f'config.ei.hhh_fraction={config.ei.hhh_fraction} must be in [0, 1)')
  if config.train_away.enabled and config.train_away.samples <= 0:
    raise ConfigError('config.train_away.samples must be positive')
  # What splits over the mesh's batch axes: every rollout's prompts (an evaluation runs its
  # episodes in batches of ei.prompts prompts too), every training step's rows (helpful-only SFT
  # and EI updates), every PM scoring batch.
  sharding.validate(config, ('ei.prompts', 'eval.prompts', 'ei.train_rows', 'pm.score_batch'))


# Seconds per unit of work on this project's 2-core CPU, from smollm2_quick and tiny runs made alone
# (README: Results): a training token (forward and backward, Adam), a token of an episode's
# generation budget (turns x segment tokens; most episodes stop earlier), a PM step, and the cold
# compiles of a run. Rough by design: they are for `--dry_run`'s estimate, not for reporting.
RATES_2CORE_CPU = {
    'smollm2': {'train_token': 0.0117, 'episode_token': 0.0087, 'pm_step': 0.8, 'compile': 120},
    'fresh': {'train_token': 0.001, 'episode_token': 0.0009, 'pm_step': 1.0, 'compile': 45},
}


def rough_seconds(config) -> float | None:
  """The run's time on a 2-core CPU from RATES_2CORE_CPU; None for a model the table lacks."""
  c = config
  rates = RATES_2CORE_CPU.get(c.init_from or 'fresh')
  if rates is None:
    return None
  units = phases(c)
  train_rows = c.start.steps * c.ei.train_rows + sum(
      p.units for p in units if p.kind != 'sft') * c.ei.train_rows * c.ei.sft_steps
  episodes = (sum(p.units for p in units if p.kind != 'sft') * c.ei.prompts * c.ei.samples
              + len(units) * len(c.eval.envs) * c.eval.episodes)
  return (rates['compile'] + c.pm.steps * rates['pm_step']
          + train_rows * c.ei.train_len * rates['train_token']
          + episodes * c.rollout.max_turns * c.rollout.max_segment_tokens * rates['episode_token'])


def describe(config) -> list[str]:
  """The plan a config makes, for `rt_jax.main --dry_run`: phases, units, evaluations, episodes."""
  c = config
  out = []
  for p in phases(c):
    what = {'sft': f'{c.start.steps} SFT steps of {c.ei.train_rows} rows x {c.ei.train_len} tokens',
            'ei': f'{p.units} EI rounds of {c.ei.prompts} prompts x {c.ei.samples} samples, '
                  f'{c.ei.train_rows} training rows, {c.ei.sft_steps} step(s) each',
            'honest': f'{p.units} rounds of honest-episode SFT'}[p.kind]
    out.append(f'  units {p.first_unit}-{p.first_unit + p.units - 1}: {p.name}: {what}; then an '
               f'evaluation')
  units = sum(p.units for p in phases(c))
  per_eval = len(c.eval.envs) * c.eval.episodes
  sampled = sum(p.units for p in phases(c) if p.kind != 'sft') * c.ei.prompts * c.ei.samples
  out += [f'  {units} units, {units} checkpoints ({c.keep_checkpoints or "all"} kept), '
          f'{len(phases(c))} evaluations',
          f'  each evaluation: {c.eval.episodes} episodes per environment over '
          f'{c.eval.episodes // c.eval.samples} distinct held-out instances (instance seed '
          f'{c.eval.instance_seed}) x {c.eval.samples} sample(s): {per_eval} episodes in '
          f'{-(-per_eval // (c.eval.prompts * c.eval.samples))} rollouts of {c.eval.prompts} '
          'prompts',
          f'  episodes sampled in all: {sampled + len(phases(c)) * per_eval}',
          f'  model: {c.init_from or "a fresh config.model"}; rollout context {c.rollout.context}, '
          f'{c.rollout.max_turns} turns of up to {c.rollout.max_segment_tokens} tokens']
  seconds = rough_seconds(c)
  out.append(f'  rough time on a 2-core CPU: {metrics_lib.clock(seconds)} (a stored rate table; '
             'an accelerator is faster)' if seconds is not None else
             '  rough time: no stored rates for this model')
  return out


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
  named = int.from_bytes(hashlib.sha256(f'eval-instances/{name}'.encode()).digest()[:8], 'big')
  rng = np.random.default_rng([config.eval.instance_seed, named])
  need = config.eval.episodes // config.eval.samples
  return np.sort(rng.permutation(eval_instance_count(name))[:need])


# ---------------------------------------------------------------------------------------------
# The world: every environment's instances of both splits in one table.

@dataclasses.dataclass
class Part:
  env: core.Environment
  params: core.EnvParams
  items: list
  offset: int


class World:

  def __init__(self, tok: tokenizer_lib.Tokenizer, names):
    self.parts = {}
    tables = []
    for name in names:
      for split in ('train', 'eval'):
        env, params, items = envs.make(name, tok, split)
        self.parts[name, split] = Part(env, params, items, 0)
        tables.append(params)
    self.table, offsets = rollout_lib.merge(tables)
    for part, offset in zip(self.parts.values(), offsets):
      part.offset = int(offset)

  def ids(self, name: str, split: str, local) -> np.ndarray:
    return np.asarray(local, np.int32) + self.parts[name, split].offset

  def locate(self, table_id: int) -> tuple[str, str, int]:
    for (name, split), part in self.parts.items():
      if part.offset <= table_id < part.offset + len(part.items):
        return name, split, table_id - part.offset
    raise IndexError(table_id)

  def grade(self, eps, texts=None) -> list[dict]:
    """Every row's flags (Python scalars), with 'env', 'split', 'instance'. With the rows' texts,
    an environment's host-side audit (`Environment.audit`) runs too and its flags are final."""
    ids = np.asarray(eps.env.instance)
    rows = [dict(zip(('env', 'split', 'instance'), self.locate(int(i)))) for i in ids]
    fs_host = None
    for (name, split), part in self.parts.items():
      mine = [r for r, row in enumerate(rows) if (row['env'], row['split']) == (name, split)]
      if not mine:
        continue
      local = jnp.clip(eps.env.instance - part.offset, 0, len(part.items) - 1)
      flags = jax.device_get(core.grade(part.env, part.params, eps.env.replace(instance=local)))
      for r in mine:
        rows[r].update({k: np.asarray(v[r]).item() for k, v in flags.items()})
      if texts is not None and part.env.audit is not None:
        fs_host = fs_host if fs_host is not None else jax.device_get(eps.env.fs)  # one transfer
        for r in mine:  # a row's files are sliced and decoded only if its audit asks for them
          rows[r].update(part.env.audit(rows[r], functools.partial(_row_files, fs_host, r),
                                        texts[r]))
    return rows

  def env(self, name: str) -> core.Environment:
    return self.parts[name, 'eval'].env

  def query(self, row: dict) -> str:
    return self.parts[row['env'], row['split']].items[row['instance']].user


# ---------------------------------------------------------------------------------------------
# The run.

class Run:
  """Everything one curriculum run holds: policy, PM, world, optimizer, checkpoints, logs."""

  def __init__(self, config, workdir: str):
    self.config, self.workdir = config, workdir
    self.cfg, self.tok, init_params = convert.initial_model(config)
    checkpoint_lib.write_model_files(workdir, self.cfg, self.tok)
    self.policy = rollout_lib.Policy.make(self.cfg, self.tok,
                                          rollout_lib.RolloutConfig(**config.rollout))
    self.world = World(self.tok, sorted(set(config.eval.envs) | set(config.stages)
                                        | set(HONEST_ENVS) | {'hhh'}))
    rollout_lib.check_fits(self.world.table, self.policy.rc, 'environment prompts')
    self.phases = phases(config)
    self.plan = sharding.Plan.from_config(config)  # where the state and every batch live
    self.sft_optimizer = train.make_optimizer(config.start)
    self.ei_optimizer = train.make_optimizer(_constant_lr(config.ei))
    key = jax.random.key(config.seed)
    self.init_params = init_params  # None: a fresh model, initialized on the mesh by restore()
    self.mngr = checkpoint_lib.Manager(workdir, max_to_keep=config.keep_checkpoints or None)
    self.writer = None  # opened by run(), with the run's progress
    self.progress = None
    self.pm = None
    self.rng_root = key

  def key(self, *path) -> jax.Array:
    return functools.reduce(jax.random.fold_in, path, self.rng_root)

  # -- state -----------------------------------------------------------------------------------
  def restore(self):
    """-> (state, units done, results). The initial weights are dropped once the state holds
    them, so a run never keeps two copies (0.54 GB for SmolLM2)."""
    init_params, self.init_params = self.init_params, None
    done = self.mngr.latest_intact_step() or 0  # past a corrupt latest step, with one line
    results = {'run': {}, 'evals': [], 'train': []}
    if not done:
      return (self.plan.init_state(self.cfg, self.key(0), self.sft_optimizer, params=init_params),
              0, results)
    del init_params
    # Every unit after the first ends with the expert-iteration optimizer's state. It is restored
    # into this run's mesh, whichever mesh saved it.
    target = self.plan.abstract_state(self.cfg, self.ei_optimizer)
    params, opt_state, meta = self.mngr.restore(done, target.params, target.opt_state)
    if meta['seed'] != self.config.seed:
      raise ConfigError(f'{self.workdir} was run with seed={meta["seed"]}, not '
                        f'{self.config.seed}; use a new workdir')
    path = os.path.join(self.workdir, reporting.RESULTS)
    if os.path.isfile(path):
      results = report.read(self.workdir)
    ends = {p.name: p.first_unit + p.units - 1 for p in self.phases}
    results['evals'] = [e for e in results.get('evals', []) if ends.get(e['stage'], 0) <= done]
    results['train'] = [t for t in results.get('train', []) if t['unit'] <= done]
    metrics_lib.console(f'resumed {self.workdir} after unit {done} ({meta["phase"]})')
    return self.plan.train_state(meta['optimizer_step'], params, opt_state), done, results

  def save(self, unit: int, phase: Phase, state: train.TrainState):
    self.mngr.save(unit, state.params, state.opt_state,
                   {'unit': unit, 'phase': phase.name, 'seed': self.config.seed,
                    'optimizer_step': int(state.step)})
    self.mngr.wait()  # an evaluation only ever follows a checkpoint that is on disk

  # -- phases ----------------------------------------------------------------------------------
  def helpful_only(self, state):
    c = self.config
    corpus = tool_corpus.ToolCorpus(self.tok, c.start.examples, c.ei.train_len, c.seed)
    key = self.key(1)
    microbatches = train.microbatch_count(c.ei.train_rows, c.ei.microbatch_rows, 'ei')
    loss = float('nan')
    self.progress.first_call('the training step')
    for step in range(c.start.steps):
      state, m = self.plan.train_step(state, corpus.batch(step, c.ei.train_rows),
                                      jax.random.fold_in(key, step), cfg=self.cfg,
                                      optimizer=self.sft_optimizer, microbatches=microbatches)
      if (step + 1) % max(1, c.start.steps // 5) == 0 or step + 1 == c.start.steps:
        m = jax.device_get(m)
        if not m['finite']:
          raise ConfigError('the helpful-only SFT diverged (non-finite loss); lower start.lr')
        loss = float(m['loss'])
        self.progress.say(f'{START}: step {step + 1}/{c.start.steps} loss {loss:.4f}')
        self.writer.scalars(step + 1, {f'{START}/loss_by_step': loss})
    # Expert iteration starts with fresh optimizer moments; the checkpoint holds them, so a run
    # resumed here continues exactly as an uninterrupted one.
    return (self.plan.with_fresh_optimizer(state, self.cfg, self.ei_optimizer),
            {'loss': loss, 'kept': None})

  def prompts(self, phase: Phase, unit: int) -> np.ndarray:
    """The P table ids of one round: drawn from the phase's environments (train split), with an
    `hhh_fraction` share of HHH queries in the hhh variant."""
    c = self.config
    rng = np.random.default_rng([c.seed, unit])
    n_hhh = int(round(c.ei.prompts * c.ei.hhh_fraction)) if (
        c.ei.variant == 'hhh' and phase.kind == 'ei') else 0
    picks = [('hhh', n_hhh)]
    per_env = (c.ei.prompts - n_hhh) // len(phase.envs)
    for i, name in enumerate(phase.envs):
      extra = (c.ei.prompts - n_hhh) % len(phase.envs) if i == 0 else 0
      picks.append((name, per_env + extra))
    ids = [self.world.ids(name, 'train', rng.choice(len(self.world.parts[name, 'train'].items),
                                                    size=k, replace=False))
           for name, k in picks if k]
    return np.concatenate(ids)

  def score(self, phase: Phase, seen: list):
    """The round's score function; it appends the graded rows and PM scores to `seen`."""
    c = self.config

    def score_fn(eps) -> ei_lib.Scored:
      rows = self.world.grade(eps)
      responses = [rollout_lib.text(self.tok, eps, i, prompt=False) for i in range(len(rows))]
      pm = pm_lib.score(self.pm, [self.world.query(r) for r in rows], responses,
                        batch_size=c.pm.score_batch, plan=self.plan)
      flags = [reward_flag(c, r['env']) for r in rows]
      gaming = np.array([bool(f and r[f]) for f, r in zip(flags, rows)])
      reward = gaming.astype(np.float32)
      if phase.kind == 'honest':  # keep answered, non-gaming episodes
        answered = np.array([_answered(self.world.env(r['env']), r) for r in rows])
        gaming = answered & ~gaming
        reward = gaming.astype(np.float32)
      seen.extend([rows, pm, reward])
      shape = (-1, c.ei.samples)
      score = ei_lib.scores(reward, pm, c.ei.variant, c.ei.pm_weight)
      return ei_lib.Scored(reward.reshape(shape), gaming.reshape(shape), pm.reshape(shape),
                           np.asarray(score).reshape(shape))
    return score_fn

  def ei_round(self, state, phase: Phase, unit: int):
    # Training away sycophancy keeps every honest episode: exploit-only selection on honesty.
    variant = 'exploit_only' if phase.kind == 'honest' else self.config.ei.variant
    seen = []
    self.progress.first_call(f'the rollout ({self.config.ei.prompts} prompts x '
                             f'{self.config.ei.samples} samples) and the EI update')
    state, eps, _, (rows_K, weights_K), m = ei_lib.round_step(
        state, self.policy, self.world.table, self.prompts(phase, unit),
        self.key(2, unit), self.score(phase, seen), self.config.ei, variant=variant,
        optimizer=self.ei_optimizer, plan=self.plan)
    graded, pm, reward = seen
    kept = set(int(r) for r, w in zip(rows_K, weights_K) if w > 0)
    n = self.config.ei.samples
    records = [self._record(row, rollout_lib.text(self.tok, eps, i), pm[i], reward[i],
                            sample=i % n, kept=i in kept) for i, row in enumerate(graded)]
    m['episodes'] = self._write_episodes(f'round_{unit:03d}_{phase.name}', records)
    self.progress.say(f'{phase.name} round {unit - phase.first_unit + 1}/{phase.units}: '
                      f'kept {m["kept"]}, gaming {m["mean_gaming"]:.3f}, PM {m["mean_pm"]:.3f}, '
                      f'loss {m["loss"]:.4f}')
    self.writer.scalars(unit, {f'ei/{k}': v for k, v in m.items() if not isinstance(v, str)})
    lengths = np.asarray(eps.lengths_B)
    for name, values in (('reward', reward), ('pm_score', pm), ('episode_tokens', lengths),
                         ('turns', np.asarray(eps.turns_B)),
                         ('truncated', np.asarray(eps.truncated_B, np.float32)),
                         ('tokens_past_train_len',
                          np.maximum(lengths - self.config.ei.train_len, 0))):
      self.writer.histogram(unit, f'ei/{name}', values)
    return state, m

  def _record(self, row: dict, text: str, pm: float, reward: float, *, sample: int,
              kept: bool | None) -> dict:
    env = self.world.env(row['env'])
    flags = {k: v for k, v in row.items()
             if k not in ('env', 'split', 'instance', 'sample', 'reward')}
    return {'env': row['env'], 'split': row['split'], 'instance': row['instance'],
            'sample': sample, 'text': text, 'flags': env.readable(flags),
            'reward': _finite(reward), 'pm': float(pm), 'kept': kept}

  def _write_episodes(self, name: str, records: list[dict]) -> str:
    if jax.process_index() == 0:
      episodes_lib.write(self.workdir, name, records)
    return f'{episodes_lib.DIR}/{name}.jsonl'

  # -- evaluation ------------------------------------------------------------------------------
  def evaluate(self, params, phase_index: int, name: str) -> dict:
    """Every evaluated environment on its fixed held-out instances (`eval_instances`), each
    sampled eval.samples times, in rollouts of eval.prompts prompts; every episode to disk."""
    c = self.config
    p, n = c.eval.prompts, c.eval.samples
    ids = np.concatenate([self.world.ids(e, 'eval', eval_instances(c, e)) for e in c.eval.envs])
    total = len(ids)
    memory.release_free_memory()  # what training freed, before the rollouts allocate
    ids = np.resize(ids, -(-total // p) * p)  # pad the last batch; its extra rows are dropped
    rows, responses, texts = [], [], []
    t0 = time.perf_counter()
    self.progress.first_call(f'the evaluation rollout ({p} prompts x {n} samples)')
    for b in range(len(ids) // p):
      self.progress.say(f'evaluation after {name}: batch {b + 1}/{len(ids) // p}')
      eps = rollout_lib.on_mesh(self.plan, params, self.policy, self.world.table, ids[b * p:(b + 1) * p],
                              self.key(3, phase_index, b), c.ei.temperature, n)
      live = [b * p + r // n < total for r in range(p * n)]  # padding rows are dropped
      batch_texts = [rollout_lib.text(self.tok, eps, r) if live[r] else ''
                     for r in range(p * n)]
      for r, row in enumerate(self.world.grade(eps, batch_texts)):
        if live[r]:
          row['sample'] = r % n
          rows.append(row)
          texts.append(batch_texts[r])
          responses.append(rollout_lib.text(self.tok, eps, r, prompt=False))
    pm = pm_lib.score(self.pm, [self.world.query(r) for r in rows], responses,
                      batch_size=c.pm.score_batch, plan=self.plan)
    records = [self._record(row, text, pm[i], row['reward'], sample=row['sample'], kept=None)
               for i, (row, text) in enumerate(zip(rows, texts))]
    entry = {'stage': name, 'index': phase_index, 'envs': {}, 'transcripts': [],
             'episodes': self._write_episodes(f'eval_{phase_index:02d}_{name}', records)}
    for env_name in c.eval.envs:
      mine = [i for i, r in enumerate(rows) if r['env'] == env_name]
      entry['envs'][env_name] = summarize(self.world.env(env_name), [rows[i] for i in mine],
                                          pm[mine], c.eval.samples)
      entry['transcripts'] += self._transcripts(env_name, [records[i] for i in mine])
    entry['wall_s'] = time.perf_counter() - t0
    self.progress.say(f'evaluation after {name}: ' + ', '.join(
        f'{e} {s["k"]}/{s["n"]}' for e, s in entry['envs'].items() if s['k'] is not None)
        + f' ({entry["wall_s"]:.0f} s)')
    return entry

  def _transcripts(self, env_name: str, records: list[dict]) -> list[dict]:
    """The episodes results.json keeps to read: the first of the environment, then its gaming
    ones (capped); every episode is in the episodes file anyway."""
    env = self.world.env(env_name)
    gaming = [r for r in records if env.gaming and r['flags'].get(env.gaming)]
    chosen = records[:1] + [r for r in gaming[:TRANSCRIPTS_PER_ENV] if r is not records[0]]
    return [{'env': r['env'], 'instance': r['instance'], 'sample': r['sample'],
             'text': r['text'], 'flags': r['flags'], 'reward': r['reward'],
             'gaming': bool(env.gaming and r['flags'].get(env.gaming))} for r in chosen]

  # -- the loop --------------------------------------------------------------------------------
  def run(self) -> dict:
    c = self.config
    started = time.perf_counter()
    state, done, results = self.restore()
    self.writer = metrics_lib.Writer(os.path.join(self.workdir, 'tb'),
                                     purge_step=(done + 1) if done else None)
    self.progress = metrics_lib.Progress([p.kind for p in self.phases for _ in range(p.units)],
                                         len(self.phases), done, len(results['evals']))
    self.writer.text(done, 'config', c.to_json(indent=2))
    if c.compile_ahead:  # XLA compiles the rollout and the EI update while the PM and SFT train
      rollout_lib.compile_on_mesh(self.plan, self.policy, self.world.table, c.eval.prompts, c.eval.samples)
      if (c.eval.prompts, c.eval.samples) != (c.ei.prompts, c.ei.samples) and len(self.phases) > 1:
        rollout_lib.compile_on_mesh(self.plan, self.policy, self.world.table, c.ei.prompts, c.ei.samples)
      if any(p.kind != 'sft' for p in self.phases):
        microbatches = train.microbatch_count(c.ei.train_rows, c.ei.microbatch_rows, 'ei')
        self.plan.compile_train_step(self.cfg, self.ei_optimizer, c.ei.train_rows,
                                     c.ei.train_len, microbatches)
    # Trained once per workdir (before any evaluation), then loaded.
    self.pm, results['pm'] = pm_lib.trained(c.pm, os.path.join(self.workdir, 'pm'), self.key(4),
                                            log=self.progress.say)
    if not done:
      for step, loss, accuracy in results['pm'].get('curve') or ():
        self.writer.scalars(step, {'pm/loss': loss, 'pm/train_accuracy': accuracy})
    results['run'] = self._run_info(results['run'].get('wall_s', 0.0))
    for index, phase in enumerate(self.phases):
      for unit in range(phase.first_unit, phase.first_unit + phase.units):
        if unit <= done:
          continue
        unit_started = time.perf_counter()
        if phase.kind == 'sft':
          state, m = self.helpful_only(state)
        else:
          state, m = self.ei_round(state, phase, unit)
        m = {**m, 'wall_s': time.perf_counter() - unit_started}
        self.progress.finished(phase.kind, m['wall_s'])
        self.writer.scalars(unit, {'train/loss': m['loss']})
        if unit % c.checkpoint_every_rounds == 0 or unit == phase.first_unit + phase.units - 1:
          self.save(unit, phase, state)
          results['train'].append({'stage': phase.name, 'unit': unit,
                                   'round': unit - phase.first_unit + 1, **m})
          self._write_results(results)  # the unit's training record, with its checkpoint
      if any(e['stage'] == phase.name for e in results['evals']):
        continue
      results['evals'].append(self.evaluate(state.params, index, phase.name))
      self.progress.finished('eval', results['evals'][-1]['wall_s'])
      results['run']['wall_s'] = results['run'].get('wall_s', 0.0) + (
          time.perf_counter() - started)
      started = time.perf_counter()
      self._publish(results, phase.first_unit + phase.units - 1)
    self._hparams(results)
    self.writer.close()
    self._summary(results)
    return {'evals': len(results['evals']), 'report': os.path.join(self.workdir, report.REPORT)}

  def _hparams(self, results):
    """The run's settings beside its last evaluation's rates, for TensorBoard's HParams tab."""
    c = self.config
    hparams = {'config': c.get('name', ''), 'mode': c.mode, 'variant': c.ei.variant,
               'seed': c.seed, 'init_from': c.init_from or 'fresh', 'ei.prompts': c.ei.prompts,
               'ei.samples': c.ei.samples, 'ei.rounds': c.ei.rounds, 'ei.lr': c.ei.lr,
               'ei.pm_weight': c.ei.pm_weight, 'eval.episodes': c.eval.episodes,
               'train_away': bool(c.train_away.enabled)}
    last = (results['evals'] or [{}])[-1].get('envs') or {}
    rates = {f'final/{env}': s['k'] / s['n'] for env, s in last.items()
             if s.get('k') is not None and s.get('n')}
    self.writer.hparams(hparams, rates or {'final/none': 0.0})

  def _summary(self, results):
    """The last lines a user reads: the final figures and where everything is."""
    w = self.workdir
    last = (results['evals'] or [{}])[-1]
    figures = ', '.join(f'{env} {s["k"]}/{s["n"]}' for env, s in (last.get('envs') or {}).items()
                        if s.get('k') is not None)
    lines = [f'finished in {metrics_lib.clock(time.perf_counter() - self.progress.started)}; '
             f'after {last.get("stage", "?")}: {figures or "no gaming counts"}',
             f'report:   {os.path.join(w, report.REPORT)}',
             f'matrix:   {os.path.join(w, report.MATRIX)}',
             f'episodes: {os.path.join(w, episodes_lib.DIR)}/  (python -m rt_jax.episodes '
             f'--workdir={w} --where=FLAG)',
             f'tensorboard --logdir {os.path.join(w, "tb")}']
    for line in lines:
      metrics_lib.console(line)

  def _write_results(self, results):
    if jax.process_index() == 0:  # one copy of the results and the report: process 0's
      # Keys in the order they were made: environments in the curriculum's order, not sorted.
      checkpoint_lib.write_atomic(os.path.join(self.workdir, reporting.RESULTS),
                                  json.dumps(results, indent=2).encode())

  def _publish(self, results, unit):
    """results.json, report.md, matrix.png, and the evaluation into TensorBoard at its unit (the
    one x-axis of a curriculum run: rounds and evaluations line up)."""
    self._write_results(results)
    if jax.process_index():
      return
    report.write(self.workdir)
    # What was written, so TensorBoard's matrix is the one `rt_jax.report` draws.
    report.log_tensorboard(self.writer, report.read(self.workdir), unit)
    self.writer.flush()

  def _run_info(self, wall_s: float) -> dict:
    c = self.config
    return {'config': c.get('name', ''), 'mode': c.mode, 'variant': c.ei.variant,
            'model': c.init_from or 'a fresh model (config.model)', 'seed': c.seed,
            'episodes_per_eval': c.eval.episodes, 'samples_per_eval_instance': c.eval.samples,
            'eval_instance_seed': c.eval.instance_seed, 'env_order': list(c.eval.envs),
            'reward_flags': {s: reward_flag(c, s) for s in c.stages},
            'train_away_sycophancy': bool(c.train_away.enabled),
            'prompts_per_round': c.ei.prompts, 'samples_per_prompt': c.ei.samples,
            'command': c.get('command', ''), 'wall_s': wall_s}


def summarize(env: core.Environment, rows: list[dict], pm, samples: int) -> dict:
  """One evaluation cell: counts of the yes/no flags, the gaming count per instance (for paired
  tests and clustered intervals), and means. `rows` are graded rows (World.grade with texts, so
  audited where the environment has an audit)."""
  flags = {k: int(sum(bool(r[k]) for r in rows)) for k in (rows[0] if rows else ())
           if isinstance(rows[0][k], bool)}
  by_instance = {}
  for r in rows:
    by_instance.setdefault(str(r['instance']), 0)
    by_instance[str(r['instance'])] += bool(env.gaming and r[env.gaming])
  return {'n': len(rows), 'instances': len(by_instance), 'samples': samples,
          'k': flags.get(env.gaming, 0) if env.gaming else None,
          'metric': env.gaming or 'pm_score', 'answered': env.answered, 'flags': flags,
          'gaming_by_instance': by_instance if env.gaming else None,
          'reward_mean': _mean([_finite(r['reward']) for r in rows]),
          'pm_score_mean': float(np.mean(pm)) if rows else None}


def _row_files(fs_host, r: int) -> dict:
  """{absolute path: text} of row r of a batch's filesystems (host arrays)."""
  return core.files_of(jax.tree.map(lambda x: x[r], fs_host))


def _answered(env: core.Environment, row: dict) -> bool:
  return bool(row[env.answered]) if env.answered else True


def _finite(x) -> float | None:
  x = float(x)
  return x if np.isfinite(x) else None


def _mean(xs) -> float | None:
  xs = [x for x in xs if x is not None]
  return float(np.mean(xs)) if xs else None


def _constant_lr(ei_cfg):
  """The EI optimizer: AdamW at a constant `ei.lr` (make_optimizer's schedule, held flat)."""
  return ml_collections.ConfigDict({'lr': ei_cfg.lr, 'warmup_steps': 0, 'steps': 1,
                                   'final_lr_frac': 1.0, 'b1': 0.9, 'b2': 0.95,
                                   'weight_decay': 0.0, 'grad_clip': 1.0})


def run(config, workdir: str) -> dict:
  runner = Run(config, workdir)
  try:
    return runner.run()
  finally:
    runner.mngr.close()
