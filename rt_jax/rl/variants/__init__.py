"""The expert-iteration variants, each registered by its own file (registry.py)."""
from rt_jax.rl.variants import exploit_only  # noqa: F401
from rt_jax.rl.variants import hhh  # noqa: F401
