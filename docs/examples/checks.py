"""The gradient checks of a small model, for `jaxcheck check checks.py:make_spec`."""

import jax.numpy as jnp
import numpy as np

import jaxcheck


def loss(p, x, y):
    h = jnp.tanh(x @ p["W1"] + p["b1"])
    return jnp.mean((h @ p["W2"] - y) ** 2)


def backward(p, x, y):  # the handwritten backward pass under test
    h = np.tanh(x @ p["W1"] + p["b1"])
    d = 2 * (h @ p["W2"] - y) / len(x)
    dh = d @ p["W2"].T * (1 - h**2)
    return {"W1": x.T @ dh, "b1": dh.sum(0), "W2": h.T @ d}


def backward_bug(p, x, y):  # the tanh derivative without its square
    h = np.tanh(x @ p["W1"] + p["b1"])
    d = 2 * (h @ p["W2"] - y) / len(x)
    dh = d @ p["W2"].T * (1 - h)
    return {"W1": x.T @ dh, "b1": dh.sum(0), "W2": h.T @ d}


def _point():
    rng = np.random.default_rng(0)
    params = {"W1": rng.normal(size=(4, 8)), "b1": np.zeros(8), "W2": rng.normal(size=(8, 1))}
    x, y = rng.normal(size=(16, 4)), rng.normal(size=(16, 1))
    return params, (x, y)


def make_spec():
    params, data = _point()
    return jaxcheck.Spec(loss, params, data, grad_fn=backward)  # options: rtol=..., mode=...


def make_buggy_spec():
    params, data = _point()
    return jaxcheck.Spec(loss, params, data, grad_fn=backward_bug)
