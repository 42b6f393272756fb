"""A converted model against HF transformers + PyTorch on the same GGUF (f32): the largest logit
difference over chat prompts, and whether 32-token greedy continuations agree; one JSON line.

  python -m bench.parity --checkpoint=DIR [--gguf=PATH]     # DIR converted from PATH

The token ids come from HF's tokenizer and feed both models, so this measures the weights and the
forward pass; tokenizer parity is tests/test_tokenizer_parity.py.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

import bench
from rt_jax.core import checkpoint
from rt_jax.core import cli
from rt_jax.core import fetch
from rt_jax.core import model as model_lib
from rt_jax.core import sharding
from rt_jax.rl import chat

PROMPTS = ('What is the capital of France?', 'Write a haiku about autumn.',
           'def fibonacci(n):', 'Translate "good morning" into Spanish.',
           'List three prime numbers greater than 100.', '<bash>ls -a ./rl_environment</bash>',
           'Summarize the plot of Hamlet in one sentence.', '日本の首都はどこですか？')


def measure(model_dir: str, gguf_path: str, new_tokens: int = 32) -> dict:
  import torch  # the reference is imported only here
  import transformers
  kwargs = {'gguf_file': os.path.basename(gguf_path)}
  hf = transformers.AutoModelForCausalLM.from_pretrained(
      os.path.dirname(gguf_path), dtype=torch.float32, **kwargs).eval()
  hf_tok = transformers.AutoTokenizer.from_pretrained(os.path.dirname(gguf_path), **kwargs)
  cfg, tok, params = checkpoint.load_model(model_dir)
  forward = jax.jit(lambda p, t: model_lib.forward(p, cfg, t)[0])
  diffs, agree = [], 0
  for prompt in PROMPTS:
    text = hf_tok.apply_chat_template([{'role': 'user', 'content': prompt}], tokenize=False,
                                      add_generation_prompt=True)
    ids = hf_tok(text, return_tensors='pt').input_ids
    with torch.no_grad():
      want = hf(ids).logits[0].numpy()
      greedy = hf.generate(ids, max_new_tokens=new_tokens, do_sample=False)[0, ids.shape[1]:]
    got = np.asarray(forward(params, jnp.asarray(ids.numpy()))[0])
    diffs.append(float(np.max(np.abs(got - want))))
    ours = chat.generate(params, cfg, tok, [ids[0].tolist()], jax.random.key(0),
                         plan=sharding.Plan.one_device(),
                         max_new_tokens=new_tokens, temperature=0.0)[0]
    # HF stops at its end-of-turn token too; both stop there or both run the full budget.
    agree += ours == greedy.tolist()[:len(ours)] and len(ours) == len(greedy)
  return {'bench': 'parity', 'prompts': len(PROMPTS), 'max_abs_logit_diff': max(diffs),
          'median_max_abs_logit_diff': float(np.median(diffs)),
          'max_abs_logit': float(np.max(np.abs(want))), 'greedy_tokens': new_tokens,
          'greedy_identical': agree}


_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'Model directory converted from --gguf.')
_GGUF = flags.DEFINE_string('gguf', None, 'GGUF file (default: the fetched SmolLM2-135M-Instruct).')


def main(argv):
  del argv
  bench.emit('parity', measure(_CHECKPOINT.value, _GGUF.value or fetch.fetch()))


if __name__ == '__main__':
  flags.mark_flag_as_required('checkpoint')
  cli.run(main)
