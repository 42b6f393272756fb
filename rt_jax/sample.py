"""Samples from a model directory (a run's workdir or a converted checkpoint) and prints the
transcripts; the same seed prints the same text.

  python -m rt_jax.sample --checkpoint=runs/tiny --prompt="What is the capital of Japan?" --n=4
"""
import jax
from absl import flags

from rt_jax import checkpoint
from rt_jax import cli
from rt_jax import sampling
from rt_jax import tokenizer as tokenizer_lib
from rt_jax.errors import ConfigError

_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'Model directory (workdir or convert output).')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step; the latest by default.')
_PROMPT = flags.DEFINE_string('prompt', None, 'The user message (or raw text with --raw).')
_SYSTEM = flags.DEFINE_string('system', '', 'Optional system message before the user turn.')
_RAW = flags.DEFINE_bool('raw', False, 'Feed --prompt as plain text, without chat formatting.')
_N = flags.DEFINE_integer('n', 1, 'Number of samples.', lower_bound=1)
_MAX_NEW = flags.DEFINE_integer('max_new_tokens', 128, 'Tokens to generate per sample.',
                                lower_bound=1)
_TEMPERATURE = flags.DEFINE_float('temperature', 1.0, 'Softmax temperature; 0 is greedy.',
                                  lower_bound=0.0)
_TOP_P = flags.DEFINE_float('top_p', 1.0, 'Nucleus mass; 1 samples from the full distribution.',
                            lower_bound=0.0, upper_bound=1.0)
_SEED = flags.DEFINE_integer('seed', 0, 'Sampling seed.')
flags.mark_flags_as_required(['checkpoint', 'prompt'])


def main(argv):
  del argv
  cfg, tok, params = checkpoint.load_model(_CHECKPOINT.value, _STEP.value)
  if _RAW.value:
    prompt = tok.encode(_PROMPT.value)
  else:
    turns = [{'role': 'system', 'content': _SYSTEM.value}] if _SYSTEM.value else []
    turns.append({'role': 'user', 'content': _PROMPT.value})
    prompt = tokenizer_lib.encode_chat(tok, turns, add_generation_prompt=True)[0]
  if len(prompt) + _MAX_NEW.value > cfg.max_len:
    raise ConfigError(f'prompt of {len(prompt)} tokens + --max_new_tokens={_MAX_NEW.value} '
                      f'exceeds the model context of {cfg.max_len} tokens')
  outs = sampling.generate(params, cfg, tok, [prompt] * _N.value, jax.random.key(_SEED.value),
                           max_new_tokens=_MAX_NEW.value, temperature=_TEMPERATURE.value,
                           top_p=_TOP_P.value, stop_ids=[tok.im_end_id])
  for i, out in enumerate(outs):
    print(f'=== sample {i} ===\n{tok.decode(out)}', flush=True)


if __name__ == '__main__':
  cli.run(main)
