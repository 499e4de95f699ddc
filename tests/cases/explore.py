"""Correct functions `jaxcheck.explore` must never fail, each with a wide natural domain.
Shared by scripts/explore_corpus.py (its table) and tests/test_explore.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy import special

# name -> (fn of one array, domain)
CORRECT = {
    "tanh": (jnp.tanh, (-50.0, 50.0)),
    "softplus": (jax.nn.softplus, (-50.0, 50.0)),
    "log1p": (jnp.log1p, (-0.99, 1e6)),
    "erf": (special.erf, (-10.0, 10.0)),
    "gelu": (jax.nn.gelu, (-20.0, 20.0)),
    "sigmoid": (jax.nn.sigmoid, (-60.0, 60.0)),
    "logaddexp(x, 1)": (lambda x: jnp.logaddexp(x, 1.0), (-60.0, 60.0)),
    "log_softmax([x, 0, 1])[0]": (
        lambda x: jax.nn.log_softmax(jnp.stack([x, 0 * x, 0 * x + 1]))[0],
        (-60.0, 60.0),
    ),
    "xlogy(x, x + 2)": (lambda x: special.xlogy(x, x + 2.0), (0.0, 10.0)),
    "exp": (jnp.exp, (-700.0, 80.0)),
    "sqrt": (jnp.sqrt, (0.0, 1e30)),
    "relu": (jax.nn.relu, (-3.0, 3.0)),
    "abs": (jnp.abs, (-3.0, 3.0)),
}
