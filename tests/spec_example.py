"""A spec file as a user writes one for `jaxcheck check tests/spec_example.py:make_spec`."""

import jax.numpy as jnp
import numpy as np

import jaxcheck


def loss(p, x, y):
    h = jnp.tanh(x @ p["W1"] + p["b1"][None])
    return jnp.mean((h @ p["W2"] - y) ** 2)


def data():
    rng = np.random.default_rng(0)
    params = {
        "W1": rng.standard_normal((4, 8)) * 0.5,
        "b1": np.zeros(8),
        "W2": rng.standard_normal((8, 1)) * 0.5,
    }
    return params, rng.standard_normal((16, 4)), rng.standard_normal((16, 1))


def backward(p, x, y, *, bug=True):
    """Handwritten backprop; the bug: tanh' written as 1 - h instead of 1 - h**2."""
    h = np.tanh(x @ p["W1"] + p["b1"])
    d = 2 * (h @ p["W2"] - y) / len(x)
    dh = d @ p["W2"].T * ((1 - h) if bug else (1 - h**2))
    return {"W1": x.T @ dh, "b1": dh.sum(0), "W2": h.T @ d}


def make_spec():
    params, x, y = data()
    return jaxcheck.Spec(loss, params, (x, y), grad_fn=backward)


def fixed_spec():
    params, x, y = data()
    return {
        "fn": loss,
        "params": params,
        "args": (x, y),
        "grad_fn": lambda *a: backward(*a, bug=False),
    }


def not_a_spec():
    return 3


def raising_spec():
    params, x, y = data()
    return jaxcheck.Spec(lambda p, x, y: 1 / 0, params, (x, y))


def transposed_spec():
    """A backward whose W1 gradient is transposed ((8, 4) for a (4, 8) parameter)."""
    params, x, y = data()

    def transposed(*a):
        g = backward(*a, bug=False)
        return {**g, "W1": g["W1"].T}

    return jaxcheck.Spec(loss, params, (x, y), grad_fn=transposed)
