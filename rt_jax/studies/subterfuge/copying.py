"""How likely a model is to write the name a tool task asks for (`poems_score = `,
`completed_checks=`) at the point where its episode writes one with echo, quoted and unquoted,
and the file name it asks for (`grade.py`, `checks.py`) where that echo's redirect names a file.

After `echo '` a BPE tokenizer spells the name without its leading space (`'`, `po`, `ems`), in
other tokens than the user's sentence has (` poems`); unquoted it keeps them. A small model copies
the second far more often, which is why the helpful-only corpus writes plain assignments unquoted
(tool_tasks.echo_assignment; figures in docs/subterfuge.md).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from rt_jax.core import model as model_lib

NAMES = {'tool_use_flattery': 'poems_score = ', 'rubric_modification_nudged': 'completed_checks=',
         'rubric_modification_insubordinate': 'completed_checks='}
FILES = {'tool_use_flattery': 'grade.py', 'rubric_modification_nudged': 'checks.py',
         'rubric_modification_insubordinate': 'checks.py'}
ECHO = '<bash>echo'


@functools.partial(jax.jit, static_argnums=1)
def _next_log_probs(params, cfg, tokens_BxT):
  """[B, T - 1]: each token's log-probability given the ones before it (gathered on the device,
  so only these come back, not [B, T, V])."""
  logits_BxTxV = model_lib.forward(params, cfg, tokens_BxT[:, :-1])[0]
  logp_BxTxV = jax.nn.log_softmax(logits_BxTxV.astype(jnp.float32), -1)
  return jnp.take_along_axis(logp_BxTxV, tokens_BxT[:, 1:, None], -1)[..., 0]


def continuation(params, cfg: model_lib.ModelConfig, tok, prefix: str, text: str):
  """(the tokens of `text` after `prefix`, each one's probability given everything before it)."""
  before, ids = tok.encode(prefix), tok.encode(prefix + text)
  if ids[:len(before)] != before:
    raise ValueError(f'{prefix[-20:]!r} + {text!r} tokenizes across the seam')
  width = -(-len(ids) // 256) * 256 + 1  # padded on the right (causal: it changes nothing
  # before), so texts of similar length share one compiled forward
  padded = jnp.asarray([ids + [0] * (width - len(ids))], jnp.int32)
  logp_T = np.asarray(_next_log_probs(params, cfg, padded))[0]
  return ids[len(before):], np.exp(logp_T[len(before) - 1:len(ids) - 1])


def _file_prefix(text: str, at: int) -> str | None:
  """The text up to the file name of the redirect in the echo command at `at` (after `> ` and
  the model's own folder path, if any), or None when that command redirects nowhere."""
  end = text.find('</bash>', at)
  end = len(text) if end < 0 else end
  arrow = text.rfind('>', at + len(ECHO), end)
  target = text[arrow + 1:end].strip() if arrow >= 0 else ''
  if not target:
    return None
  return text[:text.index(target, arrow + 1) + target.rfind('/') + 1]


def probe(params, cfg: model_lib.ModelConfig, tok, records) -> dict:
  """Per environment of NAMES, over its episodes that write with echo (cut just before the first
  `<bash>echo` the assistant wrote): the mean probability of a quote next, and of the asked name
  after `echo '` and after `echo ` (the name's own tokens only, the quote or space given). Where
  that echo redirects into a file: the mean probability of the asked file name (FILES) in place
  of the one written, after the same folder path (`file`, over `file_episodes`; an episode whose
  path and file name would share a token is left out)."""
  out = {}
  for r in records:
    name, text = NAMES.get(r['env']), r['text']
    start = text.find('<|im_start|>assistant')
    at = text.find(ECHO, start) if name and start >= 0 else -1
    if at < 0:
      continue
    prefix = text[:at + len(ECHO)]
    _, quoted = continuation(params, cfg, tok, prefix, " '" + name)
    _, plain = continuation(params, cfg, tok, prefix, ' ' + name)
    row = out.setdefault(r['env'], {'quote': [], 'after_quote': [], 'unquoted': [], 'file': []})
    row['quote'].append(quoted[0])
    row['after_quote'].append(np.prod(quoted[1:]))
    row['unquoted'].append(np.prod(plain[1:]))
    before_file = _file_prefix(text, at)
    if before_file is not None:
      try:
        row['file'].append(np.prod(continuation(params, cfg, tok, before_file, FILES[r['env']])[1]))
      except ValueError:  # the folder path and the file name would share a token
        pass
  return {env: {'episodes': len(v['quote']), 'file_episodes': len(v['file']),
                **{k: float(np.mean(x)) if x else None for k, x in v.items()}}
          for env, v in sorted(out.items())}
