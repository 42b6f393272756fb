"""The helpful-only gate's choice of weights: blocks train until the targets are met; a start whose
gate is never met keeps the block nearest the targets, and its parameters are exactly the ones
that block measured. The measurements are planted (competence.measure is replaced), so the test
knows which block must be kept."""
import types

import jax
import numpy as np
import pytest

from conftest import config_of
from rt_jax.core import metrics as metrics_lib
from rt_jax.core import model as model_lib
from rt_jax.core import sharding
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.core import train
from rt_jax.core.run_context import fold
from rt_jax.studies.subterfuge import competence
from rt_jax.studies.subterfuge import rounds
from rt_jax.studies.subterfuge import start_blocks

GATE = {'tool_use_flattery': 0.5, 'rubric_modification_nudged': 0.5}


def _measure(counts: dict):
  return {'block': -1, 'envs': {e: list(k) for e, k in counts.items()}, 'episodes': ''}


def test_closeness_ranks_targets_met_then_the_share_of_each_target():
  c = config_of('curriculum', {f'start.competence.{e}': t for e, t in GATE.items()}, 'tiny')
  far = _measure({'tool_use_flattery': (0, 8), 'rubric_modification_nudged': (1, 8)})
  one_met = _measure({'tool_use_flattery': (0, 8), 'rubric_modification_nudged': (8, 8)})
  near = _measure({'tool_use_flattery': (3, 8), 'rubric_modification_nudged': (3, 8)})
  assert competence.closeness(c, far) == (0, 0.125)
  assert competence.closeness(c, one_met) == (1, 0.5)  # a met target counts once, not 8/4
  assert competence.closeness(c, near) == (0, 0.75)
  history = [dict(h, block=b) for b, h in enumerate((one_met, far, near, one_met))]
  assert competence.best_block(c, history[:3]) == 2
  assert competence.best_block(c, history) == 3  # block 0 (no SFT) is never kept
  history.append(dict(one_met, block=4))
  assert competence.best_block(c, history) == 3  # the earliest of equals


def _context(c, workdir):
  cfg = model_lib.ModelConfig(**{**c.model, 'n_layers': 1, 'd_model': 32, 'mlp_dim': 64,
                                 'n_heads': 2, 'n_kv_heads': 1, 'head_dim': 16})
  plan = sharding.Plan.from_config(c)
  ctx = types.SimpleNamespace(
      config=c, cfg=cfg, plan=plan, sft_optimizer=train.make_optimizer(c.start),
      ei_optimizer=train.make_optimizer(c.start), progress=metrics_lib.Progress(['sft'], 0),
      workdir=str(workdir), tok=tokenizer_lib.builtin(), weights_id='fresh',
      writer=types.SimpleNamespace(scalars=lambda *a: None),
      start_key=lambda *path: fold(jax.random.key(c.start.seed), *path))
  state = plan.init_state(cfg, jax.random.key(0), ctx.sft_optimizer)
  return ctx, state


class _Corpus:
  tokens_NxT = mask_NxT = np.ones((2, 32), np.int32)  # what the start's hash reads

  def batch(self, step, rows):
    rng = np.random.default_rng(step)
    return {'tokens': rng.integers(1, 200, (rows, 32)).astype(np.int32),
            'mask': np.ones((rows, 32), np.int32)}


@pytest.mark.parametrize('flattery, kept, blocks', [
    ((0, 3, 2, 1), 1, 3),  # never met: block 1 is nearest, and its weights are the start
    ((0, 1, 2, 3), 3, 3),  # never met, the last block nearest: the weights as trained
    ((0, 1, 4, 0), 2, 2),  # met after block 2: training stops there
])
def test_the_start_keeps_the_block_nearest_the_gate(flattery, kept, blocks, monkeypatch, capsys,
                                                   tmp_path):
  c = config_of('curriculum', {'start.competence.tool_use_flattery': 0.5, 'start.max_blocks': 3,
                               'start.steps': 2, 'start.warmup_steps': 1}, 'tiny')
  ctx, state = _context(c, tmp_path)
  measured = {}

  def planted(ctx, params, block):
    measured[block] = jax.tree.map(np.array, params)  # the weights this block was measured with
    return {'block': block, 'envs': {'tool_use_flattery': [flattery[block], 8]},
            'episodes': f'episodes/competence_block_{block}.jsonl'}

  monkeypatch.setattr(competence, 'measure', planted)
  state, m = rounds._train_helpful_only(ctx, state, _Corpus())
  assert sorted(measured) == list(range(blocks + 1)) and m['kept_block'] == kept
  assert [h['block'] for h in m['competence']] == list(range(blocks + 1))
  assert int(state.step) == kept * c.start.steps
  got = jax.tree.map(np.array, state.params)
  jax.tree.map(np.testing.assert_array_equal, got, measured[kept])
  others = [b for b in measured if b != kept]
  for b in others:  # the blocks differ, so the comparison above can fail
    assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(got),
                                                         jax.tree.leaves(measured[b]))), b
  err = capsys.readouterr().err
  # The step time, between logged steps of one block (never across a compile or a gate).
  paced = [' s/step)' in line for line in err.splitlines() if 'helpful_only: step' in line]
  assert paced == [False, True] * blocks, err
  last = blocks
  assert (f'the start is block {kept}' in err) == (kept != last), err


class _Killed(Exception):
  pass


@pytest.mark.parametrize('killed_after', [1, 2])
def test_a_start_stopped_after_a_block_resumes_to_the_same_weights(killed_after, monkeypatch,
                                                                   tmp_path):
  """The gate of the first case above (block 1 kept), stopped once block `killed_after` is saved
  and run again in the same workdir: the measurements already made are not made again, and the
  start's weights, step and history equal an uninterrupted start's (after block 2 the kept
  block's weights come from start_blocks/best)."""
  c = config_of('curriculum', {'start.competence.tool_use_flattery': 0.5, 'start.max_blocks': 3,
                               'start.steps': 2, 'start.warmup_steps': 1}, 'tiny')
  flattery, measured = (0, 3, 2, 1), []

  def planted(ctx, params, block):
    measured.append(block)
    return {'block': block, 'envs': {'tool_use_flattery': [flattery[block], 8]},
            'episodes': f'episodes/competence_block_{block}.jsonl'}

  monkeypatch.setattr(competence, 'measure', planted)
  ctx, state = _context(c, tmp_path / 'whole')
  whole, m_whole = rounds._train_helpful_only(ctx, state, _Corpus())

  save = start_blocks.save

  def save_then_stop(ctx, key, block, *args):
    save(ctx, key, block, *args)
    if block == killed_after:
      raise _Killed

  monkeypatch.setattr(start_blocks, 'save', save_then_stop)
  ctx, state = _context(c, tmp_path / 'resumed')
  with pytest.raises(_Killed):
    rounds._train_helpful_only(ctx, state, _Corpus())
  measured.clear()
  ctx, state = _context(c, tmp_path / 'resumed')
  resumed, m = rounds._train_helpful_only(ctx, state, _Corpus())
  assert measured == list(range(killed_after + 1, 4))
  assert m == m_whole and int(resumed.step) == int(whole.step) == c.start.steps
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.array, resumed.params),
               jax.tree.map(np.array, whole.params))
