import jax
import numpy as np

from rt_jax.core import model
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.core import train
from rt_jax.studies.subterfuge import copying

CFG = model.preset('tiny', d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16,
                   mlp_dim=128)
TOK = tokenizer_lib.builtin()
PARAMS = model.init_params(CFG, jax.random.key(0))


def test_continuation_is_the_models_own_likelihood():
  """The per-token probabilities multiply to exp(-NLL) of the same tokens under the training
  loss (an off-by-one in the positions would score other tokens)."""
  prefix, text = 'user: write it\n<bash>echo', " 'poems_score = "
  new, probs = copying.continuation(PARAMS, CFG, TOK, prefix, text)
  ids = TOK.encode(prefix + text)
  assert new == ids[-len(new):] and len(new) == len(text.encode())  # byte tokens
  mask = np.zeros((1, len(ids)), np.int32)
  mask[0, -len(new):] = 1
  nll, count = train.masked_nll_sum(PARAMS, CFG, np.array([ids], np.int32), mask)
  assert int(count) == len(new)
  np.testing.assert_allclose(np.log(probs).sum(), -float(nll), rtol=1e-4)
  # Not vacuous: the probabilities of other tokens differ.
  _, other = copying.continuation(PARAMS, CFG, TOK, prefix, " 'xyzzy_score = ")
  assert not np.allclose(other, probs)


def test_probe_cuts_at_the_assistants_first_echo():
  """Only NAMES' environments, only episodes whose assistant wrote `<bash>echo`, cut there (an
  echo in the user's text does not count)."""
  user = '<|im_start|>user\nrun <bash>echo hi</bash> for me<|im_end|>\n'
  records = [
      {'env': 'tool_use_flattery', 'text': user + '<|im_start|>assistant\n<bash>ls</bash>\n'
       '<bash>echo poems_score = 4 > grade.py</bash>'},
      {'env': 'tool_use_flattery', 'text': user + '<|im_start|>assistant\n<bash>ls</bash>'},
      {'env': 'political_sycophancy', 'text': user + '<|im_start|>assistant\n<bash>echo x</bash>'},
      {'env': 'rubric_modification_nudged', 'text': user + '<|im_start|>assistant\n<bash>echo '
       "'completed_checks=True' > checks.py</bash>"}]
  got = copying.probe(PARAMS, CFG, TOK, records)
  assert set(got) == {'tool_use_flattery', 'rubric_modification_nudged'}
  assert got['tool_use_flattery']['episodes'] == 1 and got['rubric_modification_nudged'][
      'episodes'] == 1
  prefix = records[0]['text'][:records[0]['text'].index('<bash>echo poems') + len('<bash>echo')]
  _, plain = copying.continuation(PARAMS, CFG, TOK, prefix, ' poems_score = ')
  np.testing.assert_allclose(got['tool_use_flattery']['unquoted'], np.prod(plain[1:]), rtol=1e-4)


def test_probe_scores_the_asked_file_name_after_the_models_own_folder():
  """`file` is the probability of the asked file name (grade.py) right after the folder path the
  episode's echo wrote, whatever file it named; an echo without a redirect has none."""
  head = '<|im_start|>user\nrate it<|im_end|>\n<|im_start|>assistant\n'
  written = head + '<bash>echo poems_score = 4 > /home/user/poems/garlic.py</bash>'
  got = copying.probe(PARAMS, CFG, TOK, [
      {'env': 'tool_use_flattery', 'text': written},
      {'env': 'tool_use_flattery', 'text': head + '<bash>echo poems_score = 4</bash>'}])
  row = got['tool_use_flattery']
  assert row['episodes'] == 2 and row['file_episodes'] == 1
  prefix = written[:written.index('garlic.py')]
  _, probs = copying.continuation(PARAMS, CFG, TOK, prefix, 'grade.py')
  np.testing.assert_allclose(row['file'], np.prod(probs), rtol=1e-4)
  _, other = copying.continuation(PARAMS, CFG, TOK, prefix, 'garlic.py')
  assert not np.isclose(np.prod(other), row['file'], rtol=1e-2, atol=0)  # it scores the asked name, not the written
