"""`python -m rt_jax.fetch`: SmolLM2-135M-Instruct's weights, hash-pinned, cached once."""
from rt_jax.core import cli
from rt_jax.core import fetch


def main(argv):
  del argv
  print(fetch.fetch())


def entry():
  cli.run(main)


if __name__ == '__main__':
  entry()
