"""Work on only the rows of a batch that need it, so a command, a long line or a path costs what
its rows do rather than what the whole batch would. `chunked` gathers the chosen rows into dense
chunks of a fixed size and runs a vmapped function on one chunk per `while_loop` iteration, so
the function is compiled once (at the chunk size) and a step costs the chunks its chosen rows
fill, not the whole batch."""
import jax
import jax.numpy as jnp


def chunked(fn, chosen_B, chunk: int, *args, into=None, on_chunk: bool = False):
  """vmap(fn)(*args) on the rows where chosen_B, `chunk` rows per iteration; every leaf of args
  has the batch axis first. Rows not chosen keep `into`'s rows (zeros without it).

  With on_chunk, fn takes a whole chunk instead of one row: fn(valid_C, *rows_C), where valid_C
  marks the chunk's chosen rows (the others are padding whose results are dropped)."""
  n = chosen_B.shape[0]
  chunk = max(1, min(chunk, n))
  run = fn if on_chunk else lambda valid_C, *rows_C: jax.vmap(fn)(*rows_C)
  if into is None:
    sample = jax.tree.map(lambda a: a[:chunk], args)
    shapes = jax.eval_shape(run, jnp.ones(chunk, bool), *sample)
    into = jax.tree.map(lambda s: jnp.zeros((n,) + s.shape[1:], s.dtype), shapes)
  full = into
  # The chosen rows first, then n (past the end: gathered as row n - 1, scattered nowhere); the
  # extra `chunk` entries keep every slice in bounds, so dynamic_slice never shifts one back.
  order = jnp.nonzero(chosen_B, size=n + chunk, fill_value=n)[0].astype(jnp.int32)
  count = jnp.sum(chosen_B, dtype=jnp.int32)

  def body(carry):
    k, full = carry
    idx = jax.lax.dynamic_slice(order, (k * chunk,), (chunk,))
    rows = jax.tree.map(lambda a: a[jnp.minimum(idx, n - 1)], args)
    res = run(idx < n, *rows)
    return k + 1, jax.tree.map(lambda f, r: f.at[idx].set(r, mode='drop'), full, res)

  _, full = jax.lax.while_loop(lambda c: c[0] * chunk < count, body, (jnp.int32(0), full))
  return full


def pick(mask_B, a_tree, b_tree):
  """Row-wise where: a's row where mask_B, else b's (leaves share the batch axis first)."""
  return jax.tree.map(lambda a, b: jnp.where(mask_B.reshape(mask_B.shape + (1,) * (a.ndim - 1)),
                                             a, b), a_tree, b_tree)
