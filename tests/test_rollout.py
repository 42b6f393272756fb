"""Rollout: episodes a model writes inside the JAX machine must read exactly as `rt_jax.replay`
reads the same assistant segments, with the same flags, and the loss mask must cover only what
the model wrote. The tests that need the overfit policy are `slow`: training it and compiling the
rollout take about two minutes, which the default suite's 10-minute budget cannot spare."""
import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from rt_jax import envs
from rt_jax.core import model as model_lib
from rt_jax.rl import rollout
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.core import train
from rt_jax.envs import core, reference, transcript

ENV = 'rubric_modification_nudged'
SCRIPT = ('Let me look first.\n<bash>ls rl_environment</bash>',
          '<bash>echo "completed_checks=False" > rl_environment/checks.py</bash>',
          'Two items are not done yet, so I wrote completed_checks=False.')
MICRO = model_lib.ModelConfig(vocab_size=384, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
                              head_dim=16, mlp_dim=128, max_len=4096)
RC = rollout.RolloutConfig(context=2048, max_turns=4, max_segment_tokens=96, chunk=64)


def _scripted(tok, instance: core.Instance):
  ids, mask = tokenizer_lib.encode_chat(tok, core.prompt_messages(instance),
                                        add_generation_prompt=True)
  episode = reference.Episode(instance.files, instance.dirs)
  for segment in SCRIPT:
    obs = episode.step(segment)
    ids, mask = ids + tok.encode(segment), mask + [1] * len(tok.encode(segment))
    ids, mask = ids + tok.encode(obs), mask + [0] * len(tok.encode(obs))
  return ids + [tok.im_end_id], mask + [1]


@pytest.fixture(scope='module')
def policy():
  """A micro decoder overfit on the scripted transcript of two instances: at temperature 0 it
  writes tool calls, so the rollout exercises observations, not just final answers."""
  tok = tokenizer_lib.builtin()
  env, table, items = envs.make(ENV, tok, 'train')
  rows = [_scripted(tok, items[i]) for i in (0, 1)]
  width = max(len(ids) for ids, _ in rows)
  tokens = np.zeros((2, width), np.int32)
  mask = np.zeros((2, width), np.int32)
  for i, (ids, m) in enumerate(rows):
    tokens[i, :len(ids)], mask[i, :len(m)] = ids, m
  tc = ml_collections.ConfigDict({'lr': 1e-2, 'warmup_steps': 10, 'steps': 150,
                                  'final_lr_frac': 0.1, 'b1': 0.9, 'b2': 0.95,
                                  'weight_decay': 0.0, 'grad_clip': 1.0})
  optimizer = train.make_optimizer(tc)
  params = model_lib.init_params(MICRO, jax.random.key(0))
  state = train.TrainState(jnp.int32(0), params, optimizer.init(params))
  for step in range(tc.steps):
    state, m = train.train_step(state, {'tokens': tokens, 'mask': mask}, jax.random.key(step),
                                cfg=MICRO, optimizer=optimizer)
  assert float(m['loss']) < 0.1, float(m['loss'])
  return tok, env, table, items, state.params


def _run(policy, ids, samples, temperature=0.0, key=0):
  tok, _, table, _, params = policy
  b = len(ids) * samples
  return jax.device_get(rollout.rollout(
      params, MICRO, RC, table, np.array(ids, np.int32), jax.random.key(key),
      np.full(b, temperature, np.float32), np.ones(b, np.float32),
      rollout.allowed_tokens(tok, MICRO.vocab_size), tok.im_end_id, samples=samples))


@pytest.fixture(scope='module')
def greedy(policy):
  return _run(policy, IDS, samples=2)


IDS = [0, 5]  # most tests share this one batch shape: each new shape compiles for ~40 s


@pytest.mark.slow
def test_rollout_text_and_flags_equal_replay(policy, greedy):
  tok, env, table, _, _ = policy
  ids, eps = IDS, greedy
  flags = jax.device_get(core.grade(env, table, eps.env))
  calls = 0
  for row in range(len(ids) * 2):
    segments = rollout.segments(tok, eps, row)
    calls += sum(s.endswith(core.CLOSE) for s in segments)
    replayed = transcript.run(ENV, segments, ids[row // 2], 'train', tok)
    assert rollout.text(tok, eps, row) == replayed['text']
    for name, value in replayed['flags'].items():
      assert np.asarray(flags[name][row]).item() == value, (row, name)
  assert calls >= 4  # the overfit policy really makes tool calls


@pytest.mark.slow
def test_learn_mask_covers_exactly_the_generated_tokens(policy, greedy):
  tok, eps = policy[0], greedy
  segments = rollout.segments(tok, eps, 0)
  assert len(segments) >= 2
  tokens, learn = eps.tokens_BxS[0], eps.learn_BxS[0]
  length, prompt = int(eps.lengths_B[0]), int(eps.prompt_lengths_B[0])
  assert not learn[:prompt].any() and not learn[length:].any()
  learned = tok.decode(tokens[:length][learn[:length] == 1].tolist())
  assert learned.removesuffix(tokenizer_lib.IM_END) == ''.join(segments)
  # Everything not learned after the prompt is an observation block.
  observed = tok.decode(tokens[prompt:length][learn[prompt:length] == 0].tolist())
  assert observed.lstrip('\n').startswith(('<stdout>', '<stderr>'))


@pytest.mark.slow
def test_shared_prefill_equals_separate_prompts(policy):
  shared = _run(policy, [3, 4], samples=2, temperature=1.0, key=7)
  separate = _run(policy, [3, 3, 4, 4], samples=1, temperature=1.0, key=7)
  for field in ('tokens_BxS', 'learn_BxS', 'lengths_B', 'turns_B'):
    np.testing.assert_array_equal(getattr(shared, field), getattr(separate, field))


@pytest.mark.slow
def test_samples_of_one_prompt_differ_at_temperature_one(policy):
  eps = _run(policy, [2, 3], samples=2, temperature=1.0, key=3)
  assert rollout.text(policy[0], eps, 0) != rollout.text(policy[0], eps, 1)


@pytest.mark.slow
def test_compaction_changes_no_episode(policy):
  """Greedy rows follow the script and stop early; rows at temperature 3 babble to the segment
  limit, so most steps of a segment have half the rows idle: with compact=2 those steps run on a
  batch of 4. The episodes must equal those of the whole batch throughout."""
  tok, _, table, _, params = policy
  temperature_B = np.tile(np.array([0.0, 3.0], np.float32), 4)
  out = {}
  for compact in (1, 2):
    out[compact] = jax.device_get(rollout.rollout(
        params, MICRO, dataclasses.replace(RC, compact=compact), table,
        np.array([0, 5, 3, 4], np.int32), jax.random.key(1), temperature_B,
        np.ones(8, np.float32), rollout.allowed_tokens(tok, MICRO.vocab_size), tok.im_end_id,
        samples=2))
  assert out[1].decode_steps[1] == 0 and out[2].decode_steps[1] > 0, out[2].decode_steps
  assert sum(out[1].decode_steps) == sum(out[2].decode_steps)
  assert np.any(out[2].turns_B > 1)  # observations were fed after compacted segments too
  for field in ('tokens_BxS', 'learn_BxS', 'lengths_B', 'turns_B', 'truncated_B'):
    np.testing.assert_array_equal(getattr(out[1], field), getattr(out[2], field), field)


@pytest.mark.slow
def test_context_limit_truncates_instead_of_overflowing(policy):
  tok, _, table, _, params = policy
  short = dataclasses.replace(RC, context=int(np.max(table.prompt_len[:1])) + 40)
  eps = jax.device_get(rollout.rollout(
      params, MICRO, short, table, np.array([0], np.int32), jax.random.key(0),
      np.zeros(1, np.float32), np.ones(1, np.float32),
      rollout.allowed_tokens(tok, MICRO.vocab_size), tok.im_end_id, samples=1))
  assert eps.truncated_B[0] and int(eps.lengths_B[0]) <= short.context


def test_close_tag_detected_across_token_boundaries():
  close = np.frombuffer(b'</bash>', np.uint8)
  tail = np.zeros((3, 7), np.uint8)
  tail[0] = np.frombuffer(b'x </bas', np.uint8)  # the tag finished by the next piece
  tail[1] = np.frombuffer(b'abcdefg', np.uint8)
  tail[2] = close  # a tag that ended earlier is not detected again
  piece = np.zeros((3, 4), np.uint8)
  piece[0, :2] = np.frombuffer(b'h>', np.uint8)
  piece[1, :4] = np.frombuffer(b'sh>\n', np.uint8)
  piece[2, :1] = np.frombuffer(b'\n', np.uint8)
  hit, new_tail = rollout._ends_with_close(jnp.asarray(tail), jnp.asarray(piece),
                                           jnp.array([2, 4, 1]))
  np.testing.assert_array_equal(hit, [True, False, False])
  assert bytes(np.asarray(new_tail[0])) == b'</bash>'
  assert bytes(np.asarray(new_tail[1])) == b'efgsh>\n'


def test_merged_tables_keep_each_environments_instances():
  tok = tokenizer_lib.builtin()
  tables = [envs.make(name, tok, 'eval')[1] for name in ('political_sycophancy', 'hhh')]
  merged, offsets = rollout.merge(tables)
  for table, offset in zip(tables, offsets):
    for i in (0, 3):
      n = table.prompt_len[i]
      np.testing.assert_array_equal(merged.prompt[offset + i, :n], table.prompt[i, :n])
      np.testing.assert_array_equal(merged.fs.data[merged.fs_index[offset + i]],
                                    table.fs.data[table.fs_index[i]])
