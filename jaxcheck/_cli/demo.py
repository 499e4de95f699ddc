"""The built-in example behind `jaxcheck demo`: a handwritten backward pass with a planted bug.

The network and the bug are those of the deeplearning.ai gradient-check exercise: a tanh layer and a
logistic output, the forward pass in JAX, the backward pass written by hand in NumPy, and
`db1` scaled by 4/m instead of 1/m.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

BUG_LINE = "db1 = 4.0 / m * np.sum(dZ1, axis=0)   # should be 1.0 / m"


def make_demo() -> tuple:
    """(loss, backward, params, X, y) for a 4-8-1 network with a wrong `db1`."""
    rng = np.random.default_rng(0)
    m = 32
    X = rng.normal(size=(m, 4))
    y = (X[:, 0] * X[:, 1] > 0).astype(np.float64)
    params = {
        "W1": 0.5 * rng.normal(size=(4, 8)),
        "b1": 0.1 * rng.normal(size=8),
        "W2": 0.5 * rng.normal(size=8),
        "b2": np.zeros(()),
    }

    def loss(p: dict[str, Any], X: jax.Array | np.ndarray, y: jax.Array | np.ndarray) -> jax.Array:
        """Mean logistic loss of a tanh network (JAX, so jaxcheck batches it)."""
        z = jnp.tanh(X @ p["W1"] + p["b1"][None]) @ p["W2"] + p["b2"]
        return jnp.mean(jnp.logaddexp(0.0, z) - y * z)

    def backward(p: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        """The handwritten gradient of `loss`, in NumPy, with the exercise's bug."""
        m = X.shape[0]
        A1 = np.tanh(X @ p["W1"] + p["b1"])
        Z2 = A1 @ p["W2"] + p["b2"]
        dZ2 = 1.0 / (1.0 + np.exp(-Z2)) - y
        dW2 = 1.0 / m * A1.T @ dZ2
        db2 = 1.0 / m * np.sum(dZ2)
        dZ1 = np.outer(dZ2, p["W2"]) * (1.0 - A1**2)
        dW1 = 1.0 / m * X.T @ dZ1
        db1 = 4.0 / m * np.sum(dZ1, axis=0)  # the planted bug: should be 1.0 / m
        return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}

    return loss, backward, params, X, y
