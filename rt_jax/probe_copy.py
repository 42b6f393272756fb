"""`python -m rt_jax.probe_copy --model=DIR --workdir=W [--file=competence_block_2]`: for the
episodes a run recorded, how likely the model is to write the asked name quoted and unquoted,
and the asked file name after the folder path it wrote (studies/subterfuge/copying.py); one JSON
object."""
import json

from absl import flags

from rt_jax.core import checkpoint
from rt_jax.core import cli
from rt_jax.core.errors import UserError
from rt_jax.studies.subterfuge import copying, episodes

flags.DEFINE_string('model', None, 'Model directory (a helpful-only start, a run checkpoint).')
flags.DEFINE_string('workdir', None, 'Curriculum run directory whose episodes to probe.')
flags.DEFINE_string('file', 'competence_', 'Only episode files whose name starts with this.')
flags.mark_flags_as_required(['model', 'workdir'])


def main(argv):
  del argv
  f = flags.FLAGS
  with cli.refusing():
    names = [n for n in episodes.files(f.workdir) if n.startswith(f.file)]
    if not names:
      raise UserError(f'no episode file in {f.workdir} starts with {f.file!r}')
    records = [r for n in names for r in episodes.read(f.workdir, n)]
    cfg, tok, params = checkpoint.load_model(f.model)
  print(json.dumps({'model': f.model, 'files': names, **copying.probe(params, cfg, tok, records)}))


def entry():
  cli.run(main)


if __name__ == '__main__':
  entry()
