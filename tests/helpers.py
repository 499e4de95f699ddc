"""Models shared by the tests: the seeds' networks with their bugs, and correct models."""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np

_COMPILES: list[list] = []  # the open count_compilations() lists


def _on_event(event: str, seconds: float, **kwargs) -> None:
    if event == "/jax/core/compile/backend_compile_duration":
        for seen in _COMPILES:
            seen.append(seconds)


jax.monitoring.register_event_duration_secs_listener(_on_event)


@contextlib.contextmanager
def count_compilations():
    """A list that collects one entry per XLA compilation made inside the block."""
    seen: list = []
    _COMPILES.append(seen)
    try:
        yield seen
    finally:
        _COMPILES.remove(seen)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ---- seed 000: a 2-2-1 sigmoid network, squared error against targets ------------------------


def seed000_data():
    rng = np.random.default_rng(0)
    params = {"W1": rng.normal(size=(2, 2)), "W2": rng.normal(size=(2, 1))}
    X = np.array([[1.0, 1.0], [3.0, 4.0], [2.1, 0.0], [0.5, 0.2]]) / 4
    targets = np.array([[0.2], [0.7], [0.5], [0.3]])
    return params, X, targets


def seed000_loss(p, X, t):
    out = sigmoid(sigmoid(X @ p["W1"]) @ p["W2"])
    return 0.5 * np.sum((out - t) ** 2)


def seed000_backward(p, X, t, *, use_targets=True):
    """Backprop of the squared error; use_targets=False backpropagates the output itself,
    the confusion of seed 000's question ("what value should be backpropagated?")."""
    a1 = sigmoid(X @ p["W1"])
    out = sigmoid(a1 @ p["W2"])
    err = (out - t) if use_targets else out
    d2 = err * out * (1 - out)
    d1 = (d2 @ p["W2"].T) * a1 * (1 - a1)
    return {"W1": X.T @ d1, "W2": a1.T @ d2}


# ---- seed 001: the sigmoid autoencoder, Matlab code transcribed (x is a row vector) ----------


def seed001_data(n_visible=784, n_hidden=200, seed=0):
    rng = np.random.default_rng(seed)
    bound = 4 * np.sqrt(6.0 / (n_hidden + n_visible))
    params = {
        "encoder": rng.uniform(-bound, bound, (n_visible, n_hidden)),
        "decoder": rng.uniform(-bound, bound, (n_hidden, n_visible)),
    }
    x = rng.uniform(0, 1, (1, n_visible))
    return params, x


def seed001_loss(p, x):
    a = sigmoid(x @ p["encoder"])
    z = sigmoid(a @ p["decoder"])
    return np.sum(0.5 * (z - x) ** 2)


def seed001_backward(p, x, *, fixed=False):
    """The seed's backward: gDecoder = error_0' * a and gEncoder = error_1' * x are transposed."""
    a = sigmoid(x @ p["encoder"])
    z = sigmoid(a @ p["decoder"])
    error_0 = (z - x) * z * (1 - z)
    error_1 = (error_0 @ p["decoder"].T) * a * (1 - a)
    if fixed:
        return {"decoder": a.T @ error_0, "encoder": x.T @ error_1}
    return {"decoder": error_0.T @ a, "encoder": error_1.T @ x}


# ---- seed 002: a 2-3-1 sigmoid network trained with momentum, checked every iteration --------

SEED002_X = np.array([[3, 5], [5, 1], [10, 2]], dtype=float) / np.array([10.0, 5.0])
SEED002_Y = np.array([[75], [82], [93]], dtype=float) / 100


def seed002_loss(p, X, y):
    yhat = sigmoid(sigmoid(X @ p["W1"]) @ p["W2"])
    return 0.5 * np.sum((y - yhat) ** 2)


def seed002_backward(p, X, y):
    z2 = X @ p["W1"]
    a2 = sigmoid(z2)
    z3 = a2 @ p["W2"]
    yhat = sigmoid(z3)
    delta3 = -(y - yhat) * yhat * (1 - yhat)
    delta2 = (delta3 @ p["W2"].T) * a2 * (1 - a2)
    return {"W1": X.T @ delta2, "W2": a2.T @ delta3}


def seed002_training(iterations=250, hidden=3, seed=0):
    """Yield the parameters at every iteration of the seed's training loop."""
    rng = np.random.default_rng(seed)
    p = {"W1": rng.random((2, hidden)) / 100, "W2": rng.random((hidden, 1)) / 100}
    velocity = {k: 0.0 for k in p}
    for rate in np.linspace(0.5, 0.05, iterations):
        yield p
        g = seed002_backward(p, SEED002_X, SEED002_Y)
        velocity = {k: rate * g[k] + 0.5 * velocity[k] for k in p}
        p = {k: p[k] - velocity[k] for k in p}


def seed002_numerical_gradient(p, X, y, eps=10e-4):
    """The seed's computeNumericalGradient: one flat coordinate at a time, fixed eps."""
    flat = np.concatenate([p["W1"].ravel(), p["W2"].ravel()])
    n1 = p["W1"].size

    def unflat(v):
        return {"W1": v[:n1].reshape(p["W1"].shape), "W2": v[n1:].reshape(p["W2"].shape)}

    num = np.zeros_like(flat)
    for i in range(flat.size):
        e = np.zeros_like(flat)
        e[i] = eps
        num[i] = (seed002_loss(unflat(flat + e), X, y) - seed002_loss(unflat(flat - e), X, y)) / (
            2 * eps
        )
    return num


# ---- seed 003: deeplearning.ai's gradient_check_n network and its planted bugs ---------------


def seed003_data():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4, 3))
    Y = np.array([[1.0, 1.0, 0.0]])
    params = {
        "W1": rng.normal(size=(5, 4)),
        "b1": rng.normal(size=(5, 1)),
        "W2": rng.normal(size=(3, 5)),
        "b2": rng.normal(size=(3, 1)),
        "W3": rng.normal(size=(1, 3)),
        "b3": rng.normal(size=(1, 1)),
    }
    return params, X, Y


def seed003_forward(p, X, Y):
    """LINEAR -> RELU -> LINEAR -> RELU -> LINEAR -> SIGMOID, cross-entropy cost (NumPy)."""
    m = X.shape[1]
    A1 = np.maximum(0, p["W1"] @ X + p["b1"])
    A2 = np.maximum(0, p["W2"] @ A1 + p["b2"])
    A3 = sigmoid(p["W3"] @ A2 + p["b3"])
    logprobs = np.multiply(-np.log(A3), Y) + np.multiply(-np.log(1 - A3), 1 - Y)
    return 1.0 / m * np.sum(logprobs)


def seed003_backward(p, X, Y, *, bugs=True):
    """backward_propagation_n; with bugs=True, dW2 is doubled and db1 uses 4/m (the exercise's)."""
    m = X.shape[1]
    Z1 = p["W1"] @ X + p["b1"]
    A1 = np.maximum(0, Z1)
    Z2 = p["W2"] @ A1 + p["b2"]
    A2 = np.maximum(0, Z2)
    A3 = sigmoid(p["W3"] @ A2 + p["b3"])
    dZ3 = A3 - Y
    dW3 = 1.0 / m * dZ3 @ A2.T
    db3 = 1.0 / m * np.sum(dZ3, axis=1, keepdims=True)
    dZ2 = (p["W3"].T @ dZ3) * (A2 > 0)
    dW2 = 1.0 / m * dZ2 @ A1.T * (2 if bugs else 1)
    db2 = 1.0 / m * np.sum(dZ2, axis=1, keepdims=True)
    dZ1 = (p["W2"].T @ dZ2) * (A1 > 0)
    dW1 = 1.0 / m * dZ1 @ X.T
    db1 = (4.0 if bugs else 1.0) / m * np.sum(dZ1, axis=1, keepdims=True)
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2, "W3": dW3, "b3": db3}


# ---- a JAX custom_vjp rule with a planted bug ------------------------------------------------


def make_square_layer(*, bug: bool):
    """tanh(x @ W) for a square W with a handwritten VJP; bug=True transposes dW, which the
    shape cannot reveal because W is square."""

    @jax.custom_vjp
    def layer(W, x):
        return jnp.tanh(x @ W)

    def fwd(W, x):
        y = jnp.tanh(x @ W)
        return y, (W, x, y)

    def bwd(res, ct):
        W, x, y = res
        dz = ct * (1 - y**2)
        dW = x.T @ dz
        return (dW.T if bug else dW), dz @ W.T

    layer.defvjp(fwd, bwd)
    return layer


def custom_vjp_model(*, bug: bool):
    layer = make_square_layer(bug=bug)
    k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
    params = {
        "W": jax.random.normal(k1, (6, 6), jnp.float32) / 3,
        "v": jax.random.normal(k2, (6,), jnp.float32),
    }
    x = jax.random.normal(k3, (5, 6), jnp.float32)

    def loss(p, x):
        return jnp.sum(layer(p["W"], x) @ p["v"]) ** 2

    return loss, params, x


# ---- a corpus of correct float32 JAX models --------------------------------------------------


def _init(key, shapes, scale=0.5):
    keys = jax.random.split(key, len(shapes))
    return {
        name: scale * jax.random.normal(k, shape, jnp.float32) / np.sqrt(max(shape[0], 1))
        for k, (name, shape) in zip(keys, shapes.items())
    }


def mlp_softmax_ce():
    """3-layer tanh MLP with biases and softmax cross-entropy over 16 examples."""
    key = jax.random.key(0)
    params = _init(key, {"W1": (8, 16), "W2": (16, 16), "W3": (16, 4)})
    params.update({"b1": jnp.zeros(16), "b2": jnp.full(16, 0.1), "b3": jnp.zeros(4)})
    x = jax.random.normal(jax.random.key(1), (16, 8), jnp.float32)
    labels = jax.random.randint(jax.random.key(2), (16,), 0, 4)

    def loss(p, x, labels):
        h = jnp.tanh(x @ p["W1"] + p["b1"][None])
        h = jnp.tanh(h @ p["W2"] + p["b2"][None])
        logits = h @ p["W3"] + p["b3"][None]
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))

    return loss, params, (x, labels)


def layer_norm_model():
    params = _init(jax.random.key(4), {"W": (6, 12), "gamma": (12,), "beta": (12,)})
    params["gamma"] = params["gamma"] + 1.0
    x = jax.random.normal(jax.random.key(5), (10, 6), jnp.float32)
    y = jax.random.normal(jax.random.key(6), (10, 12), jnp.float32)

    def loss(p, x, y):
        h = x @ p["W"]
        mu = jnp.mean(h, axis=-1, keepdims=True)
        var = jnp.var(h, axis=-1, keepdims=True)
        out = (h - mu) / jnp.sqrt(var + 1e-5) * p["gamma"][None] + p["beta"][None]
        return jnp.mean((jnp.tanh(out) - y) ** 2)

    return loss, params, (x, y)


def conv_model():
    params = _init(jax.random.key(7), {"kernel": (3, 3, 2, 4), "head": (4 * 6 * 6, 1)})
    params["bias"] = jnp.zeros(4, jnp.float32)
    x = jax.random.normal(jax.random.key(8), (3, 8, 8, 2), jnp.float32)
    y = jax.random.normal(jax.random.key(9), (3, 1), jnp.float32)

    def loss(p, x, y):
        z = jax.lax.conv_general_dilated(
            x, p["kernel"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        z = jax.nn.silu(z + p["bias"][None, None, None])
        return jnp.mean((z.reshape(x.shape[0], -1) @ p["head"] - y) ** 2)

    return loss, params, (x, y)


def attention_model():
    d = 8
    params = _init(jax.random.key(10), {"q": (d, d), "k": (d, d), "v": (d, d), "o": (d, 1)})
    x = jax.random.normal(jax.random.key(11), (2, 5, d), jnp.float32)
    y = jax.random.normal(jax.random.key(12), (2, 5, 1), jnp.float32)

    def loss(p, x, y):
        q, k, v = x @ p["q"], x @ p["k"], x @ p["v"]
        att = jax.nn.softmax(q @ jnp.swapaxes(k, 1, 2) / np.sqrt(d), axis=-1)
        return jnp.mean((att @ v @ p["o"] - y) ** 2)

    return loss, params, (x, y)


def scan_rnn_model():
    params = _init(jax.random.key(13), {"Wx": (3, 8), "Wh": (8, 8), "out": (8, 1)})
    params["bh"] = jnp.zeros(8, jnp.float32)
    xs = jax.random.normal(jax.random.key(14), (7, 4, 3), jnp.float32)  # time, batch, features
    y = jax.random.normal(jax.random.key(15), (4, 1), jnp.float32)

    def loss(p, xs, y):
        def step(h, x):
            h = jnp.tanh(x @ p["Wx"] + h @ p["Wh"] + p["bh"][None])
            return h, None

        h, _ = jax.lax.scan(step, jnp.zeros((xs.shape[1], 8), xs.dtype), xs)
        return jnp.mean((h @ p["out"] - y) ** 2)

    return loss, params, (xs, y)


CORPUS = {
    "mlp_softmax_ce": mlp_softmax_ce,
    "layer_norm": layer_norm_model,
    "conv": conv_model,
    "attention": attention_model,
    "scan_rnn": scan_rnn_model,
}


def assert_kinks_excused_and_hvp_factors_caught(loss, params, args, hvp, at_least: int) -> None:
    """order=2 in native float32 where the gradient has kinks (ReLU): the correct H·v is not
    FAILED, and H·v off by 1% or 2x is FAILED in more than `at_least` elements."""
    import jaxcheck

    result = jaxcheck.check_grad(loss, params, *args, order=2, precision="native")
    assert result.verdict != "failed", result
    for factor in (1.01, 2.0):
        bad = jaxcheck.check_grad(
            loss, params, *args, order=2, precision="native",
            hvp_fn=lambda *a, c=factor: jax.tree.map(lambda h: c * h, hvp(*a)),
        )  # fmt: skip
        assert bad.verdict == "failed", bad
        assert bad.n_failed > at_least, bad
