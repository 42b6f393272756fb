"""The package's layering, checked on the source: core <- data <- envs <- rl <- studies <- the
entry points (a module imports only its own layer or those to its left), the two studies import
neither each other nor sft, no import cycle between modules, and no module over 500 lines."""
import ast
import os

RT_JAX = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'rt_jax')
LAYERS = ('core', 'data', 'envs', 'rl', 'studies')  # then the entry points, rt_jax/*.py
MAX_LINES = 500


def _modules() -> dict[str, str]:
  """module name -> path, for every .py file under rt_jax/."""
  out = {}
  for root, _, files in os.walk(RT_JAX):
    for f in files:
      if f.endswith('.py'):
        path = os.path.join(root, f)
        rel = os.path.relpath(path, os.path.dirname(RT_JAX))[:-3].replace(os.sep, '.')
        out[rel.removesuffix('.__init__')] = path
  return out


MODULES = _modules()


def _imports(name: str) -> set[str]:
  """The rt_jax modules `name` imports (a `from pkg import x` names pkg.x where that is a module,
  else pkg)."""
  tree = ast.parse(open(MODULES[name]).read())
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names if a.name.startswith('rt_jax')}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('rt_jax'):
      for a in node.names:
        sub = f'{node.module}.{a.name}'
        out.add(sub if sub in MODULES else node.module)
  return out & set(MODULES)


def _layer(name: str) -> int:
  parts = name.split('.')
  if len(parts) == 1:
    return -1  # the package itself
  if parts[1] in LAYERS:
    return LAYERS.index(parts[1])
  return len(LAYERS)  # an entry point


def _study(name: str) -> str | None:
  parts = name.split('.')
  return '.'.join(parts[:3]) if len(parts) > 2 and parts[1] == 'studies' else None


def test_a_module_imports_only_its_own_layer_or_lower():
  bad = [(m, i) for m in MODULES for i in _imports(m) if _layer(i) > _layer(m)]
  assert not bad, bad


def test_the_studies_import_each_other_nowhere():
  bad = [(m, i) for m in MODULES for i in _imports(m)
         if _study(m) and _study(i) and _study(m) != _study(i)]
  assert not bad, bad


def test_no_import_cycle():
  graph = {m: _imports(m) - {m} for m in MODULES}
  # A package's __init__ that imports its own submodules is how registries load; a cycle through
  # it is still a cycle, so nothing is exempt.
  state, stack = {}, []

  def visit(m):
    state[m] = 'open'
    stack.append(m)
    for n in sorted(graph[m]):
      if state.get(n) == 'open':
        raise AssertionError('import cycle: ' + ' -> '.join(stack[stack.index(n):] + [n]))
      if n not in state:
        visit(n)
    stack.pop()
    state[m] = 'done'

  for m in sorted(graph):
    if m not in state:
      visit(m)


def test_no_module_over_500_lines():
  long = {m: n for m, p in MODULES.items() if (n := sum(1 for _ in open(p))) > MAX_LINES}
  assert not long, long


def test_a_planted_upward_import_and_cycle_are_caught(tmp_path, monkeypatch):
  # The checks above can fail: a core module importing rl, and two modules importing each other.
  fake = {'rt_jax.core.x': tmp_path / 'x.py', 'rt_jax.rl.y': tmp_path / 'y.py'}
  fake['rt_jax.core.x'].write_text('from rt_jax.rl import y\n')
  fake['rt_jax.rl.y'].write_text('from rt_jax.core import x\n')
  monkeypatch.setattr(__import__(__name__), 'MODULES', {k: str(v) for k, v in fake.items()})
  assert _imports('rt_jax.core.x') == {'rt_jax.rl.y'}
  assert _layer('rt_jax.rl.y') > _layer('rt_jax.core.x')
  try:
    test_no_import_cycle()
  except AssertionError as e:
    assert 'rt_jax.core.x -> rt_jax.rl.y -> rt_jax.core.x' in str(e)
  else:
    raise AssertionError('the planted cycle was not found')
