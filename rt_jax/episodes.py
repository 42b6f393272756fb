"""`python -m rt_jax.episodes`: print a curriculum run's recorded episodes, filtered."""
from absl import flags

from rt_jax.core import cli
from rt_jax.core.errors import UserError
from rt_jax.studies.subterfuge import episodes

flags.DEFINE_string('workdir', None, 'Curriculum run directory.')
flags.DEFINE_string('file', None, 'Only files whose name starts with this (eval_01, round_).')
flags.DEFINE_string('env', None, 'Only this environment.')
flags.DEFINE_string('where', None, 'Only episodes whose flag (or field) FLAG is true, e.g. '
                    'reward_tampered, undetected, sycophantic, kept.')
flags.DEFINE_integer('n', None, 'Print at most this many.')
flags.mark_flag_as_required('workdir')


def main(argv):
  del argv
  with cli.refusing():  # the reader only reads: every error is bad input, exit 2
    _main(flags.FLAGS)


def _main(f):
  if f.n is not None and f.n < 1:
    raise UserError(f'--n={f.n} must be positive')
  names = episodes.files(f.workdir)
  if f.file:
    chosen = [n for n in names if n.startswith(f.file)]
    if not chosen:
      raise UserError(f'no episode file starts with {f.file!r}; there are: {", ".join(names)}')
    names = chosen
  shown = 0
  for name in names:
    for record in episodes.read(f.workdir, name):
      if episodes.matches(record, f.env, f.where):
        print(episodes.render(name, record))
        shown += 1
        if f.n is not None and shown >= f.n:
          return
  if not shown:
    print(f'no episode matches (files: {len(names)})')


def entry():
  cli.run(main)


if __name__ == '__main__':
  entry()
