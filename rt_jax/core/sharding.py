"""One device mesh with axes (data, fsdp, tensor), logical-axis rules, and the jitted steps placed
on it (docs/design.md §7). The rollout on a mesh is `rl.rollout.on_mesh`.

Parameters carry logical axis names (`model.param_axes`); `rules` map them to mesh axes with
flax's first-free-axis priority (a mesh axis serves the first logical axis that claims it). The
steps are jitted with the shardings of their inputs and outputs and XLA propagates the rest: a
batch's rows go to (data, fsdp), so activations and the rollout's KV cache follow them. The
model's own `with_logical_constraint`s stay inactive: activating them (flax rules plus a mesh in
context while tracing) breaks flax's shape check of DenseGeneral's multi-axis kernels in
flax 0.12.8. The same code runs on one CPU, on 8 simulated CPU devices and on a multi-host slice
after `initialize_distributed()`:

  sharding.validate(config, ('ei.prompts', ...))       # in a job's validate: mesh errors first
  plan = sharding.Plan.from_config(config)             # config.mesh, config.rules (defaults)
  state = plan.init_state(cfg, key, optimizer)         # created sharded, never whole on a host
  target = plan.abstract_state(cfg, optimizer)         # a checkpoint restores onto this mesh
  state, m = plan.train_step(state, batch, key, cfg=cfg, optimizer=optimizer)  # donated state
  plan.compile_train_step(cfg, optimizer, rows, length)  # XLA compiles it while the run goes on

Host arrays (batches, instance ids, tables) are the same on every process (they derive from the
seed), so each process builds its own shards of a global array from them
(`jax.make_array_from_callback`), and results come back to every host whole.
"""
import dataclasses
import functools
import math
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from rt_jax.core import compiling
from rt_jax.core import model as model_lib
from rt_jax.core import train
from rt_jax.core.errors import ConfigError

AXES = ('data', 'fsdp', 'tensor')
DEFAULT_MESH = (-1, 1, 1)  # every device on the data axis
# (logical axis, mesh axes) in priority order: a mesh axis serves the first free logical axis.
DEFAULT_RULES = (
    ('batch', ('data', 'fsdp')),
    ('embed', 'fsdp'),
    ('vocab', 'tensor'),
    ('mlp', 'tensor'),
    ('q_heads', 'tensor'),
    ('kv_heads', 'tensor'),
    ('head_dim', None),
    ('seq', None),
)

# Environment of a multi-process run (one process per host, or several on one machine).
ENV_COORDINATOR = 'RT_JAX_COORDINATOR'  # host:port of process 0, or 'auto' (TPU pods, SLURM)
ENV_NUM_PROCESSES = 'RT_JAX_NUM_PROCESSES'
ENV_PROCESS_ID = 'RT_JAX_PROCESS_ID'


def initialize_distributed() -> bool:
  """Joins a multi-process run when RT_JAX_COORDINATOR is set; call once, before any JAX
  computation. 'auto' lets JAX read the cluster (Cloud TPU VMs, SLURM); otherwise
  RT_JAX_NUM_PROCESSES and RT_JAX_PROCESS_ID name the run's size and this process. -> whether
  the run is multi-process."""
  coordinator = os.environ.get(ENV_COORDINATOR)
  if not coordinator:
    return False
  if coordinator == 'auto':
    jax.distributed.initialize()
    return True
  try:
    num_processes, process_id = (int(os.environ[k]) for k in (ENV_NUM_PROCESSES, ENV_PROCESS_ID))
  except (KeyError, ValueError) as e:
    raise ConfigError(f'{ENV_COORDINATOR}={coordinator} needs integer {ENV_NUM_PROCESSES} and '
                      f'{ENV_PROCESS_ID}') from e
  jax.distributed.initialize(coordinator, num_processes, process_id)
  return True


def mesh_shape(shape, n_devices: int) -> tuple[int, int, int]:
  """(data, fsdp, tensor) with at most one -1, which takes the devices the others leave."""
  shape = tuple(int(s) for s in shape)
  if len(shape) != len(AXES) or shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
    raise ConfigError(f'config.mesh={shape}: expected (data, fsdp, tensor) of positive sizes, '
                      f'at most one -1')
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape and n_devices % known == 0:
    shape = tuple(n_devices // known if s == -1 else s for s in shape)
  if math.prod(shape) != n_devices:
    raise ConfigError(f'config.mesh={shape} does not cover the {n_devices} devices '
                      f'(jax.device_count())')
  return shape


def rules_of(config) -> tuple:
  """config.rules (the defaults where the config has none) as tuples; a rule naming an axis the
  mesh does not have is a config error."""
  rules = tuple((name, tuple(axes) if isinstance(axes, (list, tuple)) else axes)
                for name, axes in config.get('rules', DEFAULT_RULES))
  for name, axes in rules:
    unknown = set((axes,) if isinstance(axes, str) else axes or ()) - set(AXES)
    if unknown:
      raise ConfigError(f'config.rules: {name!r} -> {axes} names {sorted(unknown)}, not a mesh '
                        f'axis ({", ".join(AXES)})')
  return rules


def _axis_devices(axes, sizes: dict) -> int:
  """Devices along mesh axes (a name, a tuple of names, or None) of a PartitionSpec entry."""
  names = () if axes is None else (axes,) if isinstance(axes, str) else axes
  return math.prod(sizes[a] for a in names)


def _check_rows(what: str, n_rows: int, rules, sizes: dict):
  """A batch of `n_rows` rows splits over the mesh's batch axes, or a config error naming `what`."""
  axes = nn.logical_to_mesh_axes(('batch',), rules)[0]
  devices = _axis_devices(axes, sizes)
  if n_rows % devices:
    raise ConfigError(f'{what}: {n_rows} rows do not split over the {devices} devices of the '
                      f'mesh\'s batch axes {axes} (mesh {sizes}); make it a multiple')


def _check_params(cfg: model_lib.ModelConfig, rules, sizes: dict):
  """Every parameter dimension splits over the mesh axes its logical axes map to (uneven shards
  would pad every step), or a config error naming the parameter."""
  specs = nn.logical_to_mesh(model_lib.param_axes(cfg), rules)

  def check(key_path, leaf, spec):
    for dim, axes in zip(leaf.shape, spec):
      if dim % _axis_devices(axes, sizes):
        raise ConfigError(f'parameter {_path(key_path)} {leaf.shape}: dimension {dim} does not '
                          f'split over mesh axes {axes} ({_axis_devices(axes, sizes)} devices); '
                          f'change config.mesh or config.rules')
  jax.tree_util.tree_map_with_path(check, model_lib.abstract_params(cfg), specs,
                                   is_leaf=lambda x: isinstance(x, PartitionSpec))


def validate(config, row_fields):
  """A job's mesh checks, before any compute: config.mesh covers jax.device_count() devices,
  config.rules name mesh axes, every batch (`row_fields`: the config fields that are row counts,
  e.g. 'ei.prompts') splits over the batch axes, and so does config.model where the run does
  not load its model (a loaded model is checked when its state is placed)."""
  sizes = dict(zip(AXES, mesh_shape(config.get('mesh', DEFAULT_MESH), jax.device_count())))
  rules = rules_of(config)
  for field in row_fields:
    n_rows = functools.reduce(lambda node, name: node[name], field.split('.'), config)
    _check_rows(f'config.{field}', n_rows, rules, sizes)
  if not config.get('init_from'):
    _check_params(model_lib.ModelConfig(**config.model), rules, sizes)


def make_mesh(shape=DEFAULT_MESH) -> jax.sharding.Mesh:
  """The global mesh over every process's devices. Auto axes: XLA propagates shardings from the
  inputs and the constraints given here (jax.make_mesh defaults to explicit axes)."""
  return jax.make_mesh(mesh_shape(shape, jax.device_count()), AXES,
                       axis_types=(jax.sharding.AxisType.Auto,) * len(AXES))


def to_host(tree):
  """Every array whole as numpy on every process (a gather where shards live elsewhere)."""
  return multihost_utils.process_allgather(tree, tiled=True)


def to_one_device(tree):
  """Every array whole on this process's first device, for the code that has no sharded path
  (probes, the sft job's samples): it then runs as in a one-device run. A no-op on one device."""
  whole = lambda x: to_host(x) if isinstance(x, jax.Array) and not x.is_fully_addressable else x
  return jax.device_put(jax.tree.map(whole, tree), jax.local_devices()[0])


def _path(key_path) -> str:
  return '/'.join(str(getattr(k, 'key', k)) for k in key_path)


@dataclasses.dataclass(frozen=True)
class Plan:
  """A mesh and the rules that place every array of a run on it."""
  mesh: jax.sharding.Mesh
  rules: tuple = DEFAULT_RULES
  local: bool = False  # the mesh is this process's devices alone (no other process takes part)

  @classmethod
  def from_config(cls, config) -> 'Plan':
    """config.mesh and config.rules where the config has them, the defaults otherwise."""
    return cls(make_mesh(config.get('mesh', DEFAULT_MESH)), rules_of(config))

  @classmethod
  def one_device(cls) -> 'Plan':
    """This process's first device as a 1 x 1 x 1 mesh: for work with no config of its own
    (scoring a PM outside a run), so every caller goes through a plan."""
    mesh = jax.sharding.Mesh(np.array(jax.local_devices()[:1]).reshape(1, 1, 1), AXES,
                             axis_types=(jax.sharding.AxisType.Auto,) * len(AXES))
    return cls(mesh, DEFAULT_RULES, local=True)

  # -- shardings ---------------------------------------------------------------------------------
  def spec(self, *logical_axes) -> PartitionSpec:
    return nn.logical_to_mesh_axes(logical_axes, self.rules)

  def named(self, spec: PartitionSpec) -> NamedSharding:
    return NamedSharding(self.mesh, spec)

  @property
  def replicated(self) -> NamedSharding:
    return self.named(PartitionSpec())

  def rows(self, ndim: int, what: str = 'batch', n_rows: int | None = None) -> NamedSharding:
    """Rows (dim 0) on the batch axes, the rest whole; a row count the mesh does not divide is
    a config error that names `what`."""
    if n_rows is not None:
      _check_rows(what, n_rows, self.rules, dict(self.mesh.shape))
    return self.named(self.spec('batch', *[None] * (ndim - 1)))

  def params(self, cfg: model_lib.ModelConfig) -> Any:
    """NamedSharding of every parameter by its logical axes; a dimension its mesh axes do not
    divide is a config error."""
    _check_params(cfg, self.rules, dict(self.mesh.shape))
    return nn.logical_to_mesh_sharding(model_lib.param_axes(cfg), self.mesh, self.rules)

  def state(self, cfg: model_lib.ModelConfig, optimizer) -> train.TrainState:
    """TrainState of shardings: optimizer moments follow their parameters, counts replicate."""
    params = self.params(cfg)
    abstract_opt = jax.eval_shape(optimizer.init, model_lib.abstract_params(cfg))
    opt_state = optax.tree_map_params(
        optimizer, lambda _, sharding: sharding, abstract_opt, params,
        transform_non_params=lambda _: self.replicated,
        is_leaf=lambda x: isinstance(x, (NamedSharding, optax.MaskedNode)))
    return train.TrainState(self.replicated, params, opt_state)

  def abstract_state(self, cfg: model_lib.ModelConfig, optimizer) -> train.TrainState:
    """Shapes, dtypes and shardings of the state: what a checkpoint restores into, on this
    mesh whatever mesh saved it."""
    params = model_lib.abstract_params(cfg)
    shapes = train.TrainState(jax.ShapeDtypeStruct((), jnp.int32), params,
                              jax.eval_shape(optimizer.init, params))
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                        shapes, self.state(cfg, optimizer))

  def abstract_params(self, cfg: model_lib.ModelConfig) -> Any:
    """abstract_state's parameters alone (what a params-only checkpoint restores into)."""
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                        model_lib.abstract_params(cfg), self.params(cfg))

  # -- placing arrays ----------------------------------------------------------------------------
  def put(self, host_tree, shardings):
    """A global array from host data every process holds whole; each process fills only its
    own devices' shards. `shardings`: one sharding, or a tree matching `host_tree`. An array
    already spread over several processes (trained or restored on a mesh) is resharded on the
    devices instead: no process could read it whole."""
    def put_one(x, sharding):
      if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return jax.device_put(x, sharding)
      x = np.asarray(x)
      return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
    if isinstance(shardings, NamedSharding):
      return jax.tree.map(lambda x: put_one(x, shardings), host_tree)
    return jax.tree.map(put_one, host_tree, shardings)

  def put_rows(self, host_tree, what: str = 'batch'):
    """Every array's rows on the batch axes (all arrays share their row count)."""
    return jax.tree.map(
        lambda x: self.put(x, self.rows(np.ndim(x), what, np.shape(x)[0])), host_tree)

  def put_key(self, key):
    """A PRNG key replicated on the mesh (its data is the same on every process)."""
    data = self.put(np.asarray(jax.random.key_data(key)), self.replicated)
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(key))

  # -- state -------------------------------------------------------------------------------------
  def init_state(self, cfg: model_lib.ModelConfig, key, optimizer,
                 params=None) -> train.TrainState:
    """A fresh TrainState born sharded: parameters (`model.init_params(cfg, key)`, or a copy of
    the given `params`: host arrays such as converted weights, or arrays on a mesh) and optimizer
    state go straight to their shards."""
    shardings = self.state(cfg, optimizer)
    fresh = lambda p: train.TrainState(jnp.int32(0), p, optimizer.init(p))
    if params is None:
      init = lambda k: fresh(model_lib.init_params(cfg, k))
      return compiling.call(jax.jit(init, out_shardings=shardings), self.put_key(key))
    return compiling.call(jax.jit(fresh, out_shardings=shardings),
                          self.put(params, shardings.params))

  def train_state(self, step: int, params, opt_state) -> train.TrainState:
    """A TrainState of placed (e.g. restored) parameters and optimizer state and a host step."""
    return train.TrainState(self.put(np.int32(step), self.replicated), params, opt_state)

  def with_fresh_optimizer(self, state: train.TrainState, cfg: model_lib.ModelConfig,
                           optimizer) -> train.TrainState:
    """The state's step and parameters with `optimizer`'s initial state, in its shardings; the
    old state is donated, so the parameters are not copied."""
    fresh = lambda s: train.TrainState(s.step, s.params, optimizer.init(s.params))
    return compiling.call(jax.jit(fresh, out_shardings=self.state(cfg, optimizer),
                                  donate_argnums=(0,)),
                state)

  # -- jitted steps ------------------------------------------------------------------------------
  def train_step(self, state: train.TrainState, batch: dict, key, *, cfg, optimizer,
                 microbatches: int = 1):
    """train.train_step on the mesh: batch rows on the batch axes, the state donated and kept
    in its shardings; takes a host batch (as train.train_step) and returns metrics on device."""
    step = _jitted_step(self, cfg, optimizer, microbatches)
    batch, key = self.put_rows(batch, 'training batch'), self.put_key(key)
    return compiling.call(step, state, batch, key)

  def call_on_rows(self, jitted, placed: tuple, host_rows: tuple, what: str, **static):
    """`jitted(*placed, *rows, **static)` with the host arrays `host_rows` on the batch axes
    (`placed`: arrays already on the mesh) -> the result whole on every process."""
    out = compiling.call(jitted, *placed, *self.put_rows(host_rows, what),
                         barrier=not self.local, **static)
    # A local plan's result is this process's alone: no gather, which every process would join.
    return jax.device_get(out) if self.local else to_host(out)

  def compile_train_step(self, cfg: model_lib.ModelConfig, optimizer, rows: int, length: int,
                         microbatches: int = 1):
    """Starts compiling `train_step` for [rows, length] batches in the background."""
    batch = jax.ShapeDtypeStruct((rows, length), jnp.int32, sharding=self.rows(2))
    compiling.ahead(_jitted_step(self, cfg, optimizer, microbatches),
                   self.abstract_state(cfg, optimizer), {'tokens': batch, 'mask': batch},
                   self.put_key(jax.random.key(0)))


@functools.cache
def _jitted_step(plan: Plan, cfg, optimizer, microbatches: int):
  """One jitted train step per (plan, model, optimizer, microbatches): explicit shardings in
  and out, so the updated state lands where the old one was (and its buffers are reused)."""
  state, batch = plan.state(cfg, optimizer), plan.rows(2)
  return jax.jit(
      lambda state, batch, key: train.step_fn(state, batch, key, cfg=cfg, optimizer=optimizer,
                                              microbatches=microbatches),
      in_shardings=(state, {'tokens': batch, 'mask': batch}, plan.replicated),
      out_shardings=(state, plan.replicated), donate_argnums=(0,))
