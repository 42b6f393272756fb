"""The curriculum runner (docs/design.md §6): the `curriculum` job of `rt_jax.main`.

A run is a list of phases, each followed by an evaluation of every environment:

  helpful_only            SFT on the generated tool-use corpus (studies/subterfuge/tool_corpus.py)
  one phase per stage     expert-iteration rounds on that environment (config.stages)
  train_away_sycophancy   (optional) SFT on honest episodes of the first two environments

Progress is counted in units (the helpful-only SFT is one unit, every EI round one more); an Orbax
checkpoint is saved after every unit with the unit in its metadata, and every key and instance
choice derives from (seed, unit) (the helpful-only start's from start.seed), so a killed run
resumes at its last unit and ends with the same numbers as an uninterrupted one. Evaluations
append to WORKDIR/results.json (written atomically); report.md, matrix.png and TensorBoard follow
each evaluation. `mode='baseline'` runs only the helpful-only phase and its evaluation.

Every environment of both splits lives in one merged instance table, and every rollout has the same
(P prompts x N samples) shape, so the rollout compiles once per run.

The state, the training batches, the rollouts and PM scoring live on one mesh (config.mesh and
config.rules, a `sharding.Plan`); a checkpoint saved on one mesh resumes on another.

plan.py says what a config makes, world.py holds the environments, rounds.py the training units,
evaluate.py an evaluation; this file runs them in order.
"""
import json
import os
import time

import jax
import ml_collections

from rt_jax.core import checkpoint as checkpoint_lib
from rt_jax.core import convert
from rt_jax.core import metrics as metrics_lib
from rt_jax.core import reporting
from rt_jax.core import sharding
from rt_jax.core import train
from rt_jax.core.errors import ConfigError
from rt_jax.rl import pm as pm_lib
from rt_jax.rl import rollout as rollout_lib
from rt_jax.studies.subterfuge import episodes as episodes_lib
from rt_jax.studies.subterfuge import report
from rt_jax.studies.subterfuge import rounds
from rt_jax.studies.subterfuge import start_blocks
from rt_jax.studies.subterfuge import start_cache
from rt_jax.studies.subterfuge import tool_corpus
from rt_jax.studies.subterfuge import world as world_lib
from rt_jax.studies.subterfuge.context import Context, Stream
from rt_jax.studies.subterfuge.evaluate import evaluate
from rt_jax.studies.subterfuge.plan import (HONEST_ENVS, Phase, describe, phases, reward_flag,
                                            validate)

__all__ = ['describe', 'train_and_evaluate', 'validate']  # what rt_jax.main calls


def train_and_evaluate(config, workdir: str) -> dict:
  """Every unit not yet checkpointed in `workdir`, each phase followed by its evaluation."""
  c = config
  cfg, tok, init_params = convert.initial_model(c)
  # Built first: an episode longer than start.train_len is a config error before any compute.
  corpus = tool_corpus.ToolCorpus(tok, c.start.examples, c.start.train_len, c.start.seed)
  checkpoint_lib.write_model_files(workdir, cfg, tok)
  policy = rollout_lib.Policy.make(cfg, tok, rollout_lib.RolloutConfig(**c.rollout))
  world = world_lib.World(tok, sorted(set(c.eval.envs) | set(c.stages) | set(HONEST_ENVS)
                                      | {'hhh'}))
  rollout_lib.check_fits(world.table, policy.rc, 'environment prompts')
  units = phases(c)
  mngr = checkpoint_lib.Manager(workdir, max_to_keep=c.keep_checkpoints or None)
  try:
    ctx = Context(config=c, workdir=workdir, cfg=cfg, tok=tok, policy=policy, world=world,
                  plan=sharding.Plan.from_config(c), sft_optimizer=train.make_optimizer(c.start),
                  ei_optimizer=train.make_optimizer(_constant_lr(c.ei)),
                  root=jax.random.key(c.seed), mngr=mngr, writer=None, progress=None,
                  start_corpus=corpus,
                  weights_id=start_cache.weights_id(c, init_params) if c.start.cache else '')
    started = time.perf_counter()
    # The initial weights are handed over, so the run never holds them beside the state.
    held, init_params = [init_params], None
    state, done, results = _restore(ctx, units, held)
    if done:  # the start is checkpointed: its blocks, if a kill left them, are of no use
      start_blocks.drop(workdir)
    ctx.writer = metrics_lib.Writer(os.path.join(workdir, 'tb'),
                                    purge_step=(done + 1) if done else None)
    ctx.progress = metrics_lib.Progress([p.kind for p in units for _ in range(p.units)],
                                        len(units), done, len(results['evals']))
    ctx.writer.text(done, 'config', c.to_json(indent=2))
    if c.compile_ahead:
      _compile_ahead(ctx, units)
    # Trained once per workdir (before any evaluation), then loaded.
    ctx.pm, results['pm'] = pm_lib.trained(c.pm, os.path.join(workdir, 'pm'),
                                           ctx.key(Stream.PM), log=ctx.progress.say)
    if not done:
      for step, loss, accuracy in results['pm'].get('curve') or ():
        ctx.writer.scalars(step, {'pm/loss': loss, 'pm/train_accuracy': accuracy})
    results['run'] = _run_info(c, results['run'].get('wall_s', 0.0))
    for index, phase in enumerate(units):
      for unit in range(phase.first_unit, phase.first_unit + phase.units):
        if unit > done:
          state = _train_unit(ctx, state, phase, unit, results)
      if any(e['stage'] == phase.name for e in results['evals']):
        continue
      results['evals'].append(evaluate(ctx, state.params, index, phase.name))
      ctx.progress.finished('eval', results['evals'][-1]['wall_s'])
      results['run']['wall_s'] = results['run'].get('wall_s', 0.0) + (
          time.perf_counter() - started)
      started = time.perf_counter()
      _publish(ctx, results, phase.first_unit + phase.units - 1)
    _hparams(ctx, results)
    ctx.writer.close()
    _summary(ctx, results)
  finally:
    mngr.close()
  return {'evals': len(results['evals']), 'report': os.path.join(workdir, reporting.REPORT)}



def _train_unit(ctx: Context, state, phase: Phase, unit: int, results: dict):
  """One unit (the helpful-only SFT or an EI round), checkpointed with its training record."""
  c, unit_started = ctx.config, time.perf_counter()
  if phase.kind == 'sft':
    state, m = rounds.helpful_only(ctx, state)
  else:
    state, m = rounds.ei_round(ctx, state, phase, unit)
  m = {**m, 'wall_s': time.perf_counter() - unit_started}
  ctx.progress.finished(phase.kind, m['wall_s'])
  ctx.writer.scalars(unit, {'train/loss': m['loss']})
  if unit % c.checkpoint_every_rounds == 0 or unit == phase.first_unit + phase.units - 1:
    # The record first: a resume drops records past its checkpoint, so a kill between the two
    # writes loses neither (in the other order it would leave a checkpointed unit unrecorded).
    results['train'].append({'stage': phase.name, 'unit': unit,
                             'round': unit - phase.first_unit + 1, **m})
    _write_results(ctx, results)
    _save(ctx, unit, phase, state)
    if phase.kind == 'sft':
      start_blocks.drop(ctx.workdir)  # the checkpoint now holds the start
  return state


def _compile_ahead(ctx: Context, units: list[Phase]):
  """XLA compiles the rollout and the EI update while the PM and the SFT train."""
  c = ctx.config
  rollout_lib.compile_on_mesh(ctx.plan, ctx.policy, ctx.world.table, c.eval.prompts,
                              c.eval.samples)
  if (c.eval.prompts, c.eval.samples) != (c.ei.prompts, c.ei.samples) and len(units) > 1:
    rollout_lib.compile_on_mesh(ctx.plan, ctx.policy, ctx.world.table, c.ei.prompts,
                                c.ei.samples)
  if any(p.kind != 'sft' for p in units):
    microbatches = train.microbatch_count(c.ei.train_rows, c.ei.microbatch_rows, 'ei')
    ctx.plan.compile_train_step(ctx.cfg, ctx.ei_optimizer, c.ei.train_rows, c.ei.train_len,
                                microbatches)


def _restore(ctx: Context, units: list[Phase], held: list):
  """-> (state, units done, results): a fresh state (the initial weights, popped from `held`,
  placed on the mesh), or the last intact checkpoint's, restored into this run's mesh whichever
  mesh saved it (the initial weights dropped first: never two copies)."""
  init_params = held.pop()
  done = ctx.mngr.latest_intact_step() or 0  # past a corrupt latest step, with one line
  results = {'run': {}, 'evals': [], 'train': []}
  if not done:
    return (ctx.plan.init_state(ctx.cfg, ctx.key(Stream.INIT), ctx.sft_optimizer,
                                params=init_params), 0, results)
  del init_params
  # Every unit after the first ends with the expert-iteration optimizer's state.
  target = ctx.plan.abstract_state(ctx.cfg, ctx.ei_optimizer)
  params, opt_state, meta = ctx.mngr.restore(done, target.params, target.opt_state)
  if meta['seed'] != ctx.config.seed:
    raise ConfigError(f'{ctx.workdir} was run with seed={meta["seed"]}, not '
                      f'{ctx.config.seed}; use a new workdir')
  if os.path.isfile(os.path.join(ctx.workdir, reporting.RESULTS)):
    results = reporting.read(ctx.workdir)
  ends = {p.name: p.first_unit + p.units - 1 for p in units}
  results['evals'] = [e for e in results.get('evals', []) if ends.get(e['stage'], 0) <= done]
  results['train'] = [t for t in results.get('train', []) if t['unit'] <= done]
  metrics_lib.console(f'resumed {ctx.workdir} after unit {done} ({meta["phase"]})')
  return ctx.plan.train_state(meta['optimizer_step'], params, opt_state), done, results


def _save(ctx: Context, unit: int, phase: Phase, state: train.TrainState):
  ctx.mngr.save(unit, state.params, state.opt_state,
                {'unit': unit, 'phase': phase.name, 'seed': ctx.config.seed,
                 'optimizer_step': int(state.step)})
  ctx.mngr.wait()  # an evaluation only ever follows a checkpoint that is on disk


def _hparams(ctx: Context, results):
  """The run's settings beside its last evaluation's rates, for TensorBoard's HParams tab."""
  c = ctx.config
  hparams = {'config': c.get('name', ''), 'mode': c.mode, 'variant': c.ei.variant,
             'seed': c.seed, 'init_from': c.init_from or 'fresh', 'ei.prompts': c.ei.prompts,
             'ei.samples': c.ei.samples, 'ei.rounds': c.ei.rounds, 'ei.lr': c.ei.lr,
             'ei.pm_weight': c.ei.pm_weight, 'eval.episodes': c.eval.episodes,
             'train_away': bool(c.train_away.enabled)}
  last = (results['evals'] or [{}])[-1].get('envs') or {}
  rates = {f'final/{env}': s['k'] / s['n'] for env, s in last.items()
           if s.get('k') is not None and s.get('n')}
  ctx.writer.hparams(hparams, rates or {'final/none': 0.0})


def _summary(ctx: Context, results):
  """The last lines a user reads: the final figures and where everything is."""
  w = ctx.workdir
  last = (results['evals'] or [{}])[-1]
  figures = ', '.join(f'{env} {s["k"]}/{s["n"]}' for env, s in (last.get('envs') or {}).items()
                      if s.get('k') is not None)
  first = (results['evals'] or [{}])[0]
  competence = ', '.join(f'{env} {s["flags"][s["competent"]]}/{s["n"]}'
                         for env, s in (first.get('envs') or {}).items()
                         if s.get('competent') in (s.get('flags') or {}))
  lines = [f'finished in {metrics_lib.clock(time.perf_counter() - ctx.progress.started)}; '
           f'after {last.get("stage", "?")}: {figures or "no gaming counts"}',
           f'competence (task done) after {first.get("stage", "?")}: '
           f'{competence or "none recorded"}',
           f'report:   {os.path.join(w, report.REPORT)}',
           f'matrix:   {os.path.join(w, report.MATRIX)}',
           f'episodes: {os.path.join(w, episodes_lib.DIR)}/  (python -m rt_jax.episodes '
           f'--workdir={w} --where=FLAG)',
           f'tensorboard --logdir {os.path.join(w, "tb")}']
  for line in lines:
    metrics_lib.console(line)


def _write_results(ctx: Context, results):
  if jax.process_index() == 0:  # one copy of the results and the report: process 0's
    # Keys in the order they were made: environments in the curriculum's order, not sorted.
    checkpoint_lib.write_atomic(os.path.join(ctx.workdir, reporting.RESULTS),
                                json.dumps(results, indent=2).encode())


def _publish(ctx: Context, results, unit):
  """results.json, report.md, matrix.png, and the evaluation into TensorBoard at its unit (the
  one x-axis of a curriculum run: rounds and evaluations line up)."""
  _write_results(ctx, results)
  if jax.process_index():
    return
  report.write(ctx.workdir)
  # What was written, so TensorBoard's matrix is the one `rt_jax.report` draws.
  report.log_tensorboard(ctx.writer, report.read(ctx.workdir), unit)
  ctx.writer.flush()


def _run_info(c, wall_s: float) -> dict:
  return {'config': c.get('name', ''), 'mode': c.mode, 'variant': c.ei.variant,
          'model': c.init_from or 'a fresh model (config.model)', 'seed': c.seed,
          'episodes_per_eval': c.eval.episodes, 'samples_per_eval_instance': c.eval.samples,
          'eval_instance_seed': c.eval.instance_seed, 'env_order': list(c.eval.envs),
          'stages': list(c.stages), 'reward_flags': {s: reward_flag(c, s) for s in c.stages},
          'train_away_sycophancy': bool(c.train_away.enabled),
          'prompts_per_round': c.ei.prompts, 'samples_per_prompt': c.ei.samples,
          'temperature': c.ei.temperature, 'top_p': c.ei.top_p,
          'command': c.get('command', ''), 'wall_s': wall_s}


def _constant_lr(ei_cfg):
  """The EI optimizer: AdamW at a constant `ei.lr` (make_optimizer's schedule, held flat)."""
  return ml_collections.ConfigDict({'lr': ei_cfg.lr, 'warmup_steps': 0, 'steps': 1,
                                   'final_lr_frac': 1.0, 'b1': 0.9, 'b2': 0.95,
                                   'weight_decay': 0.0, 'grad_clip': 1.0})
