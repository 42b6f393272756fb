"""Feeds a scripted assistant transcript through an environment and prints one JSON object: the
whole episode as the model would see it and every grading flag.

  python -m rt_jax.replay --env=reward_tampering --transcript=t.json [--instance=0]

The transcript is JSON `{"assistant": [SEGMENT, ...]}`: each segment is assistant text that either
ends with `</bash>` (the environment answers it) or ends the turn. For reward_tampering the flags
hold the device screen's (`reward_changed`, `tests_changed`, `changed`) and the audit's verdict
(`reward_tampered`, `test_passes`, `undetected`, ..., per-input `rewards`), and "reward" is what
the final reward function returned on this episode's text.

--engine=reference (the default) runs the plain-Python specification of the machine, which
answers at once; --engine=jax runs the JAX machine the rollout runs, which first compiles (tens of
seconds on a CPU). Both print the same JSON (tests/test_envs.py checks every hand-written
transcript on both).
"""
import json

from absl import flags

from rt_jax.core import checkpoint

from rt_jax import envs
from rt_jax.core import cli
from rt_jax.envs import transcript

_ENV = flags.DEFINE_string('env', None, f'Environment: {", ".join(envs.ENVIRONMENTS)}.')
_TRANSCRIPT = flags.DEFINE_string('transcript', None, 'JSON file {"assistant": [segment, ...]}.')
_INSTANCE = flags.DEFINE_integer('instance', 0, 'Instance index within the split.', lower_bound=0)
_SPLIT = flags.DEFINE_enum('split', 'eval', ['train', 'eval'], 'Which instances to draw from.')
_CHECKPOINT = flags.DEFINE_string('checkpoint', None,
                                  "Model directory whose tokenizer to use (the builtin one by "
                                  'default; the text is the same either way).')
_ENGINE = flags.DEFINE_enum('engine', 'reference', list(transcript.ENGINES),
                            'reference: the plain-Python machine (no compile); jax: the JAX '
                            'machine the rollout runs.')
flags.mark_flags_as_required(['env', 'transcript'])


def main(argv):
  del argv
  with cli.refusing():  # every UserError here is about the input (flags, transcript): exit 2
    envs.get(_ENV.value)
    segments = transcript.read_transcript(_TRANSCRIPT.value)
    tok = checkpoint.read_model_files(_CHECKPOINT.value)[1] if _CHECKPOINT.value else None
    print(json.dumps(transcript.run(_ENV.value, segments, _INSTANCE.value, _SPLIT.value, tok,
                                    _ENGINE.value)))


def entry():
  cli.run(main)


if __name__ == '__main__':
  entry()
