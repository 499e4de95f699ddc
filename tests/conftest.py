"""JAX configuration for the whole suite, fixed before any test does JAX work."""

import jax

# Implicit rank promotion hides shape bugs in models and in jaxcheck alike (equinox does this).
jax.config.update("jax_numpy_rank_promotion", "raise")
