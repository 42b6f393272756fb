"""Value checks every job's config shares, run before the job's own `validate`: a learning rate of
nan, a zero step count or a mesh that is not three sizes otherwise surfaces minutes into a run as a
NaN loss, a ZeroDivisionError or a traceback from deep inside JAX.

The checks go by a field's name (its last dotted part) wherever it sits in the config, so a
section added to a job later is covered without being listed here: `lr` is a learning rate in
every section that has one, `steps` a count in every section.
"""
import math

from rt_jax.core import model as model_lib
from rt_jax.core.errors import ConfigError

# Counts that must be at least 1: a zero makes a run that trains, samples or checkpoints nothing,
# or divides by zero (checkpoint_every_rounds, rounds).
POSITIVE_COUNTS = frozenset({
    'steps', 'rounds', 'prompts', 'samples', 'examples', 'batch_size', 'score_batch',
    'train_rows', 'train_len', 'sft_steps', 'episodes', 'seq_len', 'num_examples', 'train_pairs',
    'heldout_pairs', 'search_prompts', 'eval_prompts', 'max_new_tokens', 'max_turns',
    'max_segment_tokens', 'context', 'chunk', 'compact', 'log_every', 'checkpoint_every',
    'checkpoint_every_rounds', 'train', 'eval'})
# Counts where 0 means "the default behaviour": microbatch_rows 0 is the whole batch at once,
# keep_checkpoints 0 keeps every checkpoint, warmup_steps 0 starts at the peak rate, during 0
# measures nothing mid-training.
NON_NEGATIVE_COUNTS = frozenset({'microbatch_rows', 'keep_checkpoints', 'warmup_steps',
                                 'during'})
# ModelConfig's sizes: every one a positive integer (n_kv_heads=0 divides by zero in ModelConfig).
MODEL_SIZES = ('vocab_size', 'd_model', 'n_layers', 'n_heads', 'n_kv_heads', 'head_dim',
               'mlp_dim', 'max_len')


def _finite_positive(x):
  return math.isfinite(x) and x > 0


# Real-valued fields by name: (test, what the value must be). Fields not named here may hold any
# number but NaN (comparisons with NaN are all false, so a NaN threshold silently keeps nothing).
FLOAT_RULES = {
    'lr': (_finite_positive, 'a finite positive number'),
    'b1': (lambda x: 0 <= x < 1, 'in [0, 1)'),
    'b2': (lambda x: 0 <= x < 1, 'in [0, 1)'),
    'grad_clip': (lambda x: x > 0, 'positive'),
    'weight_decay': (lambda x: math.isfinite(x) and x >= 0, 'finite and >= 0'),
    'final_lr_frac': (lambda x: 0 <= x <= 1, 'in [0, 1]'),
    'temperature': (lambda x: math.isfinite(x) and x >= 0, 'finite and >= 0'),
    'top_p': (lambda x: 0 < x <= 1, 'in (0, 1]'),
    'rope_base': (_finite_positive, 'a finite positive number'),
    'norm_eps': (_finite_positive, 'a finite positive number'),
    'peak_flops': (lambda x: math.isfinite(x) and x >= 0, 'finite and >= 0 (0 measures it)'),
    'hhh_fraction': (lambda x: 0 <= x < 1, 'in [0, 1)'),
    'audit_fraction': (lambda x: 0 <= x <= 1, 'in [0, 1]'),
    'pm_weight': (math.isfinite, 'finite'),
}


def _is_number(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_int(x) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def _leaves(tree: dict, prefix: str = ''):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _leaves(value, f'{prefix}{key}.')
    else:
      yield f'{prefix}{key}', value


def check_value(key: str, value):
  """One config leaf (`key` dotted, as in --config.KEY) by the rules of its last name part."""
  name = key.rpartition('.')[2]
  if name in POSITIVE_COUNTS or name in NON_NEGATIVE_COUNTS:
    # Only integers: a section may reuse a count's name for something else (a tuple of prompts).
    if _is_int(value):
      low = 1 if name in POSITIVE_COUNTS else 0
      if value < low:
        raise ConfigError(f'config.{key}={value} must be '
                          f'{"positive" if low else ">= 0"}')
    return
  if name == 'lr' or name.endswith('_lr'):
    if not _is_number(value) or not _finite_positive(value):
      raise ConfigError(f'config.{key}={value!r} must be a finite positive number (a learning '
                        f'rate)')
    return
  if not _is_number(value):
    return
  test, what = FLOAT_RULES.get(name, (lambda x: not math.isnan(x), 'a number, not nan'))
  if math.isnan(value) or not test(value):
    raise ConfigError(f'config.{key}={value!r} must be {what}')


def check_mesh(mesh):
  """config.mesh is three integer sizes (data, fsdp, tensor); sharding.mesh_shape then checks
  they cover the devices. A value that is not even a sequence of ints (--config.mesh=abc comes
  through config_flags as the string 'abc') would otherwise fail inside int()."""
  if (not isinstance(mesh, (tuple, list)) or len(mesh) != 3
      or not all(_is_int(s) for s in mesh)):
    raise ConfigError(f'config.mesh={mesh!r}: expected three integer sizes (data, fsdp, tensor), '
                      f'e.g. (-1,1,1); -1 takes the devices the others leave')


def check_rules(rules):
  """config.rules is a sequence of (logical axis name, mesh axes) pairs, the mesh axes None, a
  name or a sequence of names (sharding.rules_of then checks the names)."""
  def axes_ok(axes):
    return (axes is None or isinstance(axes, str) or
            (isinstance(axes, (tuple, list)) and all(isinstance(a, str) for a in axes)))
  if not isinstance(rules, (tuple, list)) or not all(
      isinstance(r, (tuple, list)) and len(r) == 2 and isinstance(r[0], str) and axes_ok(r[1])
      for r in rules):
    raise ConfigError(f'config.rules={rules!r}: expected (logical axis, mesh axes) pairs, e.g. '
                      f"(('batch', ('data', 'fsdp')), ('embed', 'fsdp'))")


def check_model(fields: dict, where: str = 'config.model',
                names: dict | None = None) -> model_lib.ModelConfig:
  """A ModelConfig from `fields` (a config's model section, or what a converter read from a
  file), every size a positive integer -> the ModelConfig; a ConfigError naming the field as the
  config has it (`where`.field) or, given `names` ({field: the file's name for it}), as the file
  does (`where`: name)."""
  label = ((lambda name: f'{where}.{name}') if names is None else
           (lambda name: f'{where}: {names.get(name, name)}'))
  for name in MODEL_SIZES:
    value = fields.get(name)
    if not _is_int(value) or value < 1:
      raise ConfigError(f'{label(name)}={value!r} must be a positive integer')
  for name in ('rope_base', 'norm_eps'):
    if name in fields and (not _is_number(fields[name]) or not _finite_positive(fields[name])):
      raise ConfigError(f'{label(name)}={fields[name]!r} must be a finite positive number')
  try:
    return model_lib.ModelConfig(**fields)
  except (TypeError, ValueError) as e:
    raise ConfigError(f'{where}: {e}') from e


def check_config(config):
  """Every job's shared checks: learning rates finite and positive, counts positive, the mesh and
  the rules well formed, the model's sizes (where the run builds its model from config.model)."""
  tree = config.to_dict()
  for key, value in _leaves(tree):
    check_value(key, value)
  if 'mesh' in tree:
    check_mesh(tree['mesh'])
  if 'rules' in tree:
    check_rules(tree['rules'])
  if isinstance(tree.get('model'), dict) and not tree.get('init_from'):
    check_model(tree['model'])
