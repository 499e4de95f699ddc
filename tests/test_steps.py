"""A step that is the checker's fault never fails an element (float32, precision="native").

Each case is a function and a point from JAX's own gradient tests where a data-chosen step
crossed a kink, left the domain, outran the scale of f, or met rounding larger than u·|f|:
the correct gradient must not fail, and a 1% error in it (a wrong `custom_jvp`) must.
"""

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np
import pytest
from jax import lax

import jaxcheck


def _rng(seed=0):
    return np.random.default_rng(seed)


CASES = {
    # (A) a kink or jump inside the stencil
    "reduce_window_max": (
        lambda x: lax.reduce_window(x, -jnp.inf, lax.max, (2, 2), (1, 1), "VALID"),
        lambda: _rng().normal(size=(4, 5)) * 3,
    ),
    "cummax": (lambda x: lax.cummax(x, axis=0), lambda: _rng().normal(size=(5, 3)) * 3),
    "sort": (lambda x: jnp.sort(x, axis=-1), lambda: _rng(3).normal(size=(3, 4)) * 3),
    "round_decimals": (lambda x: jnp.round(x, 1) + x**2, lambda: _rng().normal(size=(3, 4))),
    # (B) the stencil leaves the domain
    "arcsin_near_1": (jnp.arcsin, lambda: _rng().uniform(-1, 1, size=(3, 4)) * 0.99),
    "arctanh": (jnp.arctanh, lambda: _rng().uniform(-0.99, 0.99, size=(3, 4))),
    # (C) a small element of a leaf of large ones
    "tanh_0_to_1000": (jnp.tanh, lambda: np.linspace(0, 1000, 8)),
    "atan_special": (jnp.arctan, lambda: np.array([0.0, 1000.0])),
    # (D) a step longer than the scale on which f varies
    "fresnel_at_30": (lambda x: jnp.stack(jsp.fresnel(x)), lambda: _rng().normal(size=6) * 30),
    # (E) rounding above u·|f|
    "pinv": (jnp.linalg.pinv, lambda: _rng().normal(size=(2, 6, 6))),
    # tiny parameters of a function that varies on a scale of 1 (JAX's rand_small_positive)
    "expit_tiny": (jax.nn.sigmoid, lambda: _rng().uniform(0, 2e-5, size=(3, 4))),
}


def planted(fn, factor):
    @jax.custom_jvp
    def wrong(x):
        return fn(x)

    @wrong.defjvp
    def wrong_jvp(primals, tangents):
        out, t = jax.jvp(fn, primals, tangents)
        return out, t * factor

    return wrong


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_correct_gradient_never_fails_and_a_1_percent_error_does(name):
    fn, make = CASES[name]
    x = jnp.asarray(make(), jnp.float32)
    result = jaxcheck.check_grad(fn, x, precision="native")
    assert result.verdict != "failed", result
    wrong = jaxcheck.check_grad(planted(fn, 1.01), x, precision="native")
    assert wrong.verdict == "failed", wrong


def test_a_singular_determinant_in_float64_is_not_failed():
    # f(θ ± h e_00) is exactly ±1.8e-12 at h and 2h: the fourth difference sees no noise
    a = np.array([[36.0, -42, 18], [-42, 49, -21], [18, -21, 9]])
    assert jaxcheck.check_grad(jnp.linalg.det, a).verdict != "failed"


def test_a_real_error_at_a_kinky_function_is_still_located():
    x = jnp.asarray(_rng().normal(size=(5, 3)) * 3, jnp.float32)

    def fn(x):
        return lax.cummax(x, axis=0)

    def grad_fn(x):
        w = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
        g = jax.grad(lambda x: jnp.sum(w * fn(x)))(x)
        return g.at[4, 2].add(0.5)

    w = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    result = jaxcheck.check_grad(lambda x: jnp.sum(w * fn(x)), x, grad_fn=grad_fn,
                                 precision="native")  # fmt: skip
    assert [(e.path, e.index) for e in result.failures] == [("params", (4, 2))]


def test_the_automatic_step_on_the_host_costs_about_what_the_check_does():
    """Points evaluated one at a time (a kernel that cannot be vmapped): the step search's
    sample is budgeted by the elements the check compares (it once evaluated fn ~40× more
    often than the check it served: 8 samples per leaf, ~100 s against 4.5 s)."""
    rng = np.random.default_rng(0)
    params = {
        "W": (rng.normal(size=(64, 64)) / 8).astype(np.float32),
        "b": np.zeros(64, np.float32),
    }
    X = rng.normal(size=(16, 64)).astype(np.float32)
    calls = [0]

    def loss(p, X):  # plain NumPy: the host engine
        calls[0] += 1
        return np.float32(np.sum(np.tanh(X @ p["W"] + p["b"]) ** 2))

    def grad(p, X, bug=1.0):
        z = np.tanh(X @ p["W"] + p["b"])
        dz = 2 * z * (1 - z**2)
        return {"W": (X.T @ dz).astype(np.float32) * bug, "b": dz.sum(0).astype(np.float32)}

    counts = {}
    for eps in ("auto", "rule"):
        calls[0] = 0
        result = jaxcheck.check_grad(
            loss, params, X, grad_fn=grad, mode="sample", samples=8, precision="native", eps=eps
        )
        assert result.engine == "host" and result.verdict == "passed", result
        counts[eps] = calls[0]
    assert counts["auto"] < 5 * counts["rule"], counts
    bad = jaxcheck.check_grad(
        loss, params, X, grad_fn=lambda p, X: grad(p, X, 1.05), mode="sample", samples=8,
        precision="native",
    )  # fmt: skip
    assert bad.verdict == "failed" and {e.path for e in bad.failures} == {"['W']"}, bad
